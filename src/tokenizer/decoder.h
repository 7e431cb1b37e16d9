// Decoders: turn token strings back into text. Like the library's
// decode_chain, each stage maps a list of token strings to a new list; the
// final list is concatenated.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_util.h"

namespace gptq::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};

// Builds the decoder described by `spec`; null JSON gives nullptr (none, in
// which case the library joins tokens with spaces).
std::unique_ptr<Decoder> make_decoder(const Json& spec, const std::string& where);

}  // namespace gptq::tok
