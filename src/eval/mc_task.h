// Multiple-choice task files, read into what lm-eval's `multiple_choice` output type
// works with: a context (doc_to_text), the choice strings (doc_to_choice), the gold
// index (doc_to_target). Each request scores context + " " + choice (lm-eval's default
// target_delimiter is one space).
//
// JSONL, optionally gzipped; one item per non-blank line, its layout recognised by its
// fields:
//   generic  {"query": str, "choices": [str, ...], "gold": int, "category"?: str}
//            (../shared/data/mc/bsdgames-quiz.jsonl); context = query.
//   ARC      {"question": str, "choices": {"text": [str, ...], "label": [str, ...]},
//             "answerKey": str, ...} (allenai/ai2_arc rows, as lm-eval's arc_easy and
//            arc_challenge read them): context = "Question: {question}\nAnswer:",
//            gold = the position of answerKey among the labels.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace gptq::eval {

struct McItem {
  std::string context;
  std::vector<std::string> choices;  // at least 2, without the delimiter
  int gold = 0;                      // index into choices
  std::string category;              // "" when the item has none
  int64_t line = 0;                  // 1-based line in the file, for messages
};

struct McTask {
  std::string name;  // the file name without .gz / .jsonl / .json
  std::filesystem::path file;
  std::vector<McItem> items;
};

inline constexpr const char* kTargetDelimiter = " ";

// Reads at most `limit` items (0: all). Throws gptq::Error naming file:line: kIo
// (unreadable), kFormat (not UTF-8, malformed JSON, a missing or mistyped field, fewer
// than 2 choices, gold out of range, answerKey not among the labels, no items).
McTask load_mc_task(const std::filesystem::path& file, int64_t limit = 0);

}  // namespace gptq::eval
