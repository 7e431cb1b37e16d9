// Backend::sample on the GPU: the rule of backend/sampling_rule.h without sorting the
// vocabulary (see sampling.cu).
#pragma once

#include "backend/cuda/common.cuh"
#include "backend/sampling_rule.h"

namespace gptq::backend::cuda {

// out[r] = the id the rule draws from logits row r with uniforms[r]: logits [rows, vocab]
// in T (row stride ld), uniforms fp32 [rows] each in [0, 1), out [rows];
// temperature > 0 (greedy is argmax), top_k >= 0 (0: no cut), top_p in (0, 1];
// 0 < vocab < sampling::kMaxVocab. One block per row.
template <class T>
void sample(const T* logits, int64_t ld, const float* uniforms, int32_t* out, int64_t rows, int64_t vocab,
            float temperature, int64_t top_k, float top_p, cudaStream_t s);

}  // namespace gptq::backend::cuda
