#include "eval/text_perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "eval/perplexity.h"
#include "io/json_file.h"
#include "io/text_input.h"
#include "tokenizer/utf8.h"

namespace gptq::eval {
namespace {
constexpr uint64_t kMaxTextsBytes = uint64_t{4} << 30;
}

TextPplResult text_perplexity(model::Model& m, const tok::Tokenizer& tk, const std::vector<std::string>& texts,
                              const TextPplOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  TextPplResult r;
  r.max_length = std::min(o.max_length, m.config().max_positions);
  if (r.max_length < 2) throw Error(ErrorKind::kInvalidArgument, "ppl --texts: max length must be at least 2");
  r.texts = int64_t(texts.size());
  const int64_t vocab = m.config().vocab;
  auto cache = m.new_cache(r.max_length);
  std::vector<float> logits;
  std::vector<double> nll;
  double total = 0.0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> ids = tk.encode(texts[i], tok::SpecialTokens::kAdd);
    if (int64_t(ids.size()) > r.max_length) {
      ids.resize(std::size_t(r.max_length));
      ++r.truncated;
    }
    if (ids.size() < 2) {
      ++r.skipped;
    } else {
      cache.clear();
      m.forward(std::span<const int32_t>(ids).first(ids.size() - 1), cache, model::Logits::kAll, logits);
      nll.resize(ids.size() - 1);
      token_nll(logits, vocab, std::span<const int32_t>(ids).subspan(1), nll);
      double sum = 0.0;
      for (double v : nll) sum += v;
      total += sum;
      r.ppl.push_back(std::exp(sum / double(nll.size())));
      r.scored.push_back(int64_t(nll.size()));
      r.scored_tokens += int64_t(nll.size());
    }
    if (o.on_text) o.on_text(int64_t(i) + 1, r.texts);
  }
  if (r.ppl.empty()) throw Error(ErrorKind::kInvalidArgument, "ppl --texts: no text has 2 or more tokens to score");
  double s = 0.0;
  for (double p : r.ppl) s += p;
  r.mean_ppl = s / double(r.ppl.size());
  r.token_weighted_ppl = std::exp(total / double(r.scored_tokens));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::vector<std::string> load_texts(const std::filesystem::path& file, const std::string& field, int64_t limit) {
  const std::string text = io::read_text_input(file, kMaxTextsBytes, "texts file");
  std::vector<std::string> out;
  io::for_each_line(text, [&](std::string_view line, int64_t number) {
    if (io::is_blank(line) || (limit > 0 && int64_t(out.size()) >= limit)) return;
    const std::string where = file.string() + ":" + std::to_string(number);
    if (!tok::utf8::is_valid(line)) throw Error(ErrorKind::kFormat, where + ": not valid UTF-8");
    out.push_back(io::json_get<std::string>(io::parse_json(line, where), field, where));
  });
  if (out.empty()) throw Error(ErrorKind::kFormat, file.string() + ": no texts");
  return out;
}

}  // namespace gptq::eval
