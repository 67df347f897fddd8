// Baseline x86-64 micro-kernels (SSE2: 16 xmm registers, 4 floats / 2
// doubles each), for CPUs without AVX2.
#include <cstdint>

#include "microkernels.h"
#include "microkernels_impl.h"

namespace pycnn {
namespace cpu {

namespace {
template <typename T>
KernelSet<T> make_generic_set() {
  KernelSet<T> set;
  set.isa = "generic";
  set.vector_width = 16 / static_cast<int>(sizeof(T));
  // 8 accumulators of the 16 xmm registers.
  set.count = 2;
  set.shapes[0] = shape<T, 16, 4, 2>();
  set.shapes[1] = shape<T, 16, 8, 1>();
  fill_lane_kernels<T, 16, 16>(set);
  set.transpose = transpose_for<T, 16>();
  set.transpose_relu = transpose_for<T, 16, true>();
  return set;
}
}  // namespace

const KernelSet<float>& generic_kernels_f32() {
  static const KernelSet<float> set = make_generic_set<float>();
  return set;
}
const KernelSet<double>& generic_kernels_f64() {
  static const KernelSet<double> set = make_generic_set<double>();
  return set;
}

}  // namespace cpu
}  // namespace pycnn
