#include "conv2d_input_scatter.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "strides.h"

namespace pycnn {
namespace cpu {

bool conv2d_input_scatter_suits(const Conv2dShape& s) {
  // Share of the engine's taps that meet grad_output rather than padding:
  // each input pixel of a stride phase sees R*S/(sh*sw) taps, of which
  // OH*OW*R*S/(H*W) on average are real.  Below a quarter, the scatter
  // form's lower arithmetic rate (no register-blocked GEMM) still wins.
  const double real = double(s.out_h * s.out_w * s.stride_h * s.stride_w) /
                      double(s.in_h * s.in_w);
  return real < 0.25;
}

template <typename T>
void conv2d_input_backward_scatter(const at::Tensor& grad_output, const at::Tensor& weight,
                                   const at::Tensor& grad_input, const Conv2dShape& s) {
  const at::Tensor w = weight.contiguous();  // [K][C/groups][R][S]: patch rows contiguous
  const Strides4 gs(grad_output), is(grad_input);
  const T* go = grad_output.const_data_ptr<T>();
  const T* wt = w.const_data_ptr<T>();
  T* gi = grad_input.mutable_data_ptr<T>();
  const int64_t cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  const int64_t taps = s.kernel_h * s.kernel_w, patch_size = cpg * taps;

  at::parallel_for(0, s.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(patch_size);
    for (int64_t n = begin; n < end; ++n) {
      T* gi_n = gi + n * is.n;
      for (int64_t c = 0; c < s.in_channels; ++c)
        for (int64_t y = 0; y < s.in_h; ++y)
          for (int64_t x = 0; x < s.in_w; ++x) gi_n[c * is.c + y * is.h + x * is.w] = T(0);
      // Each grad_input element receives its output pixels' shares in
      // (oy, ox) order, each share summed over k in order: fixed, whatever
      // the thread count.
      for (int64_t oy = 0; oy < s.out_h; ++oy) {
        for (int64_t ox = 0; ox < s.out_w; ++ox) {
          const int64_t y0 = oy * s.stride_h - s.pad_h, x0 = ox * s.stride_w - s.pad_w;
          for (int64_t g = 0; g < s.groups; ++g) {
            T* p = patch.data();
            for (int64_t j = 0; j < patch_size; ++j) p[j] = T(0);
            const T* g_at = go + n * gs.n + oy * gs.h + ox * gs.w;
            for (int64_t k = g * kpg; k < (g + 1) * kpg; ++k) {
              const T gk = g_at[k * gs.c];
              const T* wk = wt + k * patch_size;
#pragma omp simd
              for (int64_t j = 0; j < patch_size; ++j) p[j] += gk * wk[j];
            }
            for (int64_t c = 0; c < cpg; ++c) {
              T* gi_c = gi_n + (g * cpg + c) * is.c;
              for (int64_t r = 0; r < s.kernel_h; ++r) {
                const int64_t y = y0 + r * s.dilation_h;
                if (y < 0 || y >= s.in_h) continue;
                for (int64_t q = 0; q < s.kernel_w; ++q) {
                  const int64_t x = x0 + q * s.dilation_w;
                  if (x < 0 || x >= s.in_w) continue;
                  gi_c[y * is.h + x * is.w] += p[(c * s.kernel_h + r) * s.kernel_w + q];
                }
              }
            }
          }
        }
      }
    }
  });
}

template void conv2d_input_backward_scatter<float>(const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, const Conv2dShape&);
template void conv2d_input_backward_scatter<double>(const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const Conv2dShape&);

}  // namespace cpu
}  // namespace pycnn
