// GPTQ on the CUDA QuantOps against the CPU reference: the same algorithm
// (quant/gptq.cpp) over both backends' compute, on synthetic layers for every option the
// CPU tests exercise, and end to end on stories15M through `gptq quantize --device cuda`.
// Skipped without a CUDA device.
//
// Why codes may differ at all: the GPU's Hessian is fp32 (the CPU's fp64), and its fp32
// trailing GEMM sums in another order. Both perturb the working weights by ~1e-7
// relative, which flips a code only where a weight sits within that of a rounding
// boundary, after which the row's error feedback differs by about one quantization
// step: so a small fraction of codes differ, by ±1, and the loss moves by far less than
// 1%.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/hessian.h"
#include "backend/registry.h"
#include "core/dtype.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "quant/calibration.h"
#include "quant/device_budget.h"
#include "quant/gptq.h"
#include "quant/pipeline.h"
#include "synthetic_layer.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#ifdef GPTQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace gptq {
namespace {

namespace fs = std::filesystem;

class CudaQuant : public testing::Test {
 protected:
  void SetUp() override {
    if (backend::cuda_device_count() == 0) GTEST_SKIP() << "skipped: no CUDA device";
    gpu_ = backend::make_backend("cuda:0", {.activations = DType::kF32});
  }
  std::unique_ptr<backend::Backend> gpu_;
};

struct Case {
  std::string name;
  quant::GptqOptions opts;
  bool f32_factor = false;
};

std::vector<Case> cases() {
  using quant::ActOrder;
  auto o = [](int bits, int group, bool sym, ActOrder order = ActOrder::kNone, bool stat = false, bool mse = false,
              int32_t min_zero = 0) {
    return quant::GptqOptions{
        .quant = {.bits = bits, .sym = sym, .scale_search = mse ? quant::ScaleSearch::kMse : quant::ScaleSearch::kMinMax,
                  .min_zero = min_zero},
        .group_size = group, .act_order = order, .static_groups = stat};
  };
  return {
      {"4bit_g128_sym", o(4, 128, true)},
      {"4bit_g32_asym", o(4, 32, false)},
      {"4bit_g128_gar", o(4, 128, true, ActOrder::kGroupAware)},
      {"4bit_g128_descact", o(4, 128, true, ActOrder::kDescAct)},
      {"4bit_g128_descact_static", o(4, 128, true, ActOrder::kDescAct, true)},
      {"4bit_ungrouped", o(4, -1, true)},
      {"4bit_g96_partial_groups", o(4, 96, false)},
      {"4bit_g32_mse", o(4, 32, true, ActOrder::kNone, false, true)},
      {"4bit_g128_asym_v1_min_zero", o(4, 128, false, ActOrder::kNone, false, false, 1)},
      {"2bit_g32", o(2, 32, false)},
      {"3bit_g128", o(3, 128, true)},
      {"8bit_g128", o(8, 128, true)},
      {"4bit_g128_f32_factor", o(4, 128, true), true},
  };
}

// Of two layers' codes (same size): how many are equal, and how many differ by more than 1.
std::pair<int64_t, int64_t> code_agreement(const quant::QuantizedLinear& a, const quant::QuantizedLinear& b) {
  int64_t same = 0, off_by_more = 0;
  for (size_t i = 0; i < a.q.size(); ++i) {
    const int d = std::abs(int(a.q[i]) - int(b.q[i]));
    same += d == 0;
    off_by_more += d > 1;
  }
  return {same, off_by_more};
}

class CudaQuantOps : public CudaQuant, public testing::WithParamInterface<Case> {};

// One synthetic layer, K = 320 (two full 128-column blocks and a partial one; partial
// groups at g96), N = 192, on both backends' QuantOps from the same host Hessian.
TEST_P(CudaQuantOps, MatchesCpu) {
  const Case& c = GetParam();
  constexpr int64_t N = 192, K = 320, R = 1024;
  const std::vector<float> W = test::gaussian(size_t(N * K), 7, 0.05f);
  std::vector<float> X = test::correlated_inputs(R, K, 17);
  for (int64_t r = 0; r < R; ++r) X[r * K + 5] = 0.0f;  // one dead column
  backend::cpu::HessianAccumulator acc(K);
  acc.add(X.data(), R);

  quant::GptqStats cs, gs;
  const quant::QuantizedLinear cq = quant::gptq_quantize(W.data(), N, K, acc.matrix().data(), c.opts, &cs);
#ifdef GPTQ_HAVE_CUDA
  auto ops = backend::cuda::make_cuda_quant_ops(
      *gpu_, c.f32_factor ? backend::FactorPrecision::kF32 : backend::FactorPrecision::kF64);
#else
  auto ops = backend::make_quant_ops(*gpu_);  // not reached: SetUp skips without CUDA
#endif
  auto h = ops->hessian(K);
  ops->assign(*h, acc.matrix(), acc.samples());
  const quant::QuantizedLinear gq = quant::gptq_quantize(*ops, W.data(), N, K, *h, c.opts, &gs);

  ASSERT_EQ(gq.g_idx, cq.g_idx);
  ASSERT_EQ(gq.q.size(), cq.q.size());
  const auto [same, off_by_more] = code_agreement(gq, cq);
  const double frac = double(same) / double(cq.q.size());
  if (c.opts.quant.bits == 4) {
    EXPECT_GE(frac, 0.99) << "identical codes";
  }
  EXPECT_EQ(off_by_more, 0) << "codes that differ by more than 1 (" << frac << " identical)";
  EXPECT_NEAR(gs.loss, cs.loss, 0.01 * cs.loss);
  EXPECT_EQ(gs.retries, cs.retries);
  // Dead column: quantized to its zero point on both.
  for (int64_t n = 0; n < N; ++n) EXPECT_EQ(gq.dequant(n, 5), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Options, CudaQuantOps, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& i) { return i.param.name; });

// The device packer against the host's (format/packing.h) on the same sweep result:
// qweight, qzeros, scales and g_idx byte for byte, for every bit width, sym and asym
// (asym zeros of 0 wrap to all ones in v1), v1 and v2 zeros, natural and act-order
// (scattered g_idx), a partial last group (K = 576 at g128: 4 full groups and one of
// 64) and one group (g-1). N = 200 is no multiple of 32: the qzeros rows end in a
// partly filled word (3-bit: 19 words for 200 zeros, the last block cut short).
// K = 2200 is split in halves (CudaQuantOps factors and inverts triangles wider than
// 1024 by recursion: 1024 + 1176, then 512 + 664), partial tiles included; act-order
// permutes H first. The same contract as MatchesCpu, for the same reason.
TEST_F(CudaQuant, RecursiveFactorOfAWideHessianMatchesCpu) {
  constexpr int64_t N = 64, K = 2200, R = 4096;
  const std::vector<float> W = test::gaussian(size_t(N * K), 11, 0.05f);
  const std::vector<float> X = test::correlated_inputs(R, K, 23);
  backend::cpu::HessianAccumulator acc(K);
  acc.add(X.data(), R);
  const quant::GptqOptions opts{.quant = {.bits = 4, .sym = true}, .group_size = 128,
                                .act_order = quant::ActOrder::kDescAct};
  quant::GptqStats cs;
  const quant::QuantizedLinear cq = quant::gptq_quantize(W.data(), N, K, acc.matrix().data(), opts, &cs);
  for (const auto precision : {backend::FactorPrecision::kF64, backend::FactorPrecision::kF32}) {
    quant::GptqStats gs;
#ifdef GPTQ_HAVE_CUDA
    auto ops = backend::cuda::make_cuda_quant_ops(*gpu_, precision);
#else
    auto ops = backend::make_quant_ops(*gpu_);  // not reached: SetUp skips without CUDA
#endif
    auto h = ops->hessian(K);
    ops->assign(*h, acc.matrix(), acc.samples());
    const quant::QuantizedLinear gq = quant::gptq_quantize(*ops, W.data(), N, K, *h, opts, &gs);
    ASSERT_EQ(gq.q.size(), cq.q.size());
    const auto [same, off_by_more] = code_agreement(gq, cq);
    const bool f64 = precision == backend::FactorPrecision::kF64;
    EXPECT_GE(double(same), 0.99 * double(cq.q.size())) << (f64 ? "fp64" : "fp32") << " factor";
    EXPECT_EQ(off_by_more, 0) << (f64 ? "fp64" : "fp32") << " factor";
    EXPECT_NEAR(gs.loss, cs.loss, 0.01 * cs.loss) << (f64 ? "fp64" : "fp32") << " factor";
    EXPECT_EQ(gs.retries, cs.retries);
  }
}

TEST_F(CudaQuant, PackOnTheDeviceMatchesTheHostPacker) {
  constexpr int64_t N = 200, K = 576, R = 768;
  const std::vector<float> W = test::gaussian(size_t(N * K), 11, 0.05f);
  const std::vector<float> X = test::correlated_inputs(R, K, 23);
  backend::cpu::HessianAccumulator acc(K);
  acc.add(X.data(), R);
  auto ops = backend::make_quant_ops(*gpu_);
  auto h = ops->hessian(K);
  ops->assign(*h, acc.matrix(), acc.samples());
  for (const int bits : {2, 3, 4, 8}) {
    for (const bool sym : {true, false}) {
      for (const quant::ActOrder order : {quant::ActOrder::kNone, quant::ActOrder::kDescAct}) {
        for (const int group : {128, -1}) {
          const quant::GptqOptions o{.quant = {.bits = bits, .sym = sym}, .group_size = group, .act_order = order};
          const auto r = quant::gptq_quantize_resident(*ops, {.host = W.data()}, N, K, *h, o, nullptr);
          quant::QuantizedLinear q;
          ops->download(*r, q);
          for (const quant::Format f : {quant::Format::kV1, quant::Format::kV2}) {
            SCOPED_TRACE(std::to_string(bits) + "-bit " + (sym ? "sym" : "asym") + " g" + std::to_string(group) +
                         (order == quant::ActOrder::kDescAct ? " desc_act" : "") +
                         (f == quant::Format::kV1 ? " v1" : " v2"));
            const quant::PackedLinear want = quant::pack(q, f), got = ops->pack(*r, f);
            EXPECT_EQ(got.bits, want.bits);
            EXPECT_EQ(got.group_size, want.group_size);
            EXPECT_EQ(got.qweight_shape, want.qweight_shape);
            EXPECT_EQ(got.qzeros_shape, want.qzeros_shape);
            EXPECT_EQ(got.scales_shape, want.scales_shape);
            // The first word that differs, if any: which element and both values.
            auto first_diff = [](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
              for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
                if (a[i] != b[i]) return "word " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
              }
              return std::string("sizes ") + std::to_string(a.size()) + " vs " + std::to_string(b.size());
            };
            EXPECT_TRUE(got.qweight == want.qweight) << "qweight, device vs host " << first_diff(got.qweight, want.qweight);
            EXPECT_TRUE(got.qzeros == want.qzeros) << "qzeros, device vs host " << first_diff(got.qzeros, want.qzeros);
            EXPECT_TRUE(got.scales == want.scales) << "scales";
            EXPECT_EQ(got.g_idx, want.g_idx);
            EXPECT_TRUE(got.bias.empty());
          }
        }
      }
    }
  }
}

