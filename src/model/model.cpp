#include "model/model.h"

#include <algorithm>

#include "core/error.h"
#include "model/bnb_checkpoint.h"
#include "model/gptq_loader.h"
#include "format/quant_config.h"

namespace gptq::model {

KvCache::KvCache(backend::Backend& b, const ModelConfig& c, int64_t capacity) : capacity_(capacity) {
  const int64_t kvd = c.kv_heads * c.head_dim;
  layers_.resize(std::size_t(c.layers));
  for (auto& l : layers_) {
    l.k = b.alloc(capacity, kvd);
    l.v = b.alloc(capacity, kvd);
  }
}

KvCache::KvCache(KvCache&&) noexcept = default;
KvCache& KvCache::operator=(KvCache&&) noexcept = default;
KvCache::~KvCache() = default;

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > length_) {
    throw Error(ErrorKind::kInvalidArgument,
                "kv cache: cannot truncate to " + std::to_string(n) + " positions (it holds " + std::to_string(length_) + ")");
  }
  length_ = n;
}

Model::Model(ModelConfig c, backend::Backend& b) : config_(std::move(c)), backend_(&b) {}
Model::Model(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::filesystem::path& dir, backend::Backend& b) {
  if (auto bc = read_bnb_checkpoint_config(dir)) {
    BnbCheckpointLoader bnb(b, *bc);
    return load(dir, b, bnb);
  }
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
  if (b.device() != backend::Device::kCpu) {
    // Refuse up front, with numbers, rather than fail part way through the upload.
    const backend::MemoryStats mem = b.memory();
    const uint64_t free = mem.device_total - mem.device_used;
    const uint64_t need = ckpt.total_bytes() * (b.activation_dtype() == DType::kF32 ? 2 : 1);
    if (need > free) {
      throw Error(ErrorKind::kDevice, file + ": the weights need about " + std::to_string(need >> 20) + " MiB on " +
                                          b.name() + ", which has " + std::to_string(free >> 20) + " MiB free");
    }
  }
  m.embedding_ = b.dense_linear(io::expect_shape(ckpt.get("model.embed_tokens.weight"), {c.vocab, c.hidden}, file),
                                nullptr);
  if (!c.tie_embeddings) {
    m.lm_head_ = loader.load(ckpt, "lm_head", c.vocab, c.hidden, false);
  } else if (ckpt.find("lm_head.qweight") != nullptr) {
    // A tied model whose head was quantized separately (GPTQ --lm-head).
    m.lm_head_ = loader.load(ckpt, "lm_head", c.vocab, c.hidden, false);
  }
  m.final_norm_ = b.vector(load_vector(ckpt, "model.norm.weight", c.hidden));
  for (int64_t i = 0; i < c.layers; ++i) m.layers_.push_back(load_layer(ckpt, c, i, loader, b));
  m.max_chunk_ = std::min<int64_t>(512, c.max_positions);
  m.runner_ = std::make_unique<LayerRunner>(b, c, m.max_chunk_);
  m.io_ = b.alloc(2, m.max_chunk_, DType::kI32);
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

void Model::run_chunk(int64_t T, KvCache& cache, Logits which) {
  auto& b = *backend_;
  const backend::Tensor ids = io_.view().row_slice(0, 1).col_slice(0, T);
  const backend::Tensor positions = io_.view().row_slice(1, 1).col_slice(0, T);
  const backend::Tensor h = hidden_.rows(T);
  b.embed(*embedding_, ids, h);
  for (auto& layer : layers_) {
    const Sequence seq{.first_row = 0, .rows = T, .cache = cache.layer(layer.index)};
    runner_->forward(layer, h, positions, std::span(&seq, 1));
  }
  const backend::Tensor rows = which == Logits::kAll ? h : h.row_slice(T - 1, 1);
  const backend::Tensor normed = normed_.rows(rows.rows);
  b.rms_norm(rows, final_norm_, float(config_.rms_eps), normed);
  b.linear(lm_head(), normed, logits_.rows(rows.rows));
}

void Model::forward(std::span<const int32_t> ids, KvCache& cache, Logits which,
                    const std::function<void(int64_t, backend::Tensor)>& on_logits) {
  const int64_t total = int64_t(ids.size());
  if (total == 0) throw Error(ErrorKind::kInvalidArgument, "forward: no tokens");
  if (cache.length() + total > cache.capacity()) {
    throw Error(ErrorKind::kInvalidArgument,
                "forward: " + std::to_string(cache.length() + total) + " positions exceed the cache capacity " +
                    std::to_string(cache.capacity()));
  }
  auto& b = *backend_;
  if (logits_.empty()) logits_ = b.alloc(max_chunk_, config_.vocab);
  std::vector<int32_t> io;
  for (int64_t first = 0; first < total; first += max_chunk_) {
    const int64_t T = std::min(max_chunk_, total - first);
    io.assign(ids.begin() + first, ids.begin() + first + T);
    for (int64_t t = 0; t < T; ++t) io.push_back(int32_t(cache.length() + t));
    b.upload(io, io_.view().col_slice(0, T));
    const bool last_chunk = first + T == total;
    const Logits rows = which == Logits::kAll || last_chunk ? which : Logits::kLast;
    if (T == 1 && rows == Logits::kLast) {
      // A decode step: the same ops on the same tensors every time (the positions come
      // from io_), so a backend that can record it replays one graph per token.
      if (!cache.decode_step_tried_) {
        cache.decode_step_tried_ = true;
        cache.decode_step_ = b.capture([&] { run_chunk(1, cache, Logits::kLast); });
      }
      if (cache.decode_step_) {
        cache.decode_step_->replay();
      } else {
        run_chunk(1, cache, Logits::kLast);
      }
    } else {
      run_chunk(T, cache, rows);
    }
    cache.advance(T);
    if (which == Logits::kLast && !last_chunk) continue;
    on_logits(which == Logits::kAll ? first : total - 1, logits_.rows(which == Logits::kAll ? T : 1));
  }
}

void Model::forward(std::span<const int32_t> ids, KvCache& cache, Logits which, std::vector<float>& logits) {
  const int64_t vocab = config_.vocab;
  logits.resize(std::size_t((which == Logits::kAll ? int64_t(ids.size()) : 1) * vocab));
  forward(ids, cache, which, [&](int64_t first, backend::Tensor rows) {
    const int64_t offset = which == Logits::kAll ? first : 0;
    backend_->download(rows, std::span<float>(logits).subspan(std::size_t(offset * vocab), std::size_t(rows.rows * vocab)));
  });
}

backend::Tensor Model::forward_last(std::span<const int32_t> ids, KvCache& cache) {
  backend::Tensor last;
  forward(ids, cache, Logits::kLast, [&](int64_t, backend::Tensor rows) { last = rows; });
  return last;
}

}  // namespace gptq::model
