// Every op of the Backend interface, on every compiled backend and activation dtype,
// against the CPU backend (the reference, itself anchored by the model-level oracles),
// in the manner of ggml's test-backend-ops: random inputs drawn afresh per case, outputs
// poisoned with NaN before each run (an element the op forgets to write fails), and
// the normalised error ‖y − y_ref‖ / ‖y_ref‖ held under a bound derived from the
// arithmetic.
//
// The bound. Let u be the unit roundoff of the activation dtype (f32 2⁻²⁴, f16 2⁻¹¹,
// bf16 2⁻⁸) and u₃₂ = 2⁻²⁴. The backend under test sees its inputs rounded to that dtype
// (one u each, relative), rounds its output once (one u), and accumulates in fp32 in
// its own order, whose error on an n-term reduction is, with high probability, below
// u₃₂·√n relative to Σ|terms| (Higham & Mary 2019); with random data of mixed sign,
// Σ|terms| ≈ √n·‖terms‖, so the normalised effect is ≲ u₃₂·√n. Hence for an op whose
// output depends on c rounded inputs in series (c counted per op below), normalised
// error ≤ (c + 1)·u + 2·u₃₂·√n, doubled for margin. On the CPU backend itself every op
// must agree exactly (the harness's own check).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/sampling.h"
#include "backend/registry.h"
#include "core/dtype.h"
#include "format/bnb_packed.h"
#include "format/packing.h"
#include "format/random_layer.h"
#ifdef GPTQ_HAVE_CUDA
#include "backend/cuda/gptq_repack.h"
#endif

namespace gptq {
namespace {

using backend::Backend;
using backend::Buffer;
using backend::Tensor;

struct Target {
  std::string spec;
  DType act;
};

// So that gtest prints "cuda:0 F16", not the struct's bytes.
void PrintTo(const Target& t, std::ostream* os) { *os << t.spec << " " << dtype_name(t.act); }

std::string target_name(const testing::TestParamInfo<Target>& info) {
  std::string s = info.param.spec + "_" + std::string(dtype_name(info.param.act));
  for (char& ch : s) {
    if (ch == ':') ch = '_';
  }
  return s;
}

std::vector<Target> targets() {
  std::vector<Target> t = {{"cpu", DType::kF32}};
#ifdef GPTQ_HAVE_CUDA
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) t.push_back({"cuda:0", d});
#endif
  return t;
}

double unit_roundoff(DType t) {
  switch (t) {
    case DType::kF16: return std::ldexp(1.0, -11);
    case DType::kBF16: return std::ldexp(1.0, -8);
    default: return std::ldexp(1.0, -24);
  }
}

struct GptqCase {
  int bits;
  int64_t K, N;
  int group_size;
  bool act_order, sym, bias;
};

quant::PackedLinear random_gptq(const GptqCase& c, std::mt19937& rng) {
  return quant::pack(quant::random_quantized_linear({.bits = c.bits, .in_features = c.K, .out_features = c.N,
                                                     .group_size = c.group_size, .act_order = c.act_order,
                                                     .sym = c.sym, .bias = c.bias},
                                                    rng()),
                     quant::Format::kV2);
}

std::vector<GptqCase> gptq_cases() {
  std::vector<GptqCase> v;
  for (int bits : {2, 3, 4, 8}) {
    v.push_back({bits, 256, 256, 128, false, true, false});
    v.push_back({bits, 256, 100, 32, true, false, true});   // act-order, asym, N % 8 != 0
    v.push_back({bits, 288, 50, -1, false, false, false});  // one group, N % 4 != 0
    v.push_back({bits, 512, 384, 64, true, true, false});
    // SmolLM2's K = 576 at g128: groups 128, 128, 128, 128 and a partial 64.
    v.push_back({bits, 576, 41, 128, false, false, true});
    v.push_back({bits, 576, 41, 128, true, true, false});
  }
  return v;
}

class BackendOps : public testing::TestWithParam<Target> {
 protected:
  void SetUp() override {
    if (GetParam().spec != "cpu" && backend::cuda_device_count() == 0) GTEST_SKIP() << "skipped: no CUDA device";
    ref_ = backend::make_cpu_backend();
    dut_ = backend::make_backend(GetParam().spec, {.activations = GetParam().act});
  }

  // See the header: c rounded inputs in series, an n-term fp32 reduction.
  double bound(int c, int64_t n) const {
    if (GetParam().spec == "cpu") return 0.0;
    const double u = unit_roundoff(GetParam().act), u32 = std::ldexp(1.0, -24);
    return 2.0 * (double(c + 1) * u + 2.0 * u32 * std::sqrt(double(n)));
  }

  // Attention over n = d + keys terms: q, k rounded; the d-term score; exp; the
  // keys-term weighted sum with v rounded; the output rounded (c = 6). In 16 bits the
  // tensor-core kernel also rounds each weight P to 16 bits before P·V, one more
  // rounding in series on every key term (c = 7); in f32 only the CUDA-core kernel runs.
  double attention_bound(int64_t n) const {
    const DType act = GetParam().act;
    return bound(act == DType::kF16 || act == DType::kBF16 ? 7 : 6, n);
  }

  std::vector<float> random(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = d(rng_);
    return v;
  }

  // The same host values in a fresh tensor of each backend (activation dtype).
  struct Pair {
    Buffer ref, dut;
  };
  Pair put(const std::vector<float>& host, int64_t rows, int64_t cols) {
    Pair p{ref_->alloc(rows, cols), dut_->alloc(rows, cols)};
    ref_->upload(host, p.ref.view());
    dut_->upload(host, p.dut.view());
    return p;
  }
  Pair put_i32(const std::vector<int32_t>& host) {
    const int64_t n = int64_t(host.size());
    Pair p{ref_->alloc(1, n, DType::kI32), dut_->alloc(1, n, DType::kI32)};
    ref_->upload(host, p.ref.view());
    dut_->upload(host, p.dut.view());
    return p;
  }
  Pair poisoned(int64_t rows, int64_t cols) {
    return put(std::vector<float>(std::size_t(rows * cols), std::nanf("")), rows, cols);
  }
  Pair vec(const std::vector<float>& host) { return {ref_->vector(host), dut_->vector(host)}; }
  // linear_group of layers lr (reference backend) / ld (backend under test) on x [M, K]:
  // the outputs, poisoned before the run.
  std::vector<Pair> run_group(const std::vector<std::unique_ptr<backend::Linear>>& lr,
                              const std::vector<std::unique_ptr<backend::Linear>>& ld, const Pair& x) {
    std::vector<Pair> y;
    std::vector<const backend::Linear*> wr, wd;
    std::vector<Tensor> yr, yd;
    for (std::size_t j = 0; j < lr.size(); ++j) {
      y.push_back(poisoned(x.ref.view().rows, lr[j]->out_features()));
      wr.push_back(lr[j].get()), wd.push_back(ld[j].get());
    }
    for (const Pair& p : y) yr.push_back(p.ref.view()), yd.push_back(p.dut.view());
    ref_->linear_group(wr, x.ref.view(), yr);
    dut_->linear_group(wd, x.dut.view(), yd);
    return y;
  }

