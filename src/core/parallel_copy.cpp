#include "core/parallel_copy.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace gptq {

// Slices of 1 MiB: small enough to balance the threads over a 32 MiB staging block,
// large enough that the loop's overhead is nothing against the copy.
constexpr std::size_t kSlice = std::size_t{1} << 20;

void parallel_copy(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
  const auto slices = int64_t((n + kSlice - 1) / kSlice);
#pragma omp parallel for schedule(static) if (slices > 1)
  for (int64_t i = 0; i < slices; ++i) {
    const std::size_t off = std::size_t(i) * kSlice;
    std::memcpy(d + off, s + off, std::min(kSlice, n - off));
  }
}

}  // namespace gptq
