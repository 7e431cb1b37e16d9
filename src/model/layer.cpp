#include "model/layer.h"

#include "core/error.h"
#include "model/rope.h"

namespace gptq::model {

using backend::Tensor;

const char* slot_name(Slot s) {
  switch (s) {
    case Slot::kQ: return "self_attn.q_proj";
    case Slot::kK: return "self_attn.k_proj";
    case Slot::kV: return "self_attn.v_proj";
    case Slot::kO: return "self_attn.o_proj";
    case Slot::kGate: return "mlp.gate_proj";
    case Slot::kUp: return "mlp.up_proj";
    case Slot::kDown: return "mlp.down_proj";
  }
  return "?";
}

std::string module_name(int64_t layer, Slot s) {
  return "model.layers." + std::to_string(layer) + "." + slot_name(s);
}

std::pair<int64_t, int64_t> slot_shape(const ModelConfig& c, Slot s) {
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  switch (s) {
    case Slot::kQ: return {q, c.hidden};
    case Slot::kK: case Slot::kV: return {kv, c.hidden};
    case Slot::kO: return {c.hidden, q};
    case Slot::kGate: case Slot::kUp: return {c.intermediate, c.hidden};
    case Slot::kDown: return {c.hidden, c.intermediate};
  }
  return {0, 0};
}

std::vector<float> load_vector(const io::Checkpoint& ckpt, const std::string& name, int64_t size) {
  return io::to_f32(ckpt.get(name), {size}, ckpt.dir().string());
}

std::unique_ptr<backend::Linear> DenseLoader::load(const io::Checkpoint& ckpt, const std::string& prefix,
                                                   int64_t out, int64_t in, bool has_bias) {
  if (ckpt.find(prefix + ".qweight") != nullptr) {
    throw Error(ErrorKind::kFormat, ckpt.dir().string() + ": \"" + prefix +
                                        ".qweight\" found but config.json has no quantization_config");
  }
  const std::string file = ckpt.dir().string();
  const io::TensorView& w = io::expect_shape(ckpt.get(prefix + ".weight"), {out, in}, file);
  const io::TensorView* b = has_bias ? &io::expect_shape(ckpt.get(prefix + ".bias"), {out}, file) : nullptr;
  return backend_.dense_linear(w, b);
}

DecoderLayer load_layer(const io::Checkpoint& ckpt, const ModelConfig& c, int64_t index, LinearLoader& loader,
                        backend::Backend& b) {
  DecoderLayer layer;
  layer.index = index;
  const std::string p = "model.layers." + std::to_string(index) + ".";
  layer.input_norm = b.vector(load_vector(ckpt, p + "input_layernorm.weight", c.hidden));
  layer.post_norm = b.vector(load_vector(ckpt, p + "post_attention_layernorm.weight", c.hidden));
  if (c.qk_norm) {
    layer.q_norm = b.vector(load_vector(ckpt, p + "self_attn.q_norm.weight", c.head_dim));
    layer.k_norm = b.vector(load_vector(ckpt, p + "self_attn.k_norm.weight", c.head_dim));
  }
  for (Slot s : kAllSlots) {
    const auto [out, in] = slot_shape(c, s);
    const bool bias = (s == Slot::kQ || s == Slot::kK || s == Slot::kV) ? c.attention_bias
                      : s == Slot::kO                                  ? c.attention_out_bias
                                                                       : c.mlp_bias;
    layer.linears[std::size_t(s)] = loader.load(ckpt, module_name(index, s), out, in, bias);
  }
  return layer;
}

// Activations for up to max_tokens tokens.
struct LayerScratch {
  backend::Buffer norm;  // [T, hidden]
  backend::Buffer q;     // [T, heads * head_dim]
  backend::Buffer k;     // [T, kv_heads * head_dim]
  backend::Buffer v;     // [T, kv_heads * head_dim]
  backend::Buffer attn;  // [T, heads * head_dim]
  backend::Buffer gate;  // [T, intermediate]
  backend::Buffer up;    // [T, intermediate]
};

LayerRunner::LayerRunner(backend::Backend& b, const ModelConfig& c, int64_t max_tokens)
    : backend_(b), config_(c), rope_(make_rope_table(c, b)), s_(std::make_unique<LayerScratch>()),
      max_tokens_(max_tokens) {
  const int64_t T = max_tokens, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  s_->norm = b.alloc(T, c.hidden);
  s_->q = b.alloc(T, qd);
  s_->k = b.alloc(T, kvd);
  s_->v = b.alloc(T, kvd);
  s_->attn = b.alloc(T, qd);
  s_->gate = b.alloc(T, c.intermediate);
  s_->up = b.alloc(T, c.intermediate);
}

LayerRunner::~LayerRunner() = default;

namespace {
// Shows slot s's input to the observer; true when the caller wants nothing past it.
bool observe_input(LinearObserver* observer, const DecoderLayer& L, Slot s, Tensor x, std::optional<Slot> stop_after) {
  if (observer != nullptr) observer->observe(L.index, s, x);
  return stop_after == s;
}
}  // namespace

void LayerRunner::forward(const DecoderLayer& L, Tensor hidden, Tensor positions,
                          std::span<const Sequence> sequences, LinearObserver* observer,
                          std::optional<Slot> stop_after, Block start) {
  const int64_t T = hidden.rows;
  if (T > max_tokens_) {
    throw Error(ErrorKind::kInvalidArgument, "layer forward: " + std::to_string(T) +
                                                 " tokens exceed the scratch size " + std::to_string(max_tokens_));
  }
  GPTQ_CHECK(positions.cols == T, "layer forward: one position per row");
  GPTQ_CHECK(start == Block::kAttention || !stop_after || *stop_after >= Slot::kGate,
             "layer forward: a pass from the MLP block cannot stop in the attention block");
  const auto& c = config_;
  auto& b = backend_;
  const float eps = float(c.rms_eps);
  if (start == Block::kMlp) return mlp_block(L, hidden, observer, stop_after);
  const Tensor norm = s_->norm.rows(T), q = s_->q.rows(T), k = s_->k.rows(T), v = s_->v.rows(T),
               attn = s_->attn.rows(T);
  auto observe = [&](Slot s, Tensor x) { return observe_input(observer, L, s, x, stop_after); };

  // Attention block: x += o_proj(attention(rope(q), rope(k), v)) on rms_norm(x).
  b.rms_norm(hidden, L.input_norm, eps, norm);
  if (observe(Slot::kQ, norm) || observe(Slot::kK, norm) || observe(Slot::kV, norm)) return;
  const backend::Linear* qkv[] = {&L.linear(Slot::kQ), &L.linear(Slot::kK), &L.linear(Slot::kV)};
  const Tensor qkv_out[] = {q, k, v};
  b.linear_group(qkv, norm, qkv_out);
  if (c.qk_norm) {
    b.head_rms_norm(q, c.head_dim, L.q_norm, eps);
    b.head_rms_norm(k, c.head_dim, L.k_norm, eps);
  }
  const backend::AttentionShape shape{.heads = c.heads, .kv_heads = c.kv_heads, .head_dim = c.head_dim,
                                      .sliding_window = c.sliding_window};
  for (const Sequence& sq : sequences) {
    const Tensor pos = positions.col_slice(sq.first_row, sq.rows);
    const Tensor qs = q.row_slice(sq.first_row, sq.rows);
    b.rope_write_kv(qs, k.row_slice(sq.first_row, sq.rows), v.row_slice(sq.first_row, sq.rows), rope_, sq.cache, pos);
    b.attention(qs, sq.cache, pos, shape, attn.row_slice(sq.first_row, sq.rows));
  }
  if (observe(Slot::kO, attn)) return;
  b.linear(L.linear(Slot::kO), attn, hidden, backend::Accumulate::kYes);
  mlp_block(L, hidden, observer, stop_after);
}

void LayerRunner::mlp_block(const DecoderLayer& L, Tensor hidden, LinearObserver* observer,
                            std::optional<Slot> stop_after) {
  const int64_t T = hidden.rows;
  auto& b = backend_;
  const Tensor norm = s_->norm.rows(T), gate = s_->gate.rows(T), up = s_->up.rows(T);
  auto observe = [&](Slot s, Tensor x) { return observe_input(observer, L, s, x, stop_after); };
  // MLP block: x += down(silu(gate(h)) * up(h)), h = rms_norm(x).
  b.rms_norm(hidden, L.post_norm, float(config_.rms_eps), norm);
  if (observe(Slot::kGate, norm) || observe(Slot::kUp, norm)) return;
  const backend::Linear* gate_up[] = {&L.linear(Slot::kGate), &L.linear(Slot::kUp)};
  const Tensor gate_up_out[] = {gate, up};
  b.linear_group(gate_up, norm, gate_up_out);
  b.swiglu(gate, up);
  if (observe(Slot::kDown, gate)) return;
  b.linear(L.linear(Slot::kDown), gate, hidden, backend::Accumulate::kYes);
}

}  // namespace gptq::model
