// "Base vs quantized" in one run: size, bits per parameter, memory, perplexity, KL
// divergence and top-1 agreement, task accuracy and decode speed of both models.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/kld.h"
#include "format/bnb_config.h"
#include "eval/multiple_choice.h"

namespace gptq::eval {

struct ModelReport {
  std::filesystem::path dir;
  uint64_t disk_bytes = 0;        // the checkpoint's safetensors shards
  double bits_per_param = 0.0;    // disk bytes · 8 / the base model's parameters
  uint64_t weight_bytes = 0;      // weights as held in memory for inference
  double decode_tok_s = 0.0;      // greedy decode from BOS, one token per step
  std::vector<McResult> tasks;
};

struct CompareOptions {
  std::filesystem::path text;               // empty: no perplexity / KLD
  std::vector<std::filesystem::path> tasks;
  int64_t ctx = 0;                          // 0: ppl's default window
  int64_t max_windows = 0;                  // 0: all
  int64_t task_limit = 0;                   // items per task; 0: all
  int64_t decode_tokens = 64;
  quant::bnb::BnbConfig quant_load;         // enabled(): QUANT is quantized at load (bitsandbytes)
  // (stage, done, total): "load BASE", "kld", "eval TASK (base)", "decode (quantized)", ...
  std::function<void(const std::string&, int64_t, int64_t)> on_progress;
};

struct CompareResult {
  ModelReport base, quant;
  std::optional<KldResult> kld;  // with a text: both perplexities are kld's
  uint64_t peak_rss_bytes = 0;   // the whole run, both models loaded
  double seconds = 0.0;
};

// Throws gptq::Error; kInvalidArgument when the two models' vocabularies or their
// tokenizations of the text differ.
CompareResult compare_models(const std::filesystem::path& base, const std::filesystem::path& quant,
                             const CompareOptions& o);

std::string compare_markdown(const CompareResult& r);
nlohmann::ordered_json compare_json(const CompareResult& r);

// BASE and QUANT must share a vocabulary and tokenize `text` identically: anything else
// makes a token-by-token comparison meaningless. Throws kInvalidArgument naming the
// first difference.
void check_same_tokenization(const std::vector<int32_t>& base_ids, const std::vector<int32_t>& quant_ids,
                             int64_t base_vocab, int64_t quant_vocab);

}  // namespace gptq::eval
