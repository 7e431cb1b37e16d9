// The narrow interface between the model and the hardware. The model code (src/model)
// only allocates through a backend and calls these ops; it never dereferences a tensor.
// Each backend owns its memory and its weights: weights are uploaded once at load and
// referenced by handle (Linear, Buffer), never passed from the host per call.
//
// Activations have the backend's activation dtype: the CPU backend computes in fp32 and
// is the reference; the CUDA backend computes in fp16, bf16 or fp32 with fp32
// accumulation. Token ids, targets and positions are I32 tensors in backend memory, so
// a decode step has no host-side argument that changes from step to step (what lets
// the CUDA backend replay it as a graph).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "core/dtype.h"
#include "core/error.h"
#include "format/bnb_packed.h"
#include "format/packing.h"
#include "io/safetensors.h"

namespace gptq::backend {

enum class Device : uint8_t { kCpu, kCuda };

// A non-owning 2-D view of backend memory: rows x cols elements of `dtype`, rows
// `stride` elements apart.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCpu;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  Tensor row_slice(int64_t first, int64_t count) const {
    Tensor t = *this;
    t.data = static_cast<std::byte*>(data) + first * stride * int64_t(dtype_size(dtype));
    t.rows = count;
    return t;
  }
  template <class T>
  T* as() const {
    GPTQ_CHECK(dtype == dtype_of<T>(), "tensor of dtype " + std::string(dtype_name(dtype)) + " read as " +
                                           std::string(dtype_name(dtype_of<T>())));
    return static_cast<T*>(data);
  }
  // Elements [first, first + count) of a one-row tensor (positions, ids).
  Tensor col_slice(int64_t first, int64_t count) const {
    Tensor t = *this;
    t.data = static_cast<std::byte*>(data) + first * int64_t(dtype_size(dtype));
    t.cols = count;
    return t;
  }
  bool contiguous() const { return stride == cols || rows <= 1; }
};

// Owns backend memory for a rows x cols matrix. Made only by a backend (its deleter is
// that backend's free); copies share the memory.
class Buffer {
 public:
  Buffer() = default;
  Tensor view() const { return full_; }
  Tensor rows(int64_t count) const { return full_.row_slice(0, count); }
  int64_t capacity_rows() const { return full_.rows; }
  bool empty() const { return mem_ == nullptr; }

 private:
  friend class Backend;
  Buffer(std::shared_ptr<void> mem, Tensor full) : mem_(std::move(mem)), full_(full) {}
  std::shared_ptr<void> mem_;
  Tensor full_;
};

// A linear layer y = x Wᵀ + b, W: [out, in], kept in whatever form the backend chose
// (dense in the checkpoint's dtype, or packed GPTQ integers, possibly repacked).
class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual uint64_t weight_bytes() const = 0;  // resident size of the weights
  virtual std::string describe() const = 0;   // "bf16", "gptq 4-bit g128 act-order"...
};

// Rotary embedding frequencies, resident: inv_freq [1, head_dim / 2] fp32.
struct RopeTable {
  int64_t head_dim = 0;
  Buffer inv_freq;
};

// Keys and values of one layer for one sequence, positions [0, capacity):
// k, v [capacity, kv_heads * head_dim] in the activation dtype.
struct KvView {
  Tensor k;
  Tensor v;
};

// Owns a KvView's memory.
struct KvLayer {
  Buffer k;
  Buffer v;
  KvView view() const { return {k.view(), v.view()}; }
};

struct AttentionShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t sliding_window = 0;  // 0: unlimited
};

// Which kernel a GPU backend runs attention with (BackendOptions::attention); the CPU has one.
enum class AttentionKernel : uint8_t {
  kAuto,        // tensor cores for prefill (many query rows), CUDA cores for decode
  kSimt,        // CUDA cores for every call (the decode kernel)
  kTensorCore,  // tensor cores wherever they apply (f16/bf16, head_dim 64 or 128), any row count
};

// Which kernels a GPU backend runs GPTQ layers with (BackendOptions::gptq_kernel); each
// layer is laid out for one family when it is loaded.
enum class GptqKernel : uint8_t {
  kTensorCore,  // fragment-order layout, mma.sync up to gptq_mma_max_rows (gptq_mma.cu)
  kGemv,        // the CUDA-core GEMV for M <= 8 (gptq_gemm.cu); kept to measure against
};

