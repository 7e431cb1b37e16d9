// The tokenizer a GGUF file describes (`tokenizer.ggml.*`), rebuilt as the tokenizer.json
// transformers builds from it: tokenizer.ggml.model "gpt2" is byte-level BPE over
// `tokens` and `merges`, tokens of type 3 (control) become special added tokens and of
// type 4 (user-defined) plain added tokens, and `tokenizer.ggml.pre` picks how text is
// split before BPE:
//   absent, "default", "gpt2"    GPT-2's regex (ByteLevel use_regex)
//   "smollm"                     single digits first, then GPT-2's regex (SmolLM's own
//                                tokenizer.json; transformers 5.24 does not know the name
//                                and falls back to GPT-2's regex, which gives the same ids
//                                for this vocabulary since it has no multi-digit tokens)
//   "llama3", "llama-bpe", ...   the Llama 3 regex, "qwen2" the Qwen2 regex
// SentencePiece vocabularies ("llama") and other pre-tokenizers throw kUnsupported.
#pragma once

#include <nlohmann/json.hpp>

#include "io/gguf.h"

namespace gptq::tok {

nlohmann::ordered_json gguf_tokenizer_json(const io::GgufFile& f);         // tokenizer.json
nlohmann::ordered_json gguf_tokenizer_config_json(const io::GgufFile& f);  // tokenizer_config.json

}  // namespace gptq::tok
