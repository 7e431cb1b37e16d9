// GGUF files (llama.cpp's format), versions 2 and 3, validated as hostile input.
//
// Layout (all little-endian):
//   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count × { string key | u32 value_type | value }
//   tensor_count × { string name | u32 n_dims | u64 dims[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32) | tensor data
// A string is u64 length + bytes (no terminator); an array value is u32 element type +
// u64 count + elements. Tensor offsets are relative to the data section and multiples of
// the alignment. dims[0] is the fastest-varying dimension: a row-major [rows, cols] matrix
// is stored with dims = {cols, rows}.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "io/gguf_types.h"
#include "io/mapped_file.h"

namespace gptq::io {

enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
const char* to_string(GgufValueType t);

// One metadata value. Integers of every width are held as int64/uint64, floats as double;
// arrays hold their elements (all of `element_type`).
struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  GgufValueType element_type = GgufValueType::kU8;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> value;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> dims;   // GGUF order: dims[0] fastest
  uint64_t offset = 0;         // into the data section
  std::span<const std::byte> data;

  std::vector<int64_t> shape() const;  // row-major (reversed dims), as safetensors writes it
  int64_t numel() const;
};

class GgufFile {
 public:
  // Maps and validates the whole header: every length, count, offset and size against the
  // file. Throws gptq::Error (kIo, kFormat, kUnsupported) naming the file and the field or
  // tensor at fault.
  explicit GgufFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // file order
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  // Typed metadata access; nullopt when absent, kFormat naming the key when of another type.
  const GgufValue* find(const std::string& key) const;
  std::optional<uint64_t> get_uint(const std::string& key) const;  // any unsigned or non-negative int
  std::optional<double> get_float(const std::string& key) const;   // F32/F64
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  // Arrays: nullopt when absent; kFormat if not an array of the element kind.
  std::optional<std::vector<std::string>> get_strings(const std::string& key) const;
  std::optional<std::vector<double>> get_floats(const std::string& key) const;
  std::optional<std::vector<int64_t>> get_ints(const std::string& key) const;
  // Required variants throw kFormat "missing metadata key".
  uint64_t require_uint(const std::string& key) const;
  std::string require_string(const std::string& key) const;

 private:
  [[noreturn]] void fail_type(const std::string& key, const char* expected, const GgufValue& v) const;
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

// Limits that keep a hostile header from making us allocate or recurse without bound.
inline constexpr uint64_t kGgufMaxKeyBytes = 65535;  // the format's own limit
inline constexpr int kGgufMaxArrayDepth = 4;
inline constexpr uint32_t kGgufMaxDims = 4;

// True when `path` names a GGUF file (by extension): the commands' MODEL may be one.
bool is_gguf_path(const std::filesystem::path& path);

}  // namespace gptq::io
