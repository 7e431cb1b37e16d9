#include "eval/compare.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "core/memory.h"
#include "io/checkpoint.h"
#include "model/bnb_loader.h"
#include "io/json_file.h"
#include "tokenizer/utf8.h"

namespace gptq::eval {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int64_t parameters(const io::Checkpoint& c) {
  int64_t n = 0;
  for (const auto& name : c.names()) n += c.get(name).numel();
  return n;
}

// Greedy decoding from the tokenizer's prefix (BOS), timed over the decode steps only.
double decode_speed(model::Model& m, const tok::Tokenizer& tk, int64_t n) {
  std::vector<int32_t> ids = tk.encode("", tok::SpecialTokens::kAdd);
  if (ids.empty()) ids.push_back(0);
  n = std::min<int64_t>(n, m.config().max_positions - int64_t(ids.size()));
  if (n <= 0) return 0.0;
  auto cache = m.new_cache(int64_t(ids.size()) + n);
  std::vector<float> logits;
  m.forward(ids, cache, model::Logits::kLast, logits);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    m.forward(std::span(&next, 1), cache, model::Logits::kLast, logits);
  }
  return double(n) / seconds_since(t0);
}

// Appended piecewise: GCC 12 misreports "literal" + std::string as overlapping (PR 105329).
std::string code(const std::filesystem::path& p) {
  std::string s(1, '`');
  s += p.string();
  s += '`';
  return s;
}

std::string mb(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f MB", double(bytes) / 1e6);
  return b;
}

std::string pm(double v, double e, const char* fmt = "%.4f ± %.4f") {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v, e);
  return b;
}

std::string num(double v, const char* fmt = "%.4f") {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

nlohmann::ordered_json model_json(const ModelReport& m) {
  nlohmann::ordered_json tasks = nlohmann::ordered_json::array();
  for (const auto& t : m.tasks) tasks.push_back(to_json(t, PerItem::kOmit));
  return {{"dir", m.dir.string()},
          {"disk_bytes", m.disk_bytes},
          {"bits_per_param", m.bits_per_param},
          {"weight_bytes", m.weight_bytes},
          {"decode_tok_s", m.decode_tok_s},
          {"tasks", tasks}};
}

}  // namespace

void check_same_tokenization(const std::vector<int32_t>& b, const std::vector<int32_t>& q, int64_t base_vocab,
                             int64_t quant_vocab) {
  if (base_vocab != quant_vocab) {
    throw Error(ErrorKind::kInvalidArgument, "BASE and QUANT have different vocabularies (" +
                                                 std::to_string(base_vocab) + " vs " + std::to_string(quant_vocab) +
                                                 " entries); they cannot be compared token by token");
  }
  const auto diff = std::mismatch(b.begin(), b.end(), q.begin(), q.end());
  if (diff.first != b.end() || diff.second != q.end()) {
    const auto at = diff.first - b.begin();
    const std::string what = diff.first == b.end() || diff.second == q.end()
                                 ? "lengths " + std::to_string(b.size()) + " vs " + std::to_string(q.size())
                                 : "ids " + std::to_string(*diff.first) + " vs " + std::to_string(*diff.second);
    throw Error(ErrorKind::kInvalidArgument, "BASE and QUANT tokenize the text differently (first difference at token " +
                                                 std::to_string(at) + ": " + what + "); their tokenizers differ");
  }
}

