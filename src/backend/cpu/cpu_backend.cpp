// The CPU backend: fp32 activations in host memory, OpenBLAS for products, OpenMP loops
// for the element-wise ops and attention.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_linear.h"
#include "backend/cpu/gptq_linear.h"
#include "core/error.h"
#include "core/omp_policy.h"

namespace gptq::backend {
namespace {

using cpu::CpuLinear;
using cpu::DenseLinear;

void check(bool ok, const char* what) {
  if (!ok) throw Error(ErrorKind::kInvalidArgument, std::string("cpu backend: ") + what);
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  Buffer alloc(int64_t rows, int64_t cols) override {
    check(rows >= 0 && cols >= 0, "negative buffer size");
    std::shared_ptr<float[]> data(new float[std::size_t(std::max<int64_t>(rows * cols, 1))]());
    return Buffer(std::move(data), rows, cols);
  }

  void upload(std::span<const float> host, View dst) override {
    check(int64_t(host.size()) == dst.rows * dst.cols, "upload size mismatch");
    for (int64_t r = 0; r < dst.rows; ++r) {
      std::memcpy(dst.data + r * dst.stride, host.data() + r * dst.cols, std::size_t(dst.cols) * 4);
    }
  }

  void download(View src, std::span<float> host) override {
    check(int64_t(host.size()) == src.rows * src.cols, "download size mismatch");
    for (int64_t r = 0; r < src.rows; ++r) {
      std::memcpy(host.data() + r * src.cols, src.data + r * src.stride, std::size_t(src.cols) * 4);
    }
  }

  std::unique_ptr<Linear> dense_linear(std::vector<float> weight, int64_t out, int64_t in,
                                       std::vector<float> bias) override {
    return std::make_unique<DenseLinear>(std::move(weight), out, in, std::move(bias));
  }

  std::unique_ptr<Linear> gptq_linear(quant::PackedLinear packed) override {
    return std::make_unique<cpu::GptqLinear>(std::move(packed));
  }

  void linear(const Linear& w, View x, View y) override {
    const auto* l = dynamic_cast<const CpuLinear*>(&w);
    check(l != nullptr, "linear layer was not made by the cpu backend");
    check(x.cols == w.in_features() && y.cols == w.out_features() && x.rows == y.rows,
          "linear shape mismatch");
    l->forward(x.data, x.rows, x.stride, y.data, y.stride);
  }

  void rms_norm(View x, std::span<const float> weight, float eps, View y) override {
    check(int64_t(weight.size()) == x.cols && y.cols == x.cols && y.rows == x.rows, "rms_norm shape");
#pragma omp parallel for schedule(static) if (x.rows > 8)
    for (int64_t r = 0; r < x.rows; ++r) {
      normalize(x.data + r * x.stride, y.data + r * y.stride, x.cols, weight.data(), eps);
    }
  }

  void head_rms_norm(View x, int64_t head_dim, std::span<const float> weight, float eps) override {
    check(int64_t(weight.size()) == head_dim && x.cols % head_dim == 0, "head_rms_norm shape");
    const int64_t heads = x.cols / head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (x.rows > 8)
    for (int64_t r = 0; r < x.rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        float* p = x.data + r * x.stride + h * head_dim;
        normalize(p, p, head_dim, weight.data(), eps);
      }
    }
  }

  void rope(View x, const RopeTable& table, std::span<const int64_t> positions) override {
    const int64_t d = table.head_dim, half = d / 2;
    check(int64_t(positions.size()) == x.rows && x.cols % d == 0, "rope shape");
    const int64_t heads = x.cols / d;
#pragma omp parallel for schedule(static) if (x.rows > 8)
    for (int64_t r = 0; r < x.rows; ++r) {
      // Angles in fp32 as transformers forms them (position * inv_freq, both fp32), then
      // cos/sin of that fp32 angle: the same rounding as the reference implementation.
      std::vector<float> c(static_cast<std::size_t>(half)), s(static_cast<std::size_t>(half));
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(positions[std::size_t(r)]) * table.inv_freq[std::size_t(i)];
        c[std::size_t(i)] = float(std::cos(double(angle)));
        s[std::size_t(i)] = float(std::sin(double(angle)));
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* p = x.data + r * x.stride + h * d;
        // rotate-half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), x1 = p[:half], x2 = p[half:]
        for (int64_t i = 0; i < half; ++i) {
          const float a = p[i], b = p[i + half];
          p[i] = a * c[std::size_t(i)] - b * s[std::size_t(i)];
          p[i + half] = b * c[std::size_t(i)] + a * s[std::size_t(i)];
        }
      }
    }
  }