// The Hessian of R correlated input rows (test::correlated_inputs, `seed`), made on the
// CPU in fp64 and assigned to a Hessian of `ops`.
std::unique_ptr<backend::Hessian> device_hessian(backend::QuantOps& ops, int64_t R, int64_t K, uint64_t seed) {
  const std::vector<float> X = test::correlated_inputs(R, K, seed);
  backend::cpu::HessianAccumulator acc(K);
  acc.add(X.data(), R);
  auto h = ops.hessian(K);
  ops.assign(*h, acc.matrix(), acc.samples());
  return h;
}

// The device-to-device pool (QuantOps::pool over NCCL, quant/parallel.h) with the one
// rank a one-GPU machine has: H := 0.5 · H, exact in fp32 (a power of two), through the
// scale kernel and a one-rank all-reduce, and the row count set. Several GPUs run the
// real pooling (not measured yet: no several-GPU machine was lent).
TEST_F(CudaQuant, DevicePoolOfOneRankScalesTheHessian) {
  std::vector<backend::Backend*> ranks = {gpu_.get()};
  const auto comms = backend::make_device_comms(ranks);
  if (comms.empty()) GTEST_SKIP() << "skipped: this build has no NCCL";
  constexpr int64_t K = 320;
  auto ops = backend::make_quant_ops(*gpu_);
  const auto h = device_hessian(*ops, 256, K, 9);
  const std::vector<double> before = ops->download(*h);
  ASSERT_TRUE(ops->pool(*h, 0.5, 1000, *comms[0]));
  EXPECT_EQ(h->samples(), 1000);
  const std::vector<double> after = ops->download(*h);
  for (std::size_t i = 0; i < after.size(); ++i) ASSERT_EQ(after[i], 0.5 * before[i]) << i;
  // Another backend's communicator is not this QuantOps': it declines, and the caller
  // pools through the host.
  const auto cpu = backend::make_cpu_backend();
  auto cpu_ops = backend::make_quant_ops(*cpu);
  auto hc = cpu_ops->hessian(K);
  EXPECT_FALSE(cpu_ops->pool(*hc, 0.5, 1000, *comms[0]));
}

