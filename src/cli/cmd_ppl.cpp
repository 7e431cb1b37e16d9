// gptq ppl MODEL --text FILE [--ctx N] [--max-windows N] [--json]
// gptq ppl MODEL --texts FILE.jsonl[.gz] [--max-length N] [--limit N] [--field F] [--json]
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "eval/text_perplexity.h"
#include "io/json_file.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace gptq::cli {

namespace {
struct PplArgs {
  std::string model;
  std::string text;
  int64_t ctx = 0;
  int64_t max_windows = 0;
  std::string texts;
  std::string field = "text";
  int64_t max_length = eval::TextPplOptions{}.max_length;
  int64_t limit = 0;
  bool json = false;
  DeviceArgs device;
  LoadArgs load;
};

int run_texts(const PplArgs& a) {
  const std::vector<std::string> texts = eval::load_texts(a.texts, a.field, a.limit);
  const auto tk = tok::Tokenizer::load_for_model(a.model);
  auto be = open_backend(a.device, a.model);
  auto m = load_model(a.model, *be, a.load);
  Progress bar("ppl", int64_t(texts.size()));
  const eval::TextPplResult r = eval::text_perplexity(
      m, tk, texts, {.max_length = a.max_length, .on_text = [&bar](int64_t done, int64_t) { bar.update(done); }});
  bar.finish();
  if (a.json) {
    const nlohmann::json j = {{"model", a.model},
                              {"texts_file", a.texts},
                              {"texts", r.texts},
                              {"scored_texts", r.ppl.size()},
                              {"skipped", r.skipped},
                              {"truncated", r.truncated},
                              {"max_length", r.max_length},
                              {"scored_tokens", r.scored_tokens},
                              {"mean_ppl", r.mean_ppl},
                              {"token_weighted_ppl", r.token_weighted_ppl},
                              {"per_text_ppl", r.ppl},
                              {"seconds", r.seconds}};
    std::printf("%s\n", j.dump(1).c_str());
  } else {
    std::printf("mean of per-text ppl %.4f; token-weighted ppl %.4f  (%zu texts, %lld skipped, %lld truncated to %lld "
                "tokens; %lld tokens scored; %.1f s)\n",
                r.mean_ppl, r.token_weighted_ppl, r.ppl.size(), (long long)r.skipped, (long long)r.truncated,
                (long long)r.max_length, (long long)r.scored_tokens, r.seconds);
  }
  return 0;
}

}  // namespace

Runner add_ppl(CLI::App& app) {
  auto a = std::make_shared<PplArgs>();
  app.add_option("model", a->model, "Model directory or .gguf file")->required();
  auto* text = app.add_option("--text", a->text, "UTF-8 text file to score as one token stream, in windows");
  auto* texts = app.add_option("--texts", a->texts,
                               "JSONL (or JSONL.gz) documents, each scored on its own: the mean of per-text "
                               "perplexities and the token-weighted perplexity");
  text->excludes(texts);
  app.add_option("--field", a->field, "With --texts: the JSON field holding each text")->capture_default_str();
  app.add_option("--max-length", a->max_length, "With --texts: tokens per text at most (BOS included)")
      ->capture_default_str();
  app.add_option("--limit", a->limit, "With --texts: score at most this many texts; 0 = all")->capture_default_str();
  app.add_option("--ctx", a->ctx, "Window length in tokens; 0 = min(2048, max_position_embeddings)")
      ->capture_default_str();
  app.add_option("--max-windows", a->max_windows, "Score at most this many windows; 0 = all")->capture_default_str();
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  add_device_flags(app, a->device);
  add_load_flags(app, a->load);
  return [a] {
    model::require_model_dir(a->model, model::ModelFiles::kConfigAndTokenizer);
    if (!a->texts.empty()) return run_texts(*a);
    if (a->text.empty()) throw Error(ErrorKind::kInvalidArgument, "ppl: give --text FILE or --texts FILE.jsonl");
    const std::string text = io::read_text_file(a->text);
    const auto tk = tok::Tokenizer::load_for_model(a->model);
    auto be = open_backend(a->device, a->model);
    nlohmann::json load_info = nlohmann::json::object();
    auto m = load_model(a->model, *be, a->load, &load_info);
    const std::vector<int32_t> tokens = tk.encode(text);
    std::unique_ptr<Progress> bar;
    eval::PplOptions opts{.ctx = a->ctx, .max_windows = a->max_windows};
    opts.on_window = [&bar](int64_t done, int64_t total, double ppl) {
      if (!bar) bar = std::make_unique<Progress>("ppl", total);
      char extra[64];
      std::snprintf(extra, sizeof extra, "ppl %.4f", ppl);
      bar->update(done, extra);
    };
    const eval::PplResult r = eval::perplexity(m, tokens, opts);
    if (bar) bar->finish();
    if (a->json) {
      nlohmann::json j = {{"model", a->model},        {"text", a->text},   {"ppl", r.ppl},
                                {"mean_nll", r.mean_nll},   {"tokens", r.tokens}, {"windows", r.windows},
                                {"scored_tokens", r.scored_tokens}, {"ctx", r.ctx}, {"seconds", r.seconds},
                                {"device", be->name()}, {"weight_bytes", m.weight_bytes()}};
      j.update(load_info);
      report_memory(*be, &j);
      std::printf("%s\n", j.dump(1).c_str());
    } else {
      std::printf("ppl %.4f  (mean NLL %.6f over %lld tokens in %lld windows of %lld; %.1f s, %.0f tok/s)\n", r.ppl,
                  r.mean_nll, (long long)r.scored_tokens, (long long)r.windows, (long long)r.ctx, r.seconds,
                  double(r.windows * r.ctx) / r.seconds);
      report_memory(*be, nullptr);
    }
    return 0;
  };
}

}  // namespace gptq::cli
