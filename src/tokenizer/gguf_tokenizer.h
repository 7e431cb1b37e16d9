// The tokenizer a GGUF file describes (`tokenizer.ggml.*`), rebuilt as the tokenizer.json
// transformers builds from it (AutoTokenizer.from_pretrained(gguf_file=)). Both models add
// the tokens of type 3 (control) and those named by the bos/eos/unk/pad ids as special
// added tokens, those of type 4 (user-defined) as plain added tokens, and BOS/EOS as
// tokenizer.ggml.add_bos_token/add_eos_token say.
//
// tokenizer.ggml.model "gpt2" is byte-level BPE over `tokens` and `merges` (BOS off unless
// the file says so), and `tokenizer.ggml.pre` picks how text is split before BPE:
//   absent, "default", "gpt2"    GPT-2's regex (ByteLevel use_regex)
//   "smollm"                     single digits first, then GPT-2's regex (SmolLM's own
//                                tokenizer.json; transformers 5.24 does not know the name
//                                and falls back to GPT-2's regex, which gives the same ids
//                                for this vocabulary since it has no multi-digit tokens)
//   "llama3", "llama-bpe", ...   the Llama 3 regex, "qwen2" the Qwen2 regex
// Other pre-tokenizers throw kUnsupported.
//
// tokenizer.ggml.model "llama" is SentencePiece as transformers' LlamaTokenizer runs it: the
// pieces as spelled ("▁the", "<0x0A>"), a Metaspace pre-tokenizer ("▁" for each space, and
// one prepended to the text's first part unless it already starts with one, whatever
// tokenizer.ggml.add_space_prefix says), BPE with byte fallback whose merges are the file's
// or, as llama.cpp writes none for SentencePiece, derived from `scores`
// (tokenizer/sentencepiece_merges.h); BOS on unless the file says otherwise.
#pragma once

#include <nlohmann/json.hpp>

#include "io/gguf.h"

namespace gptq::tok {

nlohmann::ordered_json gguf_tokenizer_json(const io::GgufFile& f);         // tokenizer.json
nlohmann::ordered_json gguf_tokenizer_config_json(const io::GgufFile& f);  // tokenizer_config.json

}  // namespace gptq::tok
