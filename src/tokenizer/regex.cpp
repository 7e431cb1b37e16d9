#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

std::string escape(std::string_view literal) {
  // \Q...\E cannot carry a literal "\E", so escape every non-alphanumeric ASCII
  // byte instead; multi-byte characters pass through unchanged.
  std::string out;
  for (const char ch : literal) {
    const auto b = static_cast<unsigned char>(ch);
    const bool plain = b >= 0x80 || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') ||
                       (b >= 'A' && b <= 'Z');
    if (!plain) out += '\\';
    out += ch;
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) : code_(std::make_unique<Code>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset,
                              nullptr);
  if (code_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw Error(ErrorKind::kFormat, where + ": regex \"" + pattern + "\" does not compile at offset " +
                                        std::to_string(offset) + ": " +
                                        reinterpret_cast<const char*>(message));
  }
  // JIT is an optimisation only: without it (unsupported CPU, no executable
  // memory) pcre2_match falls back to the interpreter with identical results.
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);
}

Regex Regex::literal(std::string_view literal, const std::string& where) {
  // The library treats an empty String pattern as matching nothing.
  return Regex(literal.empty() ? std::string("(*FAIL)") : escape(literal), where);
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

std::vector<Span> Regex::find_all(std::string_view text) const {
  std::vector<Span> spans;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), &pcre2_match_data_free);
  if (!data) throw Error(ErrorKind::kIo, "out of memory for regex match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(code_->code, subject, text.size(), pos, 0, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw Error(ErrorKind::kFormat,
                  std::string("regex match failed: ") + reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const std::size_t start = ovector[0], end = ovector[1];
    spans.emplace_back(start, end);
    if (end > start) {
      pos = end;
    } else if (end >= text.size()) {
      break;
    } else {
      pos = end + utf8::decode(text, end).len;
    }
  }
  return spans;
}

}  // namespace gptq::tok
