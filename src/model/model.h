// A causal language model of the Llama family on a backend: embedding, decoder layers,
// final norm, head. Owns its weights; a KvCache holds one sequence's keys and values.
#pragma once

#include <filesystem>
#include <functional>
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
  KvCache(KvCache&&) noexcept;
  KvCache& operator=(KvCache&&) noexcept;
  ~KvCache();
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // positions already filled
  void clear() { length_ = 0; }
  // Keeps positions 0..n-1 and forgets the rest (0 <= n <= length()): the next forward
  // writes from position n, so one prefix can be extended several ways (multiple-choice
  // continuations share their context this way).
  void truncate(int64_t n);
  backend::KvView layer(int64_t i) const { return layers_[std::size_t(i)].view(); }
  void advance(int64_t n) { length_ += n; }

 private:
  friend class Model;
  std::vector<backend::KvLayer> layers_;
  int64_t capacity_;
  int64_t length_ = 0;
  // The one-token decode step recorded on this cache's buffers (CUDA graph), made by
  // Model::forward on first use.
  std::unique_ptr<backend::Graph> decode_step_;
  bool decode_step_tried_ = false;
};

enum class Logits { kAll, kLast };

class Model {
 public:
  // Reads config.json and the weights under `dir`; linears come from `loader` (dense or
  // GPTQ), everything else is converted to fp32.
  static Model load(const std::filesystem::path& dir, backend::Backend& b, LinearLoader& loader);
  // Dense, GPTQ when config.json has a quantization_config (or quantize_config.json exists), or
  // bitsandbytes when that quantization_config says so (model/bnb_checkpoint.h).
  static Model load(const std::filesystem::path& dir, backend::Backend& b);

  Model(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const { return config_; }
  backend::Backend& backend() const { return *backend_; }
  KvCache new_cache(int64_t capacity) const;

  // Runs ids at positions cache.length().. and advances the cache. Long inputs run in
  // chunks of max_chunk() tokens; after each chunk on_logits(first, logits) sees that
  // chunk's logits on the backend ([rows, vocab]: every row for kAll, from token
  // `first`; only the last token's row for kLast, on the last chunk), valid during the call.
  void forward(std::span<const int32_t> ids, KvCache& cache, Logits which,
               const std::function<void(int64_t first, backend::Tensor logits)>& on_logits);
  // The same, logits copied to the host: [T, vocab] (kAll) or [1, vocab] (kLast) row-major.
  void forward(std::span<const int32_t> ids, KvCache& cache, Logits which, std::vector<float>& logits);
  // The last token's logits stay on the backend ([1, vocab], valid until the next forward).
  backend::Tensor forward_last(std::span<const int32_t> ids, KvCache& cache);

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
  // The layers and head on tokens already in io_ / hidden_ (T rows, positions from
  // `start`): what one chunk runs, and what the decode step records.
  void run_chunk(int64_t T, KvCache& cache, Logits which);

  backend::Buffer final_norm_;  // [1, hidden]
  std::vector<DecoderLayer> layers_;
  int64_t max_chunk_ = 512;
  std::unique_ptr<LayerRunner> runner_;
  backend::Buffer io_;  // I32 [2, max_chunk]: row 0 token ids, row 1 their positions
  backend::Buffer hidden_, normed_, logits_;
};

}  // namespace gptq::model
