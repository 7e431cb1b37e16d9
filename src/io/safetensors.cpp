#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/json_file.h"

namespace gptq::io {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorKind::kFormat, path.string() + ": " + what);
}

// Product of dims times element size, refusing overflow (a hostile shape must not wrap).
uint64_t checked_nbytes(const std::vector<int64_t>& shape, std::size_t elem,
                        const std::filesystem::path& path, const std::string& name) {
  uint64_t n = elem;
  for (int64_t d : shape) {
    if (d < 0) fail(path, "tensor \"" + name + "\" has a negative dimension");
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / uint64_t(d)) {
      fail(path, "tensor \"" + name + "\" shape overflows");
    }
    n *= uint64_t(d);
  }
  return n;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  const auto bytes = file_.bytes();
  if (bytes.size() < 8) {
    fail(path, "truncated: " + std::to_string(bytes.size()) + " bytes, a safetensors file needs at least 8");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | uint64_t(bytes[i]);
  if (header_len > kMaxSafetensorsHeader) {
    fail(path, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeader));
  }
  if (header_len > bytes.size() - 8) {
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(bytes.size()) + " bytes)");
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  const Json header = parse_json(header_text, path.string() + " (safetensors header)");
  if (!header.is_object()) fail(path, "safetensors header is not a JSON object");

  const auto data = bytes.subspan(8 + header_len);
  struct Range { uint64_t begin, end; const std::string* name; };
  std::vector<Range> ranges;

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(path, "__metadata__ value of \"" + k + "\" is not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor \"" + name + "\"";
    if (!entry.is_object()) fail(path, where + " entry is not an object");
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) fail(path, where + " has no string \"dtype\"");
    if (sh == entry.end() || !sh->is_array()) fail(path, where + " has no array \"shape\"");
    if (off == entry.end() || !off->is_array() || off->size() != 2) {
      fail(path, where + " needs \"data_offsets\": [begin, end]");
    }
    TensorView t;
    t.name = name;
    const auto dtype = dtype_from_name(dt->get<std::string>());
    if (!dtype) fail(path, where + " has unknown dtype \"" + dt->get<std::string>() + "\"");
    t.dtype = *dtype;
    for (const auto& d : *sh) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        fail(path, where + " has a shape entry that is not a non-negative integer");
      }
      t.shape.push_back(d.get<int64_t>());
    }
    for (const auto& o : *off) {
      if (!o.is_number_unsigned()) fail(path, where + " has a data offset that is not a non-negative integer");
    }
    const uint64_t begin = (*off)[0].get<uint64_t>();
    const uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end) fail(path, where + " has data_offsets begin > end");
    if (end > data.size()) {
      fail(path, where + " data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     ") lie outside the data section of " + std::to_string(data.size()) + " bytes");
    }
    const uint64_t expected = checked_nbytes(t.shape, dtype_size(t.dtype), path, name);
    if (expected != end - begin) {
      fail(path, where + " is " + std::string(dtype_name(t.dtype)) + " " + t.shape_string() +
                     " = " + std::to_string(expected) + " bytes, but its data_offsets span " +
                     std::to_string(end - begin) + " bytes");
    }
    t.data = data.subspan(begin, end - begin);
    auto [it, inserted] = tensors_.emplace(name, std::move(t));
    ranges.push_back({begin, end, &it->first});
  }

  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      fail(path, "tensors \"" + *ranges[i - 1].name + "\" and \"" + *ranges[i].name +
                     "\" have overlapping data ranges");
    }
  }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace gptq::io
