#include "kernel_set.h"

#include "../cpu_features.h"

namespace pycnn {
namespace cpu {

template <>
const KernelSet<float>& kernel_set<float>() {
  switch (active_cpu_isa()) {
    case CpuIsa::avx512: return avx512_kernels_f32();
    case CpuIsa::avx2: return avx2_kernels_f32();
    default: return generic_kernels_f32();
  }
}

template <>
const KernelSet<double>& kernel_set<double>() {
  switch (active_cpu_isa()) {
    case CpuIsa::avx512: return avx512_kernels_f64();
    case CpuIsa::avx2: return avx2_kernels_f64();
    default: return generic_kernels_f64();
  }
}

template <typename T>
const IndirectKernel<T>& kernel_for_columns(const KernelSet<T>& set, int64_t cols) {
  int best = 0;
  int64_t best_padded = -1;
  for (int k = 0; k < set.count; ++k) {
    const int64_t nr = set.shapes[k].nr;
    const int64_t padded = (cols + nr - 1) / nr * nr;
    if (best_padded < 0 || padded < best_padded) {
      best = k;
      best_padded = padded;
    }
  }
  return set.shapes[best];
}

template const IndirectKernel<float>& kernel_for_columns(const KernelSet<float>&, int64_t);
template const IndirectKernel<double>& kernel_for_columns(const KernelSet<double>&, int64_t);

}  // namespace cpu
}  // namespace pycnn
