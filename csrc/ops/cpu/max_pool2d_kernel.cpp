#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../../shape.h"
#include "../pool2d.h"
#include "../settings.h"
#include "pool2d_cpu.h"
#include "strides.h"

namespace pycnn {
namespace {

template <typename scalar_t>
void max_pool_plane(const scalar_t* in, Strides4 is, scalar_t* out, int64_t* idx, Strides4 os,
                    const Pool2dShape& s) {
  for (int64_t oh = 0; oh < s.out_h; ++oh) {
    const int64_t h0 = oh * s.stride_h - s.pad_h;
    const TapRange th = valid_taps(h0, s.in_h, s.kernel_h, s.dilation_h);
    for (int64_t ow = 0; ow < s.out_w; ++ow) {
      const int64_t w0 = ow * s.stride_w - s.pad_w;
      const TapRange tw = valid_taps(w0, s.in_w, s.kernel_w, s.dilation_w);
      // torch's rule: NaN wins, the first maximum wins among equals, and an
      // all -inf window reports its first valid element.
      int64_t best = (h0 + th.first * s.dilation_h) * s.in_w + (w0 + tw.first * s.dilation_w);
      scalar_t best_val = -std::numeric_limits<scalar_t>::infinity();
      for (int64_t kh = th.first; kh < th.last; ++kh) {
        const int64_t ih = h0 + kh * s.dilation_h;
        for (int64_t kw = tw.first; kw < tw.last; ++kw) {
          const int64_t iw = w0 + kw * s.dilation_w;
          const scalar_t v = in[ih * is.h + iw * is.w];
          if (v > best_val || std::isnan(v)) {
            best_val = v;
            best = ih * s.in_w + iw;
          }
        }
      }
      out[oh * os.h + ow * os.w] = best_val;
      if (idx != nullptr) idx[oh * os.h + ow * os.w] = best;
    }
  }
}

// The reference: any strides, one plane per task.  `indices` undefined:
// values only.
void max_pool2d_strided(const at::Tensor& input, at::Tensor& output, at::Tensor& indices,
                        const Pool2dShape& s) {
  const Strides4 is(input), os(output);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pycnn.max_pool2d", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    int64_t* idx = indices.defined() ? indices.data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        const int64_t ioff = n * is.n + c * is.c, ooff = n * os.n + c * os.c;
        max_pool_plane(in + ioff, is, out + ooff, idx != nullptr ? idx + ooff : nullptr, os, s);
      }
    });
  });
}

// Fills output and, where defined, indices (the layouts empty_in_layout_of
// gives for input).
void max_pool2d_into(const at::Tensor& input, at::Tensor& output, at::Tensor& indices,
                     const Pool2dShape& s) {
  const PoolLayout layout = pool_layout(input, s.in_h, s.in_w, s.out_h, s.out_w);
  if (layout == PoolLayout::strided) return max_pool2d_strided(input, output, indices, s);
  PoolParams p = pool_params(s);
  const bool nhwc = layout == PoolLayout::nhwc;
  set_large_call_hints(&p, input.nbytes(),
                       output.nbytes() + (indices.defined() ? indices.nbytes() : 0));
  // NCHW rows stream only where each starts on a 64-byte line, as in the
  // backward: streaming some vectors of a line and storing the rest plainly
  // cost more than it saved (A/B in one process, medians of nine: VGG pool2
  // 3.14 -> 2.96 ms, pool3 1.50 -> 1.34; pool1's rows are aligned).
  if (!nhwc && (s.out_w * input.element_size()) % 64 != 0) p.stream_stores = false;
  const int64_t rows = (nhwc ? s.batch : s.batch * s.channels) * s.out_h;
  const int64_t work = s.out_w * (nhwc ? s.channels : 1) * s.kernel_h * s.kernel_w;
  const bool plane_groups = !nhwc && use_plane_groups(p);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pycnn.max_pool2d", [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    int64_t* idx = indices.defined() ? indices.data_ptr<int64_t>() : nullptr;
    if (plane_groups) {
      parallel_rows(s.batch * s.channels, s.out_h * work, [&](int64_t begin, int64_t end) {
        std::vector<char> scratch(plane_group_scratch(p, sizeof(scalar_t)));
        kernels.adaptive_max_nchw(in, out, idx, p, begin, end, scratch.data());
      });
      return;
    }
    const auto kernel = nhwc ? kernels.max_nhwc : kernels.max_nchw;
    parallel_rows(rows, work, [&](int64_t begin, int64_t end) {
      kernel(in, out, idx, p, begin, end);
    });
  });
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_cpu(const at::Tensor& input,
                                                  at::IntArrayRef kernel_size,
                                                  at::IntArrayRef stride, at::IntArrayRef padding,
                                                  at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = check_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  max_pool2d_into(input, output, indices, s);
  return {output, indices};
}

