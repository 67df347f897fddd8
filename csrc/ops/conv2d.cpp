#include "conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "../shape.h"
#include "ops.h"

namespace pycnn {

namespace {
constexpr const char* kConv = "pycnn.conv2d";
constexpr const char* kConvRelu = "pycnn.conv2d_relu";
constexpr const char* kInputBackward = "pycnn.conv2d_input_backward";
constexpr const char* kWeightBackward = "pycnn.conv2d_weight_backward";
constexpr const char* kBiasBackward = "pycnn.conv2d_bias_backward";
constexpr const char* kNCHW = "(N, C, H, W)";
}  // namespace

Conv2dShape conv2d_shape(c10::IntArrayRef input_size, c10::IntArrayRef weight_size,
                         c10::IntArrayRef stride_arg, c10::IntArrayRef padding_arg,
                         c10::IntArrayRef dilation_arg, int64_t groups, const char* op) {
  TORCH_CHECK_VALUE(input_size.size() == 4, op, ": expected a 4-D input size (N, C, H, W), got ",
                    format_sizes(input_size));
  TORCH_CHECK_VALUE(weight_size.size() == 4, op,
                    ": expected a 4-D weight size (out_channels, in_channels/groups, kH, kW), got ",
                    format_sizes(weight_size));
  const Pair stride = as_pair(stride_arg, op, "stride");
  const Pair padding = as_pair(padding_arg, op, "padding");
  const Pair dilation = as_pair(dilation_arg, op, "dilation");
  check_positive(stride, op, "stride");
  check_non_negative(padding, op, "padding");
  check_positive(dilation, op, "dilation");
  check_not_huge(stride, op, "stride");
  check_not_huge(padding, op, "padding");
  check_not_huge(dilation, op, "dilation");
  TORCH_CHECK_VALUE(groups > 0, op, ": groups must be positive, got groups=", groups);

  Conv2dShape s{};
  s.batch = input_size[0];
  s.in_channels = input_size[1];
  s.in_h = input_size[2];
  s.in_w = input_size[3];
  s.out_channels = weight_size[0];
  s.kernel_h = weight_size[2];
  s.kernel_w = weight_size[3];
  s.stride_h = stride[0];
  s.stride_w = stride[1];
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dilation_h = dilation[0];
  s.dilation_w = dilation[1];
  s.groups = groups;

  for (auto v : input_size) {
    TORCH_CHECK_VALUE(v >= 0 && v <= kMaxWindowValue, op,
                      ": input size must be non-negative and at most 2^60, got ",
                      format_sizes(input_size));
  }
  TORCH_CHECK_VALUE(s.out_channels > 0 && weight_size[1] > 0 && s.kernel_h > 0 && s.kernel_w > 0,
                    op, ": every weight dimension must be positive, got weight of shape ",
                    format_sizes(weight_size));
  check_dilated_kernel({s.kernel_h, s.kernel_w}, dilation, op);
  TORCH_CHECK(s.in_channels % groups == 0, op, ": in_channels (", s.in_channels,
              ") must be divisible by groups (", groups, ")");
  TORCH_CHECK(s.out_channels % groups == 0, op, ": out_channels (", s.out_channels,
              ") must be divisible by groups (", groups, ")");
  TORCH_CHECK(weight_size[1] * groups == s.in_channels, op, ": weight of shape ",
              format_sizes(weight_size), " with groups=", groups, " expects ",
              weight_size[1] * groups, " input channels, but the input of shape ",
              format_sizes(input_size), " has ", s.in_channels);
  const int64_t padded_h = s.in_h + 2 * s.pad_h, padded_w = s.in_w + 2 * s.pad_w;
  const int64_t extent_h = dilated_extent(s.kernel_h, s.dilation_h);
  const int64_t extent_w = dilated_extent(s.kernel_w, s.dilation_w);
  TORCH_CHECK(padded_h >= extent_h && padded_w >= extent_w, op, ": the padded input (", padded_h,
              " x ", padded_w, ") is smaller than the dilated kernel (", extent_h, " x ", extent_w,
              "); input of shape ", format_sizes(input_size), ", kernel ", s.kernel_h, " x ",
              s.kernel_w, ", padding=(", s.pad_h, ", ", s.pad_w, "), dilation=(", s.dilation_h,
              ", ", s.dilation_w, ")");
  s.out_h = conv_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  s.out_w = conv_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  return s;
}

Conv2dShape check_conv2d(const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
                         bool relu) {
  const char* const op = relu ? kConvRelu : kConv;
  check_dim(input, 4, op, "input", kNCHW);
  check_dim(weight, 4, op, "weight", "(out_channels, in_channels/groups, kH, kW)");
  check_float_dtype(input, op, "input");
  check_same_dtype_and_device(input, "input", weight, "weight", op);
  Conv2dShape s = conv2d_shape(input.sizes(), weight.sizes(), stride, padding, dilation, groups, op);
  if (bias.has_value() && bias->defined()) {
    check_same_dtype_and_device(input, "input", *bias, "bias", op);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == s.out_channels, op,
                ": bias must have shape [", s.out_channels, "] (one per output channel), got ",
                format_sizes(bias->sizes()));
  }
  return s;
}