  // ‖dut − ref‖ / ‖ref‖ of two tensors of the same shape; NaN anywhere fails.
  void expect_close(const Pair& p, double tol, const std::string& what) {
    expect_close(p.ref.view(), p.dut.view(), tol, what);
  }
  void expect_close(Tensor r, Tensor d, double tol, const std::string& what) {
    std::vector<float> a(static_cast<std::size_t>(r.rows * r.cols)), b(a.size());
    ref_->download(r, a);
    dut_->download(d, b);
    double num = 0.0, den = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      ASSERT_FALSE(std::isnan(a[i]) || std::isnan(b[i])) << what << ": element " << i << " not written";
      num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      den += double(a[i]) * a[i];
    }
    const double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    EXPECT_LE(err, tol) << what << " (" << GetParam().spec << " " << dtype_name(GetParam().act) << ")";
  }

  // The backend under test anew, its GPTQ layers on `family` with the tensor-core kernel
  // up to max_rows and at most max_splits splits of K (0: the planners'; CUDA; the CPU has
  // one path).
  void use_gptq_family(backend::GptqKernel family, int64_t max_rows, int64_t max_splits = 0,
                       int64_t tile_bytes = backend::BackendOptions{}.dequant_tile_bytes) {
    if (GetParam().spec == "cpu") return;
    dut_ = backend::make_backend(GetParam().spec, {.activations = GetParam().act,
                                                   .gptq_mma_max_rows = max_rows,
                                                   .gptq_kernel = family,
                                                   .gptq_max_splits = max_splits,
                                                   .dequant_tile_bytes = tile_bytes});
  }

  // Every layer of `cases` (default gptq_cases()) at each batch size, against the reference.
  void run_gptq_cases(std::initializer_list<int64_t> batches, const std::vector<GptqCase>& cases = gptq_cases()) {
    for (const GptqCase& c : cases) {
      const quant::PackedLinear p = random_gptq(c, rng_);
      auto lr = ref_->gptq_linear(p);
      auto ld = dut_->gptq_linear(p);
      for (int64_t M : batches) {
        auto x = put(random(M * c.K), M, c.K);
        auto y = poisoned(M, c.N);
        ref_->linear(*lr, x.ref.view(), y.ref.view());
        dut_->linear(*ld, x.dut.view(), y.dut.view());
        const std::string what = "gptq bits=" + std::to_string(c.bits) + " K=" + std::to_string(c.K) +
                                 " N=" + std::to_string(c.N) + " g=" + std::to_string(c.group_size) +
                                 " act_order=" + std::to_string(c.act_order) + " M=" + std::to_string(M);
        // x rounded, dequantized weight (exact products s·(q − z) in fp32, or rounded to
        // the dtype on the dequantize-to-tile path), K-term product, output: c = 4. The
        // tensor-core kernel sums (B + q)·x and subtracts (B + z)·Σx (B = 1024 fp16, 128
        // bf16): that cancellation costs log2(B + 2^bits) <= 11 bits of the fp32 sum, a
        // relative error <= 2^-13 of the group's Σ|x|, inside the u term for fp16/bf16.
        expect_close(y, bound(4, c.K), what);
      }
    }
  }

  std::unique_ptr<Backend> ref_, dut_;
  std::mt19937 rng_{1234};
};

TEST_P(BackendOps, RmsNorm) {
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t cols : {48, 288, 577, 4096}) {
      auto x = put(random(rows * cols), rows, cols);
      auto w = vec(random(cols, 0.5f, 1.5f));
      auto y = poisoned(rows, cols);
      ref_->rms_norm(x.ref.view(), w.ref, 1e-5f, y.ref.view());
      dut_->rms_norm(x.dut.view(), w.dut, 1e-5f, y.dut.view());
      // x rounded, mean of squares (n terms), rsqrt, two products: c = 3.
      expect_close(y, bound(3, cols), "rms_norm rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
    }
  }
}

TEST_P(BackendOps, HeadRmsNorm) {
  for (int64_t d : {64, 80, 128}) {
    for (int64_t heads : {3, 8}) {
      const int64_t rows = 5, cols = d * heads;
      auto x = put(random(rows * cols), rows, cols);
      auto w = vec(random(d, 0.5f, 1.5f));
      ref_->head_rms_norm(x.ref.view(), d, w.ref, 1e-6f);
      dut_->head_rms_norm(x.dut.view(), d, w.dut, 1e-6f);
      expect_close(x, bound(3, d), "head_rms_norm d=" + std::to_string(d) + " heads=" + std::to_string(heads));
    }
  }
}

TEST_P(BackendOps, Rope) {
  for (int64_t d : {48, 64, 128}) {
    const int64_t rows = 7, heads = 3, cols = d * heads;
    std::vector<float> inv(static_cast<std::size_t>(d / 2));
    for (int64_t i = 0; i < d / 2; ++i) inv[std::size_t(i)] = std::pow(10000.0f, -float(2 * i) / float(d));
    std::vector<int32_t> pos;
    for (int64_t r = 0; r < rows; ++r) pos.push_back(int32_t(std::uniform_int_distribution<int>(0, 4095)(rng_)));
    auto x = put(random(rows * cols), rows, cols);
    auto p = put_i32(pos);
    auto f = vec(inv);
    ref_->rope(x.ref.view(), {.head_dim = d, .inv_freq = f.ref}, p.ref.view());
    dut_->rope(x.dut.view(), {.head_dim = d, .inv_freq = f.dut}, p.dut.view());
    // x rounded, sin/cos of an fp32 angle up to 4096 rad (both sides form the same fp32
    // angle; sincosf vs libm differ by an ulp of the result), one rotation: c = 3.
    expect_close(x, bound(3, 2), "rope d=" + std::to_string(d));
  }
}

