#include "backend/cuda/gptq_repack.h"

#include <algorithm>
#include <numeric>

#include "core/dtype.h"
#include "format/gptq_format.h"

namespace gptq::backend::cuda {

std::optional<GptqHostLayout> repack_for_cuda(const quant::PackedLinear& p) {
  quant::validate(p);
  const int bits = p.bits, V = quant::block_values(bits);
  GptqHostLayout l{.bits = bits, .K = p.in_features, .N = p.out_features, .Np = (p.out_features + 3) / 4 * 4,
                   .G = p.num_groups()};
  const int64_t K = l.K, N = l.N, Np = l.Np;
  std::vector<int32_t> order(static_cast<std::size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return p.g_idx[std::size_t(a)] < p.g_idx[std::size_t(b)]; });
  l.block_group.resize(std::size_t(K / V));
  for (int64_t kb = 0; kb < K / V; ++kb) {
    const int32_t g = p.g_idx[std::size_t(order[std::size_t(kb * V)])];
    for (int64_t i = 1; i < V; ++i) {
      if (p.g_idx[std::size_t(order[std::size_t(kb * V + i)])] != g) return std::nullopt;
    }
    l.block_group[std::size_t(kb)] = g;
  }
  const bool identity = std::is_sorted(p.g_idx.begin(), p.g_idx.end());
  if (!identity) l.perm = order;
  const int64_t rows = quant::qweight_rows(K, bits);
  l.qweight.assign(std::size_t(rows * Np), 0);
  if (identity) {  // the same words, each row padded from N to Np columns
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(p.qweight.data() + r * N, N, l.qweight.data() + r * Np);
    }
  } else {
    // Blocks of columns, k outer, in parallel: as quant::pack, one cache line of each
    // word row at a time.
#pragma omp parallel for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += quant::kPackColumns) {
      const int64_t n1 = std::min(N, n0 + quant::kPackColumns);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t src = order[std::size_t(k)];
        for (int64_t n = n0; n < n1; ++n) {
          quant::set_code(l.qweight.data() + n, Np, k, bits, quant::get_code(p.qweight.data() + n, N, src, bits));
        }
      }
    }
  }
  const int64_t zcols = quant::qzeros_cols(N, bits);
  l.scales.assign(std::size_t(l.G * Np), 0);
  l.zeros.assign(std::size_t(l.G * Np), 0);
  for (int64_t g = 0; g < l.G; ++g) {
    for (int64_t n = 0; n < N; ++n) {
      l.scales[std::size_t(g * Np + n)] = p.scales[std::size_t(g * N + n)];
      l.zeros[std::size_t(g * Np + n)] = uint8_t(quant::get_code(p.qzeros.data() + g * zcols, 1, n, bits));
    }
  }
  return l;
}

std::vector<float> dequantize_host_layout(const GptqHostLayout& l) {
  const int V = quant::block_values(l.bits);
  std::vector<float> w(static_cast<std::size_t>(l.N * l.K));
  for (int64_t n = 0; n < l.N; ++n) {
    for (int64_t k = 0; k < l.K; ++k) {
      const int64_t g = l.block_group[std::size_t(k / V)];
      const auto q = float(quant::get_code(l.qweight.data() + n, l.Np, k, l.bits));
      const float s = f16_to_f32(l.scales[std::size_t(g * l.Np + n)]);
      const float z = float(l.zeros[std::size_t(g * l.Np + n)]);
      const int64_t col = l.perm.empty() ? k : l.perm[std::size_t(k)];
      w[std::size_t(n * l.K + col)] = s * (q - z);
    }
  }
  return w;
}

}  // namespace gptq::backend::cuda
