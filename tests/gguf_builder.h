// Writes GGUF bytes field by field (the layout of the published format description), so
// each hostile file in a test is one small edit of a valid one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gptq::test {

struct Builder {
  std::string b;
  template <class T>
  Builder& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Builder& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Builder& header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    b += "GGUF";
    return put(version).put(tensors).put(kvs);
  }
  Builder& kv_u32(const std::string& k, uint32_t v) { return str(k).put<uint32_t>(4).put(v); }
  Builder& kv_str(const std::string& k, const std::string& v) { return str(k).put<uint32_t>(8).str(v); }
  Builder& kv_bool(const std::string& k, bool v) { return str(k).put<uint32_t>(7).put<uint8_t>(v ? 1 : 0); }
  // Arrays: value type 9, then the element type (8 string, 6 float32, 5 int32) and count.
  Builder& kv_strings(const std::string& k, const std::vector<std::string>& v) {
    str(k).put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(v.size());
    for (const auto& s : v) str(s);
    return *this;
  }
  Builder& kv_f32s(const std::string& k, const std::vector<float>& v) {
    str(k).put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(v.size());
    for (float x : v) put(x);
    return *this;
  }
  Builder& kv_i32s(const std::string& k, const std::vector<int32_t>& v) {
    str(k).put<uint32_t>(9).put<uint32_t>(5).put<uint64_t>(v.size());
    for (int32_t x : v) put(x);
    return *this;
  }
  Builder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(uint32_t(dims.size()));
    for (uint64_t d : dims) put(d);
    return put(type).put(offset);
  }
  Builder& pad(std::size_t align = 32) {
    while (b.size() % align) b += '\0';
    return *this;
  }
};

}  // namespace gptq::test
