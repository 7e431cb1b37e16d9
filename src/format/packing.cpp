#include "format/packing.h"

#include <algorithm>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace gptq::quant {
namespace {

std::string shape_str(int64_t a, int64_t b) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
}

void check_bits(int bits, ErrorKind kind) {
  if (!bits_supported(bits)) {
    throw Error(kind, "bits=" + std::to_string(bits) + " is not supported (expected 2, 3, 4 or 8)");
  }
}

// Features are indexed by int32 g_idx and multiplied together; 2^31 bounds both.
void check_features(int64_t in_features, int64_t out_features, int bits, ErrorKind kind) {
  constexpr int64_t kMax = int64_t{1} << 31;
  if (in_features <= 0 || in_features >= kMax || out_features <= 0 || out_features >= kMax) {
    throw Error(kind, "in_features=" + std::to_string(in_features) +
                          " and out_features=" + std::to_string(out_features) +
                          " must both be in [1, 2^31)");
  }
  if (!packs_exactly(in_features, bits)) {
    throw Error(kind, "in_features=" + std::to_string(in_features) + " is not a multiple of " +
                          std::to_string(block_values(bits)) + ", so " + std::to_string(bits) +
                          "-bit codes do not fill whole qweight words");
  }
}

void check_tensor(const char* name, const std::array<int64_t, 2>& shape, int64_t rows,
                  int64_t cols, std::size_t elements, const std::string& why) {
  if (shape[0] != rows || shape[1] != cols) {
    throw Error(ErrorKind::kFormat, std::string(name) + " has shape " +
                                        shape_str(shape[0], shape[1]) + ", expected " +
                                        shape_str(rows, cols) + " " + why);
  }
  if (elements != std::size_t(rows * cols)) {
    throw Error(ErrorKind::kFormat, std::string(name) + " has " + std::to_string(elements) +
                                        " elements, expected " + std::to_string(rows * cols) +
                                        " for shape " + shape_str(rows, cols));
  }
}

void check_unpacked(const QuantizedLinear& q) {
  const auto fail = [](const std::string& what) {
    throw Error(ErrorKind::kInvalidArgument, "QuantizedLinear: " + what);
  };
  const int64_t K = q.in_features, N = q.out_features, G = q.num_groups();
  if (q.group_size == 0 || q.group_size < -1) fail("group_size must be -1 or > 0");
  if (q.q.size() != std::size_t(N * K)) fail("q has " + std::to_string(q.q.size()) +
                                             " codes, expected N*K=" + std::to_string(N * K));
  if (q.scales.size() != std::size_t(G * N)) fail("scales has " + std::to_string(q.scales.size()) +
                                                  " entries, expected G*N=" + std::to_string(G * N));
  if (q.zeros.size() != std::size_t(G * N)) fail("zeros has " + std::to_string(q.zeros.size()) +
                                                 " entries, expected G*N=" + std::to_string(G * N));
  if (q.g_idx.size() != std::size_t(K)) fail("g_idx has " + std::to_string(q.g_idx.size()) +
                                             " entries, expected K=" + std::to_string(K));
  if (!q.bias.empty() && q.bias.size() != std::size_t(N)) fail("bias has " +
      std::to_string(q.bias.size()) + " entries, expected 0 or N=" + std::to_string(N));
  const uint32_t mask = code_mask(q.bits);
  for (uint8_t c : q.q) {
    if (c > mask) fail("code " + std::to_string(c) + " does not fit in " + std::to_string(q.bits) + " bits");
  }
  for (int32_t z : q.zeros) {
    if (z < 0 || uint32_t(z) > mask) fail("zero " + std::to_string(z) + " does not fit in " +
                                          std::to_string(q.bits) + " bits");
  }
  for (int64_t k = 0; k < K; ++k) {
    if (q.g_idx[k] < 0 || q.g_idx[k] >= G) fail("g_idx[" + std::to_string(k) + "]=" +
                                                std::to_string(q.g_idx[k]) + " is out of range");
  }
}

}  // namespace

