#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace gptq::io {

const char* to_string(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: return "UINT8";
    case GgufValueType::kI8: return "INT8";
    case GgufValueType::kU16: return "UINT16";
    case GgufValueType::kI16: return "INT16";
    case GgufValueType::kU32: return "UINT32";
    case GgufValueType::kI32: return "INT32";
    case GgufValueType::kF32: return "FLOAT32";
    case GgufValueType::kBool: return "BOOL";
    case GgufValueType::kString: return "STRING";
    case GgufValueType::kArray: return "ARRAY";
    case GgufValueType::kU64: return "UINT64";
    case GgufValueType::kI64: return "INT64";
    case GgufValueType::kF64: return "FLOAT64";
  }
  return "?";
}

std::vector<int64_t> GgufTensorInfo::shape() const { return {dims.rbegin(), dims.rend()}; }

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

bool is_gguf_path(const std::filesystem::path& path) { return path.extension() == ".gguf"; }

namespace {

// Reads little-endian fields from the mapped header, refusing to step past the end.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::filesystem::path& path) : bytes_(bytes), path_(path) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::kFormat, path_.string() + ": " + what);
  }
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return bytes_.size() - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left()) {
      fail(what + " needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) + ", but the file has " +
           std::to_string(left()) + " left (truncated?)");
    }
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what, uint64_t max_bytes) {
    const uint64_t len = read<uint64_t>(what + " length");
    if (len > max_bytes) {
      fail(what + " is " + std::to_string(len) + " bytes long, more than the limit of " + std::to_string(max_bytes));
    }
    need(len, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  std::span<const std::byte> bytes_;
  const std::filesystem::path& path_;
  uint64_t pos_ = 0;
};

// The fewest bytes one value of `t` takes, to bound array counts before allocating.
uint64_t min_value_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64: return 8;
    case GgufValueType::kString: return 8;   // the length
    case GgufValueType::kArray: return 12;   // element type + count
  }
  return 1;
}

bool known_value_type(uint32_t t) { return t <= uint32_t(GgufValueType::kF64); }

