// memcpy on the process's OpenMP threads, for large host copies whose source is a memory
// map: each thread takes its own slices, so the page faults of a cold map are served in
// parallel too. Used to fill page-locked staging memory for host-to-device uploads,
// where one thread's copy (~5-10 GB/s, less with faults) would bound the transfer.
#pragma once

#include <cstddef>

namespace gptq {

// dst and src must not overlap; n may be 0.
void parallel_copy(void* dst, const void* src, std::size_t n);

}  // namespace gptq
