// One decoder layer of the Llama family (Llama, Mistral, Qwen2, Qwen3): its weights,
// how they are read from a checkpoint, and its forward pass on the backend.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/checkpoint.h"
#include "model/config.h"

namespace gptq::model {

// The seven linear layers of a decoder layer, in true-sequential order.
enum class Slot { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr std::array<Slot, 7> kAllSlots = {Slot::kQ, Slot::kK, Slot::kV, Slot::kO,
                                                   Slot::kGate, Slot::kUp, Slot::kDown};
// "self_attn.q_proj", "mlp.down_proj", ... (the Hugging Face module names)
const char* slot_name(Slot s);
// "model.layers.3.self_attn.q_proj"
std::string module_name(int64_t layer, Slot s);
// [out, in] of a slot's weight under config c.
std::pair<int64_t, int64_t> slot_shape(const ModelConfig& c, Slot s);

// A layer's weights, resident on the backend.
struct DecoderLayer {
  int64_t index = 0;
  backend::Buffer input_norm;  // [1, hidden]
  backend::Buffer post_norm;   // [1, hidden]
  backend::Buffer q_norm;      // [1, head_dim] (Qwen3) or empty
  backend::Buffer k_norm;      // [1, head_dim] (Qwen3) or empty
  std::array<std::unique_ptr<backend::Linear>, 7> linears;

  backend::Linear& linear(Slot s) const { return *linears[std::size_t(s)]; }
};

// Turns a checkpoint's tensors under `prefix` ("model.layers.0.mlp.up_proj") into a
// Linear: dense from prefix.weight (F32/F16/BF16), or a GPTQ layer from prefix.qweight
// etc. when the checkpoint is quantized. Set by the loader; shape-checked.
class LinearLoader {
 public:
  virtual ~LinearLoader() = default;
  virtual std::unique_ptr<backend::Linear> load(const io::Checkpoint& ckpt, const std::string& prefix,
                                                int64_t out, int64_t in, bool has_bias) = 0;
};

// Dense linears only (unquantized checkpoints).
class DenseLoader final : public LinearLoader {
 public:
  explicit DenseLoader(backend::Backend& b) : backend_(b) {}
  std::unique_ptr<backend::Linear> load(const io::Checkpoint& ckpt, const std::string& prefix,
                                        int64_t out, int64_t in, bool has_bias) override;

 private:
  backend::Backend& backend_;
};

// Reads a fp32 vector tensor of the given shape (norm weights, biases).
std::vector<float> load_vector(const io::Checkpoint& ckpt, const std::string& name, int64_t size);

DecoderLayer load_layer(const io::Checkpoint& ckpt, const ModelConfig& c, int64_t index,
                        LinearLoader& loader, backend::Backend& b);

// Sees the input of every linear during a forward pass (calibration for GPTQ).
// `x`: [T, in_features] of that slot, valid only during the call.
class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual void observe(int64_t layer, Slot slot, backend::Tensor x) = 0;
};

// Rows [first_row, first_row + rows) of a forward's activations are one sequence whose
// keys and values live in `cache` (written at the rows' positions).
struct Sequence {
  int64_t first_row = 0;
  int64_t rows = 0;
  backend::KvView cache;
};

// Where a forward begins: at the attention block, or at the MLP block with `hidden`
// already holding the residual after attention (what a pass that stopped in the MLP
// block leaves there), so that passes needing only the MLP do not recompute attention.
enum class Block { kAttention, kMlp };

struct LayerScratch;  // activations sized for up to T tokens (defined in layer.cpp)

class LayerRunner {
 public:
  LayerRunner(backend::Backend& b, const ModelConfig& c, int64_t max_tokens);
  ~LayerRunner();
  // hidden: [R, hidden] residual stream, updated in place; positions: I32 [1, R], the
  // position of each row in its sequence. The rows hold one or more sequences (the
  // calibration forward batches many samples so that every linear is one product of
  // R rows); norms, linears and RoPE run on all rows at once, attention per sequence.
  // With `stop_after`, the pass ends as soon as that slot's input has been observed
  // (calibration passes need no more), leaving `hidden` partly updated. Starting at
  // Block::kMlp, the sequences are not read and stop_after must be an MLP slot or none.
  void forward(const DecoderLayer& layer, backend::Tensor hidden, backend::Tensor positions,
               std::span<const Sequence> sequences, LinearObserver* observer = nullptr,
               std::optional<Slot> stop_after = std::nullopt, Block start = Block::kAttention);

 private:
  void mlp_block(const DecoderLayer& layer, backend::Tensor hidden, LinearObserver* observer,
                 std::optional<Slot> stop_after);

  backend::Backend& backend_;
  ModelConfig config_;
  backend::RopeTable rope_;
  std::unique_ptr<LayerScratch> s_;
  int64_t max_tokens_;
};

}  // namespace gptq::model
