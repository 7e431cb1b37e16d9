// The CPU backend: fp32 activations in host memory, OpenBLAS for products, OpenMP loops
// for the element-wise ops and attention. The reference every other backend is tested
// against (tests/test_backend_ops.cpp).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/allocation_meter.h"
#include "backend/backend.h"
#include "backend/cpu/bnb_linear.h"
#include "backend/cpu/cpu_linear.h"
#include "backend/cpu/gptq_linear.h"
#include "backend/cpu/sampling.h"
#include "core/error.h"
#include "core/cpu_threads.h"

namespace gptq::backend {
namespace {

using cpu::CpuLinear;
using cpu::DenseLinear;

// Work (multiply-adds, exps) below which an op stays on one thread: a parallel region
// costs microseconds, and on a loaded machine a fork waits for a descheduled thread.
constexpr int64_t kParallelWork = int64_t(1) << 18;

// Shapes are the caller's contract: a mismatch is a bug in gptq.cpp, not bad input.
void check(bool ok, const char* what) { GPTQ_CHECK(ok, std::string("cpu backend: ") + what); }

// The model never hands a tensor of another backend or dtype to an op; check anyway.
float* f32(const Tensor& t) {
  check(t.device == Device::kCpu, "tensor is not in host memory");
  return t.as<float>();
}
const int32_t* i32(const Tensor& t) {
  check(t.device == Device::kCpu, "tensor is not in host memory");
  return t.as<int32_t>();
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::kCpu; }
  DType activation_dtype() const override { return DType::kF32; }

  Buffer alloc(int64_t rows, int64_t cols, DType dtype) override {
    check(rows >= 0 && cols >= 0, "negative buffer size");
    check(dtype == DType::kF32 || dtype == DType::kI32, "the cpu backend holds f32 and i32 tensors only");
    const std::size_t bytes = std::size_t(std::max<int64_t>(rows * cols, 1)) * 4;
    meter_->add(bytes);
    std::shared_ptr<void> mem(::operator new(bytes), [meter = meter_, bytes](void* p) {
      meter->remove(bytes);
      ::operator delete(p);
    });
    std::memset(mem.get(), 0, bytes);
    return make_buffer(mem, {.data = mem.get(), .dtype = dtype, .device = Device::kCpu, .rows = rows, .cols = cols,
                        .stride = cols});
  }

  void upload(std::span<const float> host, Tensor dst) override { copy_in(host.data(), host.size(), f32(dst), dst); }
  void upload(std::span<const int32_t> host, Tensor dst) override {
    copy_in(host.data(), host.size(), const_cast<int32_t*>(i32(dst)), dst);
  }
  void download(Tensor src, std::span<float> host) override { copy_out(f32(src), src, host.data(), host.size()); }
  void download(Tensor src, std::span<int32_t> host) override { copy_out(i32(src), src, host.data(), host.size()); }
  void synchronize() override {}
  void copy(Tensor src, Tensor dst) override {
    check(src.device == Device::kCpu && dst.device == Device::kCpu, "copy: tensor is not in host memory");
    check(src.dtype == dst.dtype && src.rows == dst.rows && src.cols == dst.cols, "copy: shapes or dtypes differ");
    const std::size_t e = dtype_size(src.dtype), row = std::size_t(src.cols) * e;
    for (int64_t r = 0; r < src.rows; ++r) {
      std::memmove(static_cast<std::byte*>(dst.data) + std::size_t(r * dst.stride) * e,
                   static_cast<const std::byte*>(src.data) + std::size_t(r * src.stride) * e, row);
    }
  }
  // peak_allocated counts tensors only; weights are in the process's RSS.
  MemoryStats memory() const override { return {.peak_allocated = meter_->peak()}; }

  std::unique_ptr<Linear> dense_linear(const io::TensorView& weight, const io::TensorView* bias) override {
    return std::make_unique<DenseLinear>(weight, bias);
  }

  std::unique_ptr<Linear> gptq_linear(quant::PackedLinear packed) override {
    return std::make_unique<cpu::GptqLinear>(std::move(packed));
  }