TEST_P(BackendOps, SwigluAndAdd) {
  for (int64_t cols : {1, 288, 1537}) {
    const int64_t rows = 3;
    auto g = put(random(rows * cols, -4.0f, 4.0f), rows, cols);
    auto u = put(random(rows * cols), rows, cols);
    ref_->swiglu(g.ref.view(), u.ref.view());
    dut_->swiglu(g.dut.view(), u.dut.view());
    expect_close(g, bound(3, 1), "swiglu cols=" + std::to_string(cols));
    ref_->add(g.ref.view(), u.ref.view());
    dut_->add(g.dut.view(), u.dut.view());
    expect_close(g, bound(5, 1), "add cols=" + std::to_string(cols));
  }
}

// A dense [out, in] weight in `dtype`, as a checkpoint tensor would hold it.
struct HostWeight {
  std::vector<std::byte> bytes;
  io::TensorView view;
};
HostWeight host_weight(const std::vector<float>& w, int64_t out, int64_t in, DType dtype) {
  HostWeight h;
  h.bytes.resize(w.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&h.bytes[i * 4], &w[i], 4);
    } else {
      const uint16_t b = dtype == DType::kF16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
      std::memcpy(&h.bytes[i * 2], &b, 2);
    }
  }
  h.view = {.name = "w", .dtype = dtype, .shape = {out, in}, .data = h.bytes};
  return h;
}

TEST_P(BackendOps, EmbedAndDenseLinear) {
  for (DType wt : {DType::kF16, DType::kBF16, DType::kF32}) {
    for (int64_t M : {1, 5, 33}) {
      for (auto [N, K] : {std::pair<int64_t, int64_t>{48, 64}, {1000, 288}, {130, 577}}) {
        const HostWeight w = host_weight(random(N * K, -0.1f, 0.1f), N, K, wt);
        const std::vector<float> bias = random(N);
        const HostWeight b = host_weight(bias, N, 1, DType::kF32);
        io::TensorView bv = b.view;
        bv.shape = {N};
        auto lr = ref_->dense_linear(w.view, &bv);
        auto ld = dut_->dense_linear(w.view, &bv);
        auto x = put(random(M * K), M, K);
        auto y = poisoned(M, N);
        ref_->linear(*lr, x.ref.view(), y.ref.view());
        dut_->linear(*ld, x.dut.view(), y.dut.view());
        // x and W rounded, K-term product, bias add, output rounded: c = 4.
        const std::string what = "dense linear " + std::string(dtype_name(wt)) + " M=" + std::to_string(M) +
                                 " N=" + std::to_string(N) + " K=" + std::to_string(K);
        expect_close(y, bound(4, K), what);
        // The same weight as an embedding table: rows copied (rounded once to the dtype).
        std::vector<int32_t> ids;
        for (int64_t t = 0; t < M; ++t) ids.push_back(int32_t(std::uniform_int_distribution<int64_t>(0, N - 1)(rng_)));
        auto id = put_i32(ids);
        auto e = poisoned(M, K);
        auto er = ref_->dense_linear(w.view, nullptr);
        auto ed = dut_->dense_linear(w.view, nullptr);
        ref_->embed(*er, id.ref.view(), e.ref.view());
        dut_->embed(*ed, id.dut.view(), e.dut.view());
        expect_close(e, bound(1, 1), "embed " + what);
      }
    }
  }
}

TEST_P(BackendOps, GptqLinear) {
  // The tensor-core family on CUDA with 16-bit activations: its kernel up to 256 rows,
  // every M class (1, 2, 4, 8 row fragments; several batch blocks at 65, 130), and
  // dequantized tiles + cuBLAS above (300); f32 (and bf16 8-bit) keep the GEMV family.
  use_gptq_family(backend::GptqKernel::kTensorCore, 256);
  run_gptq_cases({1, 3, 8, 9, 17, 40, 64, 65, 130, 300});
}

// Long K over few output rows: the tensor-core kernels then split K across blocks (the
// batch 1-8 and 9-256 kernels fill the GPU that way), so the fp32 partials and the
// last-block reduction run; K = 4128 ends in a partial group of 32 and a partial chunk;
// M = 130 runs three blocks along M, the last with 2 rows.
TEST_P(BackendOps, GptqLinearSplitK) {
  use_gptq_family(backend::GptqKernel::kTensorCore, 256);
  run_gptq_cases({1, 9, 33, 64, 130}, {{4, 4096, 200, 128, false, false, true},
                                       {3, 4128, 72, 64, true, true, false},
                                       {8, 4096, 40, 128, true, false, false}});
}

// The same with the split capped below the planners' choice (3: an odd count, so the
// splits' chunk counts differ and a last split ends mid-step): the cap's plan must agree
// with the scratch it reserves, and any split count must give the reference's result.
// M = 3 and 8 stage more x vectors per block than one batch of the batch 1-8 kernel's
// staging loop holds (M x 176 vectors of a 22-chunk split against 128 threads x 4).
TEST_P(BackendOps, GptqLinearSplitKCapped) {
  use_gptq_family(backend::GptqKernel::kTensorCore, 256, 3);
  run_gptq_cases({1, 3, 8, 9, 33, 64, 130}, {{4, 4096, 200, 128, false, false, true},
                                       {3, 4128, 72, 64, true, true, false}});
}

// The fragment layout's dequantize-to-tiles path, at small M too (the crossover at 0).
TEST_P(BackendOps, GptqLinearThroughTiles) {
  if (GetParam().spec == "cpu") GTEST_SKIP() << "the CPU backend has one path";
  use_gptq_family(backend::GptqKernel::kTensorCore, 0);
  run_gptq_cases({1, 17});
}

// Several tiles per product, in both layouts: 1 MiB tiles of 16-bit rows hold 1024 rows
// at K = 512 (896 at K = 576), so N = 2100 takes three tiles, the last of 52 (308) rows,
// its last 16-row tile of 4 (32-row tile of 20 in the GEMV layout); act-order multiplies
// every tile by the one sorted copy of x (M = 130: the copy through shared-memory rows).
// 8-bit K = 100: rows end in half a 16-byte vector (the element-wise tail).
TEST_P(BackendOps, GptqLinearThroughSmallTiles) {
  if (GetParam().spec == "cpu") GTEST_SKIP() << "the CPU backend has one path";
  const std::vector<GptqCase> cases = {{4, 512, 2100, 128, true, false, true},
                                       {4, 576, 2100, 64, false, true, false},
                                       {8, 512, 2100, 128, true, true, false},
                                       {8, 100, 40, 32, true, false, true},
                                       {8, 100, 33, -1, false, true, false}};
  for (backend::GptqKernel family : {backend::GptqKernel::kTensorCore, backend::GptqKernel::kGemv}) {
    SCOPED_TRACE(family == backend::GptqKernel::kGemv ? "gemv family" : "tensor-core family");
    use_gptq_family(family, 0, 0, int64_t(1) << 20);
    run_gptq_cases({9, 40, 130}, cases);
  }
}

