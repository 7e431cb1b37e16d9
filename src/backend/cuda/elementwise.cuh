// Row-wise and element-wise kernels of the CUDA backend. Launchers take raw pointers,
// shapes (row strides in elements) and a stream; T is the activation type (float,
// __half, __nv_bfloat16), computed in fp32.
#pragma once

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

// y[r] = x[r] * rsqrt(mean(x[r]²) + eps) * w; x, y: [rows, cols]; w: [cols] fp32.
template <class T>
void rms_norm(const T* x, int64_t ldx, T* y, int64_t ldy, const float* w, int64_t rows, int64_t cols, float eps,
              cudaStream_t s);
// Each head (cols / head_dim per row) of x [rows, cols] normalised on its own, in place.
template <class T>
void head_rms_norm(T* x, int64_t ldx, const float* w, int64_t rows, int64_t cols, int64_t head_dim, float eps,
                   cudaStream_t s);
// Rotate-half RoPE in place on x [rows, cols], row r at position pos[r]; inv_freq [head_dim / 2].
template <class T>
void rope(T* x, int64_t ldx, const int32_t* pos, const float* inv_freq, int64_t rows, int64_t cols,
          int64_t head_dim, cudaStream_t s);
// rope on q [rows, q_cols] and k [rows, kv_cols] in place, then cache rows pos[t] = k[t],
// v[t] (caches [capacity, kv_cols]): rope + rope + write_kv in one launch, same values.
template <class T>
void rope_write_kv(T* q, int64_t ldq, T* k, int64_t ldk, const T* v, int64_t ldv, T* kc, int64_t ldkc, T* vc,
                   int64_t ldvc, const int32_t* pos, const float* inv_freq, int64_t rows, int64_t q_cols,
                   int64_t kv_cols, int64_t head_dim, cudaStream_t s);
// gate = silu(gate) * up; both [rows, cols].
template <class T>
void swiglu(T* gate, int64_t ldg, const T* up, int64_t ldu, int64_t rows, int64_t cols, cudaStream_t s);
// acc += x; both [rows, cols].
template <class T>
void add(T* acc, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols, cudaStream_t s);
// y[r] += bias (fp32 [cols]).
template <class T>
void add_bias(T* y, int64_t ldy, const float* bias, int64_t rows, int64_t cols, cudaStream_t s);
// out[t] = table[ids[t]]: table [vocab, cols] in T; ids [T]; an id outside [0, vocab)
// sets *bad (device flag) and writes zeros.
template <class T>
void embed(const T* table, int64_t vocab, const int32_t* ids, T* out, int64_t ldo, int64_t rows, int64_t cols,
           int32_t* bad, cudaStream_t s);
// cache rows pos[t] = k[t], v[t]; k, v [rows, cols]; caches [capacity, cols].
template <class T>
void write_kv(const T* k, int64_t ldk, const T* v, int64_t ldv, T* kc, int64_t ldkc, T* vc, int64_t ldvc,
              const int32_t* pos, int64_t rows, int64_t cols, cudaStream_t s);
// nll[t] = logsumexp(logits[t]) - logits[t][targets[t]]; logits [rows, vocab].
template <class T>
void token_nll(const T* logits, int64_t ld, const int32_t* targets, float* nll, int64_t rows, int64_t vocab,
               cudaStream_t s);
// out[r] = argmax of row r (lowest index among equal maxima); workspace:
// argmax_workspace_floats(rows) floats.
int64_t argmax_workspace_floats(int64_t rows);
template <class T>
void argmax(const T* logits, int64_t ld, int32_t* out, int64_t rows, int64_t vocab, float* workspace, cudaStream_t s);
// dst = src converted between element types, [rows, cols] with row strides.
template <class D, class S>
void convert(const S* src, int64_t lds, D* dst, int64_t ldd, int64_t rows, int64_t cols, cudaStream_t s);

}  // namespace gptq::backend::cuda
