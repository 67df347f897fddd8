// The fast CPU convolution: forward, grad_input and grad_weight as indirect
// GEMMs on the register-blocked micro-kernels of gemm/microkernels.h.
//
// No im2col buffer: each task copies the band of the image it works on into
// a small zero-padded window (only where the band touches padding; inside
// the image it reads the tensor in place) and the micro-kernel reads that
// window through offset tables.  Extra memory is one window, one scratch
// tile and, for grad_weight, one weight-sized accumulator per thread.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

#include "../conv2d.h"

namespace pycnn {
namespace cpu {

// Taps of stride phase `phase` (input positions phase + k*stride) along one
// dimension, for grad_input: the kernel indices r with (phase + pad -
// r*dilation) divisible by stride, each with the grad_output offset it reads.
std::vector<std::pair<int64_t, int64_t>> phase_taps(int64_t phase, int64_t kernel, int64_t stride,
                                                    int64_t pad, int64_t dilation);

// Whether the GEMM path suits this convolution; depthwise and other
// one-channel-per-group convolutions go to the direct kernels instead.
bool conv2d_gemm_suits(const Conv2dShape& s);

// Rows [kd0, kd1) of a B panel for the micro-kernels: dst[(kd - kd0) * nr + j]
// = first[j * col_stride + kd_off[kd]] for the `cols` columns j < cols, zero
// for cols <= j < nr (nr <= 64).
template <typename T>
void pack_columns(const T* first, int64_t col_stride, int64_t cols, int64_t nr,
                  const int64_t* kd_off, int64_t kd0, int64_t kd1, T* dst);

template <typename T>
void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s,
                         bool relu);

template <typename T>
void conv2d_input_backward_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s);

template <typename T>
void conv2d_weight_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s);

}  // namespace cpu
}  // namespace pycnn
