// 1x1 convolutions of NCHW tensors (ResNet-50's bottlenecks, SqueezeNet's
// squeeze and expand layers) as a GEMM with output pixels on the vector
// lanes: dst[o][pixels] = W[o][:] . src[:][pixels].
//
// The GEMM engine (conv2d_gemm.h) broadcasts one source element per pixel
// and reduction step, so on NCHW input each micro-kernel tile reads one
// element from every channel plane: 256 planes 12.5 KB apart for a 56x56
// image, which alias onto 16 of L1's 64 sets and miss a TLB entry each;
// ResNet-50's 256 -> 64 1x1 layer ran at 19 % of the FMA peak on an Intel
// AVX-512 machine (80 GFLOP/s, oneDNN 134).  Here a thread copies a block
// of pixels of every channel into a dense panel, reads it a whole vector of
// neighbouring pixels at a time, and writes NCHW rows without a transpose.
//
// The forward pass (any stride, no padding) and the stride-1 grad_input
// (the transposed weights on grad_output) share the product.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv2d.h"

namespace pycnn {
namespace cpu {

bool conv2d_forward_pointwise_suits(const Conv2dShape& s, const at::Tensor& input,
                                    const at::Tensor& output);
bool conv2d_input_backward_pointwise_suits(const Conv2dShape& s, const at::Tensor& grad_output,
                                           const at::Tensor& grad_input);

template <typename T>
void conv2d_forward_pointwise(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const Conv2dShape& s, bool relu);

template <typename T>
void conv2d_input_backward_pointwise(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const Conv2dShape& s);

}  // namespace cpu
}  // namespace pycnn