// A sweep result lives in the QuantOps' scratch: once a later call reuses it, reading
// the result is refused instead of returning another module's codes.
TEST_F(CudaQuant, StaleSweepResultIsRefused) {
  constexpr int64_t N = 32, K = 64;
  const std::vector<float> W = test::gaussian(size_t(N * K), 5, 0.05f);
  auto ops = backend::make_quant_ops(*gpu_);
  const auto h = device_hessian(*ops, 256, K, 9);
  const quant::GptqOptions o{.quant = {.bits = 4}, .group_size = 32};
  const auto first = quant::gptq_quantize_resident(*ops, {.host = W.data()}, N, K, *h, o, nullptr);
  const auto second = quant::gptq_quantize_resident(*ops, {.host = W.data()}, N, K, *h, o, nullptr);
  test::expect_error([&] { ops->pack(*first, quant::Format::kV2); }, "reused its memory", ErrorKind::kInvalidArgument);
  EXPECT_NO_THROW(ops->pack(*second, quant::Format::kV2));
}

// GPTQ reading the weights the dense layer already holds on the device (the pipeline's
// route when the backend keeps the checkpoint's dtype) gives exactly what the fp32 host
// weights give: the values are the same, widened on the device instead of the host. The
// weights are rounded to bf16 first so that the bf16 tensor holds them exactly; F32 too.
// A non-finite resident weight is refused as a host one is.
TEST_F(CudaQuant, ResidentWeightsEqualHostWeights) {
  constexpr int64_t N = 48, K = 256;
  std::vector<float> W = test::gaussian(size_t(N * K), 15, 0.05f);
  for (float& w : W) w = bf16_to_f32(f32_to_bf16(w));
  auto ops = backend::make_quant_ops(*gpu_);
  const auto h = device_hessian(*ops, 512, K, 16);
  const quant::GptqOptions o{.quant = {.bits = 4}, .group_size = 64, .act_order = quant::ActOrder::kGroupAware};
  quant::QuantizedLinear host, dev;
  quant::GptqStats sh, sd;
  ops->download(*quant::gptq_quantize_resident(*ops, {.host = W.data()}, N, K, *h, o, &sh), host);
  auto expect_same = [&](backend::Tensor resident) {
    ops->download(*quant::gptq_quantize_resident(*ops, {.resident = resident}, N, K, *h, o, &sd), dev);
    EXPECT_EQ(dev.q, host.q) << dtype_name(resident.dtype);
    EXPECT_EQ(dev.scales, host.scales) << dtype_name(resident.dtype);
    EXPECT_EQ(dev.zeros, host.zeros) << dtype_name(resident.dtype);
    EXPECT_EQ(sd.loss, sh.loss) << dtype_name(resident.dtype);
  };
  backend::Buffer f32 = gpu_->alloc(N, K, DType::kF32);
  gpu_->upload(W, f32.view());
  expect_same(f32.view());
  // A bf16 tensor, made by a bf16 backend's upload (exact: the values are bf16 already).
  auto bf = backend::make_backend("cuda:0", {.activations = DType::kBF16});
  backend::Buffer b16 = bf->alloc(N, K, DType::kBF16);
  bf->upload(W, b16.view());
  bf->synchronize();
  expect_same(b16.view());
  std::vector<float> bad = W;
  bad[7] = std::numeric_limits<float>::infinity();
  gpu_->upload(bad, f32.view());
  test::expect_error([&] { quant::gptq_quantize_resident(*ops, {.resident = f32.view()}, N, K, *h, o, nullptr); },
                     "W has NaN or Inf", ErrorKind::kInvalidArgument);
}

