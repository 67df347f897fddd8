// conv2d's CUDA kernels, one translation unit each (so that they compile in
// parallel), called by the ops in conv2d_kernel.cu.  Each takes tensors that
// passed the op's checks and an output already allocated, runs on the current
// CUDA stream of the current device, and writes every element of its output.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv2d.h"

namespace pycnn {
namespace gpu {

// Implicit GEMM (conv2d_igemm.cuh and conv2d_*_gemm.cuh), for any groups;
// bias may be undefined.
void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s);
void conv2d_input_backward_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s);
// grad_weight must be contiguous.
void conv2d_weight_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s);

// Direct kernels (conv2d_direct.cuh) for groups of one input channel each
// (depthwise convolution, with any channel multiplier), where a GEMM tile
// would be almost empty.
void conv2d_forward_depthwise(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const Conv2dShape& s);
void conv2d_input_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const Conv2dShape& s);
// grad_weight must be contiguous.
void conv2d_weight_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& grad_weight, const Conv2dShape& s);

// grad_bias[k] = sum of grad_output[:, k, :, :] (conv2d_direct.cuh).
void conv2d_bias_backward_reduce(const at::Tensor& grad_output, const at::Tensor& grad_bias);

}  // namespace gpu
}  // namespace pycnn
