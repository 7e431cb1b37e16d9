#include "tokenizer/decoder.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

namespace {

class Replace final : public Decoder {
 public:
  Replace(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      std::string out;
      std::size_t prev = 0;
      for (const auto& [start, end] : pattern_.find_all(token)) {
        out.append(token, prev, start - prev);
        out += content_;
        prev = end;
      }
      out.append(token, prev, std::string::npos);
      token = std::move(out);
    }
    return tokens;
  }

 private:
  Regex pattern_;
  std::string content_;
};

// "<0xNN>" -> the byte NN, if the token has exactly that shape.
std::optional<unsigned char> byte_token(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
  unsigned value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[i];
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return static_cast<unsigned char>(value);
}

class ByteFallback final : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    // A run of byte tokens becomes its text if valid UTF-8; otherwise every
    // byte of the run becomes one U+FFFD (not the lossy per-sequence rule).
    const auto flush = [&] {
      if (bytes.empty()) return;
      if (utf8::is_valid(bytes)) {
        out.push_back(bytes);
      } else {
        for (std::size_t i = 0; i < bytes.size(); ++i) out.push_back("\xEF\xBF\xBD");
      }
      bytes.clear();
    };
    for (std::string& token : tokens) {
      if (const auto b = byte_token(token)) {
        bytes += static_cast<char>(*b);
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }
};

class Fuse final : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    return {joined};
  }
};

class Strip final : public Decoder {
 public:
  Strip(char32_t content, std::size_t start, std::size_t stop) : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      std::vector<std::size_t> bounds;  // byte offset of each character, then the end
      for (std::size_t pos = 0; pos < token.size(); pos += utf8::decode(token, pos).len) bounds.push_back(pos);
      const std::size_t count = bounds.size();
      bounds.push_back(token.size());
      std::size_t first = 0;
      while (first < start_ && first < count && utf8::decode(token, bounds[first]).cp == content_) ++first;
      std::size_t last = count;
      while (count - last < stop_ && last > first && utf8::decode(token, bounds[last - 1]).cp == content_) --last;
      // The library panics when both ends overlap; an empty token is the sane result.
      token = token.substr(bounds[first], bounds[last] - bounds[first]);
    }
    return tokens;
  }

 private:
  char32_t content_;
  std::size_t start_, stop_;
};

class ByteLevel final : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      // A token with any character outside the byte table (e.g. an added token
      // containing a space) contributes its own UTF-8 bytes unchanged.
      std::string mapped;
      bool all_mapped = true;
      for (std::size_t pos = 0; pos < token.size() && all_mapped;) {
        const utf8::Char c = utf8::decode(token, pos);
        const auto b = c.cp == utf8::kInvalid ? std::nullopt : byte_level::byte_of_char(c.cp);
        if (b) mapped += static_cast<char>(*b);
        all_mapped = b.has_value();
        pos += c.len;
      }
      bytes += all_mapped ? mapped : token;
    }
    return {utf8::to_valid_lossy(bytes)};
  }
};

class Metaspace final : public Decoder {
 public:
  Metaspace(char32_t replacement, bool prepend) : replacement_(replacement), prepend_(prepend) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      for (std::size_t pos = 0; pos < tokens[i].size();) {
        const utf8::Char c = utf8::decode(tokens[i], pos);
        if (c.cp != replacement_) {
          out.append(tokens[i], pos, c.len);
        } else if (i != 0 || !prepend_) {
          // In the first token every replacement character is dropped when a
          // prefix was prepended, exactly as the library does.
          out += ' ';
        }
        pos += c.len;
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  char32_t replacement_;
  bool prepend_;
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& part : parts_) tokens = part->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

char32_t single_char(const std::string& text, const char* field, const std::string& where) {
  if (text.empty() || utf8::decode(text, 0).len != text.size() || utf8::decode(text, 0).cp == utf8::kInvalid) {
    fail_format(where, std::string("\"") + field + "\" must be one character, found \"" + text + "\"");
  }
  return utf8::decode(text, 0).cp;
}

std::size_t get_count(const Json& spec, const char* key, const std::string& where) {
  const int64_t n = get_int(spec, key, where);
  if (n < 0 || n > (int64_t{1} << 20)) fail_format(where, std::string("\"") + key + "\" out of range");
  return static_cast<std::size_t>(n);
}

std::unique_ptr<Decoder> make_metaspace(const Json& spec, const std::string& where) {
  const char32_t replacement = single_char(get_string(spec, "replacement", where), "replacement", where);
  bool prepend = get_bool(spec, "add_prefix_space", true, where);
  if (spec.contains("prepend_scheme")) prepend = get_string(spec, "prepend_scheme", where) != "never";
  return std::make_unique<Metaspace>(replacement, prepend);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const Json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = get_type(spec, where);
  const std::string here = where + " (" + type + ")";
  if (type == "Replace") {
    return std::make_unique<Replace>(parse_pattern(require(spec, "pattern", here), here),
                                     get_string(spec, "content", here));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    return std::make_unique<Strip>(single_char(get_string(spec, "content", here), "content", here),
                                   get_count(spec, "start", here), get_count(spec, "stop", here));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Metaspace") return make_metaspace(spec, here);
  if (type == "Sequence") {
    const Json& list = require(spec, "decoders", here);
    if (!list.is_array()) fail_format(here, "\"decoders\" must be an array");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const Json& item : list) {
      auto part = make_decoder(item, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail_unsupported(where, "unsupported decoder type \"" + type +
                              "\" (supported: Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace, "
                              "Sequence)");
}

}  // namespace gptq::tok