// The swap-in built on the device against the load route (Backend::gptq_linear of the
// host-packed v2 tensors with the bias): the same description and size, and the same
// outputs bit for bit (the same kernels reading the same layout bytes), at a decode-size
// and a prefill-size batch. fp16 activations (the tensor-core layout for every width)
// and fp32 (the GEMV layout: swap_in takes the load route there).
TEST_F(CudaQuant, SwapInOnTheDeviceEqualsTheLoadedLayer) {
  constexpr int64_t N = 200, K = 576, R = 768;
  const std::vector<float> W = test::gaussian(size_t(N * K), 13, 0.05f);
  const std::vector<float> X = test::correlated_inputs(R, K, 29);
  const std::vector<float> bias = test::gaussian(size_t(N), 31, 0.1f);
  backend::cpu::HessianAccumulator acc(K);
  acc.add(X.data(), R);
  // Both layouts: the fragment order (tensor-core kernel, f16) and the GEMV layout
  // (the default kernel, and f32 whatever the kernel), each built on the device.
  for (const auto& [act, kernel] : {std::pair{DType::kF16, backend::GptqKernel::kTensorCore},
                                   std::pair{DType::kF16, backend::GptqKernel::kGemv},
                                   std::pair{DType::kF32, backend::GptqKernel::kGemv}}) {
    const auto gpu = backend::make_backend("cuda:0", {.activations = act, .gptq_kernel = kernel});
    auto ops = backend::make_quant_ops(*gpu);
    auto h = ops->hessian(K);
    ops->assign(*h, acc.matrix(), acc.samples());
    for (const int bits : {2, 3, 4, 8}) {
      for (const quant::ActOrder order : {quant::ActOrder::kNone, quant::ActOrder::kDescAct}) {
        for (const int group : {128, -1}) {
          SCOPED_TRACE(std::string(dtype_name(act)) +
                       (kernel == backend::GptqKernel::kGemv ? " gemv " : " tensor-core ") + std::to_string(bits) +
                       "-bit g" + std::to_string(group) + (order == quant::ActOrder::kDescAct ? " desc_act" : ""));
          const quant::GptqOptions o{.quant = {.bits = bits, .sym = false}, .group_size = group, .act_order = order};
          const auto r = quant::gptq_quantize_resident(*ops, {.host = W.data()}, N, K, *h, o, nullptr);
          quant::PackedLinear p = ops->pack(*r, quant::Format::kV2);
          p.bias = bias;
          const auto loaded = gpu->gptq_linear(std::move(p));
          const auto swapped = ops->swap_in(*gpu, *r, bias);
          EXPECT_EQ(swapped->describe(), loaded->describe());
          EXPECT_EQ(swapped->weight_bytes(), loaded->weight_bytes());
          for (const int64_t M : {int64_t(3), int64_t(64)}) {
            backend::Buffer x = gpu->alloc(M, K), y1 = gpu->alloc(M, N), y2 = gpu->alloc(M, N);
            gpu->upload(std::span<const float>(X.data(), size_t(M * K)), x.view());
            gpu->linear(*loaded, x.view(), y1.view());
            gpu->linear(*swapped, x.view(), y2.view());
            std::vector<float> a(size_t(M * N)), b(size_t(M * N));
            gpu->download(y1.view(), a);
            gpu->download(y2.view(), b);
            EXPECT_TRUE(a == b) << "M=" << M;
          }
        }
      }
    }
  }
}

