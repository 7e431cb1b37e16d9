#include "format/fragment_layout.h"

#include <algorithm>
#include <numeric>

#include "core/dtype.h"
#include "format/gptq_format.h"

namespace gptq::quant {
namespace {

// (word, bit) of a `width`-bit field of the slot, for the widths stored whole.
struct Field {
  int word, bit;
};
Field field(int bits, const FragmentSlot& s) {
  const int i = 4 * s.j + s.p;  // the register's index among the chunk's 16
  switch (bits) {
    case 4: return {s.j, 4 * s.p + 16 * s.h};
    case 8: return {2 * s.j + s.p / 2, 16 * (s.p & 1) + 8 * s.h};
    default: return {i / 8, 2 * (i % 8) + 16 * s.h};  // 2-bit, and 3-bit's low 2 bits
  }
}

}  // namespace

uint32_t fragment_code(const uint32_t* w, int bits, const FragmentSlot& s) {
  const int width = bits == 3 ? 2 : bits;
  const Field f = field(bits, s);
  uint32_t q = (w[f.word] >> f.bit) & code_mask(width);
  if (bits == 3) q |= ((w[2] >> (4 * s.j + s.p + 16 * s.h)) & 1u) << 2;
  return q;
}

void set_fragment_code(uint32_t* w, int bits, const FragmentSlot& s, uint32_t code) {
  const int width = bits == 3 ? 2 : bits;
  const Field f = field(bits, s);
  w[f.word] = (w[f.word] & ~(code_mask(width) << f.bit)) | ((code & code_mask(width)) << f.bit);
  if (bits == 3) {
    const int bit = 4 * s.j + s.p + 16 * s.h;
    w[2] = (w[2] & ~(1u << bit)) | (((code >> 2) & 1u) << bit);
  }
}

std::optional<FragmentLayout> make_fragment_layout(const PackedLinear& p) {
  validate(p);
  const int bits = p.bits;
  FragmentLayout l{.bits = bits,
                   .K = p.in_features,
                   .N = p.out_features,
                   .Kp = (p.in_features + kFragmentChunk - 1) / kFragmentChunk * kFragmentChunk,
                   .Nt = (p.out_features + kFragmentRows - 1) / kFragmentRows,
                   .G = p.num_groups()};
  const int64_t K = l.K, N = l.N, Kp = l.Kp, rows = l.row_stride();
  // Inputs sorted by group, stably: act-order checkpoints become sequential groups.
  std::vector<int32_t> order(static_cast<std::size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return p.g_idx[std::size_t(a)] < p.g_idx[std::size_t(b)]; });
  l.tile_group.assign(std::size_t(Kp / kFragmentTile), 0);
  for (int64_t t = 0; t < Kp / kFragmentTile; ++t) {
    const int64_t first = t * kFragmentTile;
    if (first >= K) {
      l.tile_group[std::size_t(t)] = int32_t(l.G - 1);
      continue;
    }
    const int32_t g = p.g_idx[std::size_t(order[std::size_t(first)])];
    for (int64_t k = first + 1; k < std::min(K, first + kFragmentTile); ++k) {
      if (p.g_idx[std::size_t(order[std::size_t(k)])] != g) return std::nullopt;
    }
    l.tile_group[std::size_t(t)] = g;
  }
  l.chunk_group.assign(std::size_t(Kp / kFragmentChunk), -1);
  for (int64_t c = 0; c < Kp / kFragmentChunk; ++c) {
    const int32_t g = l.tile_group[std::size_t(4 * c)];
    const bool one = l.tile_group[std::size_t(4 * c + 3)] == g;  // sorted: first == last means all
    if (one && (c + 1) * kFragmentChunk <= K) l.chunk_group[std::size_t(c)] = g;
  }
  if (!std::is_sorted(p.g_idx.begin(), p.g_idx.end())) l.perm = order;

  const int64_t chunks = Kp / kFragmentChunk;
  l.words.assign(std::size_t(l.Nt * chunks * kFragmentLanes * bits), 0);
  // Each (row tile, chunk) is one 32-lane run of words, written by one thread.
#pragma omp parallel for schedule(static)
  for (int64_t nt = 0; nt < l.Nt; ++nt) {
    for (int64_t c = 0; c < chunks; ++c) {
      uint32_t* run = l.words.data() + (nt * chunks + c) * kFragmentLanes * bits;
      for (int r = 0; r < kFragmentRows && nt * kFragmentRows + r < N; ++r) {
        const int64_t n = nt * kFragmentRows + r;
        for (int i = 0; i < kFragmentChunk && c * kFragmentChunk + i < K; ++i) {
          const int64_t k = c * kFragmentChunk + i;
          const int64_t src = l.perm.empty() ? k : order[std::size_t(k)];
          const FragmentSlot s = fragment_slot(r, i);
          set_fragment_code(run + s.lane * bits, bits, s, get_code(p.qweight.data() + n, N, src, bits));
        }
      }
    }
  }
  const int64_t zcols = qzeros_cols(N, bits);
  l.scales.assign(std::size_t(l.G * rows), 0);
  l.zeros.assign(std::size_t(l.G * rows), 0);
  for (int64_t g = 0; g < l.G; ++g) {
    for (int64_t n = 0; n < N; ++n) {
      l.scales[std::size_t(g * rows + n)] = p.scales[std::size_t(g * N + n)];
      l.zeros[std::size_t(g * rows + n)] = uint8_t(get_code(p.qzeros.data() + g * zcols, 1, n, bits));
    }
  }
  return l;
}

std::vector<float> dequantize(const FragmentLayout& l) {
  const int64_t chunks = l.Kp / kFragmentChunk, rows = l.row_stride();
  std::vector<float> w(static_cast<std::size_t>(l.N * l.K));
  for (int64_t n = 0; n < l.N; ++n) {
    const int64_t nt = n / kFragmentRows;
    for (int64_t k = 0; k < l.K; ++k) {
      const FragmentSlot s = fragment_slot(int(n % kFragmentRows), int(k % kFragmentChunk));
      const uint32_t* lane = l.words.data() + ((nt * chunks + k / kFragmentChunk) * kFragmentLanes + s.lane) * l.bits;
      const int64_t g = l.tile_group[std::size_t(k / kFragmentTile)];
      const float q = float(fragment_code(lane, l.bits, s));
      const float scale = f16_to_f32(l.scales[std::size_t(g * rows + n)]);
      const float z = float(l.zeros[std::size_t(g * rows + n)]);
      w[std::size_t(n * l.K + (l.perm.empty() ? k : l.perm[std::size_t(k)]))] = scale * (q - z);
    }
  }
  return w;
}

}  // namespace gptq::quant
