// gptq eval MODEL --tasks FILE[,FILE...] [--limit N] [--json] [--per-item]: multiple
// choice by log-likelihood with lm-eval's definitions (eval/multiple_choice.h).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/load_options.h"
#include "core/progress.h"
#include "eval/multiple_choice.h"
#include "model/config.h"

namespace gptq::cli {

namespace {
struct EvalArgs {
  std::string model;
  std::vector<std::string> tasks;
  int64_t limit = 0;
  bool json = false;
  bool per_item = false;
  DeviceArgs device;
  LoadArgs load;
};

void print_task(const eval::McResult& r) {
  std::printf("%s: acc %.4f ± %.4f, acc_norm %.4f ± %.4f  (%lld items, %lld requests, %.1f s, %.1f requests/s)\n",
              r.task.c_str(), r.acc.mean, r.acc.err, r.acc_norm.mean, r.acc_norm.err, (long long)r.items,
              (long long)r.requests, r.seconds, double(r.requests) / r.seconds);
  if (r.categories.empty()) return;
  std::printf("  %-28s %6s %17s %17s\n", "category", "items", "acc", "acc_norm");
  for (const auto& c : r.categories) {
    std::printf("  %-28s %6lld %8.4f ± %.4f %8.4f ± %.4f\n", c.name.c_str(), (long long)c.items, c.acc.mean, c.acc.err,
                c.acc_norm.mean, c.acc_norm.err);
  }
}
}  // namespace

Runner add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.add_option("model", a->model, "Model directory")->required();
  app.add_option("--tasks", a->tasks,
                 "Task files (JSONL or JSONL.gz; generic {query, choices, gold} or ARC {question, choices, answerKey}), "
                 "comma-separated or repeated")
      ->required()
      ->delimiter(',');
  app.add_option("--limit", a->limit, "Score at most this many items per task; 0 = all")->capture_default_str();
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  app.add_flag("--per-item", a->per_item, "With --json: each item's choice log-likelihoods and predictions");
  add_device_flags(app, a->device);
  add_load_flags(app, a->load);
  return [a] {
    model::require_model_dir(a->model, model::ModelFiles::kConfigAndTokenizer);
    std::vector<eval::McTask> tasks;
    for (const auto& f : a->tasks) tasks.push_back(eval::load_mc_task(f, a->limit));
    const auto tk = tok::Tokenizer::load_for_model(a->model);
    auto be = open_backend(a->device, a->model);
    auto m = load_model(a->model, *be, a->load);
    nlohmann::ordered_json out = {{"model", a->model}, {"tasks", nlohmann::ordered_json::array()}};
    for (const auto& task : tasks) {
      Progress bar("eval " + task.name, int64_t(task.items.size()));
      const eval::McResult r = eval::evaluate_multiple_choice(
          m, tk, task, {.on_item = [&](int64_t done, int64_t, int64_t requests) {
            bar.update(done, std::to_string(requests) + " requests");
          }});
      bar.finish();
      if (a->json) {
        out["tasks"].push_back(eval::to_json(r, a->per_item ? eval::PerItem::kInclude : eval::PerItem::kOmit));
      } else {
        print_task(r);
      }
    }
    if (a->json) std::printf("%s\n", out.dump(1).c_str());
    return 0;
  };
}

}  // namespace gptq::cli
