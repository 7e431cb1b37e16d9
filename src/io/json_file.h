// Reading JSON files (and JSON text) with errors that name the file.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>

namespace gptq::io {

using Json = nlohmann::json;

// Throws gptq::Error: kIo if unreadable, kFormat (with the parser's position) if malformed.
Json read_json_file(const std::filesystem::path& path);
Json parse_json(std::string_view text, std::string_view what);

// Typed field access with errors naming `what` (usually the file) and the key.
template <class T>
T json_get(const Json& obj, std::string_view key, std::string_view what);
template <class T>
T json_get_or(const Json& obj, std::string_view key, T fallback, std::string_view what);

}  // namespace gptq::io
