// Writing safetensors files (the format io::SafetensorsFile reads).
//
// Layout written: u64 little-endian header length L | L bytes of JSON header | data.
// The header lists "__metadata__" first, then the tensors sorted by name, whose data
// follows contiguously in that same order, so equal inputs give byte-identical files.
// The JSON is padded with spaces to a multiple of 8 bytes, as the reference safetensors
// library does, so the data section starts 8-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace gptq::io {

using SafetensorsMetadata = std::map<std::string, std::string>;

// What transformers writes; some loaders refuse a file without it.
inline const SafetensorsMetadata kPytorchMetadata{{"format", "pt"}};

// What the header says about one tensor; its bytes are supplied separately.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar; a 0 anywhere makes an empty tensor
};

// A tensor to write in one go; `data` is borrowed and must be dtype × shape bytes.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

// dtype size × product of shape; throws kInvalidArgument naming the tensor on a
// negative dimension or overflow.
uint64_t safetensors_nbytes(DType dtype, const std::vector<int64_t>& shape, const std::string& name);

// Streams one file: the header at construction, then the tensors' bytes in entries()
// order through append*(), then finish(). Data never has to be in memory all at once.
class SafetensorsWriter {
 public:
  // Sorts `entries` by name and creates `path` holding the header. Throws
  // kInvalidArgument (repeated or empty name, bad shape, header too large) or kIo.
  SafetensorsWriter(std::filesystem::path path, std::vector<SafetensorsEntry> entries,
                    const SafetensorsMetadata& metadata = kPytorchMetadata);
  // An unfinished file is deleted: a half-written file must not pass for a whole one.
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The entries in data order (sorted by name).
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }

  // The next bytes of the data section; throws kInvalidArgument past its declared end.
  void append(std::span<const std::byte> bytes);
  // The next `count` bytes, copied from `src_fd` at `offset` inside the kernel
  // (copy_file_range; reflinked on filesystems that can).
  void append_from(int src_fd, uint64_t offset, uint64_t count);
  // Throws kInvalidArgument unless exactly the declared bytes were appended; then
  // fsyncs and closes the file.
  void finish();

 private:
  void reserve(uint64_t count);
  std::filesystem::path path_;
  std::vector<SafetensorsEntry> entries_;
  int fd_ = -1;
  uint64_t data_bytes_ = 0;  // size of the data section the header declares
  uint64_t written_ = 0;     // data bytes appended so far
};

// Writes `tensors` (any order) to `path`. Throws kInvalidArgument naming a tensor whose
// byte count is not dtype × shape, plus whatever SafetensorsWriter throws.
void write_safetensors(const std::filesystem::path& path, std::vector<SafetensorsTensor> tensors,
                       const SafetensorsMetadata& metadata = kPytorchMetadata);

}  // namespace gptq::io
