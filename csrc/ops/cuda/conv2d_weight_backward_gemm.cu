// conv2d's gradient with respect to its weight as an implicit GEMM
// (conv2d_weight_backward_gemm.cuh), split along its long reduction into a
// workspace that SumSplits then adds up in a fixed order.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "conv2d_cuda.h"
#include "conv2d_weight_backward_gemm.cuh"

namespace pycnn {
namespace gpu {

void conv2d_weight_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s) {
  TORCH_INTERNAL_ASSERT(grad_weight.is_contiguous());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "pycnn.conv2d_weight_backward", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
        auto problem = make_weight_grad_problem<scalar_t>(grad_output, input, grad_weight, s);
        if (problem.splits == 1) {
          launch_implicit_gemm(problem, stream);
          return;
        }
        const int64_t count = grad_weight.numel();
        // Stream-ordered: the caching allocator reuses it only after these kernels.
        const at::Tensor workspace = at::empty(
            {problem.splits * count},
            grad_output.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
        problem.partial = workspace.mutable_data_ptr<acc_t>();
        launch_implicit_gemm(problem, stream);
        launch_elementwise(
            SumSplits<scalar_t>{problem.partial, problem.splits, count, problem.grad_weight},
            count, stream);
      });
}

}  // namespace gpu
}  // namespace pycnn
