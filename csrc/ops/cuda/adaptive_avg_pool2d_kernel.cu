// pycnn::adaptive_avg_pool2d and its backward on CUDA (kernels in
// adaptive_avg_pool2d.cuh).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "adaptive_avg_pool2d.cuh"
#include "pool2d_cuda.h"

namespace pycnn {
namespace gpu {
namespace {

constexpr const char* kForward = "pycnn.adaptive_avg_pool2d";
constexpr const char* kBackward = "pycnn.adaptive_avg_pool2d_backward";

at::Tensor adaptive_avg_pool2d_cuda(const at::Tensor& input, at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = check_adaptive_pool2d(input, output_size, kForward);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  if (output.numel() == 0 || adaptive_avg_pool2d_fast(input, output, s)) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), kForward, [&] {
    launch_elementwise(AdaptiveAvgForward<scalar_t>::make(input, output, s), output.numel(),
                       c10::cuda::getCurrentCUDAStream());
  });
  return output;
}

at::Tensor adaptive_avg_pool2d_backward_cuda(const at::Tensor& grad_output,
                                             at::IntArrayRef input_size) {
  const AdaptivePool2dShape s =
      check_adaptive_pool2d_backward(grad_output, nullptr, input_size, kBackward);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0 || adaptive_avg_pool2d_backward_fast(grad_output, grad_input, s)) {
    return grad_input;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), kBackward,
                                  [&] {
    launch_elementwise(AdaptiveAvgBackward<scalar_t>::make(grad_output, grad_input, s),
                       grad_input.numel(), c10::cuda::getCurrentCUDAStream());
  });
  return grad_input;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(pycnn, CUDA, m) {
  m.impl("adaptive_avg_pool2d", &gpu::adaptive_avg_pool2d_cuda);
  m.impl("adaptive_avg_pool2d_backward", &gpu::adaptive_avg_pool2d_backward_cuda);
}

}  // namespace pycnn
