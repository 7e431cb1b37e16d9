// GPTQ products at batch 9-256 on the tensor cores, from the fragment layout: the batch
// kernel of the tensor-core family. gptq_mma (gptq_mma.cu) hands these products here
// when batch_applies; smaller batches go to gptq_decode.cu, larger ones (and bf16) keep
// the general kernel.
#pragma once

#include "backend/cuda/gptq_mma.cuh"

namespace gptq::backend::cuda {

// Most rows the batch kernel takes: above 64 it runs blocks of 64 rows, each streaming the
// codes again, so it gives way to dequantized tiles + cuBLAS where those win
// (BackendOptions::gptq_mma_max_rows holds the measured crossover).
inline constexpr int64_t kBatchMaxRows = 256;

// Opts the batch kernels into their shared memory (a ring of x and code stages above the
// default 48 KiB); once per device, before any launch (gptq_mma_init calls it).
void gptq_batch_init();

// Whether gptq_batch takes g at M rows: 8 < M <= kBatchMaxRows, fp16 activations (the weights are
// formed in fp16, one rounding of s·(q − z), as the dequantize-to-tiles path does; bf16
// would round the fp16 scale too), K % 8 == 0, no permutation (act-order layers come
// with x sorted: gptq_sorted.cuh) and every layer's chunks each in one group.
bool batch_applies(const MmaGroup<__half>& g, int64_t M);

// The split scratch gptq_batch needs for M rows of g.
SplitScratch gptq_batch_scratch(const MmaGroup<__half>& g, int64_t M);

// y_j = x W_jᵀ + b_j (or +=, per the epilogue) for batch_applies(g, M), x's rows 16-byte
// aligned (ldx % 8 == 0, x aligned).
void gptq_batch(const MmaGroup<__half>& g, const __half* x, int64_t ldx, int64_t M, float* partials,
                int32_t* counters, cudaStream_t s);

}  // namespace gptq::backend::cuda
