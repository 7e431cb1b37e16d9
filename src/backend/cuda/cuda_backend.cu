// The CUDA backend's glue: device memory, one stream, cuBLAS, the Linear types, and
// the dispatch from the Backend interface to the kernel launchers (raw pointers,
// shapes, stream). Tensor and ownership types stop here.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "backend/allocation_meter.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/bnb_gemm.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/dense_gemv.cuh"
#include "backend/cuda/elementwise.cuh"
#include "backend/cuda/flash_attention.cuh"
#include "backend/cuda/gptq_gemm.cuh"
#include "backend/cuda/gptq_mma.cuh"
#include "backend/cuda/gptq_repack.h"
#include "backend/cuda/gptq_sorted.cuh"
#include "backend/cuda/gptq_tiles.cuh"
#include "backend/cuda/quant_ops.cuh"
#include "backend/cuda/sampling.cuh"
#include "core/parallel_copy.h"
#include "format/bnb_codebook.h"
#include "format/fragment_layout.h"
#include "io/checkpoint.h"

namespace gptq::backend::cuda {

void throw_cuda(const char* stmt, const char* file, int line, const std::string& msg) {
  std::string_view f = file;
  if (const auto p = f.rfind("src/"); p != std::string_view::npos) f.remove_prefix(p);
  throw Error(ErrorKind::kDevice, std::string(stmt) + " at " + std::string(f) + ":" + std::to_string(line) + ": " + msg);
}

namespace {

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

// The backend's stream, destroyed when the backend and the last allocation ordered on it
// are gone (a weight may outlive the backend that made it).
struct OwnedStream {
  cudaStream_t stream = nullptr;
  OwnedStream() { CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
  ~OwnedStream() {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
};

// Device memory made by this backend; one allocation per Buffer, from the device's
// stream-ordered pool (cudaMallocAsync on the backend's stream). Why a pool: a
// quantization swaps every linear of every layer from dense to GPTQ tensors, and plain
// cudaMalloc/cudaFree cost milliseconds each for large blocks, cudaFree waiting for the
// whole device: the 8B shape spent ~4.8 s in swap-ins and ~2.7 s loading layers, most of
// it there. Freed blocks go back to the pool in stream order (cudaFreeAsync: no device
// wait) and the pool keeps them for the next allocation (release threshold: never).
// During a graph capture, whose relaxed mode lets work size a workspace the first time,
// the block comes from cudaMalloc as before, so no allocation becomes part of a graph.
struct DeviceMemory {
  std::shared_ptr<AllocationMeter> meter;
  std::shared_ptr<OwnedStream> stream;
  int device = 0;

  // Keeps freed memory in the device's default pool instead of returning it at each
  // synchronisation.
  static void keep_pool(int device) {
    cudaMemPool_t pool = nullptr;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t never = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &never));
  }

  std::shared_ptr<void> alloc(uint64_t bytes, const std::string& what) {
    void* p = nullptr;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream->stream, &capture));
    const bool pooled = capture == cudaStreamCaptureStatusNone;
    const uint64_t n = std::max<uint64_t>(bytes, 1);
    cudaError_t err = pooled ? cudaMallocAsync(&p, n, stream->stream) : cudaMalloc(&p, n);
    if (err == cudaErrorMemoryAllocation && pooled) {
      // The pool may hold freed blocks of other sizes: give them back and try once more.
      cudaGetLastError();
      cudaMemPool_t pool = nullptr;
      CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
      CUDA_CHECK(cudaStreamSynchronize(stream->stream));
      CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
      err = cudaMallocAsync(&p, n, stream->stream);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      throw Error(ErrorKind::kDevice, "cuda:" + std::to_string(device) + ": out of memory allocating " + mib(bytes) +
                                          " for " + what + " (" + mib(free) + " free of " + mib(total) + ")");
    }
    CUDA_CHECK(err);
    meter->add(bytes);
    return std::shared_ptr<void>(p, [m = meter, s = stream, bytes, pooled](void* q) {
      // No throw from a deleter; a failed free here means the context is gone.
      if (pooled) {
        cudaFreeAsync(q, s->stream);
      } else {
        cudaFree(q);
      }
      m->remove(bytes);
    });
  }
};

class CudaLinear : public Linear {
 public:
  CudaLinear(int64_t out, int64_t in) : out_(out), in_(in) {}
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }

 protected:
  int64_t out_, in_;
};

// W [out, in] in the activation dtype (converted once at load when the checkpoint's
// dtype differs), bias fp32.
class DenseLinear final : public CudaLinear {
 public:
  DenseLinear(int64_t out, int64_t in, DType dtype) : CudaLinear(out, in), dtype(dtype) {}
  uint64_t weight_bytes() const override { return uint64_t(out_ * in_) * dtype_size(dtype); }
  std::string describe() const override { return std::string(dtype_name(dtype)); }
  DType dtype;
  std::shared_ptr<void> weight;
  std::shared_ptr<void> bias;  // float [out] or null
};

class GptqLinear final : public CudaLinear {
 public:
  GptqLinear(int64_t out, int64_t in) : CudaLinear(out, in) {}
  uint64_t weight_bytes() const override { return bytes; }
  std::string describe() const override { return what; }
  // One of the two layouts: fragment order for the tensor-core kernels where they take
  // the format (mma_supported), the GEMV layout otherwise (fp32 activations, bf16 8-bit).
  std::optional<MmaDeviceLayout> mma;
  GptqDeviceLayout layout;
  std::vector<std::shared_ptr<void>> memory;
  uint64_t bytes = 0;
  std::string what;
};

// A bitsandbytes layer (src/format/bnb_packed.h) copied as is; its code books ride in
// each launch.
class BnbLinear final : public CudaLinear {
 public:
  BnbLinear(int64_t out, int64_t in) : CudaLinear(out, in) {}
  uint64_t weight_bytes() const override { return bytes; }
  std::string describe() const override { return what; }
  BnbDeviceLayout layout;
  BnbTables tables{};
  std::vector<std::shared_ptr<void>> memory;
  uint64_t bytes = 0;
  std::string what;
};

