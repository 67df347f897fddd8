// The pooling ops' contracts: validated shapes for max_pool2d, avg_pool2d,
// adaptive_avg_pool2d and adaptive_max_pool2d, forward and backward.  The
// schemas live in one file per op (max_pool2d.cpp, ...).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "common.h"

namespace pycnn {

struct Pool2dShape {
  int64_t batch, channels, in_h, in_w;
  int64_t out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t dilation_h = 1, dilation_w = 1;
  bool ceil_mode = false;
  std::array<int64_t, 4> output_size() const { return {batch, channels, out_h, out_w}; }
};

struct AdaptivePool2dShape {
  int64_t batch, channels, in_h, in_w;
  int64_t out_h, out_w;
  std::array<int64_t, 4> output_size() const { return {batch, channels, out_h, out_w}; }
};

Pool2dShape check_max_pool2d(const at::Tensor& input, c10::IntArrayRef kernel_size,
                             c10::IntArrayRef stride, c10::IntArrayRef padding,
                             c10::IntArrayRef dilation, bool ceil_mode);
Pool2dShape check_max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                      c10::IntArrayRef input_size, c10::IntArrayRef kernel_size,
                                      c10::IntArrayRef stride, c10::IntArrayRef padding,
                                      c10::IntArrayRef dilation, bool ceil_mode);

Pool2dShape check_avg_pool2d(const at::Tensor& input, c10::IntArrayRef kernel_size,
                             c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                             std::optional<int64_t> divisor_override);
Pool2dShape check_avg_pool2d_backward(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                                      c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, bool ceil_mode,
                                      std::optional<int64_t> divisor_override);

AdaptivePool2dShape check_adaptive_pool2d(const at::Tensor& input, c10::IntArrayRef output_size,
                                          const char* op);
// For adaptive_max_pool2d_backward pass its indices; adaptive_avg passes none.
AdaptivePool2dShape check_adaptive_pool2d_backward(const at::Tensor& grad_output,
                                                   const at::Tensor* indices,
                                                   c10::IntArrayRef input_size, const char* op);

}  // namespace pycnn
