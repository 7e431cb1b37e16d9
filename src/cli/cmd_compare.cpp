// gptq compare BASE QUANT [--text FILE] [--tasks FILE,...] [--json]: the "normal vs
// quantized" report as one Markdown table (eval/compare.h).
#include <cstdio>
#include <map>
#include <memory>

#include "cli/commands.h"
#include "core/progress.h"
#include "cli/load_options.h"
#include "eval/compare.h"

namespace gptq::cli {

namespace {
struct CompareArgs {
  std::string base;
  std::string quant;
  eval::CompareOptions opts;
  std::string text;
  std::vector<std::string> tasks;
  bool json = false;
  LoadArgs load;
};
}  // namespace

// One progress line per stage ("kld", "eval TASK (base)", ...).
std::function<void(const std::string&, int64_t, int64_t)> stage_progress() {
  auto bars = std::make_shared<std::map<std::string, std::unique_ptr<Progress>>>();
  return [bars](const std::string& stage, int64_t done, int64_t total) {
    auto& bar = (*bars)[stage];
    if (!bar) bar = std::make_unique<Progress>(stage, total);
    bar->update(done);
    if (done == total) bar->finish();
  };
}

Runner add_compare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  app.add_option("base", a->base, "Base (unquantized) model directory")->required();
  app.add_option("quant", a->quant, "Quantized model directory")->required();
  app.add_option("--text", a->text, "UTF-8 text for perplexity, KL divergence and top-1 agreement");
  app.add_option("--tasks", a->tasks, "Multiple-choice task files (as gptq eval), comma-separated or repeated")
      ->delimiter(',');
  app.add_option("--ctx", a->opts.ctx, "Window length in tokens; 0 = min(2048, max_position_embeddings)")
      ->capture_default_str();
  app.add_option("--max-windows", a->opts.max_windows, "Score at most this many windows; 0 = all")
      ->capture_default_str();
  app.add_option("--limit", a->opts.task_limit, "Score at most this many items per task; 0 = all")
      ->capture_default_str();
  app.add_option("--decode-tokens", a->opts.decode_tokens, "Tokens to decode for the speed figure; 0 = skip")
      ->capture_default_str();
  app.add_flag("--json", a->json, "Print machine-readable JSON instead of Markdown");
  add_load_flags(app, a->load);  // applied to QUANT
  return [a] {
    eval::CompareOptions o = a->opts;
    o.text = a->text;
    o.quant_load = bnb_config(a->load);
    for (const auto& t : a->tasks) o.tasks.emplace_back(t);
    o.on_progress = stage_progress();
    const eval::CompareResult r = eval::compare_models(a->base, a->quant, o);
    if (a->json) {
      std::printf("%s\n", eval::compare_json(r).dump(1).c_str());
    } else {
      std::printf("%s", eval::compare_markdown(r).c_str());
    }
    return 0;
  };
}

}  // namespace gptq::cli
