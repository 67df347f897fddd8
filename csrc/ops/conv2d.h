// pycnn::conv2d and its three backward ops: the contract every backend
// kernel implements.  The schemas live in conv2d.cpp; the checks here run in
// every kernel before any arithmetic.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "common.h"

namespace pycnn {

struct Conv2dShape {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w;
  int64_t out_h, out_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups;

  int64_t in_channels_per_group() const { return in_channels / groups; }
  int64_t out_channels_per_group() const { return out_channels / groups; }
  std::array<int64_t, 4> input_size() const { return {batch, in_channels, in_h, in_w}; }
  std::array<int64_t, 4> weight_size() const {
    return {out_channels, in_channels / groups, kernel_h, kernel_w};
  }
  std::array<int64_t, 4> output_size() const { return {batch, out_channels, out_h, out_w}; }
};

// Validates the options and sizes of one convolution and derives its output.
Conv2dShape conv2d_shape(c10::IntArrayRef input_size, c10::IntArrayRef weight_size,
                         c10::IntArrayRef stride, c10::IntArrayRef padding,
                         c10::IntArrayRef dilation, int64_t groups, const char* op);

// relu: the checks of conv2d_relu (its name in the messages).
Conv2dShape check_conv2d(const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                         c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
                         bool relu = false);

Conv2dShape check_conv2d_input_backward(const at::Tensor& grad_output, const at::Tensor& weight,
                                        c10::IntArrayRef input_size, c10::IntArrayRef stride,
                                        c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                        int64_t groups);

Conv2dShape check_conv2d_weight_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                         c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                         c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                         int64_t groups);

void check_conv2d_bias_backward(const at::Tensor& grad_output);

}  // namespace pycnn
