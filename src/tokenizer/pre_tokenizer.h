// Pre-tokenizers: split normalized text into the words the model sees, as the
// library's PreTokenizedString::split does (empty pieces are dropped).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_util.h"

namespace gptq::tok {

struct Piece {
  std::string text;
  // Whether the piece starts at offset 0 of the original input: Metaspace's
  // prepend_scheme "first" only prefixes such a piece.
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` with their splits, in order.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// Builds the pre-tokenizer described by `spec`; null JSON gives nullptr (none).
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& spec, const std::string& where);

}  // namespace gptq::tok
