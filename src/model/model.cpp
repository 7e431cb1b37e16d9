#include "model/model.h"

#include <algorithm>

#include "core/error.h"
#include "model/gptq_loader.h"
#include "quant/quant_config.h"

namespace gptq::model {

KvCache::KvCache(backend::Backend& b, const ModelConfig& c, int64_t capacity) : capacity_(capacity) {
  const int64_t kvd = c.kv_heads * c.head_dim;
  layers_.resize(std::size_t(c.layers));
  for (auto& l : layers_) {
    l.k = b.alloc(capacity, kvd);
    l.v = b.alloc(capacity, kvd);
  }
}

Model::Model(ModelConfig c, backend::Backend& b) : config_(std::move(c)), backend_(&b) {}
Model::Model(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::filesystem::path& dir, backend::Backend& b) {
  if (auto qc = quant::read_quantize_config(dir)) {
    GptqLoader gptq(b, std::move(*qc));
    return load(dir, b, gptq);
  }
  DenseLoader dense(b);
  return load(dir, b, dense);
}

Model Model::load(const std::filesystem::path& dir, backend::Backend& b, LinearLoader& loader) {
  Model m(load_config(dir), b);
  const io::Checkpoint ckpt(dir);
  const auto& c = m.config_;
  const std::string file = dir.string();
  m.embedding_ = b.dense_linear(io::to_f32(ckpt.get("model.embed_tokens.weight"), {c.vocab, c.hidden}, file),
                                c.vocab, c.hidden, {});
  if (!c.tie_embeddings) {
    m.lm_head_ = loader.load(ckpt, "lm_head", c.vocab, c.hidden, false);
  } else if (ckpt.find("lm_head.qweight") != nullptr) {
    // A tied model whose head was quantized separately (GPTQ --lm-head).
    m.lm_head_ = loader.load(ckpt, "lm_head", c.vocab, c.hidden, false);
  }
  m.final_norm_ = load_vector(ckpt, "model.norm.weight", c.hidden);
  for (int64_t i = 0; i < c.layers; ++i) m.layers_.push_back(load_layer(ckpt, c, i, loader));
  m.max_chunk_ = std::min<int64_t>(512, c.max_positions);
  m.runner_ = std::make_unique<LayerRunner>(b, c, m.max_chunk_);
  m.hidden_ = b.alloc(m.max_chunk_, c.hidden);
  m.normed_ = b.alloc(m.max_chunk_, c.hidden);
  return m;
}

KvCache Model::new_cache(int64_t capacity) const {
  if (capacity <= 0) throw Error(ErrorKind::kInvalidArgument, "kv cache capacity must be positive");
  return KvCache(*backend_, config_, capacity);
}

uint64_t Model::weight_bytes() const {
  uint64_t n = embedding_->weight_bytes() + (lm_head_ ? lm_head_->weight_bytes() : 0);
  for (const auto& l : layers_) {
    for (const auto& lin : l.linears) n += lin->weight_bytes();
  }
  return n;
}

void Model::forward(std::span<const int32_t> ids, KvCache& cache, Logits which, std::vector<float>& logits) {
  const auto& c = config_;
  const int64_t total = int64_t(ids.size());
  if (total == 0) throw Error(ErrorKind::kInvalidArgument, "forward: no tokens");
  if (cache.length() + total > cache.capacity()) {
    throw Error(ErrorKind::kInvalidArgument,
                "forward: " + std::to_string(cache.length() + total) + " positions exceed the cache capacity " +
                    std::to_string(cache.capacity()));
  }
  const int64_t out_rows = which == Logits::kAll ? total : 1;
  logits.resize(std::size_t(out_rows * c.vocab));
  auto& b = *backend_;
  // Long inputs go through in chunks of max_chunk_ tokens (bounded activation memory).
  for (int64_t first = 0; first < total; first += max_chunk_) {
    const int64_t T = std::min(max_chunk_, total - first);
    const backend::View h = hidden_.rows(T);
    b.embed(*embedding_, ids.subspan(std::size_t(first), std::size_t(T)), h);
    for (auto& layer : layers_) runner_->forward(layer, h, cache.length(), cache.layer(layer.index));
    cache.advance(T);
    const bool last_chunk = first + T == total;
    if (which == Logits::kLast && !last_chunk) continue;
    const backend::View rows = which == Logits::kAll ? h : h.row_slice(T - 1, 1);
    const backend::View normed = normed_.rows(rows.rows);
    b.rms_norm(rows, final_norm_, float(c.rms_eps), normed);
    if (logits_.capacity_rows() < rows.rows) logits_ = b.alloc(max_chunk_, c.vocab);
    const backend::View out = logits_.rows(rows.rows);
    b.linear(lm_head(), normed, out);
    const int64_t offset = which == Logits::kAll ? first : 0;
    b.download(out, std::span<float>(logits).subspan(std::size_t(offset * c.vocab), std::size_t(rows.rows * c.vocab)));
  }
}

}  // namespace gptq::model
