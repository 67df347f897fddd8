// AVX-512 micro-kernels: 32 zmm registers, 16 floats / 8 doubles each.
#include <cstdint>

#include "microkernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,fma")
#include "microkernels_impl.h"

namespace pycnn {
namespace cpu {

namespace {
template <typename T>
KernelSet<T> make_avx512_set() {
  KernelSet<T> set;
  set.isa = "avx512";
  set.vector_width = 64 / static_cast<int>(sizeof(T));
  // 28 or 24 accumulators of the 32 registers, the rest for the b loads;
  // but one vector of columns (at most 16 output channels, LeNet's C3)
  // takes 8 rows, not 24: each row is a pointer, and 24 of them spilled
  // out of the 16 general registers, a stack load per broadcast.  A/B in
  // one process, 2 threads: C3 forward 228-231 -> 186 us, C1's backward
  // 892-918 -> 736, a 12 -> 16 channel 5x5 layer 961 -> 806 (10 rows
  // measured the same, 12 and 16 in between).
  set.count = 4;
  set.shapes[0] = shape<T, 64, 6, 4>();
  set.shapes[1] = shape<T, 64, 8, 3>();
  set.shapes[2] = shape<T, 64, 14, 2>();
  set.shapes[3] = shape<T, 64, 8, 1>();
  fill_lane_kernels<T, 64, 32>(set);
  set.transpose = transpose_for<T, 64>();
  set.transpose_relu = transpose_for<T, 64, true>();
  return set;
}
}  // namespace

const KernelSet<float>& avx512_kernels_f32() {
  static const KernelSet<float> set = make_avx512_set<float>();
  return set;
}
const KernelSet<double>& avx512_kernels_f64() {
  static const KernelSet<double> set = make_avx512_set<double>();
  return set;
}

}  // namespace cpu
}  // namespace pycnn
#pragma GCC pop_options
#else
#error "pycnn's CPU kernels need an x86-64 GCC/Clang build"
#endif
