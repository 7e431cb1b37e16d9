#include "eval/mc_task.h"

#include <algorithm>

#include "core/error.h"
#include "io/json_file.h"
#include "io/text_input.h"
#include "tokenizer/utf8.h"

namespace gptq::eval {
namespace {

// Task files are small (ARC-Challenge's test split is 0.4 MB); the limit only stops a
// mistaken or hostile input.
constexpr uint64_t kMaxTaskBytes = uint64_t{1} << 30;

std::string task_name(const std::filesystem::path& file) {
  std::string name = file.filename().string();
  for (const char* ext : {".gz", ".jsonl", ".json"}) {
    if (name.ends_with(ext)) name.resize(name.size() - std::char_traits<char>::length(ext));
  }
  return name;
}

std::vector<std::string> string_array(const io::Json& j, const std::string& key, const std::string& where) {
  if (!j.is_array()) {
    throw Error(ErrorKind::kFormat, where + ": \"" + key + "\" must be an array of strings (found " + j.type_name() + ")");
  }
  std::vector<std::string> out;
  for (const auto& v : j) out.push_back(io::json_convert<std::string>(v, key, where));
  return out;
}

void check_choice_count(std::size_t n, const std::string& where) {
  if (n < 2) {
    throw Error(ErrorKind::kFormat,
                where + ": " + std::to_string(n) + " choice(s); a multiple-choice item needs at least 2");
  }
}

McItem parse_generic(const io::Json& j, const std::string& where) {
  McItem it;
  it.context = io::json_get<std::string>(j, "query", where);
  it.choices = string_array(j.at("choices"), "choices", where);
  check_choice_count(it.choices.size(), where);
  const auto gold = io::json_get<int64_t>(j, "gold", where);
  if (gold < 0 || gold >= int64_t(it.choices.size())) {
    throw Error(ErrorKind::kFormat, where + ": gold index " + std::to_string(gold) + " is out of range for " +
                                        std::to_string(it.choices.size()) + " choices");
  }
  it.gold = int(gold);
  it.category = io::json_get_or<std::string>(j, "category", "", where);
  return it;
}

McItem parse_arc(const io::Json& j, const std::string& where) {
  McItem it;
  it.context = "Question: " + io::json_get<std::string>(j, "question", where) + "\nAnswer:";
  const io::Json& choices = j.at("choices");
  if (!choices.is_object()) {
    throw Error(ErrorKind::kFormat, where + ": ARC \"choices\" must be an object {\"text\": [...], \"label\": [...]}");
  }
  if (!choices.contains("text") || !choices.contains("label")) {
    throw Error(ErrorKind::kFormat, where + ": ARC \"choices\" needs both \"text\" and \"label\"");
  }
  it.choices = string_array(choices["text"], "choices.text", where);
  check_choice_count(it.choices.size(), where);
  const std::vector<std::string> labels = string_array(choices["label"], "choices.label", where);
  if (labels.size() != it.choices.size()) {
    throw Error(ErrorKind::kFormat, where + ": " + std::to_string(it.choices.size()) + " choice texts but " +
                                        std::to_string(labels.size()) + " labels");
  }
  const auto key = io::json_get<std::string>(j, "answerKey", where);
  const auto pos = std::find(labels.begin(), labels.end(), key);
  if (pos == labels.end()) {
    throw Error(ErrorKind::kFormat, where + ": answerKey \"" + key + "\" is not among the choice labels");
  }
  it.gold = int(pos - labels.begin());
  return it;
}

}  // namespace

McTask load_mc_task(const std::filesystem::path& file, int64_t limit) {
  McTask task{.name = task_name(file), .file = file};
  const std::string text = io::read_text_input(file, kMaxTaskBytes, "task file");
  io::for_each_line(text, [&](std::string_view line, int64_t number) {
    if (io::is_blank(line) || (limit > 0 && int64_t(task.items.size()) >= limit)) return;
    const std::string where = file.string() + ":" + std::to_string(number);
    if (!tok::utf8::is_valid(line)) throw Error(ErrorKind::kFormat, where + ": not valid UTF-8");
    const io::Json j = io::parse_json(line, where);
    if (!j.is_object()) throw Error(ErrorKind::kFormat, where + ": expected a JSON object per line");
    const bool generic = j.contains("query");
    if (!generic && !j.contains("question")) {
      throw Error(ErrorKind::kFormat, where + ": neither a generic item (\"query\", \"choices\", \"gold\") nor an ARC "
                                              "item (\"question\", \"choices\", \"answerKey\")");
    }
    if (!j.contains("choices")) throw Error(ErrorKind::kFormat, where + ": missing field \"choices\"");
    McItem item = generic ? parse_generic(j, where) : parse_arc(j, where);
    item.line = number;
    task.items.push_back(std::move(item));
  });
  if (task.items.empty()) throw Error(ErrorKind::kFormat, file.string() + ": no items");
  return task;
}

}  // namespace gptq::eval
