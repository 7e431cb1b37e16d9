// One linear layer quantized as bitsandbytes does it, in the layout its kernels read.
//
// 4-bit (NF4/FP4), bitsandbytes' quantize_4bit: W [out, in] is flattened row-major and
// cut into blocks of `blocksize` consecutive weights (a block may span two rows when in
// is not a multiple of it; the last block may be short). Weight i has code
//   q_i = nearest(W_i / absmax_b),  b = i / blocksize,  absmax_b = max |W| over block b,
// stored two per byte, weight 2j in the high nibble of byte j (ceil(out*in/2) bytes),
// and W_i ≈ code_value(q_i) * absmax_b.
// Double quantization replaces the fp32 absmax_b by
//   absmax_b ≈ map[c_b] * s_{b/256} + offset,  map = dynamic_map() (NestedAbsmax::map),
// offset = mean(absmax), c_b = nearest((absmax_b - offset) / s), s = max |absmax - offset|
// over each group of 256 blocks.
//
// 8-bit (LLM.int8, bitsandbytes' int8_vectorwise_quant of the weight rounded to fp16,
// as Int8Params casts it first): per output row n, with W the fp16-rounded weights,
//   SCB_n = max_k |W[n, k]|,  CB[n, k] = round(W[n, k] * 127 / SCB_n)  (half to even)
// and W[n, k] ≈ CB[n, k] * SCB_n / 127. The product with activations, including the
// outlier decomposition, is defined in src/backend/cpu/bnb_linear.h.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "format/bnb_codebook.h"
#include "format/bnb_config.h"

namespace gptq::quant::bnb {

inline constexpr int64_t kNestedBlock = 256;  // absmax values per double-quant group

struct NestedAbsmax {
  std::vector<uint8_t> codes;  // [blocks] indices into map
  std::vector<float> scales;   // [ceil(blocks / 256)]
  float offset = 0.0f;
  // The 8-bit code book the codes index: dynamic_map() when quantized here; as stored
  // when read from a checkpoint, since bitsandbytes computes it with torch.linspace,
  // whose last bits depend on its CPU kernel (tests/test_bnb_checkpoint.cpp).
  std::array<float, 256> map = dynamic_map();

  float value(int64_t b) const;
};

struct BnbPacked {
  BnbType type = BnbType::kNf4;
  int64_t out_features = 0;
  int64_t in_features = 0;
  int64_t blocksize = 64;               // 4-bit only
  std::vector<uint8_t> data;            // 4-bit: packed codes; int8: CB [out, in] as bytes
  std::vector<float> absmax;            // 4-bit, fp32 absmax: [blocks]; int8: SCB [out]
  std::optional<NestedAbsmax> nested;   // 4-bit, double quant: replaces absmax
  float threshold = 6.0f;               // int8 only
  std::vector<float> bias;              // [out] or empty

  int64_t numel() const { return out_features * in_features; }
  int64_t blocks() const { return (numel() + blocksize - 1) / blocksize; }
  // absmax of 4-bit block b, fp32 or decoded from the double quantization.
  float block_absmax(int64_t b) const { return nested ? nested->value(b) : absmax[std::size_t(b)]; }
  // Resident bytes: codes, scales and bias.
  uint64_t bytes() const;
};

// What quantize(w, out, in, c) keeps resident for a [out, in] weight, without bias.
uint64_t packed_bytes(const BnbConfig& c, int64_t out, int64_t in);

// Sizes consistent with type and shape; throws gptq::Error(kFormat) saying which.
void validate(const BnbPacked& p);

// The value a 4-bit code stands for (before scaling by absmax).
float code_value(BnbType t, uint8_t q);
inline uint8_t code_at(const BnbPacked& p, int64_t i) {
  const uint8_t byte = p.data[std::size_t(i / 2)];
  return i % 2 == 0 ? uint8_t(byte >> 4) : uint8_t(byte & 0x0F);
}

// w: [out, in] row-major fp32. blocksize and absmax storage from `c` (4-bit types).
BnbPacked quantize_4bit(std::span<const float> w, int64_t out, int64_t in, const BnbConfig& c);
BnbPacked quantize_int8(std::span<const float> w, int64_t out, int64_t in, float threshold);
BnbPacked quantize(std::span<const float> w, int64_t out, int64_t in, const BnbConfig& c);

// The double quantization of 4-bit absmax values (exposed for its own tests).
NestedAbsmax double_quantize(std::span<const float> absmax);

// W as the kernels see it, [out, in] fp32: the reference for the kernels' weights.
std::vector<float> dequantize(const BnbPacked& p);

}  // namespace gptq::quant::bnb