// H accumulated on the device from backend tensors, in uneven chunks, against the fp64
// reference. Bound per entry: each chunk's fp32 GEMM sums r ≤ r_max exact products (error
// ≤ r·u·Σ|x_i x_j| over the chunk, u = 2⁻²⁴), and the running mean adds ≤ 4 roundings
// per chunk, each ≤ u of the entry's magnitude bound S_ij = 2/n Σ|x_ri x_rj|. Three
// chunks: ≤ (r_max + 12)·u·S_ij. K = 2100 and 4096 take the block-triangular product
// (2 and 4 blocks along K, the first with a bound off the 64 grid's even split): the
// entries filled in from the other triangle must equal their mirror exactly.
TEST_F(CudaQuant, HessianAccumulationMatchesFp64) {
  for (const auto& [K, R] : {std::pair<int64_t, int64_t>{96, 1000}, {2100, 200}, {4096, 64}}) {
    const std::vector<float> X = test::correlated_inputs(R, K, 3);
    backend::cpu::HessianAccumulator ref(K);
    ref.add(X.data(), R);
    auto ops = backend::make_quant_ops(*gpu_);
    auto h = ops->hessian(K);
    int64_t r0 = 0, r_max = 0;
    for (const int64_t r : {R * 3 / 10, R * 4 / 10, R - R * 3 / 10 - R * 4 / 10}) {
      backend::Buffer b = gpu_->alloc(r, K, DType::kF32);
      gpu_->upload(std::span<const float>(X.data() + r0 * K, size_t(r * K)), b.view());
      ops->accumulate(*h, b.view());
      r0 += r;
      r_max = std::max(r_max, r);
    }
    EXPECT_EQ(h->samples(), R);
    const std::vector<double> got = ops->download(*h);
    const double u = std::ldexp(1.0, -24);
    for (int64_t i = 0; i < K; ++i) {
      for (int64_t j = 0; j < K; ++j) {
        ASSERT_EQ(got[i * K + j], got[j * K + i]) << "K=" << K << " H[" << i << ", " << j << "]";
        if (j < i) continue;
        double s = 0.0;
        for (int64_t r = 0; r < R; ++r) s += std::fabs(double(X[r * K + i]) * double(X[r * K + j]));
        s *= 2.0 / double(R);
        ASSERT_NEAR(got[i * K + j], ref.matrix()[i * K + j], double(r_max + 12) * u * s)
            << "K=" << K << " H[" << i << ", " << j << "]";
      }
    }
  }
}

