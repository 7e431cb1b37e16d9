#include "tokenizer/json_util.h"

#include "core/error.h"

namespace gptq::tok {

void fail_format(const std::string& where, const std::string& what) {
  throw Error(ErrorKind::kFormat, where + ": " + what);
}

void fail_unsupported(const std::string& where, const std::string& what) {
  throw Error(ErrorKind::kUnsupported, where + ": " + what);
}

const Json& require(const Json& object, const char* key, const std::string& where) {
  if (!object.is_object()) fail_format(where, "expected an object");
  const auto it = object.find(key);
  if (it == object.end()) fail_format(where, std::string("missing field \"") + key + "\"");
  return *it;
}

std::string get_string(const Json& object, const char* key, const std::string& where) {
  const Json& value = require(object, key, where);
  if (!value.is_string()) fail_format(where, std::string("field \"") + key + "\" must be a string");
  return value.get<std::string>();
}

bool get_bool(const Json& object, const char* key, bool fallback, const std::string& where) {
  if (!object.is_object()) fail_format(where, "expected an object");
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail_format(where, std::string("field \"") + key + "\" must be a boolean");
  return it->get<bool>();
}

int64_t get_int(const Json& object, const char* key, const std::string& where) {
  const Json& value = require(object, key, where);
  if (!value.is_number_integer()) {
    fail_format(where, std::string("field \"") + key + "\" must be an integer");
  }
  return value.get<int64_t>();
}

std::string get_type(const Json& object, const std::string& where) {
  return get_string(object, "type", where);
}

Regex parse_pattern(const Json& pattern, const std::string& where) {
  if (pattern.is_object() && pattern.size() == 1) {
    if (pattern.contains("String") && pattern["String"].is_string()) {
      return Regex::literal(pattern["String"].get<std::string>(), where);
    }
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      return Regex(pattern["Regex"].get<std::string>(), where);
    }
  }
  fail_format(where, "pattern must be {\"String\": ...} or {\"Regex\": ...}, found " + pattern.dump());
}

}  // namespace gptq::tok
