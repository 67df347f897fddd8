// conv2d's gradient with respect to its input as an implicit GEMM
// (conv2d_input_backward_gemm.cuh).
#include <ATen/Dispatch.h>

#include "conv2d_cuda.h"
#include "conv2d_input_backward_gemm.cuh"

namespace pycnn {
namespace gpu {

void conv2d_input_backward_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "pycnn.conv2d_input_backward", [&] {
        launch_implicit_gemm(make_input_grad_problem<scalar_t>(grad_output, weight, grad_input, s),
                             c10::cuda::getCurrentCUDAStream());
      });
}

}  // namespace gpu
}  // namespace pycnn
