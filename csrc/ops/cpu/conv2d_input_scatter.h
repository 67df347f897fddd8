// grad_input of a convolution whose output is much smaller than its input
// (LeNet's C5: a 5x5 kernel over a 5x5 input, one output pixel).  The GEMM
// engine computes grad_input as a convolution of the zero-padded grad_output,
// so there most of its taps multiply padding; the scatter form does only the
// products that exist: for each output pixel, the patch sum_k g[k] * W[k] is
// added into the window it came from.
#pragma once

#include <ATen/core/Tensor.h>

#include "../conv2d.h"

namespace pycnn {
namespace cpu {

// True where the GEMM engine would spend most of its taps on padding.
bool conv2d_input_scatter_suits(const Conv2dShape& s);

// grad_input: any strides, overwritten.  Parallel over images; each thread
// holds one patch of C/groups x R x S values.
template <typename T>
void conv2d_input_backward_scatter(const at::Tensor& grad_output, const at::Tensor& weight,
                                   const at::Tensor& grad_input, const Conv2dShape& s);

}  // namespace cpu
}  // namespace pycnn
