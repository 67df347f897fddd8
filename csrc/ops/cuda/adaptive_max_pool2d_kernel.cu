// pycnn::adaptive_max_pool2d and its backward on CUDA (kernels in
// adaptive_max_pool2d.cuh).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "adaptive_max_pool2d.cuh"
#include "pool2d_cuda.h"

namespace pycnn {
namespace gpu {
namespace {

constexpr const char* kForward = "pycnn.adaptive_max_pool2d";
constexpr const char* kBackward = "pycnn.adaptive_max_pool2d_backward";

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d_cuda(const at::Tensor& input,
                                                            at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = check_adaptive_pool2d(input, output_size, kForward);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  if (output.numel() == 0 || adaptive_max_pool2d_fast(input, output, indices, s)) {
    return {output, indices};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), kForward, [&] {
    launch_elementwise(AdaptiveMaxForward<scalar_t>::make(input, output, indices, s),
                       output.numel(), c10::cuda::getCurrentCUDAStream());
  });
  return {output, indices};
}

at::Tensor adaptive_max_pool2d_backward_cuda(const at::Tensor& grad_output,
                                             const at::Tensor& indices,
                                             at::IntArrayRef input_size) {
  const AdaptivePool2dShape s =
      check_adaptive_pool2d_backward(grad_output, &indices, input_size, kBackward);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0 ||
      adaptive_max_pool2d_backward_fast(grad_output, indices, grad_input, s)) {
    return grad_input;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), kBackward,
                                  [&] {
    launch_elementwise(AdaptiveMaxBackward<scalar_t>::make(grad_output, indices, grad_input, s),
                       grad_input.numel(), c10::cuda::getCurrentCUDAStream());
  });
  return grad_input;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(pycnn, CUDA, m) {
  m.impl("adaptive_max_pool2d", &gpu::adaptive_max_pool2d_cuda);
  m.impl("adaptive_max_pool2d_backward", &gpu::adaptive_max_pool2d_backward_cuda);
}

}  // namespace pycnn
