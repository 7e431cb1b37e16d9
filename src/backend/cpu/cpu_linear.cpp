#include "backend/cpu/cpu_linear.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"

namespace gptq::backend::cpu {

namespace {
// Rows of W widened per tile: 64 rows x K floats (e.g. 64 x 4096 x 4 B = 1 MiB) stays in
// L2 while sgemm reads it M times.
constexpr int64_t kTileRows = 64;
// Below this many multiply-adds a product runs on one thread: forking the team costs
// more than it saves, and on a loaded machine every fork waits for a descheduled thread
// (stories15M's 768 x 288 decode products, 0.2 M MACs each, ran 10-20x slower in eval
// with two threads and a competing process).
constexpr int64_t kParallelMacs = int64_t(1) << 22;
}  // namespace

DenseLinear::DenseLinear(const io::TensorView& w, const io::TensorView* bias)
    : dtype_(w.dtype), out_(0), in_(0) {
  if (w.shape.size() != 2) {
    throw Error(ErrorKind::kFormat, "tensor \"" + w.name + "\" has shape " + w.shape_string() + ", expected [out, in]");
  }
  if (dtype_ != DType::kF32 && dtype_ != DType::kF16 && dtype_ != DType::kBF16) {
    throw Error(ErrorKind::kUnsupported, "tensor \"" + w.name + "\" has dtype " + std::string(dtype_name(dtype_)) +
                                             "; dense weights must be F32, F16 or BF16");
  }
  out_ = w.shape[0];
  in_ = w.shape[1];
  bytes_.assign(w.data.begin(), w.data.end());
  if (bias != nullptr) bias_ = io::to_f32(*bias, {out_}, "dense linear bias");
}

std::string DenseLinear::describe() const { return std::string(dtype_name(dtype_)); }

void DenseLinear::widen_rows(int64_t first, int64_t count, float* dst) const {
  const int64_t n = count * in_, off = first * in_;
  if (dtype_ == DType::kF32) {
    std::memcpy(dst, bytes_.data() + off * 4, std::size_t(n) * 4);
    return;
  }
  const auto* src = reinterpret_cast<const uint16_t*>(bytes_.data()) + off;
  if (dtype_ == DType::kF16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
  }
}

void DenseLinear::row_f32(int64_t r, float* dst) const { widen_rows(r, 1, dst); }

void DenseLinear::forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const {
  if (dtype_ == DType::kF32) {
    const auto* w = reinterpret_cast<const float*>(bytes_.data());
    if (M == 1) {
      // y = W x: sgemv streams W once, which is what decode is bound by.
      cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out_), int(in_), 1.0f, w, int(in_), x, 1, 0.0f, y, 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(out_), int(in_), 1.0f, x, int(ldx), w,
                  int(in_), 0.0f, y, int(ldy));
    }
  } else {
    // One parallel region: each thread widens its tiles of W and multiplies them with
    // single-threaded BLAS (OpenBLAS runs serially inside an OpenMP region).
    const int64_t tiles = (out_ + kTileRows - 1) / kTileRows;
#pragma omp parallel if (M * out_ * in_ >= kParallelMacs)
    {
      std::vector<float> tile(std::size_t(kTileRows * in_));
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t first = t * kTileRows, rows = std::min(kTileRows, out_ - first);
        widen_rows(first, rows, tile.data());
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(rows), int(in_), 1.0f, x, int(ldx),
                    tile.data(), int(in_), 0.0f, y + first, int(ldy));
      }
    }
  }
  if (!bias_.empty()) {
    for (int64_t m = 0; m < M; ++m) {
      float* row = y + m * ldy;
      for (int64_t n = 0; n < out_; ++n) row[n] += bias_[std::size_t(n)];
    }
  }
}

}  // namespace gptq::backend::cpu
