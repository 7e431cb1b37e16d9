#include "io/checkpoint.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>

#include "core/error.h"
#include "io/gguf_hf.h"
#include "io/json_file.h"

namespace gptq::io {

namespace fs = std::filesystem;

Checkpoint::Checkpoint(const fs::path& dir) : dir_(dir) {
  if (is_gguf_path(dir)) {
    const GgufFile gguf(dir);
    gguf_hf_tensors(gguf, DType::kF16, [&](HfTensor t) {
      const std::vector<std::byte>& data = owned_data_.emplace_back(std::move(t.data));
      TensorView view{.name = t.name, .dtype = t.dtype, .shape = std::move(t.shape), .data = data};
      const auto [it, inserted] = owned_views_.emplace(t.name, std::move(view));
      if (!inserted) {
        throw Error(ErrorKind::kFormat, dir.string() + ": two tensors map to \"" + t.name + "\"");
      }
      index_[t.name] = &it->second;
    });
    return;
  }
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const Json j = read_json_file(index);
    const auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) {
      throw Error(ErrorKind::kFormat, index.string() + ": missing object \"weight_map\"");
    }
    std::map<std::string, std::size_t> shard_of_file;
    for (const auto& [tensor, file] : wm->items()) {
      if (!file.is_string()) {
        throw Error(ErrorKind::kFormat, index.string() + ": weight_map entry for \"" + tensor + "\" is not a string");
      }
      const std::string name = file.get<std::string>();
      // Shard names must stay inside the checkpoint directory.
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
        throw Error(ErrorKind::kFormat, index.string() + ": shard name \"" + name + "\" is not a plain file name");
      }
      auto [it, inserted] = shard_of_file.emplace(name, shards_.size());
      if (inserted) shards_.push_back(std::make_unique<SafetensorsFile>(dir / name));
      const TensorView* t = shards_[it->second]->find(tensor);
      if (t == nullptr) {
        throw Error(ErrorKind::kFormat, index.string() + ": tensor \"" + tensor + "\" is listed in " + name + " but not found there");
      }
      index_[tensor] = t;
    }
  } else if (fs::exists(single)) {
    shards_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& [name, t] : shards_.back()->tensors()) index_[name] = &t;
  } else {
    throw Error(ErrorKind::kIo, dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
}

const TensorView* Checkpoint::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (t == nullptr) throw Error(ErrorKind::kFormat, dir_.string() + ": missing tensor \"" + name + "\"");
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : index_) out.push_back(name);
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : index_) n += t->data.size();
  return n;
}

// Values per block of a parallel conversion: below it one thread does it (a norm weight, a bias).
constexpr int64_t kParallelConvert = int64_t{1} << 16;

void to_f32(const TensorView& t, float* out) {
  const int64_t n = t.numel();
  const std::byte* p = t.data.data();
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(out, p, std::size_t(n) * 4);
      return;
    case DType::kF16:
    case DType::kBF16: {
      // In blocks, in parallel, through the vectorised widening (core/dtype.h): a weight
      // of 16M values is tens of milliseconds on one core with the scalar conversion, once
      // per module when quantizing. A tensor at an odd offset (a hostile file's) is read
      // value by value instead: the vector loads need uint16_t alignment.
      const bool f16 = t.dtype == DType::kF16;
      if (reinterpret_cast<std::uintptr_t>(p) % 2 != 0) {
        for (int64_t i = 0; i < n; ++i) {
          uint16_t h;
          std::memcpy(&h, p + 2 * i, 2);
          out[i] = f16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        return;
      }
      const auto* src = reinterpret_cast<const uint16_t*>(p);
      const int64_t blocks = (n + kParallelConvert - 1) / kParallelConvert;
#pragma omp parallel for schedule(static) if (blocks > 1)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t i = b * kParallelConvert, count = std::min(kParallelConvert, n - i);
        if (f16) {
          widen_f16(src + i, out + i, count);
        } else {
          widen_bf16(src + i, out + i, count);
        }
      }
      return;
    }
    default:
      throw Error(ErrorKind::kUnsupported, "tensor \"" + t.name + "\" has dtype " +
                                               std::string(dtype_name(t.dtype)) + ", expected F32, F16 or BF16");
  }
}

const TensorView& expect_shape(const TensorView& t, const std::vector<int64_t>& shape, const std::string& file) {
  if (t.shape != shape) {
    TensorView expected;
    expected.shape = shape;
    throw Error(ErrorKind::kFormat, file + ": tensor \"" + t.name + "\" has shape " + t.shape_string() +
                                        ", expected " + expected.shape_string());
  }
  return t;
}

std::vector<float> to_f32(const TensorView& t, const std::vector<int64_t>& shape, const std::string& file) {
  expect_shape(t, shape, file);
  std::vector<float> out(std::size_t(t.numel()));
  to_f32(t, out.data());
  return out;
}

}  // namespace gptq::io
