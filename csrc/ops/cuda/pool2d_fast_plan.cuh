// When the fast pooling kernels apply, and with which vector width; shared
// by the two translation units that instantiate them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "../common.h"
#include "pool2d_fast.cuh"

namespace pycnn {
namespace gpu {

struct PoolPlan {
  bool ok;
  bool channels_last;
  int vector;  // elements per thread item: 16 bytes of channels, or 1
};

// `written`: the tensor the kernel writes (its layout is the kernel's);
// every tensor in `all` must be dense in that layout.  (The pycnn kernel
// choice, settings.h, is the caller's to check.)
inline PoolPlan plan_pool(const at::Tensor& written, std::initializer_list<const at::Tensor*> all) {
  PoolPlan plan{false, false, 1};
  const at::ScalarType dtype = written.scalar_type();
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16) return plan;
  // The layout is read off the tensor with the most elements: a 1x1 output
  // (a global pool) is dense in both layouts and addressed alike in both.
  const at::Tensor* widest = &written;
  for (const at::Tensor* t : all)
    if (t->numel() > widest->numel()) widest = t;
  plan.channels_last = is_channels_last(*widest);
  const auto format = plan.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  bool aligned = true;
  for (const at::Tensor* t : all) {
    if (!t->is_contiguous(format) || t->numel() > kInt32Limit) return plan;
    aligned = aligned && reinterpret_cast<uintptr_t>(t->const_data_ptr()) % 16 == 0;
  }
  const int v = 16 / int(written.element_size());
  if (plan.channels_last && aligned && written.size(1) % v == 0) plan.vector = v;
  plan.ok = true;
  return plan;
}

// Items of a kernel writing `written` under `plan`.
inline int64_t pool_items(const at::Tensor& written, const PoolPlan& plan) {
  return written.numel() / plan.vector;
}

inline ItemLayout item_layout(const at::Tensor& t, const PoolPlan& plan) {
  return ItemLayout::make(plan.channels_last, t.size(1), t.size(2), t.size(3), plan.vector);
}

template <int kV>
using VectorWidth = std::integral_constant<int, kV>;

// f(T{}, VectorWidth<v>{}) for the plan's dtype and width.
template <class F>
void dispatch_pool(const at::Tensor& written, const PoolPlan& plan, F&& f) {
  switch (written.scalar_type()) {
    case at::kFloat:
      return plan.vector == 4 ? f(float{}, VectorWidth<4>{}) : f(float{}, VectorWidth<1>{});
    case at::kHalf:
      return plan.vector == 8 ? f(c10::Half{}, VectorWidth<8>{}) : f(c10::Half{}, VectorWidth<1>{});
    default:
      return plan.vector == 8 ? f(c10::BFloat16{}, VectorWidth<8>{})
                              : f(c10::BFloat16{}, VectorWidth<1>{});
  }
}

inline PoolWindow32 window32(const Pool2dShape& s) {
  PoolWindow32 w;
  w.kh = int(s.kernel_h), w.kw = int(s.kernel_w), w.sh = int(s.stride_h), w.sw = int(s.stride_w);
  w.ph = int(s.pad_h), w.pw = int(s.pad_w), w.dh = int(s.dilation_h), w.dw = int(s.dilation_w);
  w.div_sh = FastDivmod::make(s.stride_h);
  w.div_sw = FastDivmod::make(s.stride_w);
  return w;
}

// The window options enter int products with coordinates.
inline bool window_fits(const Pool2dShape& s) {
  const int64_t limit = int64_t(1) << 24;
  for (int64_t o : {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dilation_h,
                    s.dilation_w, s.in_h, s.in_w})
    if (o > limit) return false;
  return true;
}

inline bool adaptive_fits(const AdaptivePool2dShape& s) {
  return s.out_h * s.in_h <= kInt32Limit && s.out_w * s.in_w <= kInt32Limit;
}

}  // namespace gpu
}  // namespace pycnn
