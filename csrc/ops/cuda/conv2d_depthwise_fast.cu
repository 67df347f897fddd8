// Launches of the fast depthwise kernels (conv2d_depthwise_fast.cuh).  Each
// returns false, launching nothing, where they do not apply: the reference
// kernels chosen (settings.h), a kernel that is not 3x3, 5x5 or 7x7, or an
// offset past int32.
#include <ATen/Dispatch.h>

#include "../settings.h"
#include "conv2d_cuda.h"
#include "conv2d_depthwise_fast.cuh"
#include "conv2d_fast.cuh"

namespace pycnn {
namespace gpu {
namespace {

template <int K>
using KernelSize = std::integral_constant<int, K>;

// f(scalar_t{}, KernelSize<K>{}) for the tensors' dtype and the kernel size,
// or false where the fast kernels do not apply.
template <class F>
bool dispatch_depthwise(const Conv2dShape& s, std::initializer_list<const at::Tensor*> tensors,
                        at::ScalarType dtype, F&& f) {
  if (cuda_kernels() == kCudaKernelsReference || s.kernel_h != s.kernel_w) return false;
  if (s.kernel_h != 3 && s.kernel_h != 5 && s.kernel_h != 7) return false;
  if (!conv_fits_int32(s, tensors, 1)) return false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "pycnn.conv2d_depthwise", [&] {
    switch (s.kernel_h) {
      case 3:
        return f(scalar_t{}, KernelSize<3>{});
      case 5:
        return f(scalar_t{}, KernelSize<5>{});
      default:
        return f(scalar_t{}, KernelSize<7>{});
    }
  });
  return true;
}

}  // namespace

bool conv2d_forward_depthwise_fast(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const Conv2dShape& s, bool relu) {
  return dispatch_depthwise(s, {&input, &weight, &output}, input.scalar_type(), [&](auto t, auto k) {
    using Op = DepthwiseFastForward<decltype(t), decltype(k)::value>;
    const Op op = Op::make(input, weight, bias, output, s, relu);
    launch_items(op, op.items, c10::cuda::getCurrentCUDAStream());
  });
}

bool conv2d_input_backward_depthwise_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                                          const at::Tensor& grad_input, const Conv2dShape& s) {
  return dispatch_depthwise(s, {&grad_output, &weight, &grad_input}, grad_output.scalar_type(),
                            [&](auto t, auto k) {
                              using Op = DepthwiseFastInputGrad<decltype(t), decltype(k)::value>;
                              const Op op = Op::make(grad_output, weight, grad_input, s);
                              launch_items(op, op.items, c10::cuda::getCurrentCUDAStream());
                            });
}

bool conv2d_weight_backward_depthwise_fast(const at::Tensor& grad_output, const at::Tensor& input,
                                           const at::Tensor& grad_weight, const Conv2dShape& s) {
  TORCH_INTERNAL_ASSERT(grad_weight.is_contiguous());
  return dispatch_depthwise(
      s, {&grad_output, &input, &grad_weight}, grad_output.scalar_type(), [&](auto t, auto k) {
        using scalar_t = decltype(t);
        using Op = DepthwiseFastWeightGrad<scalar_t, decltype(k)::value>;
        using acc_t = typename Op::acc_t;
        const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
        Op op = Op::make(grad_output, input, s);
        const at::Tensor partial = device_scratch<acc_t>(op.partial_count());
        op.partial = partial.mutable_data_ptr<acc_t>();
        depthwise_weight_grad_kernel<Op><<<unsigned(op.blocks()), kThreadsPerBlock, 0, stream>>>(op);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        launch_block_reduce_once(
            ChunkTotals<acc_t, StoreWeightGrad<scalar_t>>{
                {grad_weight.mutable_data_ptr<scalar_t>()}, op.partial, grad_weight.numel(),
                op.chunks},
            stream);
      });
}

}  // namespace gpu
}  // namespace pycnn