TEST_P(BackendOps, GptqLinearGemvFamily) {
  if (GetParam().spec == "cpu") GTEST_SKIP() << "the CPU backend has one path";
  dut_ = backend::make_backend(GetParam().spec,
                               {.activations = GetParam().act, .gptq_kernel = backend::GptqKernel::kGemv});
  run_gptq_cases({1, 8, 17});
}

TEST_P(BackendOps, DenseLinearGroupAndAccumulate) {
  // q/k/v-like products of one x (one launch on CUDA for few rows), then the residual
  // form y += x Wᵀ + b.
  for (DType wt : {DType::kF16, DType::kBF16, DType::kF32}) {
    for (int64_t M : {1, 5, 33}) {
      const int64_t K = 288;
      const int64_t Ns[] = {48, 1000, 130};
      std::vector<HostWeight> w;
      std::vector<std::unique_ptr<backend::Linear>> lr, ld;
      const std::vector<float> bias = random(1000);
      const HostWeight b = host_weight(bias, 1000, 1, DType::kF32);
      for (int64_t N : Ns) {
        w.push_back(host_weight(random(N * K, -0.1f, 0.1f), N, K, wt));
        io::TensorView bv = b.view;
        bv.shape = {N};
        bv.data = std::span(b.bytes).first(std::size_t(N) * 4);
        const io::TensorView* bp = N == 1000 ? nullptr : &bv;  // one of the three without a bias
        lr.push_back(ref_->dense_linear(w.back().view, bp));
        ld.push_back(dut_->dense_linear(w.back().view, bp));
      }
      auto x = put(random(M * K), M, K);
      const std::vector<Pair> y = run_group(lr, ld, x);
      const std::string what = std::string(dtype_name(wt)) + " M=" + std::to_string(M);
      // As a single dense linear: c = 4.
      for (int j = 0; j < 3; ++j) expect_close(y[std::size_t(j)], bound(4, K), "dense group " + what);
      auto acc = put(random(M * Ns[1]), M, Ns[1]);
      ref_->linear(*lr[1], x.ref.view(), acc.ref.view(), backend::Accumulate::kYes);
      dut_->linear(*ld[1], x.dut.view(), acc.dut.view(), backend::Accumulate::kYes);
      // The product's c = 4, plus the added y rounded and the sum rounded: c = 6.
      expect_close(acc, bound(6, K), "dense accumulate " + what);
    }
  }
}

struct BnbCase {
  quant::bnb::BnbType type;
  quant::bnb::AbsmaxStorage absmax;
  int64_t N, K;
};

TEST_P(BackendOps, BnbLinear) {
  using quant::bnb::AbsmaxStorage;
  using quant::bnb::BnbType;
  const BnbCase cases[] = {
      {BnbType::kNf4, AbsmaxStorage::kF32, 96, 288},           // blocks span rows (stories15M's K)
      {BnbType::kNf4, AbsmaxStorage::kDoubleQuant, 41, 576},   // SmolLM2's K, N % 8 != 0
      {BnbType::kFp4, AbsmaxStorage::kF32, 37, 75},            // odd K: rows start mid-byte
      {BnbType::kFp4, AbsmaxStorage::kDoubleQuant, 256, 1536},  // several double-quant groups
      {BnbType::kInt8, AbsmaxStorage::kF32, 96, 288},
      {BnbType::kInt8, AbsmaxStorage::kF32, 41, 577},
  };
  for (const BnbCase& c : cases) {
    quant::bnb::BnbPacked p = quant::bnb::quantize(random(c.N * c.K, -0.1f, 0.1f), c.N, c.K,
                                                   {.type = c.type, .blocksize = 64, .absmax = c.absmax});
    p.bias = random(c.N);
    auto lr = ref_->bnb_linear(p);
    auto ld = dut_->bnb_linear(p);
    for (int64_t M : {1, 3, 8, 17}) {
      std::vector<float> xh = random(M * c.K);
      // Two outlier columns (|x| 8-10, far from the threshold 6 after any rounding).
      for (int64_t m = 0; m < M; ++m) {
        xh[std::size_t(m * c.K + 2)] = 9.0f;
        xh[std::size_t(m * c.K + c.K - 1)] = -8.5f;
      }
      auto x = put(xh, M, c.K);
      auto y = poisoned(M, c.N);
      ref_->linear(*lr, x.ref.view(), y.ref.view());
      dut_->linear(*ld, x.dut.view(), y.dut.view());
      const std::string what = std::string("bnb ") + quant::bnb::type_name(c.type) +
                               (c.absmax == AbsmaxStorage::kDoubleQuant ? " dq" : "") + " N=" + std::to_string(c.N) +
                               " K=" + std::to_string(c.K) + " M=" + std::to_string(M);
      // 4-bit: as GPTQ (x rounded, weight code·absmax in fp32, K-term product, output): c = 4.
      double tol = bound(4, c.K);
      if (c.type == BnbType::kInt8 && GetParam().spec != "cpu") {
        // x rounded to the activation dtype moves x·127/r by at most 127·u, flipping the
        // rounding of a CA value (by 1, worth r/127 · W) with probability about 254·u.
        // Over K random terms that is √(254·u·K)·(r/127)·rms(W) against |y| ≈
        // √K·rms(x)·rms(W): normalised √(254·u)·r / (127·rms(x)), r = 1, rms(x) = 1/√3,
        // doubled for margin.
        tol += 2.0 * std::sqrt(254.0 * unit_roundoff(GetParam().act)) * std::sqrt(3.0) / 127.0;
      }
      expect_close(y, tol, what);
    }
  }
  // As the model runs them: q/k/v-like groups of one x (NF4, NF4 + double quant, FP4:
  // one of them without a bias), and the residual form y += x Wᵀ + b; then LLM.int8.
  const int64_t K = 576, Ns[] = {64, 41, 200};
  std::vector<std::unique_ptr<backend::Linear>> gr, gd;
  const quant::bnb::BnbConfig group_cfg[] = {{.type = BnbType::kNf4},
                                             {.type = BnbType::kNf4, .absmax = AbsmaxStorage::kDoubleQuant},
                                             {.type = BnbType::kFp4}};
  for (int j = 0; j < 3; ++j) {
    quant::bnb::BnbPacked p = quant::bnb::quantize(random(Ns[j] * K, -0.1f, 0.1f), Ns[j], K, group_cfg[j]);
    if (j != 1) p.bias = random(Ns[j]);
    gr.push_back(ref_->bnb_linear(p));
    gd.push_back(dut_->bnb_linear(p));
  }
  quant::bnb::BnbPacked p8 = quant::bnb::quantize(random(Ns[1] * K, -0.1f, 0.1f), Ns[1], K, {.type = BnbType::kInt8});
  p8.bias = random(Ns[1]);
  auto ir = ref_->bnb_linear(p8), id = dut_->bnb_linear(p8);
  for (int64_t M : {1, 3, 8, 17}) {
    auto x = put(random(M * K), M, K);
    const std::vector<Pair> y = run_group(gr, gd, x);
    const std::string what = " M=" + std::to_string(M);
    for (int j = 0; j < 3; ++j) expect_close(y[std::size_t(j)], bound(4, K), "bnb group" + what);  // c = 4 as above
    for (const auto& [r, d] : {std::pair{gr[1].get(), gd[1].get()}, std::pair{ir.get(), id.get()}}) {
      auto acc = put(random(M * Ns[1]), M, Ns[1]);
      ref_->linear(*r, x.ref.view(), acc.ref.view(), backend::Accumulate::kYes);
      dut_->linear(*d, x.dut.view(), acc.dut.view(), backend::Accumulate::kYes);
      // The product's bound plus the added y rounded and the sum rounded (c = 6); for
      // LLM.int8 on a 16-bit device also its activation-rounding term (above).
      double tol = bound(6, K);
      if (r == ir.get() && GetParam().spec != "cpu") {
        tol += 2.0 * std::sqrt(254.0 * unit_roundoff(GetParam().act)) * std::sqrt(3.0) / 127.0;
      }
      expect_close(acc, tol, "bnb accumulate " + r->describe() + what);
    }
  }
}

