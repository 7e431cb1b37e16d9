#include "format/fragment_layout.h"

#include <algorithm>
#include <numeric>

#include "core/dtype.h"
#include "format/gptq_format.h"

namespace gptq::quant {

std::optional<FragmentLayout> fragment_order(int bits, int64_t K, int64_t N, int64_t G,
                                             const std::vector<int32_t>& g_idx) {
  FragmentLayout l{.bits = bits,
                   .K = K,
                   .N = N,
                   .Kp = (K + kFragmentChunk - 1) / kFragmentChunk * kFragmentChunk,
                   .Nt = (N + kFragmentRows - 1) / kFragmentRows,
                   .G = G};
  const int64_t Kp = l.Kp;
  // Inputs sorted by group, stably: act-order checkpoints become sequential groups.
  std::vector<int32_t> order(static_cast<std::size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return g_idx[std::size_t(a)] < g_idx[std::size_t(b)]; });
  l.tile_group.assign(std::size_t(Kp / kFragmentTile), 0);
  for (int64_t t = 0; t < Kp / kFragmentTile; ++t) {
    const int64_t first = t * kFragmentTile;
    if (first >= K) {
      l.tile_group[std::size_t(t)] = int32_t(l.G - 1);
      continue;
    }
    const int32_t g = g_idx[std::size_t(order[std::size_t(first)])];
    for (int64_t k = first + 1; k < std::min(K, first + kFragmentTile); ++k) {
      if (g_idx[std::size_t(order[std::size_t(k)])] != g) return std::nullopt;
    }
    l.tile_group[std::size_t(t)] = g;
  }
  l.chunk_group.assign(std::size_t(Kp / kFragmentChunk), -1);
  l.chunks_one_group = true;
  for (int64_t c = 0; c < Kp / kFragmentChunk; ++c) {
    const int32_t g = l.tile_group[std::size_t(4 * c)];
    const bool one = l.tile_group[std::size_t(4 * c + 3)] == g;  // sorted: first == last means all
    if (one && (c + 1) * kFragmentChunk <= K) l.chunk_group[std::size_t(c)] = g;
    l.chunks_one_group = l.chunks_one_group && one;
  }
  const int64_t tiles = Kp / kFragmentTile;
  l.pairs_one_group = true;
  for (int64_t t = 0; t < tiles; t += 2 * kFragmentChunk / kFragmentTile) {
    const int64_t last = std::min(t + 2 * kFragmentChunk / kFragmentTile, tiles) - 1;  // sorted: first == last means all
    l.pairs_one_group = l.pairs_one_group && l.tile_group[std::size_t(t)] == l.tile_group[std::size_t(last)];
  }
  if (!std::is_sorted(g_idx.begin(), g_idx.end())) l.perm = std::move(order);
  return l;
}

std::optional<FragmentLayout> make_fragment_layout(const PackedLinear& p) {
  validate(p);
  std::optional<FragmentLayout> ordered = fragment_order(p.bits, p.in_features, p.out_features, p.num_groups(), p.g_idx);
  if (!ordered) return std::nullopt;
  FragmentLayout& l = *ordered;
  const int bits = l.bits;
  const int64_t K = l.K, N = l.N, Kp = l.Kp, rows = l.row_stride();
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
          const int64_t src = l.perm.empty() ? k : l.perm[std::size_t(k)];
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
  return ordered;
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