TEST_F(CudaQuant, RejectsAnotherBackendsHessian) {
  auto gpu_ops = backend::make_quant_ops(*gpu_);
  auto cpu_ops = backend::make_cpu_quant_ops();
  auto h = cpu_ops->hessian(8);
  test::expect_error([&] { gpu_ops->diagonal(*h); }, "another backend");
}

// The whole pipeline on stories15M, CLI to checkpoint, CPU and CUDA with the same
// settings and calibration: perplexity within 0.5% (the per-module differences above,
// summed over 42 modules, move the model's perplexity by far less).
TEST_F(CudaQuant, Stories15mEndToEndMatchesCpu) {
  test::TempDir tmp;
  const fs::path calib = test::source_dir() / "data" / "stories15M-samples.txt";
  auto quantize = [&](const std::string& device) {
    const fs::path out = tmp.path() / device;
    const std::string cmd = test::cli_binary().string() + " quantize " + test::stories15m_dir().string() + " --out " +
                            out.string() + " --calib " + calib.string() +
                            " --bits 4 --group-size 32 --n-samples 64 --seq-len 256 --device " + device +
                            " > /dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
  };
  const fs::path cpu_dir = quantize("cpu"), gpu_dir = quantize("cuda");
  const auto tk = tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json");
  const std::vector<int32_t> ids = tk.encode(test::read_file(calib).substr(0, 200000));
  auto ppl = [&](const fs::path& dir) {
    auto be = backend::make_cpu_backend();
    auto m = model::Model::load(dir, *be);
    return eval::perplexity(m, ids, {.ctx = 256, .max_windows = 60}).ppl;
  };
  const double p_cpu = ppl(cpu_dir), p_gpu = ppl(gpu_dir);
  EXPECT_NEAR(p_gpu, p_cpu, 0.005 * p_cpu) << "cpu " << p_cpu << " cuda " << p_gpu;
}

