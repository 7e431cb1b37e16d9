// A communicator among the devices of a data-parallel quantization's ranks (NCCL on
// CUDA), through which QuantOps::pool sums the ranks' Hessians device to device instead
// of through host memory (quant/parallel.h). Opaque here: only the backend that made it
// reads it.
#pragma once

namespace gptq::backend {

class DeviceComm {
 public:
  virtual ~DeviceComm() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Ends every operation in flight on it (another rank failed, so a collective could wait
  // for it forever); the communicator is unusable afterwards. Safe from any thread, and
  // more than once.
  virtual void abort() = 0;
};

}  // namespace gptq::backend
