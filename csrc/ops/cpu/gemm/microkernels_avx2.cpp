// AVX2 micro-kernels: 16 ymm registers, 8 floats / 4 doubles each.
#include <cstdint>

#include "microkernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "microkernels_impl.h"

namespace pycnn {
namespace cpu {

namespace {
template <typename T>
KernelSet<T> make_avx2_set() {
  KernelSet<T> set;
  set.isa = "avx2";
  set.vector_width = 32 / static_cast<int>(sizeof(T));
  // 12 accumulators of the 16 registers, the rest for the b loads.
  set.count = 3;
  set.shapes[0] = shape<T, 32, 4, 3>();
  set.shapes[1] = shape<T, 32, 6, 2>();
  set.shapes[2] = shape<T, 32, 12, 1>();
  fill_lane_kernels<T, 32, 16>(set);
  set.transpose = transpose_for<T, 32>();
  set.transpose_relu = transpose_for<T, 32, true>();
  return set;
}
}  // namespace

const KernelSet<float>& avx2_kernels_f32() {
  static const KernelSet<float> set = make_avx2_set<float>();
  return set;
}
const KernelSet<double>& avx2_kernels_f64() {
  static const KernelSet<double> set = make_avx2_set<double>();
  return set;
}

}  // namespace cpu
}  // namespace pycnn
#pragma GCC pop_options
