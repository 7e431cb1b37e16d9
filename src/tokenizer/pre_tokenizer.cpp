#include "tokenizer/pre_tokenizer.h"

#include <optional>
#include <utility>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

namespace {

// What happens to the delimiters a pattern finds (the library's
// SplitDelimiterBehavior).
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  fail_format(where, "unknown split behavior \"" + name + "\"");
}

struct Segment {
  Span span;
  bool is_match;
};

// Cuts `text` into alternating match / non-match segments covering all of it.
std::vector<Segment> segments(std::string_view text, const Regex& pattern, bool invert) {
  std::vector<Segment> out;
  std::size_t prev = 0;
  for (const Span& m : pattern.find_all(text)) {
    if (m.first > prev) out.push_back({{prev, m.first}, invert});
    out.push_back({m, !invert});
    prev = m.second;
  }
  if (prev < text.size()) out.push_back({{prev, text.size()}, invert});
  return out;
}

std::vector<Segment> apply(std::vector<Segment> segs, Behavior behavior) {
  std::vector<Segment> out;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kIsolated:
      return segs;
    case Behavior::kRemoved:
      for (const Segment& s : segs) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case Behavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().span.second = s.span.second;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case Behavior::kMergedWithNext:
      // Mirror image of kMergedWithPrevious: walk backwards.
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().span.first = it->span.first;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
    case Behavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().span.second = s.span.second;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
  }
  return out;
}

void split_pieces(std::vector<Piece>& pieces, const Regex& pattern, Behavior behavior, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& piece : pieces) {
    for (const Segment& s : apply(segments(piece.text, pattern, invert), behavior)) {
      if (s.span.second <= s.span.first) continue;
      out.push_back({piece.text.substr(s.span.first, s.span.second - s.span.first),
                     piece.at_start && s.span.first == 0});
    }
  }
  pieces = std::move(out);
}

class Split final : public PreTokenizer {
 public:
  Split(Regex pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, pattern_, behavior_, invert_);
  }

 private:
  Regex pattern_;
  Behavior behavior_;
  bool invert_;
};

class Metaspace final : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(const std::string& replacement, Prepend prepend, bool split, const std::string& where)
      : replacement_(replacement),
        splitter_(Regex::literal(replacement, where)),
        prepend_(prepend),
        split_(split) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (Piece& piece : pieces) {
      std::string text;
      for (const char c : piece.text) {
        if (c == ' ') {
          text += replacement_;
        } else {
          text += c;
        }
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && piece.at_start))) {
        text.insert(0, replacement_);
      }
      piece.text = std::move(text);
    }
    if (split_) split_pieces(pieces, splitter_, Behavior::kMergedWithNext, false);
  }

 private:
  std::string replacement_;
  Regex splitter_;
  Prepend prepend_;
  bool split_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_.emplace(byte_level::kGpt2Regex, where);
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      // One char through insert(iterator, char): GCC 12 at -O3 reports a false -Wrestrict
      // overlap inside std::string::insert(0, " ") (memcpy of the inserted C string, GCC
      // bug 105329); the single-character overload takes a path without that memcpy.
      for (Piece& piece : pieces) {
        if (piece.text.empty() || piece.text.front() != ' ') piece.text.insert(piece.text.begin(), ' ');
      }
    }
    if (regex_) split_pieces(pieces, *regex_, Behavior::kIsolated, false);
    for (Piece& piece : pieces) piece.text = byte_level::encode(piece.text);
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& part : parts_) part->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

std::unique_ptr<PreTokenizer> make_metaspace(const Json& spec, const std::string& where) {
  const std::string replacement = get_string(spec, "replacement", where);
  if (replacement.empty() || utf8::decode(replacement, 0).len != replacement.size()) {
    fail_format(where, "\"replacement\" must be one character, found \"" + replacement + "\"");
  }
  // Files from before prepend_scheme existed carry add_prefix_space instead.
  Metaspace::Prepend prepend = get_bool(spec, "add_prefix_space", true, where) ? Metaspace::Prepend::kAlways
                                                                             : Metaspace::Prepend::kNever;
  if (spec.contains("prepend_scheme")) {
    const std::string scheme = get_string(spec, "prepend_scheme", where);
    if (scheme == "always") {
      prepend = Metaspace::Prepend::kAlways;
    } else if (scheme == "first") {
      prepend = Metaspace::Prepend::kFirst;
    } else if (scheme == "never") {
      prepend = Metaspace::Prepend::kNever;
    } else {
      fail_format(where, "unknown prepend_scheme \"" + scheme + "\"");
    }
  }
  return std::make_unique<Metaspace>(replacement, prepend, get_bool(spec, "split", true, where), where);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = get_type(spec, where);
  const std::string here = where + " (" + type + ")";
  if (type == "Metaspace") return make_metaspace(spec, here);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(get_bool(spec, "add_prefix_space", true, here),
                                       get_bool(spec, "use_regex", true, here), here);
  }
  if (type == "Split") {
    return std::make_unique<Split>(parse_pattern(require(spec, "pattern", here), here),
                                   parse_behavior(get_string(spec, "behavior", here), here),
                                   get_bool(spec, "invert", false, here));
  }
  if (type == "Digits") {
    const bool individual = get_bool(spec, "individual_digits", false, here);
    return std::make_unique<Split>(Regex(R"(\p{N})", here),
                                   individual ? Behavior::kIsolated : Behavior::kContiguous, false);
  }
  if (type == "Whitespace") {
    return std::make_unique<Split>(Regex(R"(\w+|[^\w\s]+)", here), Behavior::kRemoved, true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<Split>(Regex(R"(\s)", here), Behavior::kRemoved, false);
  }
  if (type == "Sequence") {
    const Json& list = require(spec, "pretokenizers", here);
    if (!list.is_array()) fail_format(here, "\"pretokenizers\" must be an array");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const Json& item : list) {
      auto part = make_pre_tokenizer(item, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail_unsupported(where, "unsupported pre_tokenizer type \"" + type +
                              "\" (supported: Metaspace, ByteLevel, Split, Digits, Whitespace, "
                              "WhitespaceSplit, Sequence)");
}

}  // namespace gptq::tok