GgufValue read_value(Cursor& c, GgufValueType type, const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  const std::string what = "metadata \"" + key + "\"";
  switch (type) {
    case GgufValueType::kU8: v.value = uint64_t(c.read<uint8_t>(what)); break;
    case GgufValueType::kI8: v.value = int64_t(c.read<int8_t>(what)); break;
    case GgufValueType::kU16: v.value = uint64_t(c.read<uint16_t>(what)); break;
    case GgufValueType::kI16: v.value = int64_t(c.read<int16_t>(what)); break;
    case GgufValueType::kU32: v.value = uint64_t(c.read<uint32_t>(what)); break;
    case GgufValueType::kI32: v.value = int64_t(c.read<int32_t>(what)); break;
    case GgufValueType::kU64: v.value = c.read<uint64_t>(what); break;
    case GgufValueType::kI64: v.value = c.read<int64_t>(what); break;
    case GgufValueType::kF32: v.value = double(c.read<float>(what)); break;
    case GgufValueType::kF64: v.value = c.read<double>(what); break;
    case GgufValueType::kBool: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) c.fail(what + " is a BOOL holding " + std::to_string(b) + ", expected 0 or 1");
      v.value = b == 1;
      break;
    }
    case GgufValueType::kString: v.value = c.read_string(what, c.left()); break;
    case GgufValueType::kArray: {
      if (depth >= kGgufMaxArrayDepth) {
        c.fail(what + " nests arrays deeper than " + std::to_string(kGgufMaxArrayDepth));
      }
      const uint32_t et = c.read<uint32_t>(what + " element type");
      if (!known_value_type(et)) c.fail(what + " has unknown array element type " + std::to_string(et));
      v.element_type = GgufValueType(et);
      const uint64_t count = c.read<uint64_t>(what + " count");
      if (count > c.left() / min_value_bytes(v.element_type)) {
        c.fail(what + " claims " + std::to_string(count) + " elements of " + to_string(v.element_type) +
               ", more than the " + std::to_string(c.left()) + " bytes left can hold");
      }
      std::vector<GgufValue> items;
      items.reserve(count);
      for (uint64_t i = 0; i < count; ++i) items.push_back(read_value(c, v.element_type, key, depth + 1));
      v.value = std::move(items);
      break;
    }
  }
  return v;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufFile::GgufFile(const std::filesystem::path& path) : file_(path) {
  const auto bytes = file_.bytes();
  Cursor c(bytes, path);
  if (bytes.size() < 4 || std::memcmp(bytes.data(), "GGUF", 4) != 0) c.fail("not a GGUF file (no \"GGUF\" magic)");
  c.read<uint32_t>("magic");
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    // A big-endian file reads as 0x02000000 / 0x03000000 here.
    if (version_ == 0x02000000u || version_ == 0x03000000u) {
      throw Error(ErrorKind::kUnsupported, path.string() + ": big-endian GGUF files are not supported");
    }
    if (version_ == 1) {
      throw Error(ErrorKind::kUnsupported, path.string() + ": GGUF version 1 is not supported (versions 2 and 3)");
    }
    c.fail("GGUF version " + std::to_string(version_) + " is not known (expected 2 or 3)");
  }
  const uint64_t tensor_count = c.read<uint64_t>("tensor count");
  const uint64_t kv_count = c.read<uint64_t>("metadata count");
  // Each KV takes at least a key length, a type and one byte; each tensor info at least
  // name length + n_dims + type + offset.
  if (kv_count > c.left() / 13) c.fail("metadata count " + std::to_string(kv_count) + " exceeds what the file can hold");
  if (tensor_count > c.left() / 24) c.fail("tensor count " + std::to_string(tensor_count) + " exceeds what the file can hold");

  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = c.read_string("metadata key #" + std::to_string(i), kGgufMaxKeyBytes);
    const uint32_t t = c.read<uint32_t>("metadata \"" + key + "\" type");
    if (!known_value_type(t)) c.fail("metadata \"" + key + "\" has unknown value type " + std::to_string(t));
    GgufValue v = read_value(c, GgufValueType(t), key, 0);
    if (!metadata_.emplace(key, std::move(v)).second) c.fail("metadata key \"" + key + "\" appears twice");
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufValueType::kU32) fail_type("general.alignment", "UINT32", *a);
    alignment_ = std::get<uint64_t>(a->value);
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
      c.fail("general.alignment " + std::to_string(alignment_) + " is not a power of two");
    }
  }

  tensors_.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name #" + std::to_string(i), kGgufMaxKeyBytes);
    const std::string where = "tensor \"" + t.name + "\"";
    const uint32_t n_dims = c.read<uint32_t>(where + " n_dims");
    if (n_dims == 0 || n_dims > kGgufMaxDims) {
      c.fail(where + " has " + std::to_string(n_dims) + " dimensions, expected 1 to " + std::to_string(kGgufMaxDims));
    }
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>(where + " dimension");
      if (dim == 0 || dim > uint64_t(std::numeric_limits<int64_t>::max()) ||
          numel > uint64_t(std::numeric_limits<int64_t>::max()) / dim) {
        c.fail(where + " has dimension " + std::to_string(dim) + ": zero, or the element count overflows");
      }
      numel *= dim;
      t.dims.push_back(int64_t(dim));
    }
    const uint32_t type_id = c.read<uint32_t>(where + " type");
    const auto info = ggml_type_info(type_id);
    if (!info) {
      throw Error(ErrorKind::kUnsupported, path.string() + ": " + where + " has tensor type " +
                                               std::to_string(type_id) + ", which this reader does not know");
    }
    t.type = info->type;
    t.offset = c.read<uint64_t>(where + " offset");
    if (t.dims[0] % info->block_values != 0) {
      c.fail(where + " is " + info->name + " with dims[0] = " + std::to_string(t.dims[0]) +
             ", not a multiple of its block of " + std::to_string(info->block_values));
    }
    if (t.offset % alignment_ != 0) {
      c.fail(where + " offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
             std::to_string(alignment_));
    }
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) c.fail(where + " appears twice");
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = align_up(c.pos(), alignment_);
  if (data_start > bytes.size()) {
    c.fail("the tensor data section starts at " + std::to_string(data_start) + ", past the end of the file (" +
           std::to_string(bytes.size()) + " bytes)");
  }
  const auto data = bytes.subspan(data_start);
  std::vector<std::pair<uint64_t, std::size_t>> order;  // (offset, tensor) to find overlaps
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensorInfo& t = tensors_[i];
    const auto info = ggml_type_info(t.type);
    // numel fits int64 (checked above), but blocks × block_bytes can still wrap.
    const uint64_t blocks = uint64_t(t.numel()) / uint64_t(info.block_values);
    if (blocks > std::numeric_limits<uint64_t>::max() / info.block_bytes) c.fail("tensor \"" + t.name + "\" size overflows");
    const uint64_t nbytes = blocks * info.block_bytes;
    if (t.offset > data.size() || nbytes > data.size() - t.offset) {
      c.fail("tensor \"" + t.name + "\" (" + info.name + ", " + std::to_string(nbytes) + " bytes at data offset " +
             std::to_string(t.offset) + ") lies outside the data section of " + std::to_string(data.size()) + " bytes");
    }
    t.data = data.subspan(t.offset, nbytes);
    order.emplace_back(t.offset, i);
  }
  std::sort(order.begin(), order.end());
  for (std::size_t k = 1; k < order.size(); ++k) {
    const GgufTensorInfo& prev = tensors_[order[k - 1].second];
    const GgufTensorInfo& cur = tensors_[order[k].second];
    if (cur.offset < prev.offset + prev.data.size()) {
      c.fail("tensors \"" + prev.name + "\" and \"" + cur.name + "\" have overlapping data");
    }
  }
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

