#include "io/json_file.h"

#include <fstream>
#include <sstream>

namespace gptq::io {

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, path.string() + ": cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(ErrorKind::kIo, path.string() + ": cannot read");
  return buffer.str();
}

namespace {
template <class J>
J parse_as(std::string_view text, std::string_view what) {
  try {
    return J::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorKind::kFormat, std::string(what) + ": malformed JSON: " + e.what());
  }
}
}  // namespace

Json parse_json(std::string_view text, std::string_view what) { return parse_as<Json>(text, what); }

nlohmann::ordered_json parse_ordered_json(std::string_view text, std::string_view what) {
  return parse_as<nlohmann::ordered_json>(text, what);
}

Json read_json_file(const std::filesystem::path& path) { return parse_json(read_text_file(path), path.string()); }

nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path) {
  return parse_ordered_json(read_text_file(path), path.string());
}

}  // namespace gptq::io
