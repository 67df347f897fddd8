// conv2d's CUDA kernels, one translation unit each (so that they compile in
// parallel), called by the ops in conv2d_kernel.cu.  Each takes tensors that
// passed the op's checks and an output already allocated, runs on the current
// CUDA stream of the current device, and writes every element of its output.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv2d.h"

namespace pycnn {
namespace gpu {

// Every forward takes relu: apply max(v, 0) to each output as it is stored
// (conv2d_relu).
//
// Implicit GEMM (conv2d_igemm.cuh and conv2d_*_gemm.cuh), for any groups;
// bias may be undefined.
void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s,
                         bool relu);
void conv2d_input_backward_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s);
// grad_weight must be contiguous.
void conv2d_weight_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s);

// The fast kernels (conv2d_fast.cuh): pipelined implicit GEMMs on the tensor
// cores (float16, bfloat16, float32 as TF32) or with FFMA (exact float32).
// Each returns false, doing nothing, where they do not apply (float64,
// indices past int32, pycnn._C.set_cuda_kernels("reference")); the
// caller then runs the reference GEMM above.  They choose between TF32 and
// exact float32 by cuda_tf32_enabled() (common.h).
bool conv2d_forward_fast(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& output, const Conv2dShape& s, bool relu);
bool conv2d_input_backward_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s);
// grad_weight: any strides.
bool conv2d_weight_backward_fast(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s);

// The kernel families behind them (conv2d_fast_<family>.cu); tile: a
// ConvTileChoice.
#define PYCNN_DECLARE_FAST_CONV(family)                                                          \
  void conv2d_forward_##family(const at::Tensor& input, const at::Tensor& weight,                \
                               const at::Tensor& bias, const at::Tensor& output,                 \
                               const Conv2dShape& s, int tile, bool relu);                       \
  void conv2d_input_backward_##family(const at::Tensor& grad_output, const at::Tensor& weight,   \
                                      const at::Tensor& grad_input, const Conv2dShape& s,        \
                                      int tile);                                                 \
  void conv2d_weight_backward_##family(const at::Tensor& grad_output, const at::Tensor& input,   \
                                       const at::Tensor& grad_weight, const Conv2dShape& s,      \
                                       int tile);
PYCNN_DECLARE_FAST_CONV(f16)
PYCNN_DECLARE_FAST_CONV(bf16)
PYCNN_DECLARE_FAST_CONV(tf32)
PYCNN_DECLARE_FAST_CONV(ffma)
#undef PYCNN_DECLARE_FAST_CONV

// Winograd F(2x2, 3x3) on the FFMA kernels (conv2d_winograd.cuh) for 3x3
// stride-1 float32 convolutions with many channels; false, launching
// nothing, where it does not apply.
bool conv2d_forward_winograd(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& bias, const at::Tensor& output,
                             const Conv2dShape& s, int tile, bool relu);
bool conv2d_input_backward_winograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                    const at::Tensor& grad_input, const Conv2dShape& s, int tile);
bool conv2d_weight_backward_winograd(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& grad_weight, const Conv2dShape& s, int tile);

// Direct kernels (conv2d_direct.cuh) for groups of one input channel each
// (depthwise convolution, with any channel multiplier), where a GEMM tile
// would be almost empty.
void conv2d_forward_depthwise(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const Conv2dShape& s, bool relu);
void conv2d_input_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const Conv2dShape& s);
// grad_weight must be contiguous.
void conv2d_weight_backward_depthwise(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& grad_weight, const Conv2dShape& s);

// The same for square 3x3, 5x5 and 7x7 kernels where every offset fits in
// int (conv2d_depthwise_fast.cuh); false, launching nothing, elsewhere.
bool conv2d_forward_depthwise_fast(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const Conv2dShape& s, bool relu);
bool conv2d_input_backward_depthwise_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                                          const at::Tensor& grad_input, const Conv2dShape& s);
bool conv2d_weight_backward_depthwise_fast(const at::Tensor& grad_output, const at::Tensor& input,
                                           const at::Tensor& grad_weight, const Conv2dShape& s);

// grad_input for at most four input channels, one group, dilation 1, in
// float32 and float64 (conv2d_input_backward_narrow.cuh); false, launching
// nothing, elsewhere.
bool conv2d_input_backward_narrow(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const Conv2dShape& s);

// grad_bias[k] = sum of grad_output[:, k, :, :] (conv2d_direct.cuh).
void conv2d_bias_backward_reduce(const at::Tensor& grad_output, const at::Tensor& grad_bias);

}  // namespace gpu
}  // namespace pycnn