void GgufFile::fail_type(const std::string& key, const char* expected, const GgufValue& v) const {
  std::string found = to_string(v.type);
  if (v.type == GgufValueType::kArray) found += std::string(" of ") + to_string(v.element_type);
  throw Error(ErrorKind::kFormat, path().string() + ": metadata \"" + key + "\" is " + found + ", expected " + expected);
}

namespace {

std::optional<uint64_t> as_uint(const GgufValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return *u;
  if (const auto* i = std::get_if<int64_t>(&v.value); i && *i >= 0) return uint64_t(*i);
  return std::nullopt;
}

std::optional<int64_t> as_int(const GgufValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v.value)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v.value); u && *u <= uint64_t(std::numeric_limits<int64_t>::max())) {
    return int64_t(*u);
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> GgufFile::get_uint(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (auto u = as_uint(*v)) return u;
  fail_type(key, "a non-negative integer", *v);
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* d = std::get_if<double>(&v->value)) return *d;
  fail_type(key, "FLOAT32 or FLOAT64", *v);
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v->value)) return *b;
  fail_type(key, "BOOL", *v);
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* s = std::get_if<std::string>(&v->value)) return *s;
  fail_type(key, "STRING", *v);
}

std::optional<std::vector<std::string>> GgufFile::get_strings(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kArray || v->element_type != GgufValueType::kString) {
    fail_type(key, "ARRAY of STRING", *v);
  }
  std::vector<std::string> out;
  for (const auto& e : std::get<std::vector<GgufValue>>(v->value)) out.push_back(std::get<std::string>(e.value));
  return out;
}

std::optional<std::vector<double>> GgufFile::get_floats(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kArray ||
      (v->element_type != GgufValueType::kF32 && v->element_type != GgufValueType::kF64)) {
    fail_type(key, "ARRAY of FLOAT32", *v);
  }
  std::vector<double> out;
  for (const auto& e : std::get<std::vector<GgufValue>>(v->value)) out.push_back(std::get<double>(e.value));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_ints(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  std::vector<int64_t> out;
  if (v->type == GgufValueType::kArray) {
    for (const auto& e : std::get<std::vector<GgufValue>>(v->value)) {
      const auto i = as_int(e);
      if (!i) break;
      out.push_back(*i);
    }
    const auto& items = std::get<std::vector<GgufValue>>(v->value);
    if (out.size() == items.size()) return out;
  }
  fail_type(key, "ARRAY of integers", *v);
}

uint64_t GgufFile::require_uint(const std::string& key) const {
  if (auto v = get_uint(key)) return *v;
  throw Error(ErrorKind::kFormat, path().string() + ": missing metadata key \"" + key + "\"");
}

std::string GgufFile::require_string(const std::string& key) const {
  if (auto v = get_string(key)) return *v;
  throw Error(ErrorKind::kFormat, path().string() + ": missing metadata key \"" + key + "\"");
}

}  // namespace gptq::io
