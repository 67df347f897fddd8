// Argument checks and output allocation shared by every op and backend.
//
// Messages name the op as users call it ("pycnn.conv2d"), the parameter and
// the offending values.  TORCH_CHECK_VALUE surfaces in Python as ValueError
// (a bad option value); TORCH_CHECK as RuntimeError (tensors that do not fit
// together), mirroring torch's own split.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <array>
#include <string>

namespace pycnn {

using Pair = std::array<int64_t, 2>;

// "[2, 3, 4]" for messages.
std::string format_sizes(c10::IntArrayRef sizes);

// Reads an int[2] schema argument; a one-element list means the same value
// for height and width, as torch accepts.
Pair as_pair(c10::IntArrayRef values, const char* op, const char* name);

void check_positive(const Pair& v, const char* op, const char* name);
void check_non_negative(const Pair& v, const char* op, const char* name);

// Sizes and options above 2^60 would overflow the int64 window arithmetic of
// shape.h (in + 2 * pad, dilation * (kernel - 1), out * stride); no tensor
// that fits in memory needs them, so they are refused up front.
constexpr int64_t kMaxWindowValue = int64_t(1) << 60;
void check_not_huge(const Pair& v, const char* op, const char* name);
// The dilated kernel's span, dilation * (kernel - 1), within kMaxWindowValue.
void check_dilated_kernel(const Pair& kernel, const Pair& dilation, const char* op);

// Floating dtypes only: float32/float64 on the CPU, plus float16/bfloat16 on CUDA.
void check_float_dtype(const at::Tensor& t, const char* op, const char* name);
void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
               const char* layout);
void check_same_dtype_and_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                                 const char* b_name, const char* op);
// grad_output must have exactly the shape the forward produced.
void check_grad_output_shape(const at::Tensor& grad_output, c10::IntArrayRef expected,
                             const char* op);

// The layout outputs take: channels_last when the input is channels_last
// (and not also plain contiguous), as torch does.  The Python fake kernels
// apply the same rule so that eager and compiled strides agree.
bool is_channels_last(const at::Tensor& t);

// Dense NCHW: what the CPU kernels that read whole rows of each channel
// plane (the narrow and 1x1 paths) take.
bool is_plain_nchw(const at::Tensor& t);

// Test mode: every output the kernels allocate is first filled with NaN
// (indices with -1), so that an element a kernel forgets to write shows up
// in a comparison instead of passing by luck as uninitialised zeros.
void set_poison_outputs(bool enabled);
bool poison_outputs();
// Every output a kernel returns is allocated here (poisoned in test mode).
at::Tensor empty_output(c10::IntArrayRef sizes, const at::TensorOptions& options);
at::Tensor empty_in_layout_of(c10::IntArrayRef sizes, const at::Tensor& like,
                              c10::ScalarType dtype);
at::Tensor empty_in_layout_of(c10::IntArrayRef sizes, const at::Tensor& like);

}  // namespace pycnn