  std::unique_ptr<Linear> bnb_linear(quant::bnb::BnbPacked packed) override {
    return std::make_unique<cpu::BnbLinear>(std::move(packed));
  }

  void linear(const Linear& w, Tensor x, Tensor y, Accumulate acc) override {
    fit_threads_to_load();  // the products are most of the CPU work: resize the team to the load here
    const auto* l = dynamic_cast<const CpuLinear*>(&w);
    check(l != nullptr, "linear layer was not made by the cpu backend");
    check(x.cols == w.in_features() && y.cols == w.out_features() && x.rows == y.rows,
          "linear shape mismatch");
    if (acc == Accumulate::kNo) {
      l->forward(f32(x), x.rows, x.stride, f32(y), y.stride);
      return;
    }
    // The reference keeps the two roundings of "product, then add": y += fl(x Wᵀ + b).
    product_.resize(std::size_t(y.rows * y.cols));
    l->forward(f32(x), x.rows, x.stride, product_.data(), y.cols);
    float* yd = f32(y);
    for (int64_t r = 0; r < y.rows; ++r) {
      for (int64_t i = 0; i < y.cols; ++i) yd[r * y.stride + i] += product_[std::size_t(r * y.cols + i)];
    }
  }

  void rms_norm(Tensor x, const Buffer& weight, float eps, Tensor y) override {
    const float* w = f32(weight.view());
    check(weight.view().cols == x.cols && y.cols == x.cols && y.rows == x.rows, "rms_norm shape");
    float *xd = f32(x), *yd = f32(y);
#pragma omp parallel for schedule(static) if (x.rows > 8)
    for (int64_t r = 0; r < x.rows; ++r) normalize(xd + r * x.stride, yd + r * y.stride, x.cols, w, eps);
  }

  void head_rms_norm(Tensor x, int64_t head_dim, const Buffer& weight, float eps) override {
    const float* w = f32(weight.view());
    check(weight.view().cols == head_dim && x.cols % head_dim == 0, "head_rms_norm shape");
    const int64_t heads = x.cols / head_dim;
    float* xd = f32(x);
#pragma omp parallel for collapse(2) schedule(static) if (x.rows > 8)
    for (int64_t r = 0; r < x.rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        float* p = xd + r * x.stride + h * head_dim;
        normalize(p, p, head_dim, w, eps);
      }
    }
  }

