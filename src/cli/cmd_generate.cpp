// gptq generate MODEL --prompt STR [--max-new-tokens N] [--temperature T] [--top-k K]
//                     [--top-p P] [--seed S]
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "eval/generate.h"
#include "eval/sampler.h"
#include "model/config.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace gptq::cli {

namespace {
struct GenerateArgs {
  std::string model;
  std::string prompt;
  int64_t max_new_tokens = 256;
  eval::SamplingOptions sampling{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 0};
  DeviceArgs device;
  LoadArgs load;
  bool json = false;
};

// Streams text as tokens arrive: decodes everything so far and prints what is new,
// holding back a trailing U+FFFD (an incomplete UTF-8 sequence from byte tokens).
class Streamer {
 public:
  Streamer(const tok::Tokenizer& tk, std::vector<int32_t> prompt)
      : tk_(tk), ids_(std::move(prompt)), printed_(tk.decode(ids_).size()) {}
  void push(int32_t id) {
    ids_.push_back(id);
    const std::string text = tk_.decode(ids_);
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;
    if (text.size() > printed_) {
      std::fwrite(text.data() + printed_, 1, text.size() - printed_, stdout);
      std::fflush(stdout);
      printed_ = text.size();
    }
  }

 private:
  const tok::Tokenizer& tk_;
  std::vector<int32_t> ids_;
  std::size_t printed_;
};
}  // namespace

Runner add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("model", a->model, "Model directory or .gguf file")->required();
  app.add_option("--prompt", a->prompt, "Prompt text; '-' reads it from standard input")->required();
  app.add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate at most")->capture_default_str();
  app.add_option("--temperature", a->sampling.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  app.add_option("--top-k", a->sampling.top_k, "Sample from the k most likely tokens; 0 = all")->capture_default_str();
  app.add_option("--top-p", a->sampling.top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
  app.add_option("--seed", a->sampling.seed, "Random seed")->capture_default_str();
  app.add_flag("--json", a->json, "After the text, print timings and memory as JSON on stdout");
  add_device_flags(app, a->device);
  add_load_flags(app, a->load);
  return [a] {
    model::require_model_dir(a->model, model::ModelFiles::kConfigAndTokenizer);
    if (a->prompt == "-") {
      a->prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    if (a->max_new_tokens < 0) throw Error(ErrorKind::kInvalidArgument, "--max-new-tokens must be >= 0");
    eval::Sampler{a->sampling};  // checks the sampling options before the device line is printed
    const auto tk = tok::Tokenizer::load_for_model(a->model);
    auto be = open_backend(a->device, a->model);
    auto m = load_model(a->model, *be, a->load);
    const std::vector<int32_t> prompt = tk.encode(a->prompt);

    std::fwrite(a->prompt.data(), 1, a->prompt.size(), stdout);
    std::fflush(stdout);
    Streamer stream(tk, prompt);
    const eval::GenerateResult r = eval::generate(
        m, prompt,
        {.max_new_tokens = a->max_new_tokens, .sampling = a->sampling, .on_token = [&](int32_t id) { stream.push(id); }});
    std::printf("\n");
    const int64_t produced = r.sampled;
    const double prefill_s = r.prefill_seconds, decode_s = r.decode_seconds;
    const double decode_tps = produced > 0 ? double(produced) / decode_s : 0.0;
    std::fprintf(stderr, "prefill: %zu tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.1f tok/s)\n",
                 prompt.size(), prefill_s, double(prompt.size()) / prefill_s, (long long)produced, decode_s, decode_tps);
    nlohmann::json j = {{"device", be->name()},
                        {"prompt_tokens", prompt.size()},
                        {"prefill_seconds", prefill_s},
                        {"generated_tokens", produced},
                        {"decode_seconds", decode_s},
                        {"decode_tokens_per_second", decode_tps}};
    report_memory(*be, a->json ? &j : nullptr);
    if (a->json) std::printf("%s\n", j.dump(1).c_str());
    return 0;
  };
}

}  // namespace gptq::cli
