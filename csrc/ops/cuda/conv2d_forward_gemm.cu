// conv2d forward as an implicit GEMM (conv2d_forward_gemm.cuh).
#include <ATen/Dispatch.h>

#include "conv2d_cuda.h"
#include "conv2d_forward_gemm.cuh"

namespace pycnn {
namespace gpu {

void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s,
                         bool relu) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "pycnn.conv2d", [&] {
    launch_implicit_gemm(make_forward_problem<scalar_t>(input, weight, bias, output, s, relu),
                         c10::cuda::getCurrentCUDAStream());
  });
}

}  // namespace gpu
}  // namespace pycnn
