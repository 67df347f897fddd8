// Division by a run-time constant without a divide instruction, for the
// 32-bit index arithmetic of the fast kernels.  A GPU has no integer divider:
// n / d compiles to a subroutine of some twenty instructions for 32 bits and
// far more for 64, and the kernels decode a pixel (image, row, column) from a
// flat index in their inner loops.  With a multiplier and a shift computed
// once on the host (Granlund and Montgomery), n / d is one multiply-high, an
// add and a shift.
//
// Valid for 0 <= n < 2^31 and 1 <= d < 2^31: the fast kernels are only
// chosen when every index they form fits in 31 bits (see fits_int32).
#pragma once

#include <cstdint>

#include "../../shape.h"

namespace pycnn {
namespace gpu {

struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 0;
  uint32_t shift = 0;

  PYCNN_HOST_DEVICE static FastDivmod make(int64_t d) {
    FastDivmod f;
    f.divisor = static_cast<uint32_t>(d);
    uint32_t s = 0;
    while ((uint64_t(1) << s) < uint64_t(d)) ++s;  // s = ceil(log2(d))
    f.shift = s;
    // m = floor(2^32 (2^s - d) / d) + 1 < 2^32
    f.multiplier = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << s) - uint64_t(d))) /
                                         uint64_t(d) + 1);
    return f;
  }

  PYCNN_HOST_DEVICE __forceinline__ uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, multiplier);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t(n) * multiplier) >> 32);
#endif
    return (hi + n) >> shift;
  }

  // q = n / d, r = n % d (n, q, r non-negative int).
  PYCNN_HOST_DEVICE __forceinline__ void divmod(int n, int& q, int& r) const {
    q = static_cast<int>(div(static_cast<uint32_t>(n)));
    r = n - q * static_cast<int>(divisor);
  }
};

// The fast kernels index with int: every count and every element offset
// they form must stay below 2^31.
constexpr int64_t kInt32Limit = (int64_t(1) << 31) - 1;

}  // namespace gpu
}  // namespace pycnn
