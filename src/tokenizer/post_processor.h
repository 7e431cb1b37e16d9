// Post-processors: add the special tokens a model expects around a sequence
// (e.g. Llama's BOS), as TemplateProcessing's "single" template does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_util.h"

namespace gptq::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Only called when special tokens are requested; the library leaves the ids
  // untouched otherwise.
  virtual std::vector<int32_t> process(std::vector<int32_t> ids) const = 0;
};

// Builds the post-processor described by `spec`; null JSON gives nullptr (none).
std::unique_ptr<PostProcessor> make_post_processor(const Json& spec, const std::string& where);

}  // namespace gptq::tok
