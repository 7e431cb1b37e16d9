// Process memory as the kernel reports it (Linux /proc/self/status).
#pragma once

#include <cstdint>

namespace gptq {

uint64_t peak_rss_bytes();     // VmHWM: the high-water mark of resident memory
uint64_t current_rss_bytes();  // VmRSS

}  // namespace gptq
