#include "backend/cuda/nccl_comm.h"

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

namespace gptq::backend::cuda {

#ifdef GPTQ_HAVE_NCCL
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) {
    throw Error(ErrorKind::kDevice, std::string(what) + " failed: " + ncclGetErrorString(r) + " (NCCL " +
                                        std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + ")");
  }
}

// Destroying may fail only on a broken communicator; a destructor cannot report it.
NcclComm::~NcclComm() {
  if (!aborted_.load()) ncclCommDestroy(comm_);
}

// ncclCommAbort may be called from another thread while an operation is in flight (NCCL
// documents this for hung collectives); the flag makes a second call a no-op.
void NcclComm::abort() {
  if (!aborted_.exchange(true)) ncclCommAbort(comm_);
}
#endif

std::vector<std::unique_ptr<DeviceComm>> make_nccl_comms(std::span<Backend* const> ranks) {
  std::vector<std::unique_ptr<DeviceComm>> out;
#ifdef GPTQ_HAVE_NCCL
  if (ranks.empty()) return out;
  std::vector<int> devices;
  for (Backend* b : ranks) {
    const int d = device_index(*b);
    if (d < 0) return out;  // not a CUDA backend
    devices.push_back(d);
  }
  if (std::set<int>(devices.begin(), devices.end()).size() != devices.size()) return out;  // a shared GPU
  // NVLink SHARP multicast stays off: the GPU machines this is run on disable it, and the
  // ring and tree algorithms serve one all-reduce per Hessian. The user's setting wins.
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  std::vector<ncclComm_t> comms(ranks.size());
  nccl_check(ncclCommInitAll(comms.data(), int(comms.size()), devices.data()), "ncclCommInitAll");
  for (std::size_t r = 0; r < comms.size(); ++r) {
    out.push_back(std::make_unique<NcclComm>(comms[r], int(r), int(comms.size()), devices[r]));
  }
#else
  (void)ranks;
#endif
  return out;
}

}  // namespace gptq::backend::cuda
