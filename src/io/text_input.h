// Reading user-supplied text inputs (calibration text, task files, document sets):
// gzip recognised by its magic bytes (1f 8b) and decompressed through zlib, a leading
// UTF-8 byte-order mark dropped, and a size limit against gzip bombs and mistaken inputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace gptq::io {

// `what` names the input in errors ("calibration file", "task file"). Throws
// gptq::Error: kIo (missing, not a regular file, unreadable), kFormat (corrupt gzip),
// kInvalidArgument (more than `limit` bytes of text).
std::string read_text_input(const std::filesystem::path& p, uint64_t limit, std::string_view what);

// The first `max_bytes` bytes of the same text (decompressed if gzip; the byte-order mark
// kept), for judging an input before reading it whole. Throws as read_text_input does.
struct TextHead {
  std::string bytes;
  bool gzip = false;  // the file is gzip and `bytes` are decompressed
  bool whole = true;  // `bytes` hold all of the text (fewer than max_bytes)
};
TextHead read_text_input_head(const std::filesystem::path& p, std::size_t max_bytes, std::string_view what);

inline bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string_view::npos;
}

// Calls fn(line, line_number) for every line (1-based, '\n' and a trailing '\r' removed).
template <class Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  int64_t number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    if (line.ends_with('\r')) line.remove_suffix(1);
    fn(line, ++number);
    pos = end + 1;
  }
}

}  // namespace gptq::io
