// The narrow interface between the model and the hardware. The model code
// (src/model) only allocates buffers and calls these ops; the CPU backend implements
// them with OpenBLAS/OpenMP, and a CUDA backend can implement the same set without
// the model changing. All activations are fp32, row-major.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quant/packing.h"

namespace gptq::backend {

// A 2-D fp32 matrix in backend memory: rows x cols, row stride `stride` floats.
struct View {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  View row_slice(int64_t first, int64_t count) const {
    return {data + first * stride, count, cols, stride};
  }
  View col_slice(int64_t first, int64_t count) const {
    return {data + first, rows, count, stride};
  }
};

// Owns backend memory for a rows x cols matrix.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<float[]> data, int64_t rows, int64_t cols)
      : data_(std::move(data)), rows_(rows), cols_(cols) {}
  View view() const { return {data_.get(), rows_, cols_, cols_}; }
  View rows(int64_t count) const { return view().row_slice(0, count); }
  int64_t capacity_rows() const { return rows_; }

 private:
  std::shared_ptr<float[]> data_;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
};

// A linear layer y = x Wᵀ + b, W: [out, in], kept in whatever form the backend chose
// (fp32 dense here; packed GPTQ integers for quantized checkpoints).
class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual uint64_t weight_bytes() const = 0;  // resident size of the weights
  virtual std::string describe() const = 0;   // "f32", "gptq 4-bit g128 (desc_act)"...
};

// Rotary embedding tables: cos/sin for each position and frequency pair.
struct RopeTable {
  int64_t head_dim = 0;
  std::vector<float> inv_freq;  // [head_dim / 2]
};

// One layer's keys and values for positions [0, capacity): [capacity, kv_heads * head_dim].
struct KvLayer {
  Buffer k;
  Buffer v;
};

struct AttentionShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t sliding_window = 0;  // 0: unlimited
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  virtual Buffer alloc(int64_t rows, int64_t cols) = 0;
  virtual void upload(std::span<const float> host, View dst) = 0;    // dst.rows * dst.cols floats
  virtual void download(View src, std::span<float> host) = 0;

  // W: [out, in] row-major fp32 (moved in), bias: [out] or empty.
  virtual std::unique_ptr<Linear> dense_linear(std::vector<float> weight, int64_t out, int64_t in,
                                               std::vector<float> bias) = 0;

  // A GPTQ layer from its packed tensors; qzeros must hold v2 zeros (the loader converts
  // v1 checkpoints once). Validated here.
  virtual std::unique_ptr<Linear> gptq_linear(quant::PackedLinear packed) = 0;

  // y[M, out] = x[M, in] Wᵀ + b
  virtual void linear(const Linear& w, View x, View y) = 0;
  // y = x / sqrt(mean(x²) + eps) * weight, per row of `cols` (in place allowed)
  virtual void rms_norm(View x, std::span<const float> weight, float eps, View y) = 0;
  // Per-head RMSNorm: each row holds `cols / head_dim` heads, each normalised on its own.
  virtual void head_rms_norm(View x, int64_t head_dim, std::span<const float> weight, float eps) = 0;
  // Rotate-half RoPE on every head of x ([T, heads * head_dim]) at positions[t].
  virtual void rope(View x, const RopeTable& table, std::span<const int64_t> positions) = 0;
  // Causal attention of q [T, heads*head_dim] at positions start..start+T-1 over the cache
  // rows [0, start + T) (the new rows already written); out: [T, heads*head_dim].
  virtual void attention(View q, const KvLayer& cache, int64_t start, const AttentionShape& shape,
                         View out) = 0;
  // Copy rows into the cache at row `start`.
  virtual void write_kv(View k, View v, KvLayer& cache, int64_t start) = 0;
  // gate = silu(gate) * up
  virtual void swiglu(View gate, View up) = 0;
  // acc += x
  virtual void add(View acc, View x) = 0;
  // out[t] = row ids[t] of a dense linear's weight ([vocab, hidden]); the same object
  // serves as a tied lm_head, so tied weights are stored once.
  virtual void embed(const Linear& table, std::span<const int32_t> ids, View out) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace gptq::backend