TEST_P(BackendOps, GptqLinearGroupAndAccumulate) {
  for (const backend::GptqKernel family : {backend::GptqKernel::kGemv, backend::GptqKernel::kTensorCore}) {
    if (GetParam().spec == "cpu" && family == backend::GptqKernel::kTensorCore) continue;
    use_gptq_family(family, 256);
    SCOPED_TRACE(family == backend::GptqKernel::kGemv ? "gemv family" : "tensor-core family");
    // Three layers of one K with their own act-order permutations, zeros and biases in one
    // grouped GEMV; then a mixed dense + GPTQ group (the backend may split it).
    for (int bits : {3, 4, 8}) {
      const GptqCase cases[] = {{bits, 512, 384, 128, true, true, false},
                                {bits, 512, 100, 128, false, false, true},
                                {bits, 512, 1000, 128, true, false, true}};
      std::vector<std::unique_ptr<backend::Linear>> lr, ld;
      for (const GptqCase& c : cases) {
        const quant::PackedLinear p = random_gptq(c, rng_);
        lr.push_back(ref_->gptq_linear(p));
        ld.push_back(dut_->gptq_linear(p));
      }
      for (int64_t M : {1, 3, 8, 17, 40}) {
        auto x = put(random(M * 512), M, 512);
        const std::vector<Pair> y = run_group(lr, ld, x);
        const std::string what = "bits=" + std::to_string(bits) + " M=" + std::to_string(M);
        // As GptqLinear: c = 4.
        for (int j = 0; j < 3; ++j) expect_close(y[std::size_t(j)], bound(4, 512), "gptq group " + what);
        auto acc = put(random(M * 100), M, 100);
        ref_->linear(*lr[1], x.ref.view(), acc.ref.view(), backend::Accumulate::kYes);
        dut_->linear(*ld[1], x.dut.view(), acc.dut.view(), backend::Accumulate::kYes);
        expect_close(acc, bound(6, 512), "gptq accumulate " + what);  // as the dense accumulate: c = 6
      }
    }
    const HostWeight w = host_weight(random(64 * 256, -0.1f, 0.1f), 64, 256, DType::kF16);
    const quant::PackedLinear p = random_gptq({4, 256, 256, 128, false, true, false}, rng_);
    auto dr = ref_->dense_linear(w.view, nullptr), dd = dut_->dense_linear(w.view, nullptr);
    auto gr = ref_->gptq_linear(p), gd = dut_->gptq_linear(p);
    auto x = put(random(2 * 256), 2, 256);
    auto y0 = poisoned(2, 64), y1 = poisoned(2, 256);
    const backend::Linear* wr[] = {dr.get(), gr.get()};
    const backend::Linear* wd[] = {dd.get(), gd.get()};
    const Tensor yr[] = {y0.ref.view(), y1.ref.view()};
    const Tensor yd[] = {y0.dut.view(), y1.dut.view()};
    ref_->linear_group(wr, x.ref.view(), yr);
    dut_->linear_group(wd, x.dut.view(), yd);
    expect_close(y0, bound(4, 256), "mixed group: dense");
    expect_close(y1, bound(4, 256), "mixed group: gptq");
  }
}

TEST_P(BackendOps, RopeWriteKv) {
  // The fused op against the CPU's composition rope, rope, write_kv.
  for (int64_t d : {64, 128}) {
    const int64_t rows = 5, heads = 4, kv_heads = 2, cap = 64;
    std::vector<float> inv(static_cast<std::size_t>(d / 2));
    for (int64_t i = 0; i < d / 2; ++i) inv[std::size_t(i)] = std::pow(500000.0f, -float(2 * i) / float(d));
    std::vector<int32_t> pos;
    for (int64_t r = 0; r < rows; ++r) pos.push_back(int32_t(3 + 7 * r));
    auto q = put(random(rows * heads * d), rows, heads * d);
    auto k = put(random(rows * kv_heads * d), rows, kv_heads * d);
    auto v = put(random(rows * kv_heads * d), rows, kv_heads * d);
    auto kc = put(random(cap * kv_heads * d), cap, kv_heads * d);
    auto vc = put(random(cap * kv_heads * d), cap, kv_heads * d);
    auto p = put_i32(pos);
    auto f = vec(inv);
    ref_->rope_write_kv(q.ref.view(), k.ref.view(), v.ref.view(), {.head_dim = d, .inv_freq = f.ref},
                        {kc.ref.view(), vc.ref.view()}, p.ref.view());
    dut_->rope_write_kv(q.dut.view(), k.dut.view(), v.dut.view(), {.head_dim = d, .inv_freq = f.dut},
                        {kc.dut.view(), vc.dut.view()}, p.dut.view());
    // As Rope (c = 3); v is copied (c = 1, the upload's rounding).
    const std::string what = "rope_write_kv d=" + std::to_string(d);
    expect_close(q, bound(3, 2), what + " q");
    expect_close(k, bound(3, 2), what + " k");
    expect_close(kc, bound(3, 2), what + " k cache");
    expect_close(vc, bound(1, 1), what + " v cache");
  }
}

