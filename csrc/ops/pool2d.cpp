#include "pool2d.h"

#include <c10/util/Exception.h>

#include "../shape.h"

namespace pycnn {

namespace {

constexpr const char* kNCHW = "(N, C, H, W)";

// Pooling needs non-empty planes (the batch may be empty), as torch requires.
void check_pool_input_size(c10::IntArrayRef size, const char* op, const char* name) {
  TORCH_CHECK_VALUE(size.size() == 4, op, ": expected ", name, " to be 4-D ", kNCHW, ", got ",
                    format_sizes(size));
  TORCH_CHECK_VALUE(size[0] >= 0 && size[1] > 0 && size[2] > 0 && size[3] > 0, op, ": ", name,
                    " of shape ", format_sizes(size),
                    " must have non-zero channels, height and width");
  for (auto v : size) {
    TORCH_CHECK_VALUE(v <= kMaxWindowValue, op, ": ", name, " of shape ", format_sizes(size),
                      " is too large; at most 2^60 per dimension is supported");
  }
}

void check_pool_tensor(const at::Tensor& t, const char* op, const char* name) {
  check_dim(t, 4, op, name, kNCHW);
  check_float_dtype(t, op, name);
}

void check_indices(const at::Tensor& indices, const at::Tensor& grad_output, const char* op) {
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": indices must be int64, got ",
              indices.scalar_type());
  TORCH_CHECK(indices.device() == grad_output.device(), op, ": indices (on ", indices.device(),
              ") and grad_output (on ", grad_output.device(), ") must be on the same device");
  TORCH_CHECK(indices.sizes() == grad_output.sizes(), op, ": indices of shape ",
              format_sizes(indices.sizes()), " do not match grad_output of shape ",
              format_sizes(grad_output.sizes()));
}

// Window options shared by max and avg pooling; an empty stride means
// stride = kernel_size, as in torch.
Pool2dShape pool_shape(c10::IntArrayRef input_size, c10::IntArrayRef kernel_arg,
                       c10::IntArrayRef stride_arg, c10::IntArrayRef padding_arg,
                       c10::IntArrayRef dilation_arg, bool ceil_mode, const char* op) {
  check_pool_input_size(input_size, op, "input");
  const Pair kernel = as_pair(kernel_arg, op, "kernel_size");
  const Pair stride = stride_arg.empty() ? kernel : as_pair(stride_arg, op, "stride");
  const Pair padding = as_pair(padding_arg, op, "padding");
  const Pair dilation = as_pair(dilation_arg, op, "dilation");
  check_positive(kernel, op, "kernel_size");
  check_positive(stride, op, "stride");
  check_non_negative(padding, op, "padding");
  check_positive(dilation, op, "dilation");
  check_not_huge(kernel, op, "kernel_size");
  check_not_huge(stride, op, "stride");
  check_not_huge(dilation, op, "dilation");
  check_dilated_kernel(kernel, dilation, op);
  TORCH_CHECK_VALUE(padding[0] <= kernel[0] / 2 && padding[1] <= kernel[1] / 2, op,
                    ": padding must be at most half of kernel_size, got padding=(", padding[0],
                    ", ", padding[1], ") with kernel_size=(", kernel[0], ", ", kernel[1], ")");
  Pool2dShape s{};
  s.batch = input_size[0];
  s.channels = input_size[1];
  s.in_h = input_size[2];
  s.in_w = input_size[3];
  s.kernel_h = kernel[0];
  s.kernel_w = kernel[1];
  s.stride_h = stride[0];
  s.stride_w = stride[1];
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dilation_h = dilation[0];
  s.dilation_w = dilation[1];
  s.ceil_mode = ceil_mode;
  s.out_h = pool_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h, ceil_mode);
  s.out_w = pool_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w, ceil_mode);
  TORCH_CHECK_VALUE(s.out_h >= 1 && s.out_w >= 1, op, ": input of shape ",
                    format_sizes(input_size), " is too small for kernel_size=(", s.kernel_h, ", ",
                    s.kernel_w, "), stride=(", s.stride_h, ", ", s.stride_w, "), padding=(",
                    s.pad_h, ", ", s.pad_w, "), dilation=(", s.dilation_h, ", ", s.dilation_w,
                    "): the output would be ", s.out_h, " x ", s.out_w);
  return s;
}

}  // namespace

Pool2dShape check_max_pool2d(const at::Tensor& input, c10::IntArrayRef kernel_size,
                             c10::IntArrayRef stride, c10::IntArrayRef padding,
                             c10::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "pycnn.max_pool2d";
  check_pool_tensor(input, op, "input");
  return pool_shape(input.sizes(), kernel_size, stride, padding, dilation, ceil_mode, op);
}

Pool2dShape check_max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                      c10::IntArrayRef input_size, c10::IntArrayRef kernel_size,
                                      c10::IntArrayRef stride, c10::IntArrayRef padding,
                                      c10::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "pycnn.max_pool2d_backward";
  check_pool_tensor(grad_output, op, "grad_output");
  check_indices(indices, grad_output, op);
  Pool2dShape s = pool_shape(input_size, kernel_size, stride, padding, dilation, ceil_mode, op);
  check_grad_output_shape(grad_output, s.output_size(), op);
  return s;
}

Pool2dShape check_avg_pool2d(const at::Tensor& input, c10::IntArrayRef kernel_size,
                             c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                             std::optional<int64_t> divisor_override) {
  constexpr const char* op = "pycnn.avg_pool2d";
  check_pool_tensor(input, op, "input");
  TORCH_CHECK_VALUE(!divisor_override.has_value() || *divisor_override != 0, op,
                    ": divisor_override must be non-zero, got 0");
  return pool_shape(input.sizes(), kernel_size, stride, padding, {1}, ceil_mode, op);
}

Pool2dShape check_avg_pool2d_backward(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, bool ceil_mode,
                                      std::optional<int64_t> divisor_override) {
  constexpr const char* op = "pycnn.avg_pool2d_backward";
  check_pool_tensor(grad_output, op, "grad_output");
  TORCH_CHECK_VALUE(!divisor_override.has_value() || *divisor_override != 0, op,
                    ": divisor_override must be non-zero, got 0");
  Pool2dShape s = pool_shape(input_size, kernel_size, stride, padding, {1}, ceil_mode, op);
  check_grad_output_shape(grad_output, s.output_size(), op);
  return s;
}

AdaptivePool2dShape check_adaptive_pool2d(const at::Tensor& input, c10::IntArrayRef output_size,
                                          const char* op) {
  check_pool_tensor(input, op, "input");
  check_pool_input_size(input.sizes(), op, "input");
  const Pair out = as_pair(output_size, op, "output_size");
  check_non_negative(out, op, "output_size");
  check_not_huge(out, op, "output_size");
  return {input.size(0), input.size(1), input.size(2), input.size(3), out[0], out[1]};
}

AdaptivePool2dShape check_adaptive_pool2d_backward(const at::Tensor& grad_output,
                                                   const at::Tensor* indices,
                                                   c10::IntArrayRef input_size, const char* op) {
  check_pool_tensor(grad_output, op, "grad_output");
  if (indices) check_indices(*indices, grad_output, op);
  check_pool_input_size(input_size, op, "input_size");
  TORCH_CHECK(grad_output.size(0) == input_size[0] && grad_output.size(1) == input_size[1], op,
              ": grad_output of shape ", format_sizes(grad_output.sizes()),
              " does not match the input of shape ", format_sizes(input_size));
  return {input_size[0], input_size[1],       input_size[2],
          input_size[3], grad_output.size(2), grad_output.size(3)};
}

}  // namespace pycnn
