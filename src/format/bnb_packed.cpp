#include "format/bnb_packed.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/dtype.h"
#include "core/error.h"
#include "format/bnb_codebook.h"

namespace gptq::quant::bnb {

namespace {
[[noreturn]] void bad(const std::string& msg) { throw Error(ErrorKind::kFormat, "bitsandbytes layer: " + msg); }

std::string count(std::size_t found, int64_t expected) {
  return std::to_string(found) + " (expected " + std::to_string(expected) + ")";
}
}  // namespace

float NestedAbsmax::value(int64_t b) const {
  return map[codes[std::size_t(b)]] * scales[std::size_t(b / kNestedBlock)] + offset;
}

uint64_t BnbPacked::bytes() const {
  uint64_t n = data.size() + absmax.size() * 4 + bias.size() * 4;
  if (nested) n += nested->codes.size() + nested->scales.size() * 4 + 4;
  return n;
}

uint64_t packed_bytes(const BnbConfig& c, int64_t out, int64_t in) {
  const auto n = uint64_t(out * in);
  if (c.type == BnbType::kInt8) return n + uint64_t(out) * 4;
  const uint64_t blocks = (n + uint64_t(c.blocksize) - 1) / uint64_t(c.blocksize);
  const uint64_t absmax =
      c.absmax == AbsmaxStorage::kDoubleQuant ? blocks + (blocks + kNestedBlock - 1) / kNestedBlock * 4 + 4 : blocks * 4;
  return (n + 1) / 2 + absmax;
}

void validate(const BnbPacked& p) {
  if (p.out_features <= 0 || p.in_features <= 0) bad("empty shape");
  if (!p.bias.empty() && int64_t(p.bias.size()) != p.out_features) bad("bias has " + count(p.bias.size(), p.out_features));
  if (p.type == BnbType::kInt8) {
    if (int64_t(p.data.size()) != p.numel()) bad("int8 weights: " + count(p.data.size(), p.numel()));
    if (int64_t(p.absmax.size()) != p.out_features) bad("int8 row scales: " + count(p.absmax.size(), p.out_features));
    if (p.nested) bad("int8 weights have no double quantization");
    if (!(p.threshold >= 0.0f)) bad("negative outlier threshold");
    return;
  }
  if (p.type != BnbType::kNf4 && p.type != BnbType::kFp4) bad("unknown type");
  if (p.blocksize <= 0 || p.blocksize % 2 != 0) bad("block size " + std::to_string(p.blocksize) + " is not even");
  if (int64_t(p.data.size()) != (p.numel() + 1) / 2) bad("4-bit codes: " + count(p.data.size(), (p.numel() + 1) / 2));
  if (p.nested) {
    if (!p.absmax.empty()) bad("both fp32 and double-quantized absmax");
    if (int64_t(p.nested->codes.size()) != p.blocks()) bad("nested absmax codes: " + count(p.nested->codes.size(), p.blocks()));
    const int64_t groups = (p.blocks() + kNestedBlock - 1) / kNestedBlock;
    if (int64_t(p.nested->scales.size()) != groups) bad("nested absmax scales: " + count(p.nested->scales.size(), groups));
  } else if (int64_t(p.absmax.size()) != p.blocks()) {
    bad("absmax: " + count(p.absmax.size(), p.blocks()));
  }
}

float code_value(BnbType t, uint8_t q) { return (t == BnbType::kFp4 ? kFp4 : kNf4)[q & 0x0F]; }

NestedAbsmax double_quantize(std::span<const float> absmax) {
  NestedAbsmax n;
  double sum = 0.0;
  for (float a : absmax) sum += a;
  n.offset = absmax.empty() ? 0.0f : float(sum / double(absmax.size()));
  const auto blocks = int64_t(absmax.size());
  n.codes.resize(absmax.size());
  for (int64_t g0 = 0; g0 < blocks; g0 += kNestedBlock) {
    const int64_t g1 = std::min(blocks, g0 + kNestedBlock);
    float s = 0.0f;
    for (int64_t b = g0; b < g1; ++b) s = std::max(s, std::fabs(absmax[std::size_t(b)] - n.offset));
    // As bitsandbytes' blockwise kernel: multiply by the reciprocal of the group absmax.
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int64_t b = g0; b < g1; ++b) n.codes[std::size_t(b)] = nearest_dynamic((absmax[std::size_t(b)] - n.offset) * inv);
    n.scales.push_back(s);
  }
  return n;
}