// A recorded sequence of ops replayed as one unit (a CUDA graph). Replay reads the
// current contents of the tensors the ops were recorded on.
class Graph {
 public:
  virtual ~Graph() = default;
  virtual void replay() = 0;
};

struct MemoryStats {
  uint64_t peak_allocated = 0;  // bytes this backend allocated at most at once
  uint64_t device_used = 0;     // whole device, any process (0 on the CPU)
  uint64_t device_total = 0;
};

// Whether a product overwrites its output or adds to it.
enum class Accumulate { kNo, kYes };

// Backend::sample's settings, fixed for a generation (validated by eval::Sampler).
struct SampleParams {
  float temperature = 1.0f;  // 0: greedy (the op is argmax)
  int64_t top_k = 0;         // 0: no top-k cut
  float top_p = 1.0f;        // in (0, 1]; 1: no nucleus cut
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H200)"
  virtual Device device() const = 0;
  virtual DType activation_dtype() const = 0;

  virtual Buffer alloc(int64_t rows, int64_t cols, DType dtype) = 0;
  Buffer alloc(int64_t rows, int64_t cols) { return alloc(rows, cols, activation_dtype()); }
  // Host <-> backend, converting between fp32 on the host and dst/src's float dtype.
  // Ordered with the ops; download returns once the values are on the host.
  virtual void upload(std::span<const float> host, Tensor dst) = 0;
  virtual void upload(std::span<const int32_t> host, Tensor dst) = 0;  // I32 tensors
  virtual void download(Tensor src, std::span<float> host) = 0;
  virtual void download(Tensor src, std::span<int32_t> host) = 0;
  virtual void synchronize() = 0;
  // Makes this backend's device the calling thread's current one (CUDA's current device is
  // per thread and kernels launch on it): a thread other than the one that made the
  // backend calls this before using it (quant/parallel.h's ranks). A no-op on the CPU.
  virtual void bind_thread() {}
  // Host memory for activations kept off the device ([rows, cols] of any float dtype, a
  // Tensor with device kCpu): page-locked where that makes transfers faster and
  // asynchronous (CUDA; not counted in MemoryStats::peak_allocated, which is device
  // memory); on the CPU, ordinary memory (this default, counted like any tensor).
  virtual Buffer alloc_host(int64_t rows, int64_t cols, DType dtype) { return alloc(rows, cols, dtype); }
  // dst = src, element for element: same dtype and shape, any row strides; each side in
  // this backend's memory or in its alloc_host memory. Ordered with the ops.
  virtual void copy(Tensor src, Tensor dst) = 0;
  // copy() on a second queue beside the ops, so that streaming activations between host
  // and device overlaps the computation (quant/pipeline.cpp's passes over stores kept in
  // host memory). The copy starts once every op queued before the call has finished; it
  // returns a ticket, and join(ticket) makes the ops queued after the join wait for that
  // copy. Copies beside run one after another in call order. synchronize() waits for the
  // ops only (so that timing a phase does not stall the stream beside): a copy is known
  // done once its ticket was joined and the ops synchronized. The caller owns the
  // hazards: an op that overwrites a copy's source or touches its destination joins the
  // copy's ticket first. The default copies in order with the ops (every ticket done).
  using CopyTicket = uint64_t;
  virtual CopyTicket copy_beside(Tensor src, Tensor dst) {
    copy(src, dst);
    return 0;
  }
  virtual void join(CopyTicket) {}
  virtual MemoryStats memory() const = 0;
  // A resident fp32 vector [1, n] (norm weights, RoPE frequencies).
  Buffer vector(std::span<const float> host);

  // W: [out, in] from the checkpoint (F32/F16/BF16, kept in that dtype); bias [out] or null.
  virtual std::unique_ptr<Linear> dense_linear(const io::TensorView& weight, const io::TensorView* bias) = 0;
  // The weights of a dense layer this backend made, as the [out, in] tensor its products
  // read (in its memory, in the dtype it keeps them in); nullopt for any other layer.
  virtual std::optional<Tensor> dense_weight(const Linear&) const { return std::nullopt; }
  // A GPTQ layer from its packed tensors; qzeros must hold v2 zeros (the loader converts
  // v1 checkpoints once). Validated here; the backend may repack.
  virtual std::unique_ptr<Linear> gptq_linear(quant::PackedLinear packed) = 0;
  // A layer quantized at load as bitsandbytes does it (NF4/FP4 blockwise absmax with
  // optional double quantization, or LLM.int8; src/format/bnb_packed.h). Validated here.
  virtual std::unique_ptr<Linear> bnb_linear(quant::bnb::BnbPacked packed) = 0;

  // y[M, out] = x[M, in] Wᵀ + b, or with Accumulate::kYes y += x Wᵀ + b (the residual
  // add folded into the product's epilogue).
  virtual void linear(const Linear& w, Tensor x, Tensor y, Accumulate acc) = 0;
  void linear(const Linear& w, Tensor x, Tensor y) { linear(w, x, y, Accumulate::kNo); }
  // ys[i] = x Wᵢᵀ + bᵢ for layers that read the same x (q/k/v, gate/up): one pass over x
  // and one launch where the backend can. This default runs them one by one.
  virtual void linear_group(std::span<const Linear* const> ws, Tensor x, std::span<const Tensor> ys) {
    GPTQ_CHECK(ws.size() == ys.size(), "linear_group: one output per layer");
    for (std::size_t i = 0; i < ws.size(); ++i) linear(*ws[i], x, ys[i]);
  }
  // y = x / sqrt(mean(x²) + eps) * weight, per row (in place allowed); weight [1, cols]
  virtual void rms_norm(Tensor x, const Buffer& weight, float eps, Tensor y) = 0;
  // Per-head RMSNorm in place: each row holds cols / head_dim heads; weight [1, head_dim].
  virtual void head_rms_norm(Tensor x, int64_t head_dim, const Buffer& weight, float eps) = 0;
  // Rotate-half RoPE in place on every head of x [T, heads * head_dim]; row t at
  // position positions[t] (positions: I32 [1, T]).
  virtual void rope(Tensor x, const RopeTable& table, Tensor positions) = 0;
  // Writes k/v row t into cache row positions[t].
  virtual void write_kv(Tensor k, Tensor v, KvView cache, Tensor positions) = 0;
  // rope(q), rope(k), then write_kv(k, v): what attention needs of a new token, in one
  // launch where the backend can. This default composes the three ops.
  virtual void rope_write_kv(Tensor q, Tensor k, Tensor v, const RopeTable& table, KvView cache, Tensor positions) {
    rope(q, table, positions);
    rope(k, table, positions);
    write_kv(k, v, cache, positions);
  }
  // Causal attention: q row t (position p = positions[t]) attends to cache rows
  // [max(0, p - window + 1), p], already written; out: [T, heads * head_dim].
  virtual void attention(Tensor q, KvView cache, Tensor positions, const AttentionShape& shape, Tensor out) = 0;
  // gate = silu(gate) * up
  virtual void swiglu(Tensor gate, Tensor up) = 0;
  // acc += x
  virtual void add(Tensor acc, Tensor x) = 0;
  // out[t] = row ids[t] of a dense linear's weight ([vocab, hidden]); the same object
  // serves as a tied lm_head, so tied weights are stored once. ids: I32 [1, T].
  virtual void embed(const Linear& table, Tensor ids, Tensor out) = 0;
  // nll[t] = logsumexp(logits[t]) - logits[t, targets[t]]: logits [T, vocab],
  // targets I32 [1, T], nll F32 [1, T]. Kept on the backend: no [T, vocab] copy to the host.
  virtual void token_nll(Tensor logits, Tensor targets, Tensor nll) = 0;
  // out[r] = argmax of logits row r (lowest index on ties); out I32 [1, R].
  virtual void argmax(Tensor logits, Tensor out) = 0;
  // out[r] = the id drawn from logits row r by the rule of backend/sampling_rule.h, which
  // every backend implements: logits [R, vocab]; uniforms F32 [1, R], each in [0, 1);
  // out I32 [1, R]. The uniforms are a tensor, not a host argument, so that a decode
  // step including its draw stays replayable as a graph.
  virtual void sample(Tensor logits, Tensor uniforms, const SampleParams& p, Tensor out) = 0;

  // Records what `work` enqueues for replay; null where the backend cannot (the CPU),
  // in which case `work` has not run.
  virtual std::unique_ptr<Graph> capture(const std::function<void()>& work) { return nullptr; }

 protected:
  // How backends hand out memory: `mem` frees it when the last Buffer copy goes.
  static Buffer make_buffer(std::shared_ptr<void> mem, Tensor full) { return Buffer(std::move(mem), full); }
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace gptq::backend
