#include "io/gguf_dequant.h"

#include <cstring>

#include "core/error.h"

namespace gptq::io {

namespace {

inline uint8_t u8(const std::byte* p) { return uint8_t(*p); }
inline int8_t i8(const std::byte* p) { return int8_t(*p); }
inline float f16(const std::byte* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
inline float f32(const std::byte* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// The 6-bit scale and min of sub-block s (0..7) of a Q4_K/Q5_K block.
inline void scale_min_k4(const std::byte* scales, int s, float& sc, float& m) {
  if (s < 4) {
    sc = float(u8(scales + s) & 63);
    m = float(u8(scales + s + 4) & 63);
  } else {
    sc = float((u8(scales + s + 4) & 15) | (u8(scales + s - 4) >> 6) << 4);
    m = float((u8(scales + s + 4) >> 4) | (u8(scales + s) >> 6) << 4);
  }
}

void block_q4_0(const std::byte* p, float* y) {
  const float d = f16(p);
  const std::byte* qs = p + 2;
  for (int l = 0; l < 16; ++l) {
    y[l] = d * float((u8(qs + l) & 15) - 8);
    y[l + 16] = d * float((u8(qs + l) >> 4) - 8);
  }
}

void block_q4_1(const std::byte* p, float* y) {
  const float d = f16(p), m = f16(p + 2);
  const std::byte* qs = p + 4;
  for (int l = 0; l < 16; ++l) {
    y[l] = d * float(u8(qs + l) & 15) + m;
    y[l + 16] = d * float(u8(qs + l) >> 4) + m;
  }
}

void block_q8_0(const std::byte* p, float* y) {
  const float d = f16(p);
  for (int l = 0; l < 32; ++l) y[l] = d * float(i8(p + 2 + l));
}

void block_q8_k(const std::byte* p, float* y) {
  const float d = f32(p);
  for (int l = 0; l < 256; ++l) y[l] = d * float(i8(p + 4 + l));
}

// Q4_K and Q5_K share everything but the fifth bit (qh == nullptr for Q4_K).
void block_k4(const std::byte* p, const std::byte* qh, const std::byte* qs, float* y) {
  const float d = f16(p), dmin = f16(p + 2);
  const std::byte* scales = p + 4;
  for (int c = 0; c < 4; ++c) {
    float sc1, m1, sc2, m2;
    scale_min_k4(scales, 2 * c, sc1, m1);
    scale_min_k4(scales, 2 * c + 1, sc2, m2);
    const float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
    const int lo_bit = 2 * c, hi_bit = 2 * c + 1;
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = u8(qs + 32 * c + l);
      const int h = qh ? u8(qh + l) : 0;
      y[64 * c + l] = d1 * float((q & 15) + ((h >> lo_bit) & 1) * 16) - mm1;
      y[64 * c + 32 + l] = d2 * float((q >> 4) + ((h >> hi_bit) & 1) * 16) - mm2;
    }
  }
}

void block_q6_k(const std::byte* p, float* y) {
  const std::byte* ql = p;
  const std::byte* qh = p + 128;
  const std::byte* sc = p + 192;
  const float d = f16(p + 208);
  for (int n = 0; n < 2; ++n) {
    for (int l = 0; l < 32; ++l) {
      const int h = u8(qh + 32 * n + l);
      const int a = u8(ql + 64 * n + l), b = u8(ql + 64 * n + 32 + l);
      const int is = 8 * n + l / 16;
      float* out = y + 128 * n + l;
      out[0] = d * float(i8(sc + is + 0)) * float(((a & 15) | (h & 3) << 4) - 32);
      out[32] = d * float(i8(sc + is + 2)) * float(((b & 15) | ((h >> 2) & 3) << 4) - 32);
      out[64] = d * float(i8(sc + is + 4)) * float(((a >> 4) | ((h >> 4) & 3) << 4) - 32);
      out[96] = d * float(i8(sc + is + 6)) * float(((b >> 4) | ((h >> 6) & 3) << 4) - 32);
    }
  }
}

GgmlTypeInfo checked_info(GgmlType type) {
  const GgmlTypeInfo info = ggml_type_info(type);
  if (!info.dequantizable) {
    throw Error(ErrorKind::kUnsupported, std::string("dequantizing ggml type ") + info.name +
                                             " is not supported (F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K)");
  }
  return info;
}

}  // namespace

void dequantize(GgmlType type, std::span<const std::byte> data, std::span<float> out) {
  const GgmlTypeInfo info = checked_info(type);
  if (data.size() % info.block_bytes != 0 ||
      out.size() != data.size() / info.block_bytes * std::size_t(info.block_values)) {
    throw Error(ErrorKind::kInvalidArgument, std::string("dequantize ") + info.name + ": " +
                                                 std::to_string(data.size()) + " bytes do not fill " +
                                                 std::to_string(out.size()) + " values");
  }
  const std::size_t blocks = data.size() / info.block_bytes;
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::byte* p = data.data() + b * info.block_bytes;
    float* y = out.data() + b * std::size_t(info.block_values);
    switch (type) {
      case GgmlType::kF32: *y = f32(p); break;
      case GgmlType::kF16: *y = f16(p); break;
      case GgmlType::kBF16: {
        uint16_t h;
        std::memcpy(&h, p, 2);
        *y = bf16_to_f32(h);
        break;
      }
      case GgmlType::kQ4_0: block_q4_0(p, y); break;
      case GgmlType::kQ4_1: block_q4_1(p, y); break;
      case GgmlType::kQ8_0: block_q8_0(p, y); break;
      case GgmlType::kQ8_K: block_q8_k(p, y); break;
      case GgmlType::kQ4_K: block_k4(p, nullptr, p + 16, y); break;
      case GgmlType::kQ5_K: block_k4(p, p + 16, p + 48, y); break;
      case GgmlType::kQ6_K: block_q6_k(p, y); break;
      default: break;  // checked_info refused the rest
    }
  }
}

float dequantize_reference(GgmlType type, std::span<const std::byte> data, int64_t i) {
  const GgmlTypeInfo info = checked_info(type);
  const std::size_t block = std::size_t(i / info.block_values);
  const int j = int(i % info.block_values);
  if (i < 0 || (block + 1) * info.block_bytes > data.size()) {
    throw Error(ErrorKind::kInvalidArgument, "dequantize_reference: index " + std::to_string(i) + " out of range");
  }
  const std::byte* p = data.data() + block * info.block_bytes;
  // The 4-bit value j of a 16-byte nibble array laid out as Q4_0's.
  auto nibble32 = [](const std::byte* qs, int j) { return j < 16 ? u8(qs + j) & 15 : u8(qs + j - 16) >> 4; };
  switch (type) {
    case GgmlType::kF32: return f32(p);
    case GgmlType::kF16: return f16(p);
    case GgmlType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    }
    case GgmlType::kQ4_0: return f16(p) * float(nibble32(p + 2, j) - 8);
    case GgmlType::kQ4_1: return f16(p) * float(nibble32(p + 4, j)) + f16(p + 2);
    case GgmlType::kQ8_0: return f16(p) * float(i8(p + 2 + j));
    case GgmlType::kQ8_K: return f32(p) * float(i8(p + 4 + j));
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K: {
      const bool five = type == GgmlType::kQ5_K;
      const std::byte* qs = p + (five ? 48 : 16);
      const int s = j / 32, c = j / 64, l = j % 32;
      const uint8_t byte = u8(qs + 32 * c + l);
      int q = (j % 64) < 32 ? byte & 15 : byte >> 4;
      if (five) q += ((u8(p + 16 + l) >> s) & 1) * 16;
      float sc, m;
      scale_min_k4(p + 4, s, sc, m);
      return f16(p) * sc * float(q) - f16(p + 2) * m;
    }
    case GgmlType::kQ6_K: {
      const int n = j / 128, k = (j % 128) / 32, l = j % 32;
      const uint8_t lo_byte = u8(p + 64 * n + l + 32 * (k & 1));
      const int lo = k < 2 ? lo_byte & 15 : lo_byte >> 4;
      const int hi = (u8(p + 128 + 32 * n + l) >> (2 * k)) & 3;
      const int scale = i8(p + 192 + 8 * n + 2 * k + l / 16);
      return f16(p + 208) * float(scale) * float((lo | hi << 4) - 32);
    }
    default: break;
  }
  throw Error(ErrorKind::kUnsupported, std::string("dequantize_reference: ") + info.name);
}

std::vector<std::byte> dequantize_tensor(const GgufTensorInfo& t, DType out) {
  if (out != DType::kF32 && out != DType::kF16 && out != DType::kBF16) {
    throw Error(ErrorKind::kInvalidArgument, "tensor \"" + t.name + "\": dequantize to F32, F16 or BF16 only");
  }
  std::vector<float> values(std::size_t(t.numel()));
  dequantize(t.type, t.data, values);
  std::vector<std::byte> bytes(values.size() * dtype_size(out));
  if (out == DType::kF32) {
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = out == DType::kF16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
    std::memcpy(bytes.data() + 2 * i, &h, 2);
  }
  return bytes;
}

}  // namespace gptq::io
