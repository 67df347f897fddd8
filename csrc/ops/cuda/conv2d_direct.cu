// conv2d's direct kernels (conv2d_direct.cuh): depthwise convolution and
// grad_bias.
#include <ATen/Dispatch.h>

#include "conv2d_cuda.h"
#include "conv2d_direct.cuh"

namespace pycnn {
namespace gpu {

void conv2d_forward_depthwise(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const Conv2dShape& s, bool relu) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "pycnn.conv2d", [&] {
    launch_elementwise(DepthwiseForward<scalar_t>::make(input, weight, bias, output, s, relu),
                       output.numel(), c10::cuda::getCurrentCUDAStream());
  });
}

void conv2d_input_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const Conv2dShape& s) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "pycnn.conv2d_input_backward", [&] {
        launch_elementwise(DepthwiseInputGrad<scalar_t>::make(grad_output, weight, grad_input, s),
                           grad_input.numel(), c10::cuda::getCurrentCUDAStream());
      });
}

void conv2d_weight_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& grad_weight, const Conv2dShape& s) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "pycnn.conv2d_weight_backward", [&] {
        launch_block_reduce(DepthwiseWeightGrad<scalar_t>::make(grad_output, input, grad_weight, s),
                            c10::cuda::getCurrentCUDAStream());
      });
}

void conv2d_bias_backward_reduce(const at::Tensor& grad_output, const at::Tensor& grad_bias) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "pycnn.conv2d_bias_backward", [&] {
        launch_block_reduce(BiasGrad<scalar_t>::make(grad_output, grad_bias),
                            c10::cuda::getCurrentCUDAStream());
      });
}

}  // namespace gpu
}  // namespace pycnn
