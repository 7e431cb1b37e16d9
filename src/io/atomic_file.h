// A file that appears whole or not at all: written under a temporary name beside the
// destination (same filesystem), renamed over it by commit(). Destroyed uncommitted
// (an error on the way), it removes the temporary and leaves the destination untouched.
#pragma once

#include <filesystem>
#include <fstream>
#include <string_view>

namespace gptq::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path dest);  // throws gptq::Error (kIo)
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(const void* data, std::size_t bytes);  // throws kIo on a short write
  void commit();                                    // flush, close, rename; throws kIo

 private:
  std::filesystem::path dest_, temp_;
  std::ofstream out_;
  bool committed_ = false;
};

void write_file_atomic(const std::filesystem::path& dest, std::string_view content);

}  // namespace gptq::io
