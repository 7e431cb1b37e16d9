#include "eval/multiple_choice.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "core/error.h"
#include "eval/perplexity.h"
#include "tokenizer/utf8.h"

namespace gptq::eval {
namespace {

// Python's str.isspace, which str.rstrip() strips: Unicode White_Space plus the
// information separators U+001C..U+001F.
bool python_isspace(char32_t cp) { return tok::utf8::is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// Byte length of s without its trailing whitespace (s valid UTF-8).
std::size_t rstrip_length(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    const std::size_t start = tok::utf8::last_char_start(s.substr(0, end));
    if (!python_isspace(tok::utf8::decode(s, start).cp)) break;
    end = start;
  }
  return end;
}

int64_t code_points(std::string_view s) {
  int64_t n = 0;
  for (std::size_t pos = 0; pos < s.size(); pos += tok::utf8::decode(s, pos).len) ++n;
  return n;
}

template <class Key>
int argmax_first(const std::vector<ChoiceScore>& c, Key key) {
  int best = 0;
  for (int j = 1; j < int(c.size()); ++j) {
    if (key(j) > key(best)) best = j;
  }
  return best;
}

// Adds the log-probabilities of `targets` under `rows` ([targets.size(), vocab]) to `s`.
void score_rows(std::span<const float> rows, int64_t vocab, std::span<const int32_t> targets, ChoiceScore& s) {
  std::vector<double> nll(targets.size());
  token_nll(rows, vocab, targets, nll);
  for (std::size_t t = 0; t < targets.size(); ++t) {
    const float* row = rows.data() + t * std::size_t(vocab);
    const auto top = std::max_element(row, row + vocab) - row;
    s.loglik -= nll[t];
    s.greedy = s.greedy && top == targets[t];
    ++s.tokens;
  }
}

}  // namespace

EncodedPair encode_pair(const tok::Tokenizer& tk, std::string_view context, std::string_view continuation) {
  EncodedPair p;
  if (context.empty()) {
    // lm-eval: the prefix token (BOS) is the context, unless the continuation already
    // starts with it.
    p.context = tk.encode("", tok::SpecialTokens::kAdd);
    if (p.context.empty()) {
      throw Error(ErrorKind::kUnsupported, "an empty context needs a tokenizer that adds a BOS token");
    }
    p.continuation = tk.encode(continuation, tok::SpecialTokens::kNone);
    if (!p.continuation.empty() && p.continuation.front() == p.context.back()) {
      p.context.assign(p.continuation.begin(), p.continuation.begin() + 1);
      p.continuation.erase(p.continuation.begin());
    }
  } else {
    const std::size_t keep = rstrip_length(context);
    const std::string ctx(context.substr(0, keep));
    const std::string whole = ctx + std::string(context.substr(keep)) + std::string(continuation);
    p.context = tk.encode(ctx, tok::SpecialTokens::kAdd);
    const std::vector<int32_t> all = tk.encode(whole, tok::SpecialTokens::kAdd);
    if (all.size() > p.context.size()) p.continuation.assign(all.begin() + std::ptrdiff_t(p.context.size()), all.end());
  }
  if (p.continuation.empty()) {
    throw Error(ErrorKind::kInvalidArgument,
                "the continuation \"" + std::string(continuation) + "\" encodes to no tokens after its context");
  }
  return p;
}

ItemScore score_item(std::vector<ChoiceScore> choices, const std::vector<std::string>& texts, int gold) {
  if (choices.size() != texts.size() || choices.empty()) {
    throw Error(ErrorKind::kInvalidArgument, "score_item: one score per choice expected");
  }
  ItemScore s{.choices = std::move(choices), .gold = gold};
  const auto& c = s.choices;
  s.pred = argmax_first(c, [&](int j) { return c[j].loglik; });
  // A zero length gives ±inf or nan, as numpy's division does; an empty choice string is
  // a defect of the task file that lm-eval scores the same way.
  s.pred_norm = argmax_first(c, [&](int j) { return c[j].loglik / double(code_points(texts[j])); });
  s.pred_bytes = argmax_first(c, [&](int j) { return c[j].loglik / double(texts[j].size()); });
  return s;
}

McResult summarize(const McTask& task, std::vector<ItemScore> scores) {
  if (scores.size() > task.items.size()) throw Error(ErrorKind::kInvalidArgument, "summarize: more scores than items");
  McResult r{.task = task.name, .items = int64_t(scores.size())};
  std::vector<double> acc, norm, bytes;
  struct Cat {
    std::vector<double> acc, norm;
  };
  std::map<std::string, Cat> cats;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const ItemScore& s = scores[i];
    r.requests += int64_t(s.choices.size());
    acc.push_back(s.pred == s.gold ? 1.0 : 0.0);
    norm.push_back(s.pred_norm == s.gold ? 1.0 : 0.0);
    bytes.push_back(s.pred_bytes == s.gold ? 1.0 : 0.0);
    const std::string& name = task.items[i].category;
    if (!name.empty()) {
      cats[name].acc.push_back(acc.back());
      cats[name].norm.push_back(norm.back());
    }
  }
  r.acc = mean_stderr(acc);
  r.acc_norm = mean_stderr(norm);
  r.acc_bytes = mean_stderr(bytes);
  for (const auto& [name, c] : cats) {
    r.categories.push_back(
        {.name = name, .items = int64_t(c.acc.size()), .acc = mean_stderr(c.acc), .acc_norm = mean_stderr(c.norm)});
  }
  r.per_item = std::move(scores);
  return r;
}