quant::CalibSet stories_calibration(int64_t samples) {
  const auto tk = tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json");
  return quant::load_calibration(
      tk, {.files = {test::source_dir() / "data" / "stories15M-samples.txt"}, .n_samples = samples, .seq_len = 128});
}

// A cap below one layer's need: refused before any work, naming the bytes.
TEST_F(CudaQuant, CapBelowOneLayerIsRefusedWithTheBytes) {
  test::TempDir tmp;
  const quant::CalibSet calib = stories_calibration(4);
  quant::PipelineOptions po{.out_dir = tmp.path() / "out", .max_device_bytes = 1 << 20};
  test::expect_error([&] { quant::quantize_model(test::stories15m_dir(), calib, *gpu_, po); },
                     "quantizing needs at least", ErrorKind::kDevice);
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));
}

// A cap that holds one layer, the positions and 300 chunk rows of a streamed run (each
// row's forward work, per_row, and its row of the second staging slot that the next
// chunk streams into, per_token): the 16-sample batch (2048 tokens) is shrunk to chunks
// of ≤ 300 tokens (2 samples), the activations streamed from host memory, with one note,
// and the device never allocates past the cap.
TEST_F(CudaQuant, CapShrinksTheBatch) {
  test::TempDir tmp;
  const quant::CalibSet calib = stories_calibration(16);
  const quant::DeviceBudget need = quant::device_budget(model::load_config(test::stories15m_dir()), {}, DType::kF32);
  std::vector<std::string> notes;
  quant::PipelineOptions po{.out_dir = tmp.path() / "out",
                            .batch_samples = 16,
                            .max_device_bytes = need.fixed() + 4 * 2048 + 300 * (need.per_row + need.per_token),
                            .on_note = [&](const std::string& n) { notes.push_back(n); }};
  quant::quantize_model(test::stories15m_dir(), calib, *gpu_, po);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("chunks of at most 300 tokens"), std::string::npos) << notes[0];
  EXPECT_NE(notes[0].find("streamed from page-locked host memory"), std::string::npos) << notes[0];
  EXPECT_LE(gpu_->memory().peak_allocated, po.max_device_bytes);
}

// The activations resident on the device, streamed from page-locked host memory, with
// the residual after attention kept or attention recomputed: the same kernels on the same
// values (bf16 activations, the dtype a real run uses), so the same checkpoint, byte for byte.
TEST_F(CudaQuant, ActivationPlacementGivesTheSameCheckpoint) {
  const auto gpu = backend::make_backend("cuda:0", {.activations = DType::kBF16});
  test::TempDir tmp;
  const quant::CalibSet calib = stories_calibration(8);
  auto run = [&](const std::string& name, quant::ActivationHome home, quant::AttentionReuse reuse) {
    quant::PipelineOptions po{.out_dir = tmp.path() / name, .batch_samples = 3, .activations = home,
                              .attention_reuse = reuse};
    po.config.defaults = {.bits = 4, .group_size = 32, .sym = true, .desc_act = false};
    const quant::QuantizeResult r = quant::quantize_model(test::stories15m_dir(), calib, *gpu, po);
    for (const auto& t : r.layers) EXPECT_EQ(t.passes, 5) << quant::describe(t);
    return test::read_file(po.out_dir / "model.safetensors");
  };
  const std::string reference = run("recompute-host", quant::ActivationHome::kHost, quant::AttentionReuse::kRecompute);
  EXPECT_TRUE(run("reuse-device", quant::ActivationHome::kAuto, quant::AttentionReuse::kAuto) == reference);
  EXPECT_TRUE(run("reuse-host", quant::ActivationHome::kHost, quant::AttentionReuse::kAuto) == reference);
  EXPECT_TRUE(run("recompute-device", quant::ActivationHome::kAuto, quant::AttentionReuse::kRecompute) == reference);
}

}  // namespace
}  // namespace gptq