BnbPacked quantize_4bit(std::span<const float> w, int64_t out, int64_t in, const BnbConfig& c) {
  validate(c);
  if (c.type != BnbType::kNf4 && c.type != BnbType::kFp4) {
    throw Error(ErrorKind::kInvalidArgument, "quantize_4bit: type must be nf4 or fp4");
  }
  if (int64_t(w.size()) != out * in) throw Error(ErrorKind::kInvalidArgument, "quantize_4bit: weight size mismatch");
  BnbPacked p{.type = c.type, .out_features = out, .in_features = in, .blocksize = c.blocksize};
  const int64_t n = out * in, blocks = p.blocks();
  p.data.assign(std::size_t((n + 1) / 2), 0);
  std::vector<float> absmax(static_cast<std::size_t>(blocks));
  const auto nearest = c.type == BnbType::kNf4 ? nearest_nf4 : nearest_fp4;
  // Blocks hold an even number of weights, so each writes whole bytes of its own.
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * c.blocksize, i1 = std::min(n, i0 + c.blocksize);
    float a = 0.0f;
    for (int64_t i = i0; i < i1; ++i) a = std::max(a, std::fabs(w[std::size_t(i)]));
    absmax[std::size_t(b)] = a;
    // An all-zero block: every weight is code for 0 (bitsandbytes would divide by zero).
    const float inv = a > 0.0f ? 1.0f / a : 0.0f;
    for (int64_t i = i0; i < i1; ++i) {
      const uint8_t q = nearest(w[std::size_t(i)] * inv);
      p.data[std::size_t(i / 2)] |= i % 2 == 0 ? uint8_t(q << 4) : q;
    }
  }
  if (c.absmax == AbsmaxStorage::kDoubleQuant) {
    p.nested = double_quantize(absmax);
  } else {
    p.absmax = std::move(absmax);
  }
  return p;
}

BnbPacked quantize_int8(std::span<const float> w, int64_t out, int64_t in, float threshold) {
  if (int64_t(w.size()) != out * in) throw Error(ErrorKind::kInvalidArgument, "quantize_int8: weight size mismatch");
  BnbPacked p{.type = BnbType::kInt8, .out_features = out, .in_features = in, .threshold = threshold};
  p.data.resize(std::size_t(out * in));
  p.absmax.resize(std::size_t(out));
  std::vector<float> row(static_cast<std::size_t>(in));
  for (int64_t r = 0; r < out; ++r) {
    // bitsandbytes' Int8Params casts the weight to fp16 before int8_vectorwise_quant
    // (a no-op for fp16 checkpoints); the products below are then fp32, as there.
    for (int64_t k = 0; k < in; ++k) row[std::size_t(k)] = f16_to_f32(f32_to_f16(w[std::size_t(r * in + k)]));
    float a = 0.0f;
    for (int64_t k = 0; k < in; ++k) a = std::max(a, std::fabs(row[std::size_t(k)]));
    p.absmax[std::size_t(r)] = a;
    const float scale = a > 0.0f ? 127.0f / a : 0.0f;
    for (int64_t k = 0; k < in; ++k) {
      // |row[k] * scale| <= 127 up to one rounding, which nearbyint cannot push past 127.
      p.data[std::size_t(r * in + k)] = uint8_t(int8_t(std::nearbyint(row[std::size_t(k)] * scale)));
    }
  }
  return p;
}

BnbPacked quantize(std::span<const float> w, int64_t out, int64_t in, const BnbConfig& c) {
  return c.type == BnbType::kInt8 ? quantize_int8(w, out, in, c.int8_threshold) : quantize_4bit(w, out, in, c);
}

std::vector<float> dequantize(const BnbPacked& p) {
  validate(p);
  std::vector<float> w(std::size_t(p.numel()));
  if (p.type == BnbType::kInt8) {
    for (int64_t r = 0; r < p.out_features; ++r) {
      // bitsandbytes' int8_vectorwise_dequant: CB * SCB / 127, as a multiply by 1/127.
      const float s = p.absmax[std::size_t(r)] * (1.0f / 127.0f);
      for (int64_t k = 0; k < p.in_features; ++k) {
        w[std::size_t(r * p.in_features + k)] = float(int8_t(p.data[std::size_t(r * p.in_features + k)])) * s;
      }
    }
    return w;
  }
  for (int64_t i = 0; i < p.numel(); ++i) {
    w[std::size_t(i)] = code_value(p.type, code_at(p, i)) * p.block_absmax(i / p.blocksize);
  }
  return w;
}

}  // namespace gptq::quant::bnb
