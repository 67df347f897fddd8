#include "conv2d_input_scatter.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "cpu_features.h"
#include "strides.h"

namespace pycnn {
namespace cpu {
namespace {

template <typename T>
struct ScatterArgs {
  const T* go;  // grad_output
  const T* wt;  // weight, [K][C/groups][R][S]
  T* gi;        // grad_input
  Strides4 gs, is;
  const Conv2dShape* s;
};

// One image.  Each grad_input element receives its output pixels' shares in
// (oy, ox) order, each share summed over k in order: the same sums whatever
// the thread count.  Inlined into one copy per instruction set below, where
// the compiler vectorises the patch loop for that set.
template <typename T>
__attribute__((always_inline)) inline void scatter_image(const ScatterArgs<T>& a, int64_t n, T* patch) {
  const Conv2dShape& s = *a.s;
  const int64_t cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  const int64_t patch_size = cpg * s.kernel_h * s.kernel_w;
  T* gi_n = a.gi + n * a.is.n;
  for (int64_t c = 0; c < s.in_channels; ++c)
    for (int64_t y = 0; y < s.in_h; ++y)
      for (int64_t x = 0; x < s.in_w; ++x) gi_n[c * a.is.c + y * a.is.h + x * a.is.w] = T(0);
  for (int64_t oy = 0; oy < s.out_h; ++oy) {
    for (int64_t ox = 0; ox < s.out_w; ++ox) {
      const int64_t y0 = oy * s.stride_h - s.pad_h, x0 = ox * s.stride_w - s.pad_w;
      const T* g_at = a.go + n * a.gs.n + oy * a.gs.h + ox * a.gs.w;
      for (int64_t g = 0; g < s.groups; ++g) {
        for (int64_t j = 0; j < patch_size; ++j) patch[j] = T(0);
        for (int64_t k = g * kpg; k < (g + 1) * kpg; ++k) {
          const T gk = g_at[k * a.gs.c];
          const T* wk = a.wt + k * patch_size;
#pragma omp simd
          for (int64_t j = 0; j < patch_size; ++j) patch[j] += gk * wk[j];
        }
        for (int64_t c = 0; c < cpg; ++c) {
          T* gi_c = gi_n + (g * cpg + c) * a.is.c;
          for (int64_t r = 0; r < s.kernel_h; ++r) {
            const int64_t y = y0 + r * s.dilation_h;
            if (y < 0 || y >= s.in_h) continue;
            for (int64_t q = 0; q < s.kernel_w; ++q) {
              const int64_t x = x0 + q * s.dilation_w;
              if (x < 0 || x >= s.in_w) continue;
              gi_c[y * a.is.h + x * a.is.w] += patch[(c * s.kernel_h + r) * s.kernel_w + q];
            }
          }
        }
      }
    }
  }
}

template <typename T>
void scatter_images_generic(const ScatterArgs<T>& a, int64_t n0, int64_t n1, T* patch) {
  for (int64_t n = n0; n < n1; ++n) scatter_image(a, n, patch);
}

template <typename T>
__attribute__((target("avx2,fma"))) void scatter_images_avx2(const ScatterArgs<T>& a, int64_t n0,
                                                             int64_t n1, T* patch) {
  for (int64_t n = n0; n < n1; ++n) scatter_image(a, n, patch);
}

template <typename T>
__attribute__((target("avx512f,avx512vl,fma"))) void scatter_images_avx512(const ScatterArgs<T>& a,
                                                                          int64_t n0, int64_t n1,
                                                                          T* patch) {
  for (int64_t n = n0; n < n1; ++n) scatter_image(a, n, patch);
}

}  // namespace

bool conv2d_input_scatter_suits(const Conv2dShape& s) {
  // Share of the engine's taps that meet grad_output rather than padding:
  // each input pixel of a stride phase sees R*S/(sh*sw) taps, of which
  // OH*OW*R*S/(H*W) on average are real.  Below a quarter, the scatter
  // form's lower arithmetic rate (no register-blocked GEMM, and a scalar
  // scatter whose overlapping windows wait on store forwarding) still wins:
  // at LeNet C5 (0.04) it runs 15x faster than the engine, at LeNet C3
  // (0.51) 1.3x slower.
  const double real = double(s.out_h * s.out_w * s.stride_h * s.stride_w) /
                      double(s.in_h * s.in_w);
  return real < 0.25;
}

template <typename T>
void conv2d_input_backward_scatter(const at::Tensor& grad_output, const at::Tensor& weight,
                                   const at::Tensor& grad_input, const Conv2dShape& s) {
  const at::Tensor w = weight.contiguous();  // [K][C/groups][R][S]: patch rows contiguous
  const ScatterArgs<T> a{grad_output.const_data_ptr<T>(), w.const_data_ptr<T>(),
                         grad_input.mutable_data_ptr<T>(), Strides4(grad_output),
                         Strides4(grad_input), &s};
  const int64_t patch_size = s.in_channels_per_group() * s.kernel_h * s.kernel_w;
  const CpuIsa isa = active_cpu_isa();
  at::parallel_for(0, s.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(patch_size);
    switch (isa) {
      case CpuIsa::avx512:
        return scatter_images_avx512(a, begin, end, patch.data());
      case CpuIsa::avx2:
        return scatter_images_avx2(a, begin, end, patch.data());
      default:
        return scatter_images_generic(a, begin, end, patch.data());
    }
  });
}

template void conv2d_input_backward_scatter<float>(const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, const Conv2dShape&);
template void conv2d_input_backward_scatter<double>(const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const Conv2dShape&);

}  // namespace cpu
}  // namespace pycnn
