// conv2d's fast kernels for exact float32 (FFMA): one translation unit per
// kernel family, so that the families compile in parallel.  Winograd
// (conv2d_winograd.cuh) runs its GEMMs on these kernels, so it lives here.
#include "conv2d_cuda.h"
#include "conv2d_fast_launch.cuh"
#include "conv2d_winograd.cuh"

namespace pycnn {
namespace gpu {

using Kernelsffma = SimtKernels;
PYCNN_DEFINE_FAST_CONV(ffma, Kernelsffma)

bool conv2d_forward_winograd(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& bias, const at::Tensor& output,
                             const Conv2dShape& s, int tile, bool relu) {
  if (!winograd_applies(s, false)) return false;
  DeviceLauncher launcher(input);
  winograd_conv(input, weight, bias, output, s.pad_h, s.pad_w, false, launcher, tile, relu);
  return true;
}

bool conv2d_input_backward_winograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                    const at::Tensor& grad_input, const Conv2dShape& s, int tile) {
  if (!winograd_applies(s, true)) return false;
  DeviceLauncher launcher(grad_output);
  winograd_conv(grad_output, weight, at::Tensor(), grad_input, 2 - s.pad_h, 2 - s.pad_w, true,
                launcher, tile, false);
  return true;
}

bool conv2d_weight_backward_winograd(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& grad_weight, const Conv2dShape& s, int tile) {
  if (!winograd_applies(s, false)) return false;
  DeviceLauncher launcher(grad_output);
  winograd_weight_grad(grad_output, input, grad_weight, s.pad_h, s.pad_w, launcher, tile);
  return true;
}

}  // namespace gpu
}  // namespace pycnn
