#include "io/text_input.h"

#include <zlib.h>

#include <array>
#include <fstream>
#include <memory>
#include <vector>

#include "core/error.h"

namespace gptq::io {
namespace {

std::string named(std::string_view what, const std::filesystem::path& p) {
  return std::string(what) + " '" + p.string() + "'";
}

[[noreturn]] void fail_too_large(std::string_view what, const std::filesystem::path& p, uint64_t limit) {
  throw Error(ErrorKind::kInvalidArgument,
              named(what, p) + " holds more than " + std::to_string(limit) + " bytes of text (pass a smaller file)");
}

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};

std::string read_gzip(const std::filesystem::path& p, uint64_t limit, std::string_view what) {
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(p.c_str(), "rb"));
  if (!f) throw Error(ErrorKind::kIo, "cannot open " + named(what, p));
  gzbuffer(f.get(), 1 << 18);
  std::string text;
  std::vector<char> chunk(1 << 20);
  for (;;) {
    const int n = gzread(f.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n <= 0) break;
    if (text.size() + static_cast<uint64_t>(n) > limit) fail_too_large(what, p, limit);
    text.append(chunk.data(), static_cast<std::size_t>(n));
  }
  // A truncated or corrupt stream surfaces here (zlib reports it after the last data).
  int err = Z_OK;
  const char* msg = gzerror(f.get(), &err);
  if (err != Z_OK && err != Z_STREAM_END) {
    throw Error(ErrorKind::kFormat, named(what, p) + ": corrupt gzip data (" + std::string(msg) + ")");
  }
  return text;
}

void require_regular_file(const std::filesystem::path& p, std::string_view what) {
  std::error_code ec;
  const auto st = std::filesystem::status(p, ec);
  if (!std::filesystem::exists(st)) throw Error(ErrorKind::kIo, named(what, p) + " does not exist");
  if (!std::filesystem::is_regular_file(st)) throw Error(ErrorKind::kIo, named(what, p) + " is not a regular file");
}

}  // namespace

TextHead read_text_input_head(const std::filesystem::path& p, std::size_t max_bytes, std::string_view what) {
  require_regular_file(p, what);
  // zlib reads a file that is not gzip as it is (gzdirect), so one reader serves both.
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(p.c_str(), "rb"));
  if (!f) throw Error(ErrorKind::kIo, "cannot open " + named(what, p));
  TextHead head;
  head.bytes.resize(max_bytes);
  const int n = gzread(f.get(), head.bytes.data(), static_cast<unsigned>(max_bytes));
  if (n < 0) throw Error(ErrorKind::kFormat, named(what, p) + ": corrupt gzip data");
  head.bytes.resize(static_cast<std::size_t>(n));
  head.gzip = gzdirect(f.get()) == 0;
  head.whole = head.bytes.size() < max_bytes;
  return head;
}

std::string read_text_input(const std::filesystem::path& p, uint64_t limit, std::string_view what) {
  require_regular_file(p, what);
  std::error_code ec;

  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, "cannot open " + named(what, p));
  std::array<unsigned char, 2> magic{};
  in.read(reinterpret_cast<char*>(magic.data()), magic.size());
  std::string text;
  if (in.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    in.close();
    text = read_gzip(p, limit, what);
  } else {
    const uint64_t size = std::filesystem::file_size(p, ec);
    if (ec) throw Error(ErrorKind::kIo, "cannot read " + named(what, p) + ": " + ec.message());
    if (size > limit) fail_too_large(what, p, limit);
    text.resize(size);
    in.clear();
    in.seekg(0);
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (static_cast<uint64_t>(in.gcount()) != size) throw Error(ErrorKind::kIo, "cannot read " + named(what, p));
  }
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  return text;
}

}  // namespace gptq::io
