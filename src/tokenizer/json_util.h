// Checked access to tokenizer.json fields: every failure names the file, the
// component being read and the field, and throws gptq::Error instead of the
// nlohmann exception a bare at()/get() would raise.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"

namespace gptq::tok {

using Json = nlohmann::json;

// `where` reads like "<file>: pre_tokenizer" and prefixes every message.
[[noreturn]] void fail_format(const std::string& where, const std::string& what);
[[noreturn]] void fail_unsupported(const std::string& where, const std::string& what);

const Json& require(const Json& object, const char* key, const std::string& where);
std::string get_string(const Json& object, const char* key, const std::string& where);
bool get_bool(const Json& object, const char* key, bool fallback, const std::string& where);
int64_t get_int(const Json& object, const char* key, const std::string& where);
// The "type" tag of a component object.
std::string get_type(const Json& object, const std::string& where);

// A {"String": "..."} or {"Regex": "..."} pattern object.
Regex parse_pattern(const Json& pattern, const std::string& where);

}  // namespace gptq::tok
