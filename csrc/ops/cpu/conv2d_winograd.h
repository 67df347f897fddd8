// Winograd F(2x2, 3x3) on the CPU, for 3x3 stride-1 convolutions with many
// channels: the forward pass, grad_input (a 3x3 stride-1 convolution of
// grad_output with the flipped, transposed filter) and grad_weight (the
// transposed algorithm, F(3x3, 2x2): see conv2d_winograd.cpp).
//
// Each 2x2 output tile comes from a 4x4 input patch: 16 products per
// (channel pair, tile) instead of 36, so the micro-kernel's work drops by
// 2.25x.  The transforms' coefficients (0, +-1, +-1/2) are exact in binary,
// so the rounding stays that of a short sum per element, far inside the
// tolerances against torch.  The sums run in a fixed order: results are
// bitwise repeatable.
//
// Three steps per block of tiles: the input transform into
// V[16][channel][tile], 16 GEMMs on the micro-kernel (V times the
// transformed weights U[16][column tile][channel][NR]) into
// M[16][tile][column], and the output transform with bias and ReLU.  Small
// filters run each block through all three in one task, its V and M in L2;
// large ones run chunks of tiles step by step across the threads, so that U
// is read once per chunk.  V and M are bounded whatever the batch.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv2d.h"

namespace pycnn {
namespace cpu {

// Whether Winograd runs this forward (or this grad_input) on the CPU.
bool conv2d_winograd_suits(const Conv2dShape& s);
bool conv2d_input_backward_winograd_suits(const Conv2dShape& s);
bool conv2d_weight_backward_winograd_suits(const Conv2dShape& s);

template <typename T>
void conv2d_forward_winograd(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& bias, const at::Tensor& output,
                             const Conv2dShape& s, bool relu);

template <typename T>
void conv2d_input_backward_winograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                    const at::Tensor& grad_input, const Conv2dShape& s);

// grad_weight by the transposed algorithm: see conv2d_winograd.cpp.
template <typename T>
void conv2d_weight_backward_winograd(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& grad_weight, const Conv2dShape& s);

}  // namespace cpu
}  // namespace pycnn
