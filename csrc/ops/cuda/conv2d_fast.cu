// Chooses, per call, whether conv2d's fast kernels apply and which family:
// tensor cores for float16 and bfloat16, for float32 when TF32 is enabled
// (settings.h: torch's cuDNN setting unless pycnn.set_tf32 overrides it),
// FFMA for float32 otherwise (Winograd F(2x2, 3x3) for the 3x3 stride-1
// layers with many channels); float64 and anything whose indices would pass
// int32 stay on the reference kernels.
#include "../settings.h"
#include "conv2d_cuda.h"
#include "conv2d_fast.cuh"

namespace pycnn {
namespace gpu {
namespace {

enum class Family { kNone, kF16, kBF16, kTF32, kFFMA };

Family family_for(at::ScalarType dtype) {
  if (cuda_kernels() == kCudaKernelsReference) return Family::kNone;
  switch (dtype) {
    case at::kHalf:
      return Family::kF16;
    case at::kBFloat16:
      return Family::kBF16;
    case at::kFloat:
      return tf32_enabled() ? Family::kTF32 : Family::kFFMA;
    default:
      return Family::kNone;
  }
}

// Winograd replaces the FFMA implicit GEMM for the 3x3 layers it serves,
// unless the kernel choice is "gemm" (a benchmark's A/B).
bool winograd_allowed() { return cuda_kernels() == kCudaKernelsAuto; }

int granule_of(Family f) { return f == Family::kFFMA ? 1 : (f == Family::kTF32 ? 4 : 8); }

Family usable_family(const Conv2dShape& s, std::initializer_list<const at::Tensor*> tensors,
                     at::ScalarType dtype, bool input_grad) {
  const Family f = family_for(dtype);
  if (f == Family::kNone) return f;
  if (input_grad && input_grad_phases(s) > kMaxConvPhases) return Family::kNone;
  return conv_fits_int32(s, tensors, granule_of(f)) ? f : Family::kNone;
}

}  // namespace

bool conv2d_forward_fast(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& output, const Conv2dShape& s, bool relu) {
  const int tile = cuda_conv_tile();
  switch (usable_family(s, {&input, &weight, &output}, input.scalar_type(), false)) {
    case Family::kF16:
      conv2d_forward_f16(input, weight, bias, output, s, tile, relu);
      return true;
    case Family::kBF16:
      conv2d_forward_bf16(input, weight, bias, output, s, tile, relu);
      return true;
    case Family::kTF32:
      conv2d_forward_tf32(input, weight, bias, output, s, tile, relu);
      return true;
    case Family::kFFMA:
      if (!(winograd_allowed() && conv2d_forward_winograd(input, weight, bias, output, s, tile, relu)))
        conv2d_forward_ffma(input, weight, bias, output, s, tile, relu);
      return true;
    default:
      return false;
  }
}

bool conv2d_input_backward_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s) {
  const int tile = cuda_conv_tile();
  switch (usable_family(s, {&grad_output, &weight, &grad_input}, grad_output.scalar_type(), true)) {
    case Family::kF16:
      conv2d_input_backward_f16(grad_output, weight, grad_input, s, tile);
      return true;
    case Family::kBF16:
      conv2d_input_backward_bf16(grad_output, weight, grad_input, s, tile);
      return true;
    case Family::kTF32:
      conv2d_input_backward_tf32(grad_output, weight, grad_input, s, tile);
      return true;
    case Family::kFFMA:
      if (!(winograd_allowed() &&
            conv2d_input_backward_winograd(grad_output, weight, grad_input, s, tile)))
        conv2d_input_backward_ffma(grad_output, weight, grad_input, s, tile);
      return true;
    default:
      return false;
  }
}

bool conv2d_weight_backward_fast(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s) {
  const int tile = cuda_conv_tile();
  switch (usable_family(s, {&grad_output, &input, &grad_weight}, grad_output.scalar_type(), false)) {
    case Family::kF16:
      conv2d_weight_backward_f16(grad_output, input, grad_weight, s, tile);
      return true;
    case Family::kBF16:
      conv2d_weight_backward_bf16(grad_output, input, grad_weight, s, tile);
      return true;
    case Family::kTF32:
      conv2d_weight_backward_tf32(grad_output, input, grad_weight, s, tile);
      return true;
    case Family::kFFMA:
      if (!(winograd_allowed() &&
            conv2d_weight_backward_winograd(grad_output, input, grad_weight, s, tile)))
        conv2d_weight_backward_ffma(grad_output, input, grad_weight, s, tile);
      return true;
    default:
      return false;
  }
}

}  // namespace gpu
}  // namespace pycnn
