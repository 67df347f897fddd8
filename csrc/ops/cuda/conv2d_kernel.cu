// pycnn::conv2d and its backward ops on CUDA: checks, output allocation and
// the choice of kernel: the direct depthwise kernels when each group has one
// input channel (conv2d_depthwise_fast.cu for 3x3, 5x5 and 7x7, else
// conv2d_direct.cu), else the fast implicit GEMMs (conv2d_fast.cu) where
// they apply (for grad_input of at most four input channels, first the
// narrow kernel, conv2d_input_backward_narrow.cu), else the reference
// implicit GEMM; grad_bias is a reduction of its own.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../conv2d.h"
#include "conv2d_cuda.h"

namespace pycnn {
namespace gpu {
namespace {

// Groups of one input channel make a GEMM tile almost empty (K = taps only).
bool use_depthwise(const Conv2dShape& s) { return s.in_channels_per_group() == 1; }

// conv2d, and with relu conv2d_relu (every forward kernel applies the ReLU
// in its epilogue).
at::Tensor conv2d_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias_opt, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                               bool relu) {
  const Conv2dShape s = check_conv2d(input, weight, bias_opt, stride, padding, dilation, groups, relu);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  if (output.numel() == 0) return output;
  const at::Tensor bias = bias_opt.value_or(at::Tensor());
  if (use_depthwise(s)) {
    if (!conv2d_forward_depthwise_fast(input, weight, bias, output, s, relu))
      conv2d_forward_depthwise(input, weight, bias, output, s, relu);
  } else if (!conv2d_forward_fast(input, weight, bias, output, s, relu)) {
    conv2d_forward_gemm(input, weight, bias, output, s, relu);
  }
  return output;
}

at::Tensor conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_forward_cuda(input, weight, bias, stride, padding, dilation, groups, false);
}

at::Tensor conv2d_relu_cuda(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_forward_cuda(input, weight, bias, stride, padding, dilation, groups, true);
}

at::Tensor conv2d_input_backward_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                      at::IntArrayRef input_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups) {
  const Conv2dShape s = check_conv2d_input_backward(grad_output, weight, input_size, stride,
                                                    padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0) return grad_input;
  if (use_depthwise(s)) {
    if (!conv2d_input_backward_depthwise_fast(grad_output, weight, grad_input, s))
      conv2d_input_backward_depthwise(grad_output, weight, grad_input, s);
  } else if (!conv2d_input_backward_narrow(grad_output, weight, grad_input, s) &&
             !conv2d_input_backward_fast(grad_output, weight, grad_input, s)) {
    conv2d_input_backward_gemm(grad_output, weight, grad_input, s);
  }
  return grad_input;
}

at::Tensor conv2d_weight_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                       at::IntArrayRef weight_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                       int64_t groups) {
  const Conv2dShape s = check_conv2d_weight_backward(grad_output, input, weight_size, stride,
                                                     padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_weight = empty_output(weight_size, grad_output.options());
  if (s.batch == 0) return grad_weight.zero_();  // a sum over no pixels
  if (use_depthwise(s)) {
    if (!conv2d_weight_backward_depthwise_fast(grad_output, input, grad_weight, s))
      conv2d_weight_backward_depthwise(grad_output, input, grad_weight, s);
  } else if (!conv2d_weight_backward_fast(grad_output, input, grad_weight, s)) {
    conv2d_weight_backward_gemm(grad_output, input, grad_weight, s);
  }
  return grad_weight;
}

at::Tensor conv2d_bias_backward_cuda(const at::Tensor& grad_output) {
  check_conv2d_bias_backward(grad_output);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const int64_t channels = grad_output.size(1);
  at::Tensor grad_bias = empty_output({channels}, grad_output.options());
  conv2d_bias_backward_reduce(grad_output, grad_bias);
  return grad_bias;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(pycnn, CUDA, m) {
  m.impl("conv2d", &gpu::conv2d_cuda);
  m.impl("conv2d_input_backward", &gpu::conv2d_input_backward_cuda);
  m.impl("conv2d_weight_backward", &gpu::conv2d_weight_backward_cuda);
  m.impl("conv2d_bias_backward", &gpu::conv2d_bias_backward_cuda);
  m.impl("conv2d_relu", &gpu::conv2d_relu_cuda);
}

}  // namespace pycnn
