// Reading JSON files (and JSON text) with errors that name the file.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"

namespace gptq::io {

using Json = nlohmann::json;

// The whole file as bytes; throws gptq::Error(kIo) "PATH: cannot open" / "cannot read".
std::string read_text_file(const std::filesystem::path& path);

// Throws gptq::Error: kIo if unreadable, kFormat (with the parser's position) if malformed.
Json read_json_file(const std::filesystem::path& path);
Json parse_json(std::string_view text, std::string_view what);
// Key order preserved (GPTQModel's dynamic rules apply in file order; written configs
// keep the source's field order).
nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path);
nlohmann::ordered_json parse_ordered_json(std::string_view text, std::string_view what);

// Typed field access with errors naming `what` (usually the file) and the key; J is
// nlohmann::json or nlohmann::ordered_json.
template <class T, class J>
T json_convert(const J& value, std::string_view key, std::string_view what) {
  try {
    return value.template get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(ErrorKind::kFormat, std::string(what) + ": field \"" + std::string(key) +
                                        "\" has the wrong type (found " + value.type_name() + ")");
  }
}

template <class T, class J>
T json_get(const J& obj, std::string_view key, std::string_view what) {
  if (!obj.is_object()) throw Error(ErrorKind::kFormat, std::string(what) + ": expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end()) {
    throw Error(ErrorKind::kFormat, std::string(what) + ": missing field \"" + std::string(key) + "\"");
  }
  return json_convert<T>(*it, key, what);
}

// `fallback` when the key is absent or null.
template <class T, class J>
T json_get_or(const J& obj, std::string_view key, T fallback, std::string_view what) {
  if (!obj.is_object()) throw Error(ErrorKind::kFormat, std::string(what) + ": expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  return json_convert<T>(*it, key, what);
}

}  // namespace gptq::io