class CudaGraph final : public Graph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t s) : exec_(exec), stream_(s) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  void replay() override { CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int index, const BackendOptions& o)
      : index_(index),
        act_(o.activations),
        mma_max_rows_(o.gptq_mma_max_rows),
        max_splits_(int(o.gptq_max_splits)),
        tile_bytes_(o.dequant_tile_bytes),
        gptq_kernel_(o.gptq_kernel),
        attention_(o.attention) {
    mem_.meter = meter_;
    mem_.device = index;
    CUDA_CHECK(cudaSetDevice(index));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    name_ = "cuda:" + std::to_string(index) + " (" + prop.name + ")";
    mem_.stream = std::make_shared<OwnedStream>();
    stream_ = mem_.stream->stream;
    DeviceMemory::keep_pool(index);
    CUBLAS_CHECK(cublasCreate(&cublas_));
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // Our own workspace, so cuBLAS never allocates inside a graph capture.
    cublas_ws_ = mem_.alloc(kCublasWorkspace, "the cuBLAS workspace");
    CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_.get(), kCublasWorkspace));
    // f32 means f32: no TF32 rounding in the conformance dtype.
    CUBLAS_CHECK(cublasSetMathMode(cublas_, act_ == DType::kF32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH));
    flash_attention_init();
    gptq_mma_init();
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&bad_id_host_), sizeof(int32_t), cudaHostAllocMapped));
    *bad_id_host_ = 0;
    CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&bad_id_dev_), bad_id_host_, 0));
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cublasDestroy(cublas_);
    cudaFreeHost(bad_id_host_);  // the stream goes with mem_'s last reference
    for (cudaEvent_t e : host_stage_done_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (beside_) cudaStreamSynchronize(beside_->stream);
    for (const auto& [t, c] : tickets_) cudaEventDestroy(c.done);
    for (cudaEvent_t e : spare_events_) cudaEventDestroy(e);
    if (ops_queued_ != nullptr) cudaEventDestroy(ops_queued_);
  }

  std::string name() const override { return name_; }
  Device device() const override { return Device::kCuda; }
  int index() const { return index_; }
  void bind_thread() override { CUDA_CHECK(cudaSetDevice(index_)); }
  DType activation_dtype() const override { return act_; }

  Buffer alloc(int64_t rows, int64_t cols, DType dtype) override {
    GPTQ_CHECK(rows >= 0 && cols >= 0, "cuda backend: negative buffer size");
    const uint64_t bytes = uint64_t(std::max<int64_t>(rows * cols, 1)) * dtype_size(dtype);
    auto mem = mem_.alloc(bytes, "a [" + std::to_string(rows) + ", " + std::to_string(cols) + "] tensor");
    CUDA_CHECK(cudaMemsetAsync(mem.get(), 0, bytes, stream_));
    return make_buffer(mem, {.data = mem.get(), .dtype = dtype, .device = Device::kCuda, .rows = rows, .cols = cols,
                             .stride = cols});
  }

  void upload(std::span<const float> host, Tensor dst) override {
    own(dst);
    GPTQ_CHECK(int64_t(host.size()) == dst.rows * dst.cols, "cuda upload: size mismatch");
    if (dst.dtype == DType::kF32) {
      copy_2d(dst.data, dst.stride * 4, host.data(), dst.cols * 4, dst.cols * 4, dst.rows, cudaMemcpyHostToDevice);
      return;
    }
    float* stage = staging(host.size());
    CUDA_CHECK(cudaMemcpyAsync(stage, host.data(), host.size() * 4, cudaMemcpyHostToDevice, stream_));
    with_act_type(dst.dtype, [&]<class T>() {
      convert<T, float>(stage, dst.cols, static_cast<T*>(dst.data), dst.stride, dst.rows, dst.cols, stream_);
    });
  }
  void upload(std::span<const int32_t> host, Tensor dst) override {
    own(dst);
    GPTQ_CHECK(dst.dtype == DType::kI32 && int64_t(host.size()) == dst.rows * dst.cols, "cuda upload: i32 shape");
    copy_2d(dst.data, dst.stride * 4, host.data(), dst.cols * 4, dst.cols * 4, dst.rows, cudaMemcpyHostToDevice);
  }
  void download(Tensor src, std::span<float> host) override {
    own(src);
    GPTQ_CHECK(int64_t(host.size()) == src.rows * src.cols, "cuda download: size mismatch");
    if (src.dtype == DType::kF32) {
      copy_2d(host.data(), src.cols * 4, src.data, src.stride * 4, src.cols * 4, src.rows, cudaMemcpyDeviceToHost);
    } else {
      float* stage = staging(host.size());
      with_act_type(src.dtype, [&]<class T>() {
        convert<float, T>(static_cast<const T*>(src.data), src.stride, stage, src.cols, src.rows, src.cols, stream_);
      });
      CUDA_CHECK(cudaMemcpyAsync(host.data(), stage, host.size() * 4, cudaMemcpyDeviceToHost, stream_));
    }
    synchronize();
  }
  void download(Tensor src, std::span<int32_t> host) override {
    own(src);
    GPTQ_CHECK(src.dtype == DType::kI32 && int64_t(host.size()) == src.rows * src.cols, "cuda download: i32 shape");
    copy_2d(host.data(), src.cols * 4, src.data, src.stride * 4, src.cols * 4, src.rows, cudaMemcpyDeviceToHost);
    synchronize();
  }
  void synchronize() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    // The copies beside that the ops joined are done: their events can be reused.
    for (auto it = tickets_.begin(); it != tickets_.end();) {
      if (!it->second.joined) {
        ++it;
        continue;
      }
      spare_events_.push_back(it->second.done);
      it = tickets_.erase(it);
    }
    if (*bad_id_host_ != 0) {
      *bad_id_host_ = 0;
      throw Error(ErrorKind::kInvalidArgument, "a token id is outside the model's vocabulary");
    }
  }
  Buffer alloc_host(int64_t rows, int64_t cols, DType dtype) override {
    GPTQ_CHECK(rows >= 0 && cols >= 0, "cuda backend: negative buffer size");
    const uint64_t bytes = uint64_t(std::max<int64_t>(rows * cols, 1)) * dtype_size(dtype);
    void* p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
      cudaGetLastError();
      throw Error(ErrorKind::kDevice, name_ + ": cannot allocate " + mib(bytes) + " of page-locked host memory for a [" +
                                          std::to_string(rows) + ", " + std::to_string(cols) + "] tensor");
    }
    std::shared_ptr<void> mem(p, [](void* q) { cudaFreeHost(q); });
    return make_buffer(mem, {.data = p, .dtype = dtype, .device = Device::kCpu, .rows = rows, .cols = cols,
                             .stride = cols});
  }
  void copy(Tensor src, Tensor dst) override {
    GPTQ_CHECK(src.dtype == dst.dtype && src.rows == dst.rows && src.cols == dst.cols,
               "cuda copy: shapes or dtypes differ");
    const int64_t e = int64_t(dtype_size(src.dtype));
    // Unified addressing tells device from page-locked host memory.
    copy_2d(dst.data, dst.stride * e, src.data, src.stride * e, src.cols * e, src.rows, cudaMemcpyDefault);
  }
  CopyTicket copy_beside(Tensor src, Tensor dst) override {
    GPTQ_CHECK(src.dtype == dst.dtype && src.rows == dst.rows && src.cols == dst.cols,
               "cuda copy_beside: shapes or dtypes differ");
    if (!beside_) {
      beside_ = std::make_unique<OwnedStream>();
      CUDA_CHECK(cudaEventCreateWithFlags(&ops_queued_, cudaEventDisableTiming));
    }
    // Waiting takes the event's state when asked, so one event serves every copy.
    CUDA_CHECK(cudaEventRecord(ops_queued_, stream_));
    CUDA_CHECK(cudaStreamWaitEvent(beside_->stream, ops_queued_, 0));
    const int64_t e = int64_t(dtype_size(src.dtype));
    if (src.rows > 0 && src.cols > 0) {
      CUDA_CHECK(cudaMemcpy2DAsync(dst.data, size_t(dst.stride * e), src.data, size_t(src.stride * e),
                                   size_t(src.cols * e), size_t(src.rows), cudaMemcpyDefault, beside_->stream));
    }
    cudaEvent_t done = nullptr;
    if (spare_events_.empty()) {
      CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    } else {
      done = spare_events_.back();
      spare_events_.pop_back();
    }
    CUDA_CHECK(cudaEventRecord(done, beside_->stream));
    tickets_[next_ticket_] = {.done = done};
    return next_ticket_++;
  }
  void join(CopyTicket t) override {
    GPTQ_CHECK(t < next_ticket_, "cuda join: a ticket this backend did not give");
    const auto it = tickets_.find(t);
    if (it == tickets_.end()) return;  // joined and synchronized before
    CUDA_CHECK(cudaStreamWaitEvent(stream_, it->second.done, 0));
    it->second.joined = true;
  }
  MemoryStats memory() const override {
    // cudaMemGetInfo reports the calling thread's current device: this backend's, for
    // the call, from any thread.
    int current = 0;
    CUDA_CHECK(cudaGetDevice(&current));
    CUDA_CHECK(cudaSetDevice(index_));
    size_t free = 0, total = 0;
    const cudaError_t info = cudaMemGetInfo(&free, &total);
    CUDA_CHECK(cudaSetDevice(current));
    CUDA_CHECK(info);
    return {.peak_allocated = meter_->peak(), .device_used = total - free, .device_total = total};
  }

  std::unique_ptr<Linear> dense_linear(const io::TensorView& w, const io::TensorView* bias) override {
    GPTQ_CHECK(w.shape.size() == 2, "cuda dense_linear: weight must be 2-D");
    const int64_t out = w.shape[0], in = w.shape[1];
    auto l = std::make_unique<DenseLinear>(out, in, act_);
    l->weight = mem_.alloc(uint64_t(out * in) * dtype_size(act_), "weight \"" + w.name + "\"");
    upload_weight(w, l->weight.get());
    if (bias != nullptr) l->bias = upload_floats(io::to_f32(*bias, {out}, "bias of " + w.name), "a bias");
    return l;
  }

  std::optional<Tensor> dense_weight(const Linear& w) const override {
    const auto* d = dynamic_cast<const DenseLinear*>(&w);
    if (d == nullptr) return std::nullopt;
    return Tensor{.data = d->weight.get(), .dtype = d->dtype, .device = Device::kCuda, .rows = w.out_features(),
                  .cols = w.in_features(), .stride = w.in_features()};
  }

  std::unique_ptr<Linear> gptq_linear(quant::PackedLinear packed) override {
    auto l = std::make_unique<GptqLinear>(packed.out_features, packed.in_features);
    l->what = gptq_what(packed.bits, packed.group_size);
    auto put = [&](const void* src, uint64_t bytes) {
      auto m = mem_.alloc(bytes, "a gptq tensor");
      CUDA_CHECK(cudaMemcpyAsync(m.get(), src, bytes, cudaMemcpyHostToDevice, stream_));
      l->memory.push_back(m);
      l->bytes += bytes;
      return m.get();
    };
    const float* bias = packed.bias.empty() ? nullptr : static_cast<const float*>(put(packed.bias.data(), packed.bias.size() * 4));
    const auto frag = takes_fragment_layout(packed.bits) ? quant::make_fragment_layout(packed) : std::nullopt;
    if (frag) {
      if (!frag->perm.empty()) l->what += " act-order";
      MmaDeviceLayout d{.bits = frag->bits, .K = frag->K, .N = frag->N, .Kp = frag->Kp, .Nt = frag->Nt,
                        .G = frag->G, .bias = bias, .chunks_one_group = frag->chunks_one_group,
                        .pairs_one_group = frag->pairs_one_group, .written = WeightsWritten::kBeforeLaunch};
      d.words = static_cast<const uint32_t*>(put(frag->words.data(), frag->words.size() * 4));
      d.scales = static_cast<const __half*>(put(frag->scales.data(), frag->scales.size() * 2));
      d.zeros = static_cast<const uint8_t*>(put(frag->zeros.data(), frag->zeros.size()));
      d.tile_group = static_cast<const int32_t*>(put(frag->tile_group.data(), frag->tile_group.size() * 4));
      d.chunk_group = static_cast<const int32_t*>(put(frag->chunk_group.data(), frag->chunk_group.size() * 4));
      if (!frag->perm.empty()) d.perm = static_cast<const int32_t*>(put(frag->perm.data(), frag->perm.size() * 4));
      l->mma = d;
      reserve_mma(d);
      synchronize();  // the host copies above must outlive their transfers
      return l;
    }
    const auto host = repack_for_cuda(packed);
    if (!host) {
      throw Error(ErrorKind::kUnsupported, "gptq layer [" + std::to_string(packed.out_features) + ", " +
                                               std::to_string(packed.in_features) +
                                               "]: its g_idx puts one packed block of codes in two groups, which "
                                               "the CUDA kernels do not read");
    }
    if (!host->perm.empty()) l->what += " act-order";
    GptqDeviceLayout& d = l->layout;
    d = {.bits = host->bits, .K = host->K, .N = host->N, .Np = host->Np, .G = host->G, .bias = bias};
    d.qweight = static_cast<const int32_t*>(put(host->qweight.data(), host->qweight.size() * 4));
    if (!host->perm.empty()) d.perm = static_cast<const int32_t*>(put(host->perm.data(), host->perm.size() * 4));
    d.scales = static_cast<const __half*>(put(host->scales.data(), host->scales.size() * 2));
    d.zeros = static_cast<const uint8_t*>(put(host->zeros.data(), host->zeros.size()));
    d.block_group = static_cast<const int32_t*>(put(host->block_group.data(), host->block_group.size() * 4));
    reserve_gemv(d);
    synchronize();  // the host copies above must outlive their transfers
    return l;
  }

  // gptq_linear's GEMV-layout layer from tensors already in this backend's device memory
  // (the CUDA quantizer's swap-in), owning `memory` (`bytes` in all).
  std::unique_ptr<Linear> gemv_linear(const GptqDeviceLayout& d, int group_size,
                                      std::vector<std::shared_ptr<void>> memory, uint64_t bytes) {
    GPTQ_CHECK(!takes_fragment_layout(d.bits), "cuda gemv_linear: this backend lays these bits out otherwise");
    auto l = std::make_unique<GptqLinear>(d.N, d.K);
    l->what = gptq_what(d.bits, group_size) + (d.perm != nullptr ? " act-order" : "");
    l->layout = d;
    l->memory = std::move(memory);
    l->bytes = bytes;
    reserve_gemv(d);
    return l;
  }

  // Whether gptq_linear lays `bits` out for the tensor-core kernels (else the GEMV layout).
  bool takes_fragment_layout(int bits) const {
    return gptq_kernel_ == GptqKernel::kTensorCore && mma_supported(bits, act_);
  }
  // gptq_linear's layer from fragment-order tensors already in this backend's device
  // memory (the CUDA quantizer's swap-in), owning `memory` (`bytes` in all).
  std::unique_ptr<Linear> fragment_linear(const MmaDeviceLayout& d, int group_size,
                                          std::vector<std::shared_ptr<void>> memory, uint64_t bytes) {
    GPTQ_CHECK(takes_fragment_layout(d.bits), "cuda fragment_linear: this backend lays these bits out otherwise");
    auto l = std::make_unique<GptqLinear>(d.N, d.K);
    l->what = gptq_what(d.bits, group_size) + (d.perm != nullptr ? " act-order" : "");
    l->mma = d;
    l->memory = std::move(memory);
    l->bytes = bytes;
    reserve_mma(d);
    return l;
  }

  // The split-K workspace and counters the GEMV kernels need for d at the largest batch.
  void reserve_gemv(const GptqDeviceLayout& d) {
    GptqGemvGroup<__half> alone{.job = {{.w = d}}, .count = 1};
    const GemvScratch need = gptq_gemv_scratch(alone, kGemvMaxRows);
    reserve_workspace(need.floats * kMaxGroup);
    reserve_counters(need.counters * kMaxGroup);
  }

  std::unique_ptr<Linear> bnb_linear(quant::bnb::BnbPacked packed) override {
    quant::bnb::validate(packed);
    using quant::bnb::BnbType;
    auto l = std::make_unique<BnbLinear>(packed.out_features, packed.in_features);
    l->what = quant::bnb::describe({.type = packed.type, .blocksize = packed.blocksize,
                                    .absmax = packed.nested ? quant::bnb::AbsmaxStorage::kDoubleQuant
                                                            : quant::bnb::AbsmaxStorage::kF32,
                                    .int8_threshold = packed.threshold});
    BnbDeviceLayout& d = l->layout;
    d = {.type = packed.type, .K = packed.in_features, .N = packed.out_features, .blocksize = packed.blocksize,
         .threshold = packed.threshold};
    const auto& book = packed.type == BnbType::kFp4 ? quant::bnb::kFp4 : quant::bnb::kNf4;
    std::copy(book.begin(), book.end(), l->tables.code);
    if (packed.nested) std::copy(packed.nested->map.begin(), packed.nested->map.end(), l->tables.dynamic);
    auto put = [&](const void* src, uint64_t bytes) {
      // At least 4 bytes, so that the kernels' word loads of the last codes stay inside.
      auto m = mem_.alloc(std::max<uint64_t>(bytes, 4), "a bitsandbytes tensor");
      CUDA_CHECK(cudaMemcpyAsync(m.get(), src, bytes, cudaMemcpyHostToDevice, stream_));
      l->memory.push_back(m);
      l->bytes += bytes;
      return m.get();
    };
    d.data = static_cast<const uint8_t*>(put(packed.data.data(), packed.data.size()));
    if (packed.nested) {
      d.nested_codes = static_cast<const uint8_t*>(put(packed.nested->codes.data(), packed.nested->codes.size()));
      d.nested_scales = static_cast<const float*>(put(packed.nested->scales.data(), packed.nested->scales.size() * 4));
      d.nested_offset = packed.nested->offset;
    } else {
      d.absmax = static_cast<const float*>(put(packed.absmax.data(), packed.absmax.size() * 4));
    }
    if (!packed.bias.empty()) d.bias = static_cast<const float*>(put(packed.bias.data(), packed.bias.size() * 4));
    // Sized now for the largest decode batch: a graph recorded later holds the pointer.
    if (packed.type == BnbType::kInt8) reserve_workspace((int8_workspace_bytes(d, kBnbGemvMaxRows) + 3) / 4);
    synchronize();  // the host copies above must outlive their transfers
    return l;
  }

  void linear(const Linear& w, Tensor x, Tensor y, Accumulate acc) override {
    check_linear(w, x, y);
    if (x.rows == 0) return;
    const Epilogue epi = acc == Accumulate::kYes ? Epilogue::kAccumulate : Epilogue::kStore;
    if (const auto* d = dynamic_cast<const DenseLinear*>(&w)) {
      const DenseLinear* one[] = {d};
      const Tensor ys[] = {y};
      if (dense_group(one, x, ys, epi)) return;
      gemm(d->weight.get(), w.in_features(), x, y, w.out_features(), w.in_features(), acc);
      if (d->bias) {
        with_act_type(act_, [&]<class T>() {
          add_bias(static_cast<T*>(y.data), y.stride, static_cast<const float*>(d->bias.get()), y.rows, y.cols,
                   stream_);
        });
      }
      return;
    }
    if (const auto* b = dynamic_cast<const BnbLinear*>(&w)) {
      bnb_linear_forward(*b, x, y, epi);
      return;
    }
    const auto* g = dynamic_cast<const GptqLinear*>(&w);
    GPTQ_CHECK(g != nullptr, "cuda linear: layer was not made by the cuda backend");
    const GptqLinear* one[] = {g};
    const Tensor ys[] = {y};
    if (gptq_group(one, x, ys, epi)) return;
    with_act_type(act_, [&]<class T>() {
      // Larger batches: dequantize tiles of W's rows [tile, ld] into scratch, in the
      // layout's input order, and multiply each with cuBLAS; an act-order x is gathered
      // into that order once ([M, ld] after the tile), so no tile scatters its columns.
      const int64_t K = g->in_features(), N = g->out_features(), ld = sorted_ld(K);
      const int32_t* perm = g->mma ? g->mma->perm : g->layout.perm;
      const int64_t fit = tile_bytes_ / int64_t(ld * sizeof(T));
      const int64_t tile = std::min(N, std::max<int64_t>(16, fit / 16 * 16));  // the mma layout's row tiles
      const int64_t tile_elems = (tile * ld + 7) / 8 * 8;  // the x copy stays 16-byte aligned
      const int64_t copy_elems = perm != nullptr ? x.rows * ld : 0;
      T* scratch = reinterpret_cast<T*>(workspace(((tile_elems + copy_elems) * int64_t(sizeof(T)) + 3) / 4));
      Tensor xs = x;
      if (perm != nullptr) {
        gather_sorted(static_cast<const T*>(x.data), x.stride, x.rows, K, perm, scratch + tile_elems, stream_);
        xs.data = scratch + tile_elems;
        xs.stride = ld;
      }
      for (int64_t n0 = 0; n0 < N; n0 += tile) {
        const int64_t cnt = std::min(tile, N - n0);
        if (g->mma) {
          gptq_mma_dequantize(*g->mma, n0, cnt, scratch, ld, stream_);
        } else {
          gptq_dequantize(g->layout, n0, cnt, scratch, ld, stream_);
        }
        Tensor yc = y;
        yc.data = static_cast<T*>(y.data) + n0;
        yc.cols = cnt;
        gemm(scratch, ld, xs, yc, cnt, K, acc);
      }
      const float* bias = g->mma ? g->mma->bias : g->layout.bias;
      if (bias != nullptr) add_bias(static_cast<T*>(y.data), y.stride, bias, y.rows, y.cols, stream_);
    });
  }

  void linear_group(std::span<const Linear* const> ws, Tensor x, std::span<const Tensor> ys) override {
    GPTQ_CHECK(ws.size() == ys.size(), "cuda linear_group: one output per layer");
    for (std::size_t i = 0; i < ws.size(); ++i) check_linear(*ws[i], x, ys[i]);
    if (x.rows == 0) return;
    if (ws.size() <= std::size_t(kMaxGroup)) {
      std::vector<const DenseLinear*> dense;
      std::vector<const GptqLinear*> gptq;
      for (const Linear* w : ws) {
        if (const auto* d = dynamic_cast<const DenseLinear*>(w)) dense.push_back(d);
        if (const auto* g = dynamic_cast<const GptqLinear*>(w)) gptq.push_back(g);
      }
      if (dense.size() == ws.size() && dense_group(dense, x, ys, Epilogue::kStore)) return;
      if (gptq.size() == ws.size() && gptq_group(gptq, x, ys, Epilogue::kStore)) return;
    }
    Backend::linear_group(ws, x, ys);
  }

  void rms_norm(Tensor x, const Buffer& weight, float eps, Tensor y) override {
    own(x), own(y);
    GPTQ_CHECK(weight.view().cols == x.cols && y.cols == x.cols && y.rows == x.rows, "cuda rms_norm shape");
    with_act_type(act_, [&]<class T>() {
      cuda::rms_norm(static_cast<const T*>(x.data), x.stride, static_cast<T*>(y.data), y.stride,
                     weight.view().as<float>(), x.rows, x.cols, eps, stream_);
    });
  }
  void head_rms_norm(Tensor x, int64_t head_dim, const Buffer& weight, float eps) override {
    own(x);
    GPTQ_CHECK(weight.view().cols == head_dim && x.cols % head_dim == 0, "cuda head_rms_norm shape");
    with_act_type(act_, [&]<class T>() {
      cuda::head_rms_norm(static_cast<T*>(x.data), x.stride, weight.view().as<float>(), x.rows, x.cols, head_dim, eps,
                          stream_);
    });
  }
  void rope(Tensor x, const RopeTable& table, Tensor positions) override {
    own(x);
    GPTQ_CHECK(positions.cols == x.rows && x.cols % table.head_dim == 0, "cuda rope shape");
    with_act_type(act_, [&]<class T>() {
      cuda::rope(static_cast<T*>(x.data), x.stride, positions.as<int32_t>(), table.inv_freq.view().as<float>(), x.rows,
                 x.cols, table.head_dim, stream_);
    });
  }
  void write_kv(Tensor k, Tensor v, KvView cache, Tensor positions) override {
    own(k), own(v), own(cache.k), own(cache.v);
    GPTQ_CHECK(k.cols == cache.k.cols && v.cols == cache.v.cols && k.rows == v.rows && positions.cols == k.rows,
               "cuda write_kv shape");
    with_act_type(act_, [&]<class T>() {
      cuda::write_kv(static_cast<const T*>(k.data), k.stride, static_cast<const T*>(v.data), v.stride,
                     static_cast<T*>(cache.k.data), cache.k.stride, static_cast<T*>(cache.v.data), cache.v.stride,
                     positions.as<int32_t>(), k.rows, k.cols, stream_);
    });
  }
  void rope_write_kv(Tensor q, Tensor k, Tensor v, const RopeTable& table, KvView cache, Tensor positions) override {
    own(q), own(k), own(v), own(cache.k), own(cache.v);
    GPTQ_CHECK(positions.cols == q.rows && k.rows == q.rows && v.rows == q.rows && q.cols % table.head_dim == 0 &&
                   k.cols == cache.k.cols && v.cols == cache.v.cols && k.cols == v.cols &&
                   k.cols % table.head_dim == 0,
               "cuda rope_write_kv shape");
    with_act_type(act_, [&]<class T>() {
      cuda::rope_write_kv(static_cast<T*>(q.data), q.stride, static_cast<T*>(k.data), k.stride,
                          static_cast<const T*>(v.data), v.stride, static_cast<T*>(cache.k.data), cache.k.stride,
                          static_cast<T*>(cache.v.data), cache.v.stride, positions.as<int32_t>(),
                          table.inv_freq.view().as<float>(), q.rows, q.cols, k.cols, table.head_dim, stream_);
    });
  }
  void attention(Tensor q, KvView cache, Tensor positions, const AttentionShape& s, Tensor out) override {
    own(q), own(out), own(cache.k), own(cache.v);
    GPTQ_CHECK(q.cols == s.heads * s.head_dim && out.cols == q.cols && out.rows == q.rows && positions.cols == q.rows &&
                   cache.k.cols == s.kv_heads * s.head_dim,
               "cuda attention shape");
    if (s.head_dim > kMaxHeadDim || s.head_dim % 8 != 0) {
      throw Error(ErrorKind::kUnsupported, "cuda attention: head_dim " + std::to_string(s.head_dim) +
                                               " (supported: multiples of 8 up to " + std::to_string(kMaxHeadDim) + ")");
    }
    const AttentionArgs a{.rows = q.rows, .heads = s.heads, .kv_heads = s.kv_heads, .head_dim = s.head_dim,
                          .window = s.sliding_window, .capacity = cache.k.rows, .ldq = q.stride,
                          .ldk = cache.k.stride, .ldv = cache.v.stride, .ldo = out.stride, .kernel = attention_};
    float* ws = workspace(attention_workspace_floats(a));
    with_act_type(act_, [&]<class T>() {
      cuda::attention(static_cast<const T*>(q.data), static_cast<const T*>(cache.k.data),
                      static_cast<const T*>(cache.v.data), positions.as<int32_t>(), static_cast<T*>(out.data), a, ws,
                      stream_);
    });
  }
  void swiglu(Tensor gate, Tensor up) override {
    own(gate), own(up);
    GPTQ_CHECK(gate.rows == up.rows && gate.cols == up.cols, "cuda swiglu shape");
    with_act_type(act_, [&]<class T>() {
      cuda::swiglu(static_cast<T*>(gate.data), gate.stride, static_cast<const T*>(up.data), up.stride, gate.rows,
                   gate.cols, stream_);
    });
  }
  void add(Tensor acc, Tensor x) override {
    own(acc), own(x);
    GPTQ_CHECK(acc.rows == x.rows && acc.cols == x.cols, "cuda add shape");
    with_act_type(act_, [&]<class T>() {
      cuda::add(static_cast<T*>(acc.data), acc.stride, static_cast<const T*>(x.data), x.stride, acc.rows, acc.cols,
                stream_);
    });
  }
  void embed(const Linear& table, Tensor ids, Tensor out) override {
    own(out);
    const auto* d = dynamic_cast<const DenseLinear*>(&table);
    GPTQ_CHECK(d != nullptr && out.cols == table.in_features() && out.rows == ids.cols, "cuda embed shape");
    with_act_type(act_, [&]<class T>() {
      cuda::embed(static_cast<const T*>(d->weight.get()), table.out_features(), ids.as<int32_t>(),
                  static_cast<T*>(out.data), out.stride, out.rows, out.cols, bad_id_dev_, stream_);
    });
  }
  void token_nll(Tensor logits, Tensor targets, Tensor nll) override {
    own(logits);
    GPTQ_CHECK(targets.cols == logits.rows && nll.cols == logits.rows, "cuda token_nll shape");
    with_act_type(act_, [&]<class T>() {
      cuda::token_nll(static_cast<const T*>(logits.data), logits.stride, targets.as<int32_t>(), nll.as<float>(),
                      logits.rows, logits.cols, stream_);
    });
  }
  void argmax(Tensor logits, Tensor out) override {
    own(logits);
    GPTQ_CHECK(out.cols == logits.rows, "cuda argmax shape");
    with_act_type(act_, [&]<class T>() {
      cuda::argmax(static_cast<const T*>(logits.data), logits.stride, out.as<int32_t>(), logits.rows, logits.cols,
                   workspace(argmax_workspace_floats(logits.rows)), stream_);
    });
  }
  void sample(Tensor logits, Tensor uniforms, const SampleParams& p, Tensor out) override {
    if (p.temperature == 0.0f) return argmax(logits, out);
    own(logits);
    GPTQ_CHECK(uniforms.cols == logits.rows && out.cols == logits.rows, "cuda sample shape");
    GPTQ_CHECK(logits.cols > 0 && logits.cols < sampling::kMaxVocab,
               "cuda sample: a vocabulary of " + std::to_string(logits.cols) + " is outside (0, 2^22)");
    with_act_type(act_, [&]<class T>() {
      cuda::sample(static_cast<const T*>(logits.data), logits.stride, uniforms.as<float>(), out.as<int32_t>(),
                   logits.rows, logits.cols, p.temperature, p.top_k, p.top_p, stream_);
    });
  }

  // For the QuantOps working on this backend's tensors (quant_ops.cu).
  DeviceContext context() {
    return {.device = index_, .stream = stream_, .cublas = cublas_,
            .alloc = [m = mem_](uint64_t bytes, const std::string& what) mutable { return m.alloc(bytes, what); },
            .backend = this,
            .takes_fragment_layout = [this](int bits) { return takes_fragment_layout(bits); },
            .fragment_linear = [this](const MmaDeviceLayout& d, int group_size,
                                      std::vector<std::shared_ptr<void>> memory, uint64_t bytes) {
              return fragment_linear(d, group_size, std::move(memory), bytes);
            },
            .gemv_linear = [this](const GptqDeviceLayout& d, int group_size,
                                  std::vector<std::shared_ptr<void>> memory, uint64_t bytes) {
              return gemv_linear(d, group_size, std::move(memory), bytes);
            }};
  }

  std::unique_ptr<Graph> capture(const std::function<void()>& work) override {
    cudaGraph_t graph = nullptr;
    // Relaxed: the work may size a workspace (cudaMalloc) the first time it runs.
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    try {
      work();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_CHECK(err);
    return std::make_unique<CudaGraph>(exec, stream_);
  }

 private:
  static constexpr uint64_t kCublasWorkspace = 32u << 20;

  void bnb_linear_forward(const BnbLinear& b, const Tensor& x, const Tensor& y, Epilogue epi) {
    const BnbDeviceLayout& L = b.layout;
    with_act_type(act_, [&]<class T>() {
      const T* xd = static_cast<const T*>(x.data);
      T* yd = static_cast<T*>(y.data);
      if (L.type == quant::bnb::BnbType::kInt8) {
        int8_linear(L, xd, x.stride, yd, y.stride, x.rows, epi, workspace((int8_workspace_bytes(L, x.rows) + 3) / 4),
                    stream_);
        return;
      }
      if (x.rows <= kBnbGemvMaxRows) {
        bnb4_gemv(L, b.tables, xd, x.stride, yd, y.stride, x.rows, epi, stream_);
        return;
      }
      // Larger batches: dequantize row tiles of W into scratch, multiply with cuBLAS.
      const int64_t K = L.K, N = L.N;
      const int64_t tile = std::min(N, std::max<int64_t>(4, tile_bytes_ / int64_t(K * sizeof(T)) / 4 * 4));
      T* scratch = reinterpret_cast<T*>(workspace((tile * K * int64_t(sizeof(T)) + 3) / 4));
      for (int64_t n0 = 0; n0 < N; n0 += tile) {
        const int64_t cnt = std::min(tile, N - n0);
        bnb4_dequantize(L, b.tables, n0, cnt, scratch, stream_);
        Tensor yc = y;
        yc.data = yd + n0;
        yc.cols = cnt;
        // [cnt, K] row-major; with kAccumulate cuBLAS adds to y (beta = 1), then the bias.
        gemm(scratch, K, x, yc, cnt, K,
             epi == Epilogue::kAccumulate ? Accumulate::kYes : Accumulate::kNo);
      }
      if (L.bias != nullptr) add_bias(yd, y.stride, L.bias, y.rows, y.cols, stream_);
    });
  }

  void own(const Tensor& t) const {
    GPTQ_CHECK(t.device == Device::kCuda, "cuda backend: tensor is not in device memory");
  }

  void copy_2d(void* dst, int64_t dpitch, const void* src, int64_t spitch, int64_t width, int64_t rows,
               cudaMemcpyKind kind) {
    if (rows == 0 || width == 0) return;
    CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(dpitch), src, size_t(spitch), size_t(width), size_t(rows), kind, stream_));
  }

  void check_linear(const Linear& w, const Tensor& x, const Tensor& y) const {
    own(x), own(y);
    GPTQ_CHECK(x.dtype == act_ && y.dtype == act_ && x.cols == w.in_features() && y.cols == w.out_features() &&
                   x.rows == y.rows,
               "cuda linear: shape or dtype mismatch");
  }

  // Dense products of one x through dense_gemv, when it takes them (16-bit activations,
  // one row, aligned); false: the caller uses cuBLAS.
  bool dense_group(std::span<const DenseLinear* const> ws, const Tensor& x, std::span<const Tensor> ys,
                   Epilogue epi) {
    if (act_ == DType::kF32 || !dense_gemv_fits(x.data, x.cols, x.rows)) return false;
    bool done = false;
    with_act_type(act_, [&]<class T>() {
      if constexpr (!std::is_same_v<T, float>) {
        DenseGemvGroup<T> g{.count = int(ws.size()), .K = x.cols, .epilogue = epi};
        for (std::size_t j = 0; j < ws.size(); ++j) {
          g.job[j] = {.w = static_cast<const T*>(ws[j]->weight.get()),
                      .bias = static_cast<const float*>(ws[j]->bias.get()), .y = static_cast<T*>(ys[j].data),
                      .N = ws[j]->out_features()};
        }
        dense_gemv(g, static_cast<const T*>(x.data), stream_);
        done = true;
      }
    });
    return done;
  }

  // GPTQ products of one x in one launch: the tensor-core kernel up to mma_max_rows_
  // rows, the GEMV up to kGemvMaxRows for the other layout, when the layers share bits
  // and layout (K is shared by construction); false: the caller dequantizes for cuBLAS.
  bool gptq_group(std::span<const GptqLinear* const> ws, const Tensor& x, std::span<const Tensor> ys,
                  Epilogue epi) {
    const bool mma = ws[0]->mma.has_value();
    if (x.rows > (mma ? mma_max_rows_ : kGemvMaxRows)) return false;
    for (const GptqLinear* w : ws) {
      if (w->mma.has_value() != mma) return false;
      if ((mma ? w->mma->bits : w->layout.bits) != (mma ? ws[0]->mma->bits : ws[0]->layout.bits)) return false;
    }
    with_act_type(act_, [&]<class T>() {
      if constexpr (std::is_same_v<T, float>) {
        GPTQ_CHECK(!mma, "cuda: fp32 activations have no mma layout");
      } else {
        if (mma) {
          MmaGroup<T> g{.count = int(ws.size()), .epilogue = epi, .max_splits = max_splits_};
          for (std::size_t j = 0; j < ws.size(); ++j) {
            g.job[j] = {.w = *ws[j]->mma, .y = static_cast<T*>(ys[j].data), .ldy = ys[j].stride};
          }
          const MmaScratch need = gptq_mma_scratch(g, x.rows);
          gptq_mma(g, static_cast<const T*>(x.data), x.stride, x.rows, workspace(need.floats),
                   counters(need.counters), stream_);
          return;
        }
      }
      GptqGemvGroup<T> g{.count = int(ws.size()), .epilogue = epi};
      for (std::size_t j = 0; j < ws.size(); ++j) {
        g.job[j] = {.w = ws[j]->layout, .y = static_cast<T*>(ys[j].data), .ldy = ys[j].stride};
      }
      const GemvScratch need = gptq_gemv_scratch(g, x.rows);
      gptq_gemv(g, static_cast<const T*>(x.data), x.stride, x.rows, workspace(need.floats), counters(need.counters),
                stream_);
    });
    return true;
  }

  // y[M, n] = x[M, K] Wᵀ (acc: y +=) in the activation dtype for W [n, K] row-major with
  // row stride ldw >= K (checkpoints' dense weights, dequantized tiles), via column-major
  // yᵀ = W xᵀ (W op T); fp32 accumulation.
  void gemm(const void* W, int64_t ldw, const Tensor& x, const Tensor& y, int64_t n, int64_t K, Accumulate acc) {
    const float one = 1.0f, beta = acc == Accumulate::kYes ? 1.0f : 0.0f;
    const cudaDataType_t t = cuda_type(act_);
    CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(x.rows),
                              int(K), &one, W, t, int(ldw),
                              x.data, t, int(x.stride), &beta, y.data, t, int(y.stride), CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  }

  void upload_weight(const io::TensorView& w, void* dst) {
    const int64_t n = w.numel();
    const DType src = w.dtype;
    GPTQ_CHECK(src == DType::kF32 || src == DType::kF16 || src == DType::kBF16, "cuda: dense weight dtype");
    if (src == act_) {
      upload_bytes(dst, w.data.data(), w.data.size());
      synchronize();
      return;
    }
    // Convert on the device, in slices of the source, through staging memory.
    auto stage = mem_.alloc(w.data.size(), "weight conversion");
    upload_bytes(stage.get(), w.data.data(), w.data.size());
    with_act_type(act_, [&]<class D>() {
      with_act_type(src, [&]<class S>() {
        if constexpr (!std::is_same_v<D, S>) {
          convert<D, S>(static_cast<const S*>(stage.get()), n, static_cast<D*>(dst), n, 1, n, stream_);
        }
      });
    });
    synchronize();
  }

  std::shared_ptr<void> upload_floats(const std::vector<float>& v, const char* what) {
    auto m = mem_.alloc(v.size() * 4, what);
    CUDA_CHECK(cudaMemcpyAsync(m.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream_));
    synchronize();
    return m;
  }

  // Scratch that only grows; outgrown blocks stay alive, since a recorded graph may
  // still point into them.
  float* workspace(int64_t floats) {
    reserve_workspace(floats);
    return static_cast<float*>(workspace_.get());
  }
  static std::string gptq_what(int bits, int group_size) {
    return "gptq " + std::to_string(bits) + "-bit g" + std::to_string(group_size);
  }
  // Scratch for the largest fused batch of any group a tensor-core layer joins, sized
  // when it is made: a graph recorded later holds the pointers. A group's split count is
  // at most that of each member alone (more tiles, fewer splits), and each member is at
  // most this.
  void reserve_mma(const MmaDeviceLayout& d) {
    MmaGroup<__half> alone{.job = {{.w = d}}, .count = 1, .max_splits = max_splits_};
    for (int64_t M = 1; M <= mma_max_rows_; ++M) {
      const MmaScratch need = gptq_mma_scratch(alone, M);
      reserve_workspace(need.floats * kMaxGroup);
      reserve_counters(need.counters * kMaxGroup);
    }
  }
  void reserve_workspace(int64_t floats) {
    if (floats <= workspace_floats_) return;
    if (workspace_) retired_.push_back(workspace_);
    workspace_floats_ = std::max(floats, 2 * workspace_floats_);
    workspace_ = mem_.alloc(uint64_t(workspace_floats_) * 4, "kernel workspace");
  }
  // Tile counters of the split GEMV, zero between launches (each launch leaves them
  // zero). Sized at load: growing them inside a graph capture would record the zeroing
  // instead of doing it.
  int32_t* counters(int64_t count) {
    reserve_counters(count);
    return static_cast<int32_t*>(counters_.get());
  }
  void reserve_counters(int64_t count) {
    if (count <= counters_count_) return;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
    GPTQ_CHECK(capturing == cudaStreamCaptureStatusNone, "cuda: GEMV counters must be sized before a graph capture");
    if (counters_) retired_.push_back(counters_);
    counters_count_ = std::max(count, 2 * counters_count_);
    counters_ = mem_.alloc(uint64_t(counters_count_) * 4, "GEMV tile counters");
    CUDA_CHECK(cudaMemsetAsync(counters_.get(), 0, uint64_t(counters_count_) * 4, stream_));
  }
  // Host → device from pageable memory (a weight's memory map) through two page-locked
  // blocks: threads fill one (parallel_copy, faults included) while the other's transfer
  // runs. A pageable cudaMemcpy copies through the driver's own staging on one thread:
  // ~5 GB/s measured loading the 8B shape's layers (14 GB in 2.7 s). Small copies go
  // directly. Returns with the transfers queued; every byte has left `src` by then.
  void upload_bytes(void* dst, const void* src, uint64_t bytes) {
    if (bytes < kHostStageBytes) {
      CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
      return;
    }
    if (!host_stage_[0]) {
      for (int i = 0; i < 2; ++i) {
        void* p = nullptr;
        CUDA_CHECK(cudaHostAlloc(&p, kHostStageBytes, cudaHostAllocPortable));
        host_stage_[i] = std::shared_ptr<void>(p, [](void* q) { cudaFreeHost(q); });
        CUDA_CHECK(cudaEventCreateWithFlags(&host_stage_done_[i], cudaEventDisableTiming));
      }
    }
    auto* d = static_cast<std::byte*>(dst);
    const auto* s = static_cast<const std::byte*>(src);
    int i = 0;
    for (uint64_t off = 0; off < bytes; off += kHostStageBytes, i ^= 1) {
      const uint64_t n = std::min(kHostStageBytes, bytes - off);
      CUDA_CHECK(cudaEventSynchronize(host_stage_done_[i]));  // its previous transfer is done
      parallel_copy(host_stage_[i].get(), s + off, n);
      CUDA_CHECK(cudaMemcpyAsync(d + off, host_stage_[i].get(), n, cudaMemcpyHostToDevice, stream_));
      CUDA_CHECK(cudaEventRecord(host_stage_done_[i], stream_));
    }
  }

  float* staging(std::size_t floats) {
    if (int64_t(floats) > staging_floats_) {
      if (staging_) retired_.push_back(staging_);
      staging_floats_ = std::max<int64_t>(int64_t(floats), 2 * staging_floats_);
      staging_ = mem_.alloc(uint64_t(staging_floats_) * 4, "transfer staging");
    }
    return static_cast<float*>(staging_.get());
  }

  int index_;
  DType act_;
  int64_t mma_max_rows_;
  int max_splits_;       // BackendOptions::gptq_max_splits
  int64_t tile_bytes_;   // BackendOptions::dequant_tile_bytes
  GptqKernel gptq_kernel_;
  AttentionKernel attention_;
  std::string name_;
  std::shared_ptr<AllocationMeter> meter_ = std::make_shared<AllocationMeter>();
  DeviceMemory mem_;
  static constexpr uint64_t kHostStageBytes = uint64_t{32} << 20;
  std::shared_ptr<void> host_stage_[2];  // page-locked upload blocks, made at first use
  cudaEvent_t host_stage_done_[2] = {};  // each block's last transfer
  cudaStream_t stream_ = nullptr;
  // copy_beside's queue, made at its first use; each copy's event until the ops joined
  // it and were synchronized, then among spare_events_ for reuse.
  struct BesideCopy {
    cudaEvent_t done = nullptr;
    bool joined = false;
  };
  std::unique_ptr<OwnedStream> beside_;
  cudaEvent_t ops_queued_ = nullptr;
  std::map<CopyTicket, BesideCopy> tickets_;
  std::vector<cudaEvent_t> spare_events_;
  CopyTicket next_ticket_ = 0;
  cublasHandle_t cublas_ = nullptr;
  std::shared_ptr<void> cublas_ws_;
  std::shared_ptr<void> workspace_, staging_, counters_;
  int64_t workspace_floats_ = 0, staging_floats_ = 0, counters_count_ = 0;
  std::vector<std::shared_ptr<void>> retired_;
  int32_t* bad_id_host_ = nullptr;
  int32_t* bad_id_dev_ = nullptr;
};

}  // namespace

