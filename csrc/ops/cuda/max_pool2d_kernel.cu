// pycnn::max_pool2d_with_indices, pycnn::max_pool2d and the backward on
// CUDA (kernels in max_pool2d.cuh).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "max_pool2d.cuh"
#include "pool2d_cuda.h"

namespace pycnn {
namespace gpu {
namespace {

std::tuple<at::Tensor, at::Tensor> max_pool2d_cuda(const at::Tensor& input,
                                                   at::IntArrayRef kernel_size,
                                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                                   at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = check_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  if (output.numel() == 0 || max_pool2d_fast(input, output, indices, s)) return {output, indices};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "pycnn.max_pool2d", [&] {
    launch_elementwise(MaxPoolForward<scalar_t>::make(input, output, indices, s), output.numel(),
                       c10::cuda::getCurrentCUDAStream());
  });
  return {output, indices};
}

// The values alone: the same kernels, the indices dropped (the CUDA
// kernels always write them).
at::Tensor max_pool2d_values_cuda(const at::Tensor& input, at::IntArrayRef kernel_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(max_pool2d_cuda(input, kernel_size, stride, padding, dilation, ceil_mode));
}

at::Tensor max_pool2d_backward_cuda(const at::Tensor& grad_output, const at::Tensor& indices,
                                    at::IntArrayRef input_size, at::IntArrayRef kernel_size,
                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = check_max_pool2d_backward(grad_output, indices, input_size, kernel_size,
                                                  stride, padding, dilation, ceil_mode);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0 || max_pool2d_backward_fast(grad_output, indices, grad_input, s)) {
    return grad_input;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "pycnn.max_pool2d_backward", [&] {
    launch_elementwise(MaxPoolBackward<scalar_t>::make(grad_output, indices, grad_input, s),
                       grad_input.numel(), c10::cuda::getCurrentCUDAStream());
  });
  return grad_input;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(pycnn, CUDA, m) {
  m.impl("max_pool2d_with_indices", &gpu::max_pool2d_cuda);
  m.impl("max_pool2d", &gpu::max_pool2d_values_cuda);
  m.impl("max_pool2d_backward", &gpu::max_pool2d_backward_cuda);
}

}  // namespace pycnn
