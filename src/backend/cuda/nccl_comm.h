// NCCL communicators among the ranks' GPUs (backend/device_comm.h), one per rank, made
// together by ncclCommInitAll: the ranks are threads of one process (quant/parallel.h),
// so no unique id has to travel between processes. Compiled with NCCL only
// (GPTQ_HAVE_NCCL); without it make_nccl_comms returns none and the ranks pool through
// host memory.
#pragma once

#ifdef GPTQ_HAVE_NCCL
#include <nccl.h>
#endif

#include <atomic>

#include "backend/device_comm.h"

namespace gptq::backend::cuda {

#ifdef GPTQ_HAVE_NCCL
class NcclComm final : public DeviceComm {
 public:
  NcclComm(ncclComm_t comm, int rank, int world, int device) : comm_(comm), rank_(rank), world_(world), device_(device) {}
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int device() const { return device_; }
  ncclComm_t get() const { return comm_; }
  void abort() override;

 private:
  ncclComm_t comm_;
  std::atomic<bool> aborted_{false};
  int rank_, world_, device_;
};

// Throws kDevice naming the call and NCCL's message.
void nccl_check(ncclResult_t r, const char* what);
#endif

}  // namespace gptq::backend::cuda