TEST_P(BackendOps, WriteKvAndAttention) {
  struct Shape {
    int64_t heads, kv_heads, d;
  };
  for (Shape s : {Shape{4, 4, 64}, Shape{8, 2, 80}, Shape{8, 1, 128}, Shape{6, 6, 48}}) {
    for (int64_t window : {0, 7}) {
      const int64_t cap = 4096, kvd = s.kv_heads * s.d, qd = s.heads * s.d;
      const backend::AttentionShape shape{.heads = s.heads, .kv_heads = s.kv_heads, .head_dim = s.d,
                                          .sliding_window = window};
      // The cache holds random rows; prefill writes its own rows over them.
      auto kc = put(random(cap * kvd), cap, kvd);
      auto vc = put(random(cap * kvd), cap, kvd);
      const backend::KvView rc{kc.ref.view(), vc.ref.view()}, dc{kc.dut.view(), vc.dut.view()};
      struct Run {
        int64_t start, rows;
      };
      // Prefill from 0, a prefill continuing a cache, and decode steps deep in the cache.
      for (Run r : {Run{0, 1}, Run{0, 17}, Run{0, 300}, Run{100, 40}, Run{255, 1}, Run{1000, 1}, Run{4095, 1}}) {
        std::vector<int32_t> pos;
        for (int64_t t = 0; t < r.rows; ++t) pos.push_back(int32_t(r.start + t));
        auto p = put_i32(pos);
        auto k = put(random(r.rows * kvd), r.rows, kvd);
        auto v = put(random(r.rows * kvd), r.rows, kvd);
        ref_->write_kv(k.ref.view(), v.ref.view(), rc, p.ref.view());
        dut_->write_kv(k.dut.view(), v.dut.view(), dc, p.dut.view());
        auto q = put(random(r.rows * qd, -2.0f, 2.0f), r.rows, qd);
        auto out = poisoned(r.rows, qd);
        ref_->attention(q.ref.view(), rc, p.ref.view(), shape, out.ref.view());
        dut_->attention(q.dut.view(), dc, p.dut.view(), shape, out.dut.view());
        // q, k rounded; d-term score; exp; keys-term weighted sum with v rounded;
        // output rounded: c = 6, n = d + keys; in 16 bits prefill may run on tensor cores,
        // which round P to 16 bits before P·V: c = 7 (attention_bound).
        const std::string what = "attention heads=" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                                 " d=" + std::to_string(s.d) + " window=" + std::to_string(window) +
                                 " start=" + std::to_string(r.start) + " rows=" + std::to_string(r.rows);
        expect_close(out, attention_bound(s.d + r.start + r.rows), what);
      }
      expect_close(kc, bound(1, 1), "write_kv keys");
      expect_close(vc, bound(1, 1), "write_kv values");
    }
  }
}