nlohmann::ordered_json to_json(const McResult& r, PerItem per_item) {
  nlohmann::ordered_json cats = nlohmann::ordered_json::array();
  for (const auto& c : r.categories) {
    cats.push_back({{"name", c.name}, {"items", c.items}, {"acc", to_json(c.acc)}, {"acc_norm", to_json(c.acc_norm)}});
  }
  nlohmann::ordered_json j = {{"task", r.task},
                              {"items", r.items},
                              {"requests", r.requests},
                              {"acc", to_json(r.acc)},
                              {"acc_norm", to_json(r.acc_norm)},
                              {"acc_bytes", to_json(r.acc_bytes)},
                              {"categories", cats},
                              {"seconds", r.seconds}};
  if (per_item == PerItem::kInclude) {
    nlohmann::ordered_json items = nlohmann::ordered_json::array();
    for (const auto& s : r.per_item) {
      nlohmann::ordered_json ll = nlohmann::ordered_json::array(), greedy = nlohmann::ordered_json::array();
      for (const auto& c : s.choices) {
        ll.push_back(c.loglik);
        greedy.push_back(c.greedy);
      }
      items.push_back({{"loglik", ll}, {"greedy", greedy}, {"pred", s.pred}, {"pred_norm", s.pred_norm}, {"gold", s.gold}});
    }
    j["per_item"] = items;
  }
  return j;
}

McResult evaluate_multiple_choice(model::Model& m, const tok::Tokenizer& tk, const McTask& task, const McOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t max_len = m.config().max_positions;
  const int64_t vocab = m.config().vocab;
  auto cache = m.new_cache(max_len);
  std::vector<float> logits, first_row;
  std::vector<ItemScore> scores;
  int64_t requests = 0;
  const int64_t total = int64_t(task.items.size());
  for (int64_t i = 0; i < total; ++i) {
    const McItem& item = task.items[std::size_t(i)];
    std::vector<EncodedPair> pairs;
    bool fits = true;
    for (const auto& choice : item.choices) {
      pairs.push_back(encode_pair(tk, item.context, kTargetDelimiter + choice));
      const auto& p = pairs.back();
      if (int64_t(p.continuation.size()) > max_len) {
        throw Error(ErrorKind::kInvalidArgument, task.file.string() + ":" + std::to_string(item.line) + ": a " +
                                                     std::to_string(p.continuation.size()) +
                                                     "-token continuation does not fit the model's context of " +
                                                     std::to_string(max_len));
      }
      fits = fits && int64_t(p.context.size() + p.continuation.size()) <= max_len + 1;
    }
    std::vector<ChoiceScore> cs(pairs.size(), ChoiceScore{.greedy = true});
    if (fits) {
      // The context once; its last row predicts every continuation's first token.
      const std::vector<int32_t>& ctx = pairs.front().context;
      cache.clear();
      m.forward(ctx, cache, model::Logits::kLast, first_row);
      for (std::size_t j = 0; j < pairs.size(); ++j) {
        const std::span<const int32_t> cont = pairs[j].continuation;
        score_rows(first_row, vocab, cont.first(1), cs[j]);
        if (cont.size() < 2) continue;
        cache.truncate(int64_t(ctx.size()));
        m.forward(cont.first(cont.size() - 1), cache, model::Logits::kAll, logits);
        score_rows(logits, vocab, cont.subspan(1), cs[j]);
      }
    } else {
      // lm-eval's left truncation: the last max_len + 1 tokens, the final one only a target.
      for (std::size_t j = 0; j < pairs.size(); ++j) {
        std::vector<int32_t> seq = pairs[j].context;
        seq.insert(seq.end(), pairs[j].continuation.begin(), pairs[j].continuation.end());
        const std::span<const int32_t> tail = std::span<const int32_t>(seq).last(std::size_t(max_len + 1));
        const std::size_t k = pairs[j].continuation.size();
        cache.clear();
        m.forward(tail.first(tail.size() - 1), cache, model::Logits::kAll, logits);
        const std::span<const float> rows = std::span<const float>(logits).last(k * std::size_t(vocab));
        score_rows(rows, vocab, tail.last(k), cs[j]);
      }
    }
    requests += int64_t(cs.size());
    scores.push_back(score_item(std::move(cs), item.choices, item.gold));
    if (opts.on_item) opts.on_item(i + 1, total, requests);
  }
  McResult r = summarize(task, std::move(scores));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace gptq::eval