CompareResult compare_models(const std::filesystem::path& base_dir, const std::filesystem::path& quant_dir,
                             const CompareOptions& o) {
  const auto start = Clock::now();
  auto progress = [&](const std::string& stage, int64_t done, int64_t total) {
    if (o.on_progress) o.on_progress(stage, done, total);
  };
  CompareResult r;
  r.base.dir = base_dir;
  r.quant.dir = quant_dir;
  const auto tk_base = tok::Tokenizer::load_for_model(base_dir);
  const auto tk_quant = tok::Tokenizer::load_for_model(quant_dir);
  int64_t params = 0;
  {
    const io::Checkpoint b(base_dir), q(quant_dir);
    params = parameters(b);
    r.base.disk_bytes = b.total_bytes();
    r.quant.disk_bytes = q.total_bytes();
  }
  r.base.bits_per_param = double(r.base.disk_bytes) * 8.0 / double(params);
  r.quant.bits_per_param = double(r.quant.disk_bytes) * 8.0 / double(params);

  auto be = backend::make_cpu_backend();
  auto load = [&](const std::filesystem::path& dir, ModelReport& rep, const quant::bnb::BnbConfig& bnb) {
    model::Model m = bnb.enabled() ? model::load_bnb(dir, *be, bnb) : model::Model::load(dir, *be);
    rep.weight_bytes = m.weight_bytes();
    return m;
  };
  model::Model base = load(base_dir, r.base, {});
  model::Model quant = load(quant_dir, r.quant, o.quant_load);
  const int64_t vocab_b = base.config().vocab, vocab_q = quant.config().vocab;
  check_same_tokenization({}, {}, vocab_b, vocab_q);

  if (!o.text.empty()) {
    const std::string text = io::read_text_file(o.text);
    if (!tok::utf8::is_valid(text)) throw Error(ErrorKind::kFormat, o.text.string() + ": not valid UTF-8");
    const std::vector<int32_t> ids = tk_base.encode(text);
    check_same_tokenization(ids, tk_quant.encode(text), vocab_b, vocab_q);
    const int64_t ctx = o.ctx > 0 ? o.ctx : default_ctx(base.config());
    const int64_t windows = count_windows(int64_t(ids.size()), ctx, base.config().max_positions, o.max_windows);
    LiveBase live(base, ctx);
    r.kld = kl_divergence(quant, live, vocab_b, ids,
                          {.ctx = ctx, .windows = windows, .on_window = [&](int64_t d, int64_t t) {
                             progress("kld", d, t);
                           }});
  }
  for (const auto& file : o.tasks) {
    const McTask task = load_mc_task(file, o.task_limit);
    for (auto* side : {&r.base, &r.quant}) {
      model::Model& m = side == &r.base ? base : quant;
      const std::string stage = "eval " + task.name + (side == &r.base ? " (base)" : " (quantized)");
      side->tasks.push_back(evaluate_multiple_choice(m, side == &r.base ? tk_base : tk_quant, task,
                                                     {.on_item = [&](int64_t d, int64_t t, int64_t) {
                                                       progress(stage, d, t);
                                                     }}));
    }
  }
  if (o.decode_tokens > 0) {
    r.base.decode_tok_s = decode_speed(base, tk_base, o.decode_tokens);
    r.quant.decode_tok_s = decode_speed(quant, tk_quant, o.decode_tokens);
  }
  r.peak_rss_bytes = peak_rss_bytes();
  r.seconds = seconds_since(start);
  return r;
}

std::string compare_markdown(const CompareResult& r) {
  std::string s = "| | base | quantized |\n|---|---|---|\n";
  auto row = [&](const std::string& what, const std::string& b, const std::string& q) {
    s += "| " + what + " | " + b + " | " + q + " |\n";
  };
  row("checkpoint", code(r.base.dir), code(r.quant.dir));
  row("size on disk", mb(r.base.disk_bytes), mb(r.quant.disk_bytes));
  row("bits per parameter", num(r.base.bits_per_param, "%.3f"), num(r.quant.bits_per_param, "%.3f"));
  row("weights in memory", mb(r.base.weight_bytes), mb(r.quant.weight_bytes));
  if (r.kld) {
    const KldResult& k = *r.kld;
    row("perplexity (" + std::to_string(k.windows) + " windows of " + std::to_string(k.ctx) + ")",
        pm(k.ppl_base, k.ppl_base_err), pm(k.ppl_quant, k.ppl_quant_err));
    row("ln(PPL(Q)/PPL(base))", "", pm(k.ln_ppl_ratio, k.ln_ppl_ratio_err, "%.5f ± %.5f"));
    row("mean KLD", "", pm(k.kld.mean, k.kld.err, "%.6f ± %.6f"));
    row("median / 99% / max KLD", "", num(k.kld_median, "%.6f") + " / " + num(k.kld_p99, "%.6f") + " / " +
                                          num(k.kld_max, "%.6f"));
    row("same top token", "", pm(100.0 * k.same_top, 100.0 * k.same_top_err, "%.2f ± %.2f %%"));
    row("RMS Δp", "", pm(100.0 * k.dp_rms, 100.0 * k.dp_rms_err, "%.3f ± %.3f %%"));
  }
  for (std::size_t i = 0; i < r.base.tasks.size() && i < r.quant.tasks.size(); ++i) {
    const McResult& b = r.base.tasks[i];
    const McResult& q = r.quant.tasks[i];
    row(b.task + " acc (" + std::to_string(b.items) + " items)", pm(b.acc.mean, b.acc.err), pm(q.acc.mean, q.acc.err));
    row(b.task + " acc_norm", pm(b.acc_norm.mean, b.acc_norm.err), pm(q.acc_norm.mean, q.acc_norm.err));
  }
  if (r.base.decode_tok_s > 0.0) {
    row("decode tokens/s", num(r.base.decode_tok_s, "%.1f"), num(r.quant.decode_tok_s, "%.1f"));
  }
  s += "\nPeak resident memory of the run (both models loaded): " + mb(r.peak_rss_bytes) + "; " +
       num(r.seconds, "%.1f") + " s.\n";
  return s;
}

nlohmann::ordered_json compare_json(const CompareResult& r) {
  nlohmann::ordered_json j = {{"base", model_json(r.base)}, {"quant", model_json(r.quant)}};
  if (r.kld) {
    j["kld"] = to_json(*r.kld);
  }
  j["peak_rss_bytes"] = r.peak_rss_bytes;
  j["seconds"] = r.seconds;
  return j;
}

}  // namespace gptq::eval
