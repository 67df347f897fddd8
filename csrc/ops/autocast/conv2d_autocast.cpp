// pycnn::conv2d (and conv2d_relu) under torch.autocast on CUDA, as torch's own convolution:
// conv2d is on autocast's lower-precision list, so inside an autocast region
// its input, weight and bias are cast to the region's dtype (float16 by
// default, or bfloat16) and it runs there.  Without this the op would fall
// through autocast: a mixed-precision model would convolve in float32, or,
// where an earlier layer hands it a float16 activation and the weight is
// still float32, fail its dtype check.  The casts are torch ops, so autograd
// carries the gradients back to the float32 parameters.
//
// The pooling ops are on none of autocast's lists (torch's run in the
// dtype they are given), so they need no such kernel.  CPU autocast is left
// to fall through: pycnn's CPU kernels compute in float32 and float64 only,
// so there a model under torch.autocast("cpu") convolves in float32.
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "../ops.h"

namespace pycnn {
namespace {

template <decltype(ops::conv2d)* op>
at::Tensor conv2d_autocast_cuda(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  constexpr c10::DeviceType kCuda = c10::DeviceType::CUDA;
  return op(at::autocast::cached_cast(dtype, input, kCuda),
            at::autocast::cached_cast(dtype, weight, kCuda),
            at::autocast::cached_cast(dtype, bias, kCuda), stride, padding, dilation, groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(pycnn, AutocastCUDA, m) {
  m.impl("conv2d", &conv2d_autocast_cuda<&ops::conv2d>);
  m.impl("conv2d_relu", &conv2d_autocast_cuda<&ops::conv2d_relu>);
}

}  // namespace pycnn
