// gptq ppl MODEL --text FILE [--ctx N] [--max-windows N] [--json]
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "io/json_file.h"
#include "tokenizer/tokenizer.h"

namespace gptq::cli {

namespace {
struct PplArgs {
  std::string model;
  std::string text;
  int64_t ctx = 0;
  int64_t max_windows = 0;
  bool json = false;
  DeviceArgs device;
};

}  // namespace

Runner add_ppl(CLI::App& app) {
  auto a = std::make_shared<PplArgs>();
  app.add_option("model", a->model, "Model directory or .gguf file")->required();
  app.add_option("--text", a->text, "UTF-8 text file to score")->required();
  app.add_option("--ctx", a->ctx, "Window length in tokens; 0 = min(2048, max_position_embeddings)")
      ->capture_default_str();
  app.add_option("--max-windows", a->max_windows, "Score at most this many windows; 0 = all")->capture_default_str();
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  add_device_flags(app, a->device);
  return [a] {
    const std::string text = io::read_text_file(a->text);
    const auto tk = tok::Tokenizer::load_for_model(a->model);
    auto be = open_backend(a->device, a->model);
    auto m = model::Model::load(a->model, *be);
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
                                {"device", be->name()}};
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
