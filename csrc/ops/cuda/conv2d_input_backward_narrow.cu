// Launch of the narrow grad_input kernel (conv2d_input_backward_narrow.cuh).
#include <ATen/Dispatch.h>

#include "../settings.h"
#include "conv2d_cuda.h"
#include "conv2d_fast.cuh"
#include "conv2d_input_backward_narrow.cuh"

namespace pycnn {
namespace gpu {
namespace {

template <typename scalar_t, int kC, int kP>
void launch_narrow(const at::Tensor& grad_output, const at::Tensor& weight,
                   const at::Tensor& grad_input, const Conv2dShape& s) {
  using Op = NarrowInputGrad<scalar_t, kC, kP>;
  const Op op = Op::make(grad_output, weight, grad_input, s);
  const auto kernel = narrow_input_grad_kernel<Op>;
  const int64_t blocks = int64_t(op.blocks(int(s.batch)));
  TORCH_INTERNAL_ASSERT(blocks <= kInt32Limit, "pycnn: grid too large");
  kernel<<<unsigned(blocks), kThreadsPerBlock, size_t(op.shared_bytes()),
           c10::cuda::getCurrentCUDAStream()>>>(op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int kP>
void launch_narrow_channels(const at::Tensor& grad_output, const at::Tensor& weight,
                            const at::Tensor& grad_input, const Conv2dShape& s) {
  switch (s.in_channels) {
    case 1:
      return launch_narrow<scalar_t, 1, kP>(grad_output, weight, grad_input, s);
    case 2:
      return launch_narrow<scalar_t, 2, kP>(grad_output, weight, grad_input, s);
    case 3:
      return launch_narrow<scalar_t, 3, kP>(grad_output, weight, grad_input, s);
    default:
      return launch_narrow<scalar_t, 4, kP>(grad_output, weight, grad_input, s);
  }
}

}  // namespace

bool conv2d_input_backward_narrow(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const Conv2dShape& s) {
  const at::ScalarType dtype = grad_output.scalar_type();
  if (cuda_kernels() == kCudaKernelsReference || s.groups != 1 || s.in_channels > kNarrowMaxChannels ||
      s.dilation_h != 1 || s.dilation_w != 1 || (dtype != at::kFloat && dtype != at::kDouble)) {
    return false;
  }
  if (!conv_fits_int32(s, {&grad_output, &weight, &grad_input}, 1)) return false;
  // Blocks of one pixel per thread: the most there can be.
  const int64_t tiles = s.batch * ((s.in_h + kNarrowTileH - 1) / kNarrowTileH) *
                        ((s.in_w + kNarrowLanes - 1) / kNarrowLanes);
  if (tiles > kInt32Limit) return false;
  bool fits = false;
  AT_DISPATCH_FLOATING_TYPES(dtype, "pycnn.conv2d_input_backward", [&] {
    constexpr int kP = kNarrowPixelsPerThread;
    if (NarrowInputGrad<scalar_t, kNarrowMaxChannels, kP>::fits(s)) {
      fits = true;
      return launch_narrow_channels<scalar_t, kP>(grad_output, weight, grad_input, s);
    }
    fits = NarrowInputGrad<scalar_t, kNarrowMaxChannels, 1>::fits(s);
    if (fits) launch_narrow_channels<scalar_t, 1>(grad_output, weight, grad_input, s);
  });
  return fits;
}

}  // namespace gpu
}  // namespace pycnn
