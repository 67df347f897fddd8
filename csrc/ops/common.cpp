#include "common.h"

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/util/Exception.h>
#include <c10/util/accumulate.h>

#include <atomic>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "large_blocks.h"

namespace pycnn {

std::string format_sizes(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

Pair as_pair(c10::IntArrayRef values, const char* op, const char* name) {
  TORCH_CHECK_VALUE(values.size() == 1 || values.size() == 2, op, ": ", name,
                    " must be an int or a pair of ints, got ", format_sizes(values));
  return values.size() == 1 ? Pair{values[0], values[0]} : Pair{values[0], values[1]};
}

void check_positive(const Pair& v, const char* op, const char* name) {
  TORCH_CHECK_VALUE(v[0] > 0 && v[1] > 0, op, ": ", name, " must be positive, got ", name,
                    "=(", v[0], ", ", v[1], ")");
}

void check_non_negative(const Pair& v, const char* op, const char* name) {
  TORCH_CHECK_VALUE(v[0] >= 0 && v[1] >= 0, op, ": ", name, " must be non-negative, got ", name,
                    "=(", v[0], ", ", v[1], ")");
}

void check_not_huge(const Pair& v, const char* op, const char* name) {
  TORCH_CHECK_VALUE(v[0] <= kMaxWindowValue && v[1] <= kMaxWindowValue, op, ": ", name,
                    "=(", v[0], ", ", v[1], ") is too large; at most 2^60 is supported");
}

void check_dilated_kernel(const Pair& kernel, const Pair& dilation, const char* op) {
  for (int i = 0; i < 2; ++i) {
    const bool fits = kernel[i] <= 1 || dilation[i] <= kMaxWindowValue / (kernel[i] - 1);
    TORCH_CHECK_VALUE(fits, op, ": dilation=(", dilation[0], ", ", dilation[1],
                      ") with kernel size (", kernel[0], ", ", kernel[1],
                      ") spans more than 2^60 elements");
  }
}

void check_float_dtype(const at::Tensor& t, const char* op, const char* name) {
  const auto dtype = t.scalar_type();
  const bool cpu_ok = dtype == at::kFloat || dtype == at::kDouble;
  const bool cuda_ok = cpu_ok || dtype == at::kHalf || dtype == at::kBFloat16;
  TORCH_CHECK_VALUE(t.is_cuda() ? cuda_ok : cpu_ok, op, ": ", name, " has dtype ", dtype,
                    ", which is not supported on ", t.device().type(), "; supported: ",
                    t.is_cuda() ? "float32, float64, float16, bfloat16" : "float32, float64");
}

void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
               const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": expected ", name, " to be a ", dim, "-D tensor ",
                    layout, ", got a ", t.dim(), "-D tensor of shape ", format_sizes(t.sizes()));
}

void check_same_dtype_and_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                                 const char* b_name, const char* op) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": ", a_name, " (dtype ", a.scalar_type(),
              ") and ", b_name, " (dtype ", b.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(a.device() == b.device(), op, ": ", a_name, " (on ", a.device(), ") and ", b_name,
              " (on ", b.device(), ") must be on the same device");
}

void check_grad_output_shape(const at::Tensor& grad_output, c10::IntArrayRef expected,
                             const char* op) {
  TORCH_CHECK(grad_output.sizes() == expected, op, ": grad_output has shape ",
              format_sizes(grad_output.sizes()), " but the forward output has shape ",
              format_sizes(expected));
}

bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

bool is_plain_nchw(const at::Tensor& t) { return t.is_contiguous() && !is_channels_last(t); }

namespace {
std::atomic<bool> poison_enabled{false};
}

void set_poison_outputs(bool enabled) { poison_enabled.store(enabled); }
bool poison_outputs() { return poison_enabled.load(); }

at::Tensor empty_output(c10::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out;
  c10::Allocator* large = options.device().is_cpu() ? large_block_allocator() : nullptr;
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) *
                       c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  if (large != nullptr && bytes >= kLargeBlockMinBytes) {
    out = at::detail::empty_generic(sizes, large, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                    c10::typeMetaToScalarType(options.dtype()),
                                    options.memory_format_opt());
  } else if (options.device().is_cpu()) {
    // Straight to the CPU allocator: at::empty's trip through the dispatcher
    // cost about 3 us a call here, a tenth of a small pool's backward.
    out = at::detail::empty_cpu(sizes, options);
  } else {
    out = at::empty(sizes, options);
  }
  if (poison_outputs()) {
    if (at::isFloatingType(out.scalar_type())) {
      out.fill_(std::numeric_limits<double>::quiet_NaN());
    } else {
      out.fill_(-1);
    }
  }
  return out;
}

at::Tensor empty_in_layout_of(c10::IntArrayRef sizes, const at::Tensor& like,
                              c10::ScalarType dtype) {
  const auto format =
      is_channels_last(like) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  return empty_output(sizes, like.options().dtype(dtype).memory_format(format));
}

at::Tensor empty_in_layout_of(c10::IntArrayRef sizes, const at::Tensor& like) {
  return empty_in_layout_of(sizes, like, like.scalar_type());
}

}  // namespace pycnn
