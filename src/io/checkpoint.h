// A Hugging Face checkpoint directory: config.json plus one model.safetensors or shards
// listed in model.safetensors.index.json ({"weight_map": {tensor: shard file}}) -- or a
// GGUF file, whose tensors are dequantized to F16 in memory under their Hugging Face names
// (io/gguf_hf.h), so that every reader sees the same TensorViews.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace gptq::io {

class Checkpoint {
 public:
  // Throws gptq::Error: no weights found, bad index, a tensor in two shards, or a
  // tensor the index names missing from its shard.
  explicit Checkpoint(const std::filesystem::path& dir);  // a directory or a .gguf file

  const std::filesystem::path& dir() const { return dir_; }
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws naming the tensor
  std::vector<std::string> names() const;                 // sorted
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  uint64_t total_bytes() const;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const TensorView*> index_;
  // GGUF only: the dequantized tensors and their views.
  std::vector<std::vector<std::byte>> owned_data_;
  std::map<std::string, TensorView> owned_views_;
};

// t itself after checking its shape (kFormat naming the file and tensor otherwise).
const TensorView& expect_shape(const TensorView& t, const std::vector<int64_t>& shape, const std::string& file);

// The tensor converted to fp32 (from F32, F16 or BF16), checked against `shape`.
std::vector<float> to_f32(const TensorView& t, const std::vector<int64_t>& shape,
                          const std::string& file);
void to_f32(const TensorView& t, float* out);  // numel() floats, dtype F32/F16/BF16

}  // namespace gptq::io