// Values only: the indices' stores skipped (a third of a large
// channels_last call's memory traffic; torch's no-grad max_pool2d skips
// them too).
at::Tensor max_pool2d_values_cpu(const at::Tensor& input, at::IntArrayRef kernel_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = check_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor no_indices;
  max_pool2d_into(input, output, no_indices, s);
  return output;
}

bool has_valid_tap(const Pool2dShape& s, int64_t oh, int64_t ow) {
  const TapRange th = valid_taps(oh * s.stride_h - s.pad_h, s.in_h, s.kernel_h, s.dilation_h);
  const TapRange tw = valid_taps(ow * s.stride_w - s.pad_w, s.in_w, s.kernel_w, s.dilation_w);
  return th.first < th.last && tw.first < tw.last;
}

// The reference: any strides, one plane per task; reports indices outside the plane.
void max_pool2d_backward_strided(const at::Tensor& grad_output, const at::Tensor& indices,
                                 at::Tensor& grad_input, const Pool2dShape& s) {
  const Strides4 gs(grad_output), xs(indices), is(grad_input);
  const int64_t plane = s.in_h * s.in_w;
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "pycnn.max_pool2d_backward", [&] {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    // One plane per task: the scatter below never crosses planes, so it
    // needs no atomics and its order is fixed.
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        scalar_t* gplane = gi + n * is.n + c * is.c;
        for (int64_t h = 0; h < s.in_h; ++h)
          for (int64_t w = 0; w < s.in_w; ++w) gplane[h * is.h + w * is.w] = 0;
        const scalar_t* gop = go + n * gs.n + c * gs.c;
        const int64_t* ip = idx + n * xs.n + c * xs.c;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const int64_t target = ip[oh * xs.h + ow * xs.w];
            if (target < 0 || target >= plane) {
              // A window with no valid tap (possible with dilation) gets the
              // forward's index of its first tap, which may lie past the
              // plane; its output depends on no input.  Any other index
              // outside the plane is an error.
              TORCH_CHECK(!has_valid_tap(s, oh, ow), "pycnn.max_pool2d_backward: index ", target,
                          " is outside the input plane of ", s.in_h, " x ", s.in_w);
              continue;
            }
            gplane[(target / s.in_w) * is.h + (target % s.in_w) * is.w] += gop[oh * gs.h + ow * gs.w];
          }
        }
      }
    });
  });
}

at::Tensor max_pool2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                                   at::IntArrayRef input_size, at::IntArrayRef kernel_size,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = check_max_pool2d_backward(grad_output, indices, input_size, kernel_size,
                                                  stride, padding, dilation, ceil_mode);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  const PoolLayout layout = pool_layout(grad_input, s.in_h, s.in_w, s.out_h, s.out_w);
  PoolParams p = pool_params(s);
  // The NCHW gather writes grad_input whole, row by row: past the caches,
  // non-temporal stores skip reading each line before overwriting it.  Only
  // where every row starts on a 64-byte line: streaming some vectors of a
  // line and storing the rest plainly made VGG pool3 (56-wide rows) 35 %
  // slower, while pool1 and pool2 (224 and 112) gained 0-27 % in A/B runs.
  p.stream_stores = layout == PoolLayout::nchw && grad_input.nbytes() >= kLargeCallBytes &&
                    (s.in_w * grad_input.element_size()) % 64 == 0 &&
                    reinterpret_cast<uintptr_t>(grad_input.const_data_ptr()) % 64 == 0;
  const bool ok =
      layout != PoolLayout::strided &&
      (prefer_gather(layout, p, grad_output.scalar_type())
           ? max_pool_backward_gather(grad_output, indices, grad_input, layout, p)
           : max_pool_backward_scatter(grad_output, indices, grad_input, layout, p,
                                       max_pool_row_bands(s)));
  if (!ok) {
    if (layout != PoolLayout::strided) count_max_pool_reference_fallback();
    max_pool2d_backward_strided(grad_output, indices, grad_input, s);
  }
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycnn, CPU, m) {
  m.impl("max_pool2d_with_indices", &max_pool2d_cpu);
  m.impl("max_pool2d", &max_pool2d_values_cpu);
  m.impl("max_pool2d_backward", &max_pool2d_backward_cpu);
}

}  // namespace pycnn
