#include "backend/cpu/bnb_linear.h"

namespace gptq::backend::cpu {

using quant::bnb::BnbType;

BnbLinear::BnbLinear(quant::bnb::BnbPacked packed) : packed_(std::move(packed)) { quant::bnb::validate(packed_); }

std::string BnbLinear::describe() const {
  quant::bnb::BnbConfig c{.type = packed_.type, .blocksize = packed_.blocksize,
                          .absmax = packed_.nested ? quant::bnb::AbsmaxStorage::kDoubleQuant
                                                   : quant::bnb::AbsmaxStorage::kF32,
                          .int8_threshold = packed_.threshold};
  return quant::bnb::describe(c);
}

void BnbLinear::forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const {
  if (packed_.type == BnbType::kInt8) {
    int8_gemm(packed_, x, M, ldx, y, ldy);
  } else {
    bnb4_gemm(packed_, x, M, ldx, y, ldy);
  }
}

}  // namespace gptq::backend::cpu
