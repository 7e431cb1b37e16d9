#include "tokenizer/normalizer.h"

#include <vector>

#include "tokenizer/unicode_nfc.h"

namespace gptq::tok {

namespace {

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  // The library leaves empty strings empty, so "" never becomes "▁".
  std::string normalize(std::string text) const override {
    return text.empty() ? text : prefix_ + text;
  }

 private:
  std::string prefix_;
};

class Replace final : public Normalizer {
 public:
  Replace(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override {
    const std::vector<Span> matches = pattern_.find_all(text);
    if (matches.empty()) return text;
    std::string out;
    out.reserve(text.size());
    std::size_t prev = 0;
    for (const auto& [start, end] : matches) {
      out.append(text, prev, start - prev);
      out += content_;
      prev = end;
    }
    out.append(text, prev, std::string::npos);
    return out;
  }

 private:
  Regex pattern_;
  std::string content_;
};

class Nfc final : public Normalizer {
 public:
  std::string normalize(std::string text) const override { return nfc(text); }
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string normalize(std::string text) const override {
    for (const auto& part : parts_) text = part->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const Json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = get_type(spec, where);
  const std::string here = where + " (" + type + ")";
  if (type == "Prepend") return std::make_unique<Prepend>(get_string(spec, "prepend", here));
  if (type == "Replace") {
    return std::make_unique<Replace>(parse_pattern(require(spec, "pattern", here), here),
                                     get_string(spec, "content", here));
  }
  if (type == "NFC") return std::make_unique<Nfc>();
  if (type == "Sequence") {
    const Json& list = require(spec, "normalizers", here);
    if (!list.is_array()) fail_format(here, "\"normalizers\" must be an array");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const Json& item : list) {
      auto part = make_normalizer(item, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail_unsupported(where, "unsupported normalizer type \"" + type +
                              "\" (supported: Prepend, Replace, NFC, Sequence)");
}

}  // namespace gptq::tok
