// The fast pooling kernels (pool2d_fast.cuh), called by the pooling ops'
// CUDA kernels.  Each returns false, doing nothing, where they do not apply
// (float64, tensors that are not dense NCHW or dense channels_last, indices
// past int32, pycnn._C.set_cuda_kernels("reference")); the caller then runs
// its reference functor.  Outputs must already be allocated in the input's
// layout (empty_in_layout_of).
#pragma once

#include <ATen/core/Tensor.h>

#include "../pool2d.h"

namespace pycnn {
namespace gpu {

bool max_pool2d_fast(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                     const Pool2dShape& s);
bool max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                              const at::Tensor& grad_input, const Pool2dShape& s);
bool avg_pool2d_fast(const at::Tensor& input, const at::Tensor& output, const Pool2dShape& s,
                     bool count_include_pad, int64_t divisor_override);
bool avg_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& grad_input,
                              const Pool2dShape& s, bool count_include_pad,
                              int64_t divisor_override);
bool adaptive_avg_pool2d_fast(const at::Tensor& input, const at::Tensor& output,
                              const AdaptivePool2dShape& s);
bool adaptive_avg_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& grad_input,
                                       const AdaptivePool2dShape& s);
bool adaptive_max_pool2d_fast(const at::Tensor& input, const at::Tensor& output,
                              const at::Tensor& indices, const AdaptivePool2dShape& s);
bool adaptive_max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                                       const at::Tensor& grad_input, const AdaptivePool2dShape& s);

}  // namespace gpu
}  // namespace pycnn