// The tensor-core prefill kernel, forced for every row count, at the edges of its tiles
// (64 query rows per block, 64 keys per tile): a block that is mostly padding (1, 5 rows),
// exactly one block, one row into the next, a block one row short; a continuation of a
// cache (keys tiles starting off the 64 grid); windows shorter than a tile and longer;
// several segments packed in one call (positions with gaps and out of order, so that one
// block's rows attend disjoint key ranges); q and out as column windows of wider rows
// (the fused q|k|v layout), and a stride that is not a multiple of 8 (the kernel declines
// and the CUDA-core kernel runs). Rows past the output's end are checked to stay unwritten,
// and two sequences share one q / out buffer as in the model's batched prefill.
// Shapes: Llama-3.2-1B (32/8 heads of 64), Llama-3.1-8B (32/8 of 128), and 8/2 of each.
TEST_P(BackendOps, PrefillAttentionTensorCores) {
  const DType act = GetParam().act;
  if (act != DType::kF16 && act != DType::kBF16) GTEST_SKIP() << "skipped: the tensor-core kernel takes f16/bf16 only";
  dut_ = backend::make_backend(GetParam().spec, {.activations = act, .attention = backend::AttentionKernel::kTensorCore});
  struct Shape {
    int64_t heads, kv_heads, d;
  };
  struct Segment {
    int64_t start, rows;
  };
  struct Run {
    std::vector<Segment> segments;
    int64_t pad = 0;  // extra columns in each q / out row
  };
  for (Shape s : {Shape{8, 2, 64}, Shape{32, 8, 64}, Shape{8, 2, 128}, Shape{32, 8, 128}}) {
    const int64_t cap = 2048, kvd = s.kv_heads * s.d, qd = s.heads * s.d;
    const std::vector<Run> runs = {
        {{{0, 1}}},        {{{0, 5}}},      {{{0, 64}}},      {{{0, 65}}},
        {{{0, 127}}},      {{{0, 200}}},    {{{300, 65}}},    {{{1000, 200}}},
        {{{0, 70}, {1000, 60}}},          {{{500, 30}, {0, 40}}},
        {{{0, 127}}, 2 * kvd},  // q, out inside fused q|k|v rows
        {{{0, 65}}, 4},         // a stride the kernel declines
    };
    auto kc = put(random(cap * kvd), cap, kvd);
    auto vc = put(random(cap * kvd), cap, kvd);
    const backend::KvView rc{kc.ref.view(), vc.ref.view()}, dc{kc.dut.view(), vc.dut.view()};
    for (int64_t window : {0, 7, 100}) {
      const backend::AttentionShape shape{.heads = s.heads, .kv_heads = s.kv_heads, .head_dim = s.d,
                                          .sliding_window = window};
      for (const Run& r : runs) {
        std::vector<int32_t> pos;
        int64_t keys = 0;
        std::string segs;
        for (const Segment& g : r.segments) {
          for (int64_t t = 0; t < g.rows; ++t) pos.push_back(int32_t(g.start + t));
          keys = std::max(keys, g.start + g.rows);
          segs.append(" ").append(std::to_string(g.start)).append("+").append(std::to_string(g.rows));
        }
        const int64_t rows = int64_t(pos.size()), width = qd + r.pad;
        auto p = put_i32(pos);
        auto k = put(random(rows * kvd), rows, kvd);
        auto v = put(random(rows * kvd), rows, kvd);
        ref_->write_kv(k.ref.view(), v.ref.view(), rc, p.ref.view());
        dut_->write_kv(k.dut.view(), v.dut.view(), dc, p.dut.view());
        auto q = put(random(rows * width, -2.0f, 2.0f), rows, width);
        // 64 more output rows than the call sees: a padding row of the last block must
        // write nothing.
        auto out = poisoned(rows + 64, width);
        auto window_of = [&](const Buffer& b, int64_t n) {
          Tensor t = b.view().row_slice(0, n);
          t.cols = qd;
          return t;
        };
        ref_->attention(window_of(q.ref, rows), rc, p.ref.view(), shape, window_of(out.ref, rows));
        dut_->attention(window_of(q.dut, rows), dc, p.dut.view(), shape, window_of(out.dut, rows));
        const std::string what = "tensor-core attention heads=" + std::to_string(s.heads) + "/" +
                                 std::to_string(s.kv_heads) + " d=" + std::to_string(s.d) +
                                 " window=" + std::to_string(window) + " segments (start+rows):" + segs +
                                 " row stride=" + std::to_string(width);
        expect_close(window_of(out.ref, rows), window_of(out.dut, rows), attention_bound(s.d + keys), what);
        std::vector<float> tail(std::size_t(64 * width));
        dut_->download(out.dut.view().row_slice(rows, 64), tail);
        EXPECT_TRUE(std::all_of(tail.begin(), tail.end(), [](float x) { return std::isnan(x); }))
            << what << ": wrote past the last row";
      }
      // Two sequences in one q / out buffer, each with its own cache (the model's batched
      // prefill): the second is computed first, so a write past the first one's last row
      // would land on the second's rows.
      auto kc2 = put(random(cap * kvd), cap, kvd);
      auto vc2 = put(random(cap * kvd), cap, kvd);
      const backend::KvView rc2{kc2.ref.view(), vc2.ref.view()}, dc2{kc2.dut.view(), vc2.dut.view()};
      const Segment seq[2] = {{0, 70}, {100, 60}};
      auto q = put(random(130 * qd, -2.0f, 2.0f), 130, qd);
      auto out = poisoned(130, qd);
      for (int i : {1, 0}) {
        const int64_t first_row = i == 0 ? 0 : seq[0].rows;
        std::vector<int32_t> pos;
        for (int64_t t = 0; t < seq[i].rows; ++t) pos.push_back(int32_t(seq[i].start + t));
        auto p = put_i32(pos);
        auto k = put(random(seq[i].rows * kvd), seq[i].rows, kvd);
        auto v = put(random(seq[i].rows * kvd), seq[i].rows, kvd);
        ref_->write_kv(k.ref.view(), v.ref.view(), i == 0 ? rc : rc2, p.ref.view());
        dut_->write_kv(k.dut.view(), v.dut.view(), i == 0 ? dc : dc2, p.dut.view());
        ref_->attention(q.ref.view().row_slice(first_row, seq[i].rows), i == 0 ? rc : rc2, p.ref.view(), shape,
                        out.ref.view().row_slice(first_row, seq[i].rows));
        dut_->attention(q.dut.view().row_slice(first_row, seq[i].rows), i == 0 ? dc : dc2, p.dut.view(), shape,
                        out.dut.view().row_slice(first_row, seq[i].rows));
      }
      expect_close(out, attention_bound(s.d + 160),
                   "tensor-core attention heads=" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                       " d=" + std::to_string(s.d) + " window=" + std::to_string(window) +
                       ": sequences 0+70 and 100+60 packed in one buffer");
    }
  }
}

TEST_P(BackendOps, TokenNllAndArgmax) {
  for (int64_t vocab : {1000, 32000}) {
    const int64_t rows = 9;
    auto l = put(random(rows * vocab, -8.0f, 8.0f), rows, vocab);
    std::vector<int32_t> tg;
    for (int64_t r = 0; r < rows; ++r) tg.push_back(int32_t(std::uniform_int_distribution<int64_t>(0, vocab - 1)(rng_)));
    auto t = put_i32(tg);
    Pair nll{ref_->alloc(1, rows, DType::kF32), dut_->alloc(1, rows, DType::kF32)};
    ref_->token_nll(l.ref.view(), t.ref.view(), nll.ref.view());
    dut_->token_nll(l.dut.view(), t.dut.view(), nll.dut.view());
    // Logits rounded (an absolute error u·8 on each, the NLL ~ ln(vocab) + 8): c = 8.
    expect_close(nll, bound(8, vocab), "token_nll vocab=" + std::to_string(vocab));
    // argmax reads the backend's own logits: compare against the CPU's argmax of the
    // logits downloaded from the backend (rounding can move the maximum).
    std::vector<float> host(static_cast<std::size_t>(rows * vocab));
    dut_->download(l.dut.view(), host);
    Pair am{ref_->alloc(1, rows, DType::kI32), dut_->alloc(1, rows, DType::kI32)};
    ref_->upload(host, l.ref.view());
    ref_->argmax(l.ref.view(), am.ref.view());
    dut_->argmax(l.dut.view(), am.dut.view());
    std::vector<int32_t> a(static_cast<std::size_t>(rows)), b(a.size());
    ref_->download(am.ref.view(), a);
    dut_->download(am.dut.view(), b);
    EXPECT_EQ(a, b) << "argmax vocab=" << vocab;
  }
}

// Rows of logits in three shapes: broad (uniform), peaked (a few tokens far above a
// Gaussian bulk, like a language model's head) and coarse (multiples of 1/2: ties
// everywhere, so every cut lands inside a group of equal logits and the index order
// decides).
std::vector<float> sampling_logits(int kind, int64_t n, std::mt19937& rng) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::normal_distribution<float> g(0.0f, 2.0f);
  std::uniform_real_distribution<float> uni(-8.0f, 8.0f);
  for (auto& x : v) x = kind == 0 ? uni(rng) : kind == 1 ? g(rng) : std::round(uni(rng)) / 2.0f;
  if (kind == 1) {
    for (int i = 0; i < 5; ++i) v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)] = 9.0f + float(i);
  }
  return v;
}