  void write_kv(View k, View v, KvLayer& cache, int64_t start) override {
    const View kc = cache.k.view(), vc = cache.v.view();
    check(k.cols == kc.cols && v.cols == vc.cols && k.rows == v.rows, "write_kv shape");
    check(start >= 0 && start + k.rows <= kc.rows, "kv cache overflow");
    for (int64_t r = 0; r < k.rows; ++r) {
      std::memcpy(kc.data + (start + r) * kc.stride, k.data + r * k.stride, std::size_t(k.cols) * 4);
      std::memcpy(vc.data + (start + r) * vc.stride, v.data + r * v.stride, std::size_t(v.cols) * 4);
    }
  }

  void attention(View q, const KvLayer& cache, int64_t start, const AttentionShape& a, View out) override {
    const View kc = cache.k.view(), vc = cache.v.view();
    const int64_t d = a.head_dim, group = a.heads / a.kv_heads, T = q.rows;
    check(q.cols == a.heads * d && out.cols == q.cols && out.rows == T, "attention q/out shape");
    check(kc.cols == a.kv_heads * d && start + T <= kc.rows, "attention cache shape");
    const float scale = float(1.0 / std::sqrt(double(d)));
#pragma omp parallel
    {
      std::vector<float> scores(std::size_t(start + T));
#pragma omp for collapse(2) schedule(dynamic, 4)
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = 0; h < a.heads; ++h) {
          const int64_t pos = start + t;
          const int64_t first = a.sliding_window > 0 ? std::max<int64_t>(0, pos - a.sliding_window + 1) : 0;
          const float* qh = q.data + t * q.stride + h * d;
          const int64_t kvh = h / group;  // GQA: `group` query heads share one kv head
          float mx = -INFINITY;
          for (int64_t j = first; j <= pos; ++j) {
            const float* kj = kc.data + j * kc.stride + kvh * d;
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
          float* o = out.data + t * out.stride + h * d;
          std::fill(o, o + d, 0.0f);
          for (int64_t j = first; j <= pos; ++j) {
            const float w = scores[std::size_t(j)] * inv;
            const float* vj = vc.data + j * vc.stride + kvh * d;
            for (int64_t i = 0; i < d; ++i) o[i] += w * vj[i];
          }
        }
      }
    }
  }

  void swiglu(View gate, View up) override {
    check(gate.rows == up.rows && gate.cols == up.cols, "swiglu shape");
#pragma omp parallel for schedule(static) if (gate.rows > 8)
    for (int64_t r = 0; r < gate.rows; ++r) {
      float* g = gate.data + r * gate.stride;
      const float* u = up.data + r * up.stride;
      for (int64_t i = 0; i < gate.cols; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  }

  void add(View acc, View x) override {
    check(acc.rows == x.rows && acc.cols == x.cols, "add shape");
    for (int64_t r = 0; r < acc.rows; ++r) {
      float* a = acc.data + r * acc.stride;
      const float* b = x.data + r * x.stride;
      for (int64_t i = 0; i < acc.cols; ++i) a[i] += b[i];
    }
  }

  void embed(const Linear& table, std::span<const int32_t> ids, View out) override {
    const auto* dense = dynamic_cast<const DenseLinear*>(&table);
    check(dense != nullptr, "embedding table must be dense");
    const int64_t vocab = table.out_features(), cols = table.in_features();
    check(out.cols == cols && out.rows == int64_t(ids.size()), "embed shape");
    for (std::size_t t = 0; t < ids.size(); ++t) {
      if (ids[t] < 0 || ids[t] >= vocab) {
        throw Error(ErrorKind::kInvalidArgument, "token id " + std::to_string(ids[t]) +
                                                     " is outside the vocabulary of " + std::to_string(vocab));
      }
      std::memcpy(out.data + int64_t(t) * out.stride, dense->weight() + int64_t(ids[t]) * cols,
                  std::size_t(cols) * 4);
    }
  }

 private:
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
  omp_policy_hook_linked();
  return std::make_unique<CpuBackend>();
}

}  // namespace gptq::backend
