// What load-time quantization "as bitsandbytes does it" is asked for: the 4-bit types
// (NF4, FP4) with their block size and absmax storage, or LLM.int8 with its outlier
// threshold. Defaults are transformers' BitsAndBytesConfig defaults. Only the decoder
// layers' linears are quantized: the embedding, norms and lm_head stay as stored, as
// transformers leaves lm_head (its default llm_int8_skip_modules).
#pragma once

#include <cstdint>
#include <string>

namespace gptq::quant::bnb {

enum class BnbType : uint8_t { kNone, kNf4, kFp4, kInt8 };

// kDoubleQuant: bnb_4bit_use_double_quant (bitsandbytes' compress_statistics): the fp32
// absmax values are themselves quantized to 8 bits in groups of 256.
enum class AbsmaxStorage : uint8_t { kF32, kDoubleQuant };

struct BnbConfig {
  BnbType type = BnbType::kNone;
  int64_t blocksize = 64;                       // 4-bit: weights per absmax block
  AbsmaxStorage absmax = AbsmaxStorage::kF32;   // 4-bit only
  float int8_threshold = 6.0f;                  // LLM.int8 outlier threshold; 0: no decomposition

  bool enabled() const { return type != BnbType::kNone; }
};

// Throws gptq::Error(kInvalidArgument) for a block size bitsandbytes does not take
// (a power of two from 64 to 4096) or a negative threshold.
void validate(const BnbConfig& c);

// "nf4", "fp4", "int8"; parse_type throws kInvalidArgument on anything else.
const char* type_name(BnbType t);
BnbType parse_type(const std::string& s);

// "bnb nf4 b64 double-quant", "bnb int8 threshold 6".
std::string describe(const BnbConfig& c);

}  // namespace gptq::quant::bnb
