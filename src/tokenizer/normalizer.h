// Normalizers: rewrite each piece of raw text (between added tokens) before
// pre-tokenization. Offsets are not tracked: encode() only needs the text.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/json_util.h"

namespace gptq::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// Builds the normalizer described by `spec`; null JSON gives nullptr (none).
std::unique_ptr<Normalizer> make_normalizer(const Json& spec, const std::string& where);

}  // namespace gptq::tok
