// pycnn::avg_pool2d and its backward on CUDA (kernels in avg_pool2d.cuh).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "avg_pool2d.cuh"
#include "pool2d_cuda.h"

namespace pycnn {
namespace gpu {
namespace {

at::Tensor avg_pool2d_cuda(const at::Tensor& input, at::IntArrayRef kernel_size,
                           at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                           bool count_include_pad, std::optional<int64_t> divisor_override) {
  const Pool2dShape s =
      check_avg_pool2d(input, kernel_size, stride, padding, ceil_mode, divisor_override);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  if (output.numel() == 0) return output;
  const AvgPoolOptions opt{count_include_pad, divisor_override.value_or(0)};
  if (avg_pool2d_fast(input, output, s, opt.count_include_pad, opt.divisor_override)) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "pycnn.avg_pool2d", [&] {
    launch_elementwise(AvgPoolForward<scalar_t>::make(input, output, s, opt), output.numel(),
                       c10::cuda::getCurrentCUDAStream());
  });
  return output;
}

at::Tensor avg_pool2d_backward_cuda(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                    at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                    at::IntArrayRef padding, bool ceil_mode,
                                    bool count_include_pad,
                                    std::optional<int64_t> divisor_override) {
  const Pool2dShape s = check_avg_pool2d_backward(grad_output, input_size, kernel_size, stride,
                                                  padding, ceil_mode, divisor_override);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0) return grad_input;
  const AvgPoolOptions opt{count_include_pad, divisor_override.value_or(0)};
  if (avg_pool2d_backward_fast(grad_output, grad_input, s, opt.count_include_pad,
                               opt.divisor_override)) {
    return grad_input;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "pycnn.avg_pool2d_backward", [&] {
    launch_elementwise(AvgPoolBackward<scalar_t>::make(grad_output, grad_input, s, opt),
                       grad_input.numel(), c10::cuda::getCurrentCUDAStream());
  });
  return grad_input;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(pycnn, CUDA, m) {
  m.impl("avg_pool2d", &gpu::avg_pool2d_cuda);
  m.impl("avg_pool2d_backward", &gpu::avg_pool2d_backward_cuda);
}

}  // namespace pycnn