Conv2dShape check_conv2d_input_backward(const at::Tensor& grad_output, const at::Tensor& weight,
                                        c10::IntArrayRef input_size, c10::IntArrayRef stride,
                                        c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                        int64_t groups) {
  check_dim(grad_output, 4, kInputBackward, "grad_output", kNCHW);
  check_dim(weight, 4, kInputBackward, "weight", "(out_channels, in_channels/groups, kH, kW)");
  check_float_dtype(grad_output, kInputBackward, "grad_output");
  check_same_dtype_and_device(grad_output, "grad_output", weight, "weight", kInputBackward);
  Conv2dShape s = conv2d_shape(input_size, weight.sizes(), stride, padding, dilation, groups,
                               kInputBackward);
  check_grad_output_shape(grad_output, s.output_size(), kInputBackward);
  return s;
}

Conv2dShape check_conv2d_weight_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                         c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                         c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                         int64_t groups) {
  check_dim(grad_output, 4, kWeightBackward, "grad_output", kNCHW);
  check_dim(input, 4, kWeightBackward, "input", kNCHW);
  check_float_dtype(grad_output, kWeightBackward, "grad_output");
  check_same_dtype_and_device(grad_output, "grad_output", input, "input", kWeightBackward);
  Conv2dShape s = conv2d_shape(input.sizes(), weight_size, stride, padding, dilation, groups,
                               kWeightBackward);
  check_grad_output_shape(grad_output, s.output_size(), kWeightBackward);
  return s;
}

void check_conv2d_bias_backward(const at::Tensor& grad_output) {
  check_dim(grad_output, 4, kBiasBackward, "grad_output", kNCHW);
  check_float_dtype(grad_output, kBiasBackward, "grad_output");
}

TORCH_LIBRARY_FRAGMENT(pycnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride=1, int[2] padding=0, "
      "int[2] dilation=1, int groups=1) -> Tensor",
      tags);
  m.def(
      "conv2d_input_backward(Tensor grad_output, Tensor weight, SymInt[4] input_size, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor",
      tags);
  m.def(
      "conv2d_weight_backward(Tensor grad_output, Tensor input, SymInt[4] weight_size, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor",
      tags);
  m.def("conv2d_bias_backward(Tensor grad_output) -> Tensor", tags);
  // relu(conv2d(...)), the ReLU applied in the kernels' epilogue.
  m.def(
      "conv2d_relu(Tensor input, Tensor weight, Tensor? bias, int[2] stride=1, int[2] padding=0, "
      "int[2] dilation=1, int groups=1) -> Tensor",
      tags);
}

namespace ops {

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return PYCNN_OP_HANDLE(conv2d).call(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_relu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return PYCNN_OP_HANDLE(conv2d_relu).call(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_input_backward(const at::Tensor& grad_output, const at::Tensor& weight,
                                 c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  return PYCNN_OP_HANDLE(conv2d_input_backward)
      .call(grad_output, weight, input_size, stride, padding, dilation, groups);
}

at::Tensor conv2d_weight_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  return PYCNN_OP_HANDLE(conv2d_weight_backward)
      .call(grad_output, input, weight_size, stride, padding, dilation, groups);
}

at::Tensor conv2d_bias_backward(const at::Tensor& grad_output) {
  return PYCNN_OP_HANDLE(conv2d_bias_backward).call(grad_output);
}

}  // namespace ops

}  // namespace pycnn