void validate(const PackedLinear& p) {
  check_bits(p.bits, ErrorKind::kUnsupported);
  check_features(p.in_features, p.out_features, p.bits, ErrorKind::kFormat);
  if (p.group_size == 0 || p.group_size < -1) {
    throw Error(ErrorKind::kFormat, "group_size=" + std::to_string(p.group_size) +
                                        " is invalid (expected -1 or > 0)");
  }
  const int64_t K = p.in_features, N = p.out_features, G = p.num_groups();
  const std::string dims = "for bits=" + std::to_string(p.bits) + ", K=" + std::to_string(K) +
                           ", N=" + std::to_string(N) + ", group_size=" +
                           std::to_string(p.group_size);
  check_tensor("qweight", p.qweight_shape, qweight_rows(K, p.bits), N, p.qweight.size(),
               "([K*bits/32, N]) " + dims);
  check_tensor("qzeros", p.qzeros_shape, G, qzeros_cols(N, p.bits), p.qzeros.size(),
               "([G, ceil(N*bits/32)]) " + dims);
  check_tensor("scales", p.scales_shape, G, N, p.scales.size(), "([G, N]) " + dims);
  if (p.g_idx.size() != std::size_t(K)) {
    throw Error(ErrorKind::kFormat, "g_idx has " + std::to_string(p.g_idx.size()) +
                                        " entries, expected K=" + std::to_string(K));
  }
  for (int64_t k = 0; k < K; ++k) {
    if (p.g_idx[k] < 0 || p.g_idx[k] >= G) {
      throw Error(ErrorKind::kFormat, "g_idx[" + std::to_string(k) + "]=" +
                                          std::to_string(p.g_idx[k]) + " is out of range [0, " +
                                          std::to_string(G) + ")");
    }
  }
  if (!p.bias.empty() && p.bias.size() != std::size_t(N)) {
    throw Error(ErrorKind::kFormat, "bias has " + std::to_string(p.bias.size()) +
                                        " entries, expected 0 or N=" + std::to_string(N));
  }
}

PackedLinear pack(const QuantizedLinear& q, Format format) {
  check_bits(q.bits, ErrorKind::kUnsupported);
  check_features(q.in_features, q.out_features, q.bits, ErrorKind::kUnsupported);
  check_unpacked(q);
  const int bits = q.bits;
  const int64_t K = q.in_features, N = q.out_features, G = q.num_groups();

  PackedLinear p;
  p.bits = bits;
  p.group_size = q.group_size;
  p.in_features = K;
  p.out_features = N;
  p.qweight_shape = {qweight_rows(K, bits), N};
  p.qzeros_shape = {G, qzeros_cols(N, bits)};
  p.scales_shape = {G, N};
  p.qweight.assign(std::size_t(p.qweight_shape[0] * N), 0);
  p.qzeros.assign(std::size_t(G * p.qzeros_shape[1]), 0);

  // Column n of qweight is the stream of codes q[n, 0..K) with word stride N. Columns go
  // in blocks of kPackColumns, k outer, so that each word row's piece of the block (one
  // cache line) is written code after code while it is in cache, instead of one word N
  // words away per code; blocks write disjoint words, so they run in parallel.
#pragma omp parallel for schedule(static)
  for (int64_t n0 = 0; n0 < N; n0 += kPackColumns) {
    const int64_t n1 = std::min(N, n0 + kPackColumns);
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t n = n0; n < n1; ++n) set_code(&p.qweight[n], N, k, bits, q.q[n * K + k]);
    }
  }
  // Row g of qzeros is the stream of stored zeros of columns 0..N.
  for (int64_t g = 0; g < G; ++g) {
    int32_t* row = &p.qzeros[g * p.qzeros_shape[1]];
    for (int64_t n = 0; n < N; ++n) set_code(row, 1, n, bits, stored_zero(q.zeros[g * N + n], bits, format));
  }
  p.scales.resize(q.scales.size());
  for (std::size_t i = 0; i < q.scales.size(); ++i) p.scales[i] = f32_to_f16(q.scales[i]);
  p.g_idx = q.g_idx;
  p.bias = q.bias;
  return p;
}

QuantizedLinear unpack(const PackedLinear& p, Format format) {
  validate(p);
  const int bits = p.bits;
  const int64_t K = p.in_features, N = p.out_features, G = p.num_groups();
  QuantizedLinear q;
  q.bits = bits;
  q.group_size = p.group_size;
  q.in_features = K;
  q.out_features = N;
  q.q.resize(std::size_t(N * K));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) q.q[n * K + k] = uint8_t(get_code(&p.qweight[n], N, k, bits));
  }
  q.zeros.resize(std::size_t(G * N));
  for (int64_t g = 0; g < G; ++g) {
    const int32_t* row = &p.qzeros[g * p.qzeros_shape[1]];
    for (int64_t n = 0; n < N; ++n) q.zeros[g * N + n] = zero_from_stored(get_code(row, 1, n, bits), bits, format);
  }
  q.scales.resize(p.scales.size());
  for (std::size_t i = 0; i < p.scales.size(); ++i) q.scales[i] = f16_to_f32(p.scales[i]);
  q.g_idx = p.g_idx;
  q.bias = p.bias;
  return q;
}

void convert_v1_zeros_to_v2(PackedLinear& p) {
  validate(p);
  const int64_t N = p.out_features, cols = p.qzeros_shape[1];
  for (int64_t g = 0; g < p.num_groups(); ++g) {
    int32_t* row = &p.qzeros[g * cols];
    for (int64_t n = 0; n < N; ++n) {
      const int32_t zero = zero_from_stored(get_code(row, 1, n, p.bits), p.bits, Format::kV1);
      set_code(row, 1, n, p.bits, stored_zero(zero, p.bits, Format::kV2));
    }
  }
}

}  // namespace gptq::quant