bool pdl_supported() {
  // Per thread and device: the backend's calls come from the thread that owns it.
  thread_local int cached_device = -1;
  thread_local bool cached = false;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_device) {
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    cached_device = dev;
    cached = major >= 9;
  }
  return cached;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: not an error for the caller
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int index, const BackendOptions& options) {
  const DType activations = options.activations;
  const int n = device_count();
  if (index >= n) {
    throw Error(ErrorKind::kDevice, n == 0 ? "no CUDA device is present (or no driver is loaded)"
                                           : "cuda:" + std::to_string(index) + " does not exist (" +
                                                 std::to_string(n) + " CUDA device(s))");
  }
  if (activations != DType::kF16 && activations != DType::kBF16 && activations != DType::kF32) {
    throw Error(ErrorKind::kInvalidArgument, "cuda activations must be f16, bf16 or f32");
  }
  if (options.gptq_mma_max_rows < 0) throw Error(ErrorKind::kInvalidArgument, "gptq_mma_max_rows must be >= 0");
  if (options.gptq_max_splits < 0 || options.gptq_max_splits > 4096) {
    throw Error(ErrorKind::kInvalidArgument, "gptq_max_splits must be in [0, 4096]");
  }
  if (options.dequant_tile_bytes < (int64_t(1) << 20)) {
    throw Error(ErrorKind::kInvalidArgument, "dequant_tile_bytes must be at least 1 MiB");
  }
  return std::make_unique<CudaBackend>(index, options);
}

int device_index(const Backend& b) {
  const auto* cb = dynamic_cast<const CudaBackend*>(&b);
  return cb != nullptr ? cb->index() : -1;
}

std::unique_ptr<QuantOps> make_cuda_quant_ops(Backend& b, FactorPrecision factor) {
  auto* cb = dynamic_cast<CudaBackend*>(&b);
  if (cb == nullptr) throw Error(ErrorKind::kInvalidArgument, "cuda quant ops: " + b.name() + " is not a CUDA backend");
  return make_quant_ops(cb->context(), factor);
}

}  // namespace gptq::backend::cuda
