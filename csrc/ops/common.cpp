#include "common.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <limits>
#include <sstream>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

namespace {
std::atomic<bool> poison_enabled{false};
}

void set_poison_outputs(bool enabled) { poison_enabled.store(enabled); }
bool poison_outputs() { return poison_enabled.load(); }

namespace {

// A large CPU output is usually fresh memory (glibc maps allocations past
// 32 MiB anew every time), and writing it costs a page fault per 4 KiB page:
// on a virtual machine that is about 1.5 us each, 3 GB/s, slower than the
// kernels that fill it.  Asking for transparent huge pages on the 2 MiB-aligned
// interior makes that one fault per 2 MiB (4x faster to write fresh memory
// on the development machine).  Memory already mapped is left as it is; where
// the kernel does not support the advice it is a no-op.  The price, on a
// virtual machine whose host reclaims freed guest memory: the first dozen
// calls after memory went back to the host can take 3x longer (huge pages
// are backed anew), before the 3-4x gain sets in.  PYCNN_HUGE_PAGES=0 in the
// environment turns the advice off.
constexpr int64_t kHugePageBytes = int64_t{2} << 20;
constexpr int64_t kHugePageAdviceMinBytes = 2 * kHugePageBytes;

bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("PYCNN_HUGE_PAGES");
    return value == nullptr || std::string(value) != "0";
  }();
  return enabled;
}

void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = static_cast<int64_t>(t.storage().nbytes());
  if (!t.is_cpu() || bytes < kHugePageAdviceMinBytes || !huge_pages_enabled()) return;
  const auto begin = reinterpret_cast<uintptr_t>(t.storage().data());
  const uintptr_t first = (begin + kHugePageBytes - 1) & ~uintptr_t(kHugePageBytes - 1);
  const uintptr_t last = (begin + bytes) & ~uintptr_t(kHugePageBytes - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace

at::Tensor empty_output(c10::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  advise_huge_pages(out);
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