TEST_P(BackendOps, Sample) {
  // The rule is integer arithmetic over IEEE-exact weights (backend/sampling_rule.h), so
  // every backend must return the reference's id for the same logits and uniform, in
  // every case: no tolerance. Each row is sampled as the backend holds it (its dtype's
  // rounding, downloaded as for argmax); the CPU op must equal sample_row on the host.
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  for (int64_t vocab : {1000, 128256}) {
    const int64_t rows = vocab == 1000 ? 6 : 2;
    const int draws = vocab == 1000 ? 24 : 3;
    for (int kind = 0; kind < 3; ++kind) {
      auto l = put(sampling_logits(kind, rows * vocab, rng_), rows, vocab);
      std::vector<float> host(static_cast<std::size_t>(rows * vocab));
      dut_->download(l.dut.view(), host);
      ref_->upload(host, l.ref.view());
      Pair u{ref_->alloc(1, rows, DType::kF32), dut_->alloc(1, rows, DType::kF32)};
      Pair id{ref_->alloc(1, rows, DType::kI32), dut_->alloc(1, rows, DType::kI32)};
      std::vector<int32_t> a(static_cast<std::size_t>(rows)), b(a.size());
      const std::string where = "vocab=" + std::to_string(vocab) + " logits kind " + std::to_string(kind);

      // T = 0 is the argmax.
      const std::vector<float> half(static_cast<std::size_t>(rows), 0.5f);
      dut_->upload(half, u.dut.view());
      ref_->argmax(l.ref.view(), id.ref.view());
      dut_->sample(l.dut.view(), u.dut.view(), {.temperature = 0.0f}, id.dut.view());
      ref_->download(id.ref.view(), a);
      dut_->download(id.dut.view(), b);
      EXPECT_EQ(a, b) << "greedy sample vs argmax, " << where;

      for (float T : {0.5f, 1.0f, 2.0f}) {
        for (int64_t k : {0, 1, 40}) {
          for (float p : {1.0f, 0.9f, 0.5f}) {
            const backend::SampleParams sp{.temperature = T, .top_k = k, .top_p = p};
            for (int d = 0; d < draws; ++d) {
              // The ends of the generator's grid (eval::Sampler), then random points on it.
              std::vector<float> us(static_cast<std::size_t>(rows));
              for (auto& x : us) x = d == 0 ? 0.0f : d == 1 ? 1.0f - 0x1p-24f : std::floor(uni(rng_) * 0x1p24f) * 0x1p-24f;
              ref_->upload(us, u.ref.view());
              dut_->upload(us, u.dut.view());
              std::fill(b.begin(), b.end(), -1);
              dut_->upload(b, id.dut.view());  // poisoned: an unwritten id fails
              ref_->sample(l.ref.view(), u.ref.view(), sp, id.ref.view());
              dut_->sample(l.dut.view(), u.dut.view(), sp, id.dut.view());
              ref_->download(id.ref.view(), a);
              dut_->download(id.dut.view(), b);
              for (int64_t r = 0; r < rows; ++r) {
                const std::span<const float> row(host.data() + r * vocab, std::size_t(vocab));
                if (GetParam().spec == "cpu") {
                  ASSERT_EQ(a[std::size_t(r)], backend::cpu::sample_row(row, sp, us[std::size_t(r)]));
                }
                EXPECT_EQ(a[std::size_t(r)], b[std::size_t(r)])
                    << where << " row " << r << " T=" << T << " top_k=" << k << " top_p=" << p
                    << " u=" << us[std::size_t(r)];
              }
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, BackendOps, testing::ValuesIn(targets()), target_name);

TEST(BackendRegistry, RejectsUnknownAndAbsentDevices) {
  EXPECT_THROW(backend::make_backend("tpu", {}), Error);
  EXPECT_THROW(backend::make_backend("cuda:x", {}), Error);
  EXPECT_THROW(backend::make_backend("cpu", {.activations = DType::kF16}), Error);
  if (backend::cuda_device_count() == 0) {
    try {
      backend::make_backend("cuda", {});
      ADD_FAILURE() << "cuda backend made without a device";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kDevice) << e.what();
    }
  }
}

#ifdef GPTQ_HAVE_CUDA
// The CUDA load-time repack decodes to exactly the checkpoint's weights (CPU only).
TEST(CudaRepack, RoundTripsExactly) {
  std::mt19937 rng(7);
  for (const GptqCase& c : gptq_cases()) {
    const quant::PackedLinear p = random_gptq(c, rng);
    const auto layout = backend::cuda::repack_for_cuda(p);
    ASSERT_TRUE(layout.has_value());
    EXPECT_EQ(layout->Np % 4, 0);
    EXPECT_EQ(layout->perm.empty(), !c.act_order);
    const quant::QuantizedLinear q = quant::unpack(p, quant::Format::kV2);
    const std::vector<float> w = backend::cuda::dequantize_host_layout(*layout);
    for (int64_t n = 0; n < c.N; ++n) {
      for (int64_t k = 0; k < c.K; ++k) {
        const int64_t g = q.g_idx[std::size_t(k)];
        const float want = q.scales[std::size_t(g * c.N + n)] *
                           float(int(q.q[std::size_t(n * c.K + k)]) - q.zeros[std::size_t(g * c.N + n)]);
        ASSERT_EQ(w[std::size_t(n * c.K + k)], want) << "bits=" << c.bits << " n=" << n << " k=" << k;
      }
    }
    // Sorted by group, each block of V codes lies in one group: whole groups take
    // span/V blocks each, a partial last group the rest.
    const int64_t V = quant::block_values(c.bits), span = c.group_size <= 0 ? c.K : c.group_size;
    ASSERT_EQ(layout->block_group.size(), std::size_t(c.K / V));
    for (int64_t b = 0; b < c.K / V; ++b) {
      ASSERT_EQ(layout->block_group[std::size_t(b)], b * V / span) << "bits=" << c.bits << " block " << b;
    }
  }
}

// A partial group that ends inside a block: 3-bit blocks hold 32 codes, and group size
// 48 at K = 128 (groups 48, 48, 32) puts groups 0 and 1 in block 1. The repack declines,
// and the CUDA backend refuses the layer.
TEST(CudaRepack, GroupsSplittingABlockAreDeclined) {
  std::mt19937 rng(8);
  EXPECT_FALSE(backend::cuda::repack_for_cuda(random_gptq({3, 128, 8, 48, false, false, false}, rng)).has_value());
}
#endif

}  // namespace
}  // namespace gptq
