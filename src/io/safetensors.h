// safetensors files, validated as hostile input.
//
// Layout: u64 little-endian header length L | L bytes of JSON header | data.
// Header: {"__metadata__": {str: str}, NAME: {"dtype", "shape", "data_offsets": [b, e]}}
// with offsets relative to the start of the data section.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/mapped_file.h"

namespace gptq::io {

// A tensor inside a mapped file; `data` stays valid while the owning file lives.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;

  int64_t numel() const;
  std::string shape_string() const;  // "[32000, 288]"
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header; throws gptq::Error (kIo, kFormat) naming the
  // file and the tensor at fault.
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorView* find(const std::string& name) const;

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Header length is bounded so that a hostile file cannot make us parse gigabytes of JSON.
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

}  // namespace gptq::io
