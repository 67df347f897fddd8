// Convolutions whose destination has few channels: LeNet's C1 forward (6
// output channels) and the grad_input of layers with 1-8 input channels
// (the 3-channel stems of AlexNet and ResNet, LeNet's C3).  The GEMM engine
// puts destination channels on the vector lanes, so there it fills 3-6 of
// 16; this path puts output pixels on the lanes (gemm/microkernels.h,
// LaneKernel) and the destination channels in the register rows.
//
// NCHW only, groups = 1, and for the forward pass stride 1 along the width:
// then a vector's pixels read neighbouring source elements.  Each thread
// keeps one zero-bordered copy of the source image it works on, so the
// kernel never tests bounds; the copy is capped (kMaxPaddedBytes), larger
// images take the GEMM engine.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv2d.h"

namespace pycnn {
namespace cpu {

bool conv2d_forward_narrow_suits(const Conv2dShape& s, const at::Tensor& input,
                                 const at::Tensor& output);
bool conv2d_input_backward_narrow_suits(const Conv2dShape& s, const at::Tensor& grad_output,
                                        const at::Tensor& grad_input);

template <typename T>
void conv2d_forward_narrow(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s,
                           bool relu);

template <typename T>
void conv2d_input_backward_narrow(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const Conv2dShape& s);

}  // namespace cpu
}  // namespace pycnn
