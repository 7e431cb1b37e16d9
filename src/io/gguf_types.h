// ggml tensor types as GGUF stores them: each is a block of `block_values` consecutive
// values (along dims[0]) in `block_bytes` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace gptq::io {

enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
  kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28, kBF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;  // llama.cpp's spelling: "Q4_K", "BF16"
  int64_t block_values;
  std::size_t block_bytes;
  bool dequantizable;  // gguf_dequant.h implements it
};

// The types whose block layout this reader knows (nullopt for any other id, e.g. the IQ
// types). Sizes: Q4_0 = f16 d + 16 B nibbles; Q4_1 adds an f16 min; Q8_0 = f16 d + 32 i8;
// K-quants are 256-value super-blocks (see gguf_dequant.h for their layouts).
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t id);
GgmlTypeInfo ggml_type_info(GgmlType t);

}  // namespace gptq::io