  void rope(Tensor x, const RopeTable& table, Tensor positions) override {
    const int64_t d = table.head_dim, half = d / 2;
    check(positions.cols == x.rows && x.cols % d == 0 && table.inv_freq.view().cols == half, "rope shape");
    const int64_t heads = x.cols / d;
    const int32_t* pos = i32(positions);
    const float* inv_freq = f32(table.inv_freq.view());
    float* xd = f32(x);
#pragma omp parallel for schedule(static) if (x.rows > 8)
    for (int64_t r = 0; r < x.rows; ++r) {
      // Angles in fp32 as transformers forms them (position * inv_freq, both fp32), then
      // cos/sin of that fp32 angle: the same rounding as the reference implementation.
      std::vector<float> c(static_cast<std::size_t>(half)), s(static_cast<std::size_t>(half));
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(pos[r]) * inv_freq[i];
        c[std::size_t(i)] = float(std::cos(double(angle)));
        s[std::size_t(i)] = float(std::sin(double(angle)));
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* p = xd + r * x.stride + h * d;
        // rotate-half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), x1 = p[:half], x2 = p[half:]
        for (int64_t i = 0; i < half; ++i) {
          const float a = p[i], b = p[i + half];
          p[i] = a * c[std::size_t(i)] - b * s[std::size_t(i)];
          p[i + half] = b * c[std::size_t(i)] + a * s[std::size_t(i)];
        }
      }
    }
  }

  void write_kv(Tensor k, Tensor v, KvView cache, Tensor positions) override {
    const Tensor kc = cache.k, vc = cache.v;
    check(k.cols == kc.cols && v.cols == vc.cols && k.rows == v.rows && positions.cols == k.rows, "write_kv shape");
    const int32_t* pos = i32(positions);
    float *kd = f32(k), *vd = f32(v), *kcd = f32(kc), *vcd = f32(vc);
    for (int64_t r = 0; r < k.rows; ++r) {
      check(pos[r] >= 0 && pos[r] < kc.rows, "kv cache overflow");
      std::memcpy(kcd + pos[r] * kc.stride, kd + r * k.stride, std::size_t(k.cols) * 4);
      std::memcpy(vcd + pos[r] * vc.stride, vd + r * v.stride, std::size_t(v.cols) * 4);
    }
  }

  void attention(Tensor q, KvView cache, Tensor positions, const AttentionShape& a, Tensor out) override {
    const Tensor kc = cache.k, vc = cache.v;
    const int64_t d = a.head_dim, group = a.heads / a.kv_heads, T = q.rows;
    check(q.cols == a.heads * d && out.cols == q.cols && out.rows == T && positions.cols == T,
          "attention q/out shape");
    const int32_t* pos_of = i32(positions);
    int64_t last = 0;
    for (int64_t t = 0; t < T; ++t) last = std::max<int64_t>(last, pos_of[t]);
    check(kc.cols == a.kv_heads * d && last < kc.rows, "attention cache shape");
    const float *qd = f32(q), *kcd = f32(kc), *vcd = f32(vc);
    float* od = f32(out);
    const float scale = float(1.0 / std::sqrt(double(d)));
    // A decode step over a short cache is a few thousand multiply-adds: one thread.
#pragma omp parallel if (T * a.heads * (last + 1) * d >= kParallelWork)
    {
      std::vector<float> scores(std::size_t(last + 1));
#pragma omp for collapse(2) schedule(dynamic, 4)
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = 0; h < a.heads; ++h) {
          const int64_t pos = pos_of[t];
          const int64_t first = a.sliding_window > 0 ? std::max<int64_t>(0, pos - a.sliding_window + 1) : 0;
          const float* qh = qd + t * q.stride + h * d;
          const int64_t kvh = h / group;  // GQA: `group` query heads share one kv head
          float mx = -INFINITY;
          for (int64_t j = first; j <= pos; ++j) {
            const float* kj = kcd + j * kc.stride + kvh * d;
            float dot = 0.0f;
            for (int64_t i = 0; i < d; ++i) dot += qh[i] * kj[i];
            scores[std::size_t(j)] = dot * scale;
            mx = std::max(mx, scores[std::size_t(j)]);
          }
          float sum = 0.0f;
          for (int64_t j = first; j <= pos; ++j) {
            scores[std::size_t(j)] = std::exp(scores[std::size_t(j)] - mx);
            sum += scores[std::size_t(j)];
          }
          const float inv = 1.0f / sum;
          float* o = od + t * out.stride + h * d;
          std::fill(o, o + d, 0.0f);
          for (int64_t j = first; j <= pos; ++j) {
            const float w = scores[std::size_t(j)] * inv;
            const float* vj = vcd + j * vc.stride + kvh * d;
            for (int64_t i = 0; i < d; ++i) o[i] += w * vj[i];
          }
        }
      }
    }
  }

  void swiglu(Tensor gate, Tensor up) override {
    check(gate.rows == up.rows && gate.cols == up.cols, "swiglu shape");
    float *gd = f32(gate), *ud = f32(up);
#pragma omp parallel for schedule(static) if (gate.rows > 8)
    for (int64_t r = 0; r < gate.rows; ++r) {
      float* g = gd + r * gate.stride;
      const float* u = ud + r * up.stride;
      for (int64_t i = 0; i < gate.cols; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  }

  void add(Tensor acc, Tensor x) override {
    check(acc.rows == x.rows && acc.cols == x.cols, "add shape");
    float *ad = f32(acc), *xd = f32(x);
    for (int64_t r = 0; r < acc.rows; ++r) {
      float* a = ad + r * acc.stride;
      const float* b = xd + r * x.stride;
      for (int64_t i = 0; i < acc.cols; ++i) a[i] += b[i];
    }
  }

  void embed(const Linear& table, Tensor ids, Tensor out) override {
    const auto* dense = dynamic_cast<const DenseLinear*>(&table);
    check(dense != nullptr, "embedding table must be dense");
    const int64_t vocab = table.out_features(), cols = table.in_features();
    check(out.cols == cols && out.rows == ids.cols, "embed shape");
    const int32_t* id = i32(ids);
    float* od = f32(out);
    for (int64_t t = 0; t < ids.cols; ++t) {
      if (id[t] < 0 || id[t] >= vocab) {
        throw Error(ErrorKind::kInvalidArgument, "token id " + std::to_string(id[t]) +
                                                     " is outside the vocabulary of " + std::to_string(vocab));
      }
      dense->row_f32(id[t], od + t * out.stride);
    }
  }

  void token_nll(Tensor logits, Tensor targets, Tensor nll) override {
    const int64_t T = logits.rows, vocab = logits.cols;
    check(targets.cols == T && nll.cols == T, "token_nll shape");
    const float* ld = f32(logits);
    const int32_t* tg = i32(targets);
    float* out = f32(nll);
    // exp in fp32 (arguments are <= 0, each term accurate to an ulp), sums in fp64.
#pragma omp parallel for schedule(static) if (T * vocab >= kParallelWork)
    for (int64_t t = 0; t < T; ++t) {
      const float* row = ld + t * logits.stride;
      check(tg[t] >= 0 && tg[t] < vocab, "token_nll target outside the vocabulary");
      const float mx = *std::max_element(row, row + vocab);
      double s = 0.0;
      for (int64_t v = 0; v < vocab; ++v) s += double(std::exp(row[v] - mx));
      out[t] = float(double(mx) + std::log(s) - double(row[tg[t]]));
    }
  }

  void argmax(Tensor logits, Tensor out) override {
    check(out.cols == logits.rows, "argmax shape");
    const float* ld = f32(logits);
    auto* od = const_cast<int32_t*>(i32(out));
    for (int64_t r = 0; r < logits.rows; ++r) {
      const float* row = ld + r * logits.stride;
      od[r] = int32_t(std::max_element(row, row + logits.cols) - row);  // first of equal maxima
    }
  }

  void sample(Tensor logits, Tensor uniforms, const SampleParams& p, Tensor out) override {
    check(uniforms.cols == logits.rows && out.cols == logits.rows, "sample shape");
    const float* ld = f32(logits);
    const float* u = f32(uniforms);
    auto* od = const_cast<int32_t*>(i32(out));
    for (int64_t r = 0; r < logits.rows; ++r) {
      od[r] = cpu::sample_row({ld + r * logits.stride, std::size_t(logits.cols)}, p, u[r]);
    }
  }

 private:
  template <class T>
  static void copy_in(const T* host, std::size_t n, T* dst, const Tensor& t) {
    check(int64_t(n) == t.rows * t.cols, "upload size mismatch");
    for (int64_t r = 0; r < t.rows; ++r) std::memcpy(dst + r * t.stride, host + r * t.cols, std::size_t(t.cols) * sizeof(T));
  }
  template <class T>
  static void copy_out(const T* src, const Tensor& t, T* host, std::size_t n) {
    check(int64_t(n) == t.rows * t.cols, "download size mismatch");
    for (int64_t r = 0; r < t.rows; ++r) std::memcpy(host + r * t.cols, src + r * t.stride, std::size_t(t.cols) * sizeof(T));
  }

  std::shared_ptr<AllocationMeter> meter_ = std::make_shared<AllocationMeter>();
  std::vector<float> product_;  // linear(..., Accumulate::kYes) scratch: [rows, out]

  // y = x * rsqrt(mean(x²) + eps) * w; the sum of squares in fp64 so the result does not
  // depend on summation order (transformers sums in fp32; the difference is ≤ 1 ulp-ish).
  static void normalize(const float* x, float* y, int64_t n, const float* w, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace gptq::backend
