// A compiled PCRE2 pattern with the semantics the tokenizers library gets from
// Oniguruma: Unicode-aware classes (\p{L}, \s, (?i:...)) and find-all iteration.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gptq::tok {

// Half-open byte range [first, second).
using Span = std::pair<std::size_t, std::size_t>;

class Regex {
 public:
  // Throws gptq::Error(kFormat) naming `where` if the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  // A pattern matching `literal` exactly (the library's String patterns).
  static Regex literal(std::string_view literal, const std::string& where);

  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Non-overlapping matches, left to right. After an empty match the search
  // resumes one character later, so iteration always terminates. Invalid UTF-8
  // bytes in `text` never match and never stop the search.
  std::vector<Span> find_all(std::string_view text) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
};

}  // namespace gptq::tok
