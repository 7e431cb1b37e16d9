// A read-only memory map of a whole file: weights are paged in on demand, so a
// checkpoint larger than RAM can still be walked one layer at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace gptq::io {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);  // throws gptq::Error (kIo)
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release();
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace gptq::io
