#include "io/json_file.h"

#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"

namespace gptq::io {

Json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, path.string() + ": cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_json(buffer.str(), path.string());
}

Json parse_json(std::string_view text, std::string_view what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw Error(ErrorKind::kFormat, std::string(what) + ": malformed JSON: " + e.what());
  }
}

namespace {
template <class T>
T convert(const Json& value, std::string_view key, std::string_view what) {
  try {
    return value.get<T>();
  } catch (const Json::exception&) {
    throw Error(ErrorKind::kFormat, std::string(what) + ": field \"" + std::string(key) +
                                        "\" has the wrong type (found " + value.type_name() + ")");
  }
}
}  // namespace

template <class T>
T json_get(const Json& obj, std::string_view key, std::string_view what) {
  if (!obj.is_object()) throw Error(ErrorKind::kFormat, std::string(what) + ": expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end()) {
    throw Error(ErrorKind::kFormat, std::string(what) + ": missing field \"" + std::string(key) + "\"");
  }
  return convert<T>(*it, key, what);
}

template <class T>
T json_get_or(const Json& obj, std::string_view key, T fallback, std::string_view what) {
  if (!obj.is_object()) throw Error(ErrorKind::kFormat, std::string(what) + ": expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  return convert<T>(*it, key, what);
}

template int64_t json_get<int64_t>(const Json&, std::string_view, std::string_view);
template double json_get<double>(const Json&, std::string_view, std::string_view);
template bool json_get<bool>(const Json&, std::string_view, std::string_view);
template std::string json_get<std::string>(const Json&, std::string_view, std::string_view);
template int64_t json_get_or<int64_t>(const Json&, std::string_view, int64_t, std::string_view);
template double json_get_or<double>(const Json&, std::string_view, double, std::string_view);
template bool json_get_or<bool>(const Json&, std::string_view, bool, std::string_view);
template std::string json_get_or<std::string>(const Json&, std::string_view, std::string,
                                              std::string_view);

}  // namespace gptq::io
