#include "backend/registry.h"

#include <charconv>

#include "core/error.h"
#ifdef GPTQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace gptq::backend {

Buffer Backend::vector(std::span<const float> host) {
  Buffer b = alloc(1, int64_t(host.size()), DType::kF32);
  upload(host, b.view());
  return b;
}

int cuda_device_count() {
#ifdef GPTQ_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::string default_backend() { return cuda_device_count() > 0 ? "cuda:0" : "cpu"; }

std::unique_ptr<Backend> make_backend(std::string_view spec, const BackendOptions& options) {
  if (spec == "auto") spec = cuda_device_count() > 0 ? "cuda:0" : "cpu";
  if (spec == "cpu") {
    if (options.activations != DType::kF32) {
      throw Error(ErrorKind::kInvalidArgument, "the cpu backend computes in f32 only (asked for " +
                                                   std::string(dtype_name(options.activations)) + ")");
    }
    return make_cpu_backend();
  }
  if (spec == "cuda" || spec.starts_with("cuda:")) {
    int index = 0;
    if (spec.size() > 5) {
      const std::string_view digits = spec.substr(5);
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
      if (ec != std::errc() || end != digits.data() + digits.size() || index < 0) {
        throw Error(ErrorKind::kInvalidArgument, "bad device \"" + std::string(spec) + "\" (expected cuda:N)");
      }
    }
#ifdef GPTQ_HAVE_CUDA
    return cuda::make_cuda_backend(index, options);
#else
    throw Error(ErrorKind::kDevice, "device \"" + std::string(spec) + "\": this build of gptq.cpp has no CUDA backend");
#endif
  }
  throw Error(ErrorKind::kInvalidArgument, "unknown device \"" + std::string(spec) + "\" (expected cpu, cuda, cuda:N or auto)");
}

std::unique_ptr<QuantOps> make_quant_ops(Backend& b, FactorPrecision factor) {
  switch (b.device()) {
    case Device::kCpu: return make_cpu_quant_ops();
    case Device::kCuda:
#ifdef GPTQ_HAVE_CUDA
      return cuda::make_cuda_quant_ops(b, factor);
#else
      break;
#endif
  }
  throw Error(ErrorKind::kUnsupported, "backend " + b.name() + " has no GPTQ compute");
}

std::vector<std::unique_ptr<DeviceComm>> make_device_comms(std::span<Backend* const> ranks) {
#ifdef GPTQ_HAVE_CUDA
  return cuda::make_nccl_comms(ranks);
#else
  (void)ranks;
  return {};
#endif
}

}  // namespace gptq::backend
