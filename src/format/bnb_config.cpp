#include "format/bnb_config.h"

#include <cstdio>

#include "core/error.h"

namespace gptq::quant::bnb {

void validate(const BnbConfig& c) {
  // bitsandbytes' quantize_4bit asserts blocksize in {64, 128, ..., 4096}.
  const bool pow2 = c.blocksize > 0 && (c.blocksize & (c.blocksize - 1)) == 0;
  if (!pow2 || c.blocksize < 64 || c.blocksize > 4096) {
    throw Error(ErrorKind::kInvalidArgument,
                "bitsandbytes block size " + std::to_string(c.blocksize) + ": expected a power of two from 64 to 4096");
  }
  if (!(c.int8_threshold >= 0.0f)) {
    throw Error(ErrorKind::kInvalidArgument, "LLM.int8 threshold must be >= 0");
  }
}

const char* type_name(BnbType t) {
  switch (t) {
    case BnbType::kNf4: return "nf4";
    case BnbType::kFp4: return "fp4";
    case BnbType::kInt8: return "int8";
    default: return "none";
  }
}

BnbType parse_type(const std::string& s) {
  if (s == "nf4") return BnbType::kNf4;
  if (s == "fp4") return BnbType::kFp4;
  if (s == "int8") return BnbType::kInt8;
  throw Error(ErrorKind::kInvalidArgument, "bitsandbytes type \"" + s + "\": expected nf4, fp4 or int8");
}

std::string describe(const BnbConfig& c) {
  std::string s = std::string("bnb ") + type_name(c.type);
  if (c.type == BnbType::kInt8) {
    char t[32];
    std::snprintf(t, sizeof t, " threshold %g", double(c.int8_threshold));
    return s + t;
  }
  s += " b" + std::to_string(c.blocksize);
  if (c.absmax == AbsmaxStorage::kDoubleQuant) s += " double-quant";
  return s;
}

}  // namespace gptq::quant::bnb
