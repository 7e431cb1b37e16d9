// gptq kld BASE QUANT --text FILE [--ctx N] [--max-windows N] [--save-base-logits F] [--json]
// gptq kld BASE --text FILE --save-base-logits F      (store the base distributions only)
// gptq kld QUANT --base-logits F [--text FILE]         (compare with stored distributions)
// KL divergence from the base model with llama.cpp's statistics (eval/kld.h).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/compare.h"
#include "eval/kld.h"
#include "io/json_file.h"
#include "model/config.h"
#include "tokenizer/utf8.h"

namespace gptq::cli {

namespace {
struct KldArgs {
  std::vector<std::string> models;
  std::string text;
  int64_t ctx = 0;
  int64_t max_windows = 0;
  std::string save_base;
  std::string base_logits;
  bool json = false;
  DeviceArgs device;
  LoadArgs load;
};

std::vector<int32_t> tokenize_file(const std::string& path, const std::string& model_dir) {
  const std::string text = io::read_text_file(path);
  if (!tok::utf8::is_valid(text)) throw Error(ErrorKind::kFormat, path + ": not valid UTF-8");
  return tok::Tokenizer::load_for_model(model_dir).encode(text);
}

void print(const eval::KldResult& r) {
  std::printf("%lld tokens scored in %lld windows of %lld (%.1f s)\n", (long long)r.tokens, (long long)r.windows,
              (long long)r.ctx, r.seconds);
  std::printf("PPL(Q)                 %12.6f ± %.6f\n", r.ppl_quant, r.ppl_quant_err);
  std::printf("PPL(base)              %12.6f ± %.6f\n", r.ppl_base, r.ppl_base_err);
  std::printf("Cor(ln PPL(Q), ln PPL(base)) %6.2f%%\n", 100.0 * r.cor_ln_ppl);
  std::printf("ln(PPL(Q)/PPL(base))   %12.6f ± %.6f\n", r.ln_ppl_ratio, r.ln_ppl_ratio_err);
  std::printf("PPL(Q)/PPL(base)       %12.6f ± %.6f\n", r.ppl_ratio, r.ppl_ratio_err);
  std::printf("PPL(Q)-PPL(base)       %12.6f ± %.6f\n", r.ppl_diff, r.ppl_diff_err);
  std::printf("Mean KLD               %12.6f ± %.6f\n", r.kld.mean, r.kld.err);
  std::printf("KLD max %.6f, 99.9%% %.6f, 99%% %.6f, 95%% %.6f, 90%% %.6f, median %.6f, 10%% %.6f, 1%% %.6f, min %.6f\n",
              r.kld_max, r.kld_p999, r.kld_p99, r.kld_p95, r.kld_p90, r.kld_median, r.kld_p10, r.kld_p1, r.kld_min);
  std::printf("Mean Δp %.3f ± %.3f %%, RMS Δp %.3f ± %.3f %%, max %.3f %%, median %.3f %%, min %.3f %%\n",
              100.0 * r.dp.mean, 100.0 * r.dp.err, 100.0 * r.dp_rms, 100.0 * r.dp_rms_err, 100.0 * r.dp_max,
              100.0 * r.dp_median, 100.0 * r.dp_min);
  std::printf("Same top token         %8.3f ± %.3f %%\n", 100.0 * r.same_top, 100.0 * r.same_top_err);
}
}  // namespace

Runner add_kld(CLI::App& app) {
  auto a = std::make_shared<KldArgs>();
  app.add_option("models", a->models,
                 "BASE QUANT; or BASE alone with --save-base-logits; or QUANT alone with --base-logits")
      ->required()
      ->expected(1, 2);
  app.add_option("--text", a->text, "UTF-8 text file (not needed with --base-logits: the file holds its tokens)");
  app.add_option("--ctx", a->ctx, "Window length in tokens; 0 = min(2048, max_position_embeddings)")
      ->capture_default_str();
  app.add_option("--max-windows", a->max_windows, "Score at most this many windows; 0 = all")->capture_default_str();
  auto* save = app.add_option("--save-base-logits", a->save_base,
                              "Write the base model's distributions here (16 bits per vocabulary entry per token)");
  auto* load = app.add_option("--base-logits", a->base_logits, "Compare with distributions saved by --save-base-logits");
  save->excludes(load);
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  add_device_flags(app, a->device);
  add_load_flags(app, a->load);
  return [a] {
    for (const auto& m : a->models) model::require_model_dir(m, model::ModelFiles::kConfigAndTokenizer);
    const bool saved = !a->base_logits.empty();
    const bool save_only = !saved && a->models.size() == 1;
    if (save_only && a->save_base.empty()) {
      throw Error(ErrorKind::kInvalidArgument, "kld: give BASE and QUANT, or BASE with --save-base-logits, or QUANT "
                                               "with --base-logits");
    }
    if (saved && a->models.size() != 1) {
      throw Error(ErrorKind::kInvalidArgument, "kld: with --base-logits give only QUANT (the base is in the file)");
    }
    if (!saved && a->text.empty()) throw Error(ErrorKind::kInvalidArgument, "kld: --text FILE is required");
    std::unique_ptr<Progress> bar;
    auto on_window = [&bar](int64_t done, int64_t total) {
      if (!bar) bar = std::make_unique<Progress>("kld", total);
      bar->update(done);
    };

    if (saved) {
      const eval::BaseLogprobsReader reader(a->base_logits);
      const auto& h = reader.header();
      const std::string& quant_dir = a->models[0];
      // Opened once the inputs are known to be good, so that their errors stay one line.
      auto be = open_backend(a->device, quant_dir);
      auto quant = load_model(quant_dir, *be, a->load);
      if (!a->text.empty()) {
        // The text must tokenize (by QUANT's tokenizer) to the stored windows.
        const auto ids = tokenize_file(a->text, quant_dir);
        const auto stored = reader.tokens();
        const std::vector<int32_t> head(ids.begin(), ids.begin() + std::min(ids.size(), stored.size()));
        eval::check_same_tokenization(std::vector<int32_t>(stored.begin(), stored.end()), head, h.vocab,
                                      quant.config().vocab);
      }
      eval::SavedBase base(reader);
      const auto r = eval::kl_divergence(quant, base, h.vocab, reader.tokens(),
                                         {.ctx = h.ctx, .windows = h.windows, .on_window = on_window});
      if (bar) bar->finish();
      a->json ? (void)std::printf("%s\n", eval::to_json(r).dump(1).c_str()) : print(r);
      return 0;
    }

    const std::string& base_dir = a->models[0];
    const auto ids = tokenize_file(a->text, base_dir);
    auto be = open_backend(a->device, base_dir);
    auto base = model::Model::load(base_dir, *be);
    const int64_t ctx = a->ctx > 0 ? a->ctx : eval::default_ctx(base.config());
    const int64_t windows = eval::count_windows(int64_t(ids.size()), ctx, base.config().max_positions, a->max_windows);
    const std::span<const int32_t> used = std::span<const int32_t>(ids).first(std::size_t(windows * ctx));
    std::unique_ptr<eval::BaseLogprobsWriter> writer;
    if (!a->save_base.empty()) {
      writer = std::make_unique<eval::BaseLogprobsWriter>(
          a->save_base,
          eval::BaseLogprobsHeader{
              .vocab = base.config().vocab, .ctx = ctx, .windows = windows, .model = base_dir, .text = a->text},
          used);
    }
    eval::LiveBase live(base, ctx, writer.get());
    if (save_only) {
      std::vector<float> lp;
      for (int64_t w = 0; w < windows; ++w) {
        live.window(w, used.subspan(std::size_t(w * ctx), std::size_t(ctx)), lp);
        on_window(w + 1, windows);
      }
      writer->finish();
      if (bar) bar->finish();
      std::fprintf(stderr, "saved %lld windows of %lld tokens (vocab %lld) -> %s\n", (long long)windows,
                   (long long)ctx, (long long)base.config().vocab, a->save_base.c_str());
      return 0;
    }
    const std::string& quant_dir = a->models[1];
    auto quant = load_model(quant_dir, *be, a->load);
    eval::check_same_tokenization(ids, tokenize_file(a->text, quant_dir), base.config().vocab, quant.config().vocab);
    const auto r = eval::kl_divergence(quant, live, base.config().vocab, used,
                                       {.ctx = ctx, .windows = windows, .on_window = on_window});
    if (writer) writer->finish();
    if (bar) bar->finish();
    a->json ? (void)std::printf("%s\n", eval::to_json(r).dump(1).c_str()) : print(r);
    return 0;
  };
}

}  // namespace gptq::cli
