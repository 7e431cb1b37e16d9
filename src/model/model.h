// A causal language model of the Llama family on a backend: embedding, decoder layers,
// final norm, head. Owns its weights; a KvCache holds one sequence's keys and values.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/layer.h"

namespace gptq::model {

class KvCache {
 public:
  KvCache(backend::Backend& b, const ModelConfig& c, int64_t capacity);
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // positions already filled
  void clear() { length_ = 0; }
  backend::KvLayer& layer(int64_t i) { return layers_[std::size_t(i)]; }
  void advance(int64_t n) { length_ += n; }

 private:
  std::vector<backend::KvLayer> layers_;
  int64_t capacity_;
  int64_t length_ = 0;
};

enum class Logits { kAll, kLast };

class Model {
 public:
  // Reads config.json and the weights under `dir`; linears come from `loader` (dense or
  // GPTQ), everything else is converted to fp32.
  static Model load(const std::filesystem::path& dir, backend::Backend& b, LinearLoader& loader);
  // Dense, or GPTQ when config.json has a quantization_config (or quantize_config.json exists).
  static Model load(const std::filesystem::path& dir, backend::Backend& b);

  Model(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const { return config_; }
  backend::Backend& backend() const { return *backend_; }
  KvCache new_cache(int64_t capacity) const;

  // Runs ids at positions cache.length().. and advances the cache. logits receives
  // [T, vocab] (kAll) or [1, vocab] (kLast) row-major.
  void forward(std::span<const int32_t> ids, KvCache& cache, Logits which, std::vector<float>& logits);

  int64_t max_chunk() const { return max_chunk_; }  // tokens per internal forward step
  std::vector<DecoderLayer>& layers() { return layers_; }
  backend::Linear& lm_head() const { return lm_head_ ? *lm_head_ : *embedding_; }
  void set_lm_head(std::unique_ptr<backend::Linear> head) { lm_head_ = std::move(head); }
  const backend::Linear& embedding() const { return *embedding_; }
  uint64_t weight_bytes() const;

 private:
  Model(ModelConfig c, backend::Backend& b);
  ModelConfig config_;
  backend::Backend* backend_;
  std::unique_ptr<backend::Linear> embedding_;  // [vocab, hidden] dense
  std::unique_ptr<backend::Linear> lm_head_;    // null when tied to the embedding
  std::vector<float> final_norm_;
  std::vector<DecoderLayer> layers_;
  int64_t max_chunk_ = 512;
  std::unique_ptr<LayerRunner> runner_;
  backend::Buffer hidden_, normed_, logits_;
};

}  // namespace gptq::model
