#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../../shape.h"
#include "../pool2d.h"
#include "pool2d_cpu.h"
#include "strides.h"

namespace pycnn {
namespace {

int64_t divisor_of(const AvgWindow& wh, const AvgWindow& ww, bool count_include_pad,
                   std::optional<int64_t> divisor_override) {
  return avg_pool_divisor(wh, ww, count_include_pad, divisor_override.value_or(0));
}

// The reference: any strides, one plane per task.
void avg_pool2d_strided(const at::Tensor& input, at::Tensor& output, const Pool2dShape& s,
                        bool count_include_pad, std::optional<int64_t> divisor_override) {
  const Strides4 is(input), os(output);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pycnn.avg_pool2d", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        const scalar_t* ip = in + n * is.n + c * is.c;
        scalar_t* op = out + n * os.n + c * os.c;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const AvgWindow wh = avg_pool_window(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h);
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const AvgWindow ww = avg_pool_window(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w);
            scalar_t sum = 0;
            for (int64_t ih = wh.begin; ih < wh.end; ++ih)
              for (int64_t iw = ww.begin; iw < ww.end; ++iw) sum += ip[ih * is.h + iw * is.w];
            const int64_t divisor = divisor_of(wh, ww, count_include_pad, divisor_override);
            op[oh * os.h + ow * os.w] = divisor == 0 ? sum : sum / static_cast<scalar_t>(divisor);
          }
        }
      }
    });
  });
}

// The reference: any strides, one plane per task.
void avg_pool2d_backward_strided(const at::Tensor& grad_output, at::Tensor& grad_input,
                                 const Pool2dShape& s, bool count_include_pad,
                                 std::optional<int64_t> divisor_override) {
  const Strides4 gs(grad_output), is(grad_input);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "pycnn.avg_pool2d_backward", [&] {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        const scalar_t* gop = go + n * gs.n + c * gs.c;
        scalar_t* gip = gi + n * is.n + c * is.c;
        for (int64_t h = 0; h < s.in_h; ++h)
          for (int64_t w = 0; w < s.in_w; ++w) gip[h * is.h + w * is.w] = 0;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const AvgWindow wh = avg_pool_window(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h);
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const AvgWindow ww = avg_pool_window(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w);
            const int64_t divisor = divisor_of(wh, ww, count_include_pad, divisor_override);
            const scalar_t g = gop[oh * gs.h + ow * gs.w];
            const scalar_t share = divisor == 0 ? g : g / static_cast<scalar_t>(divisor);
            for (int64_t ih = wh.begin; ih < wh.end; ++ih)
              for (int64_t iw = ww.begin; iw < ww.end; ++iw) gip[ih * is.h + iw * is.w] += share;
          }
        }
      }
    });
  });
}

at::Tensor avg_pool2d_cpu(const at::Tensor& input, at::IntArrayRef kernel_size,
                          at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                          bool count_include_pad, std::optional<int64_t> divisor_override) {
  const Pool2dShape s =
      check_avg_pool2d(input, kernel_size, stride, padding, ceil_mode, divisor_override);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  const PoolLayout layout = pool_layout(input, s.in_h, s.in_w, s.out_h, s.out_w);
  if (layout == PoolLayout::strided) {
    avg_pool2d_strided(input, output, s, count_include_pad, divisor_override);
    return output;
  }
  PoolParams p = pool_params(s, count_include_pad, divisor_override);
  p.input_past_caches = input.nbytes() >= kLargeCallBytes;
  const bool nhwc = layout == PoolLayout::nhwc;
  const int64_t rows = (nhwc ? s.batch : s.batch * s.channels) * s.out_h;
  const int64_t work = s.out_w * (nhwc ? s.channels : 1) * s.kernel_h * s.kernel_w;
  // The adaptive windows equal these only without a divisor override.
  const bool plane_groups = !nhwc && p.divisor_override == 0 && use_plane_groups(p);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pycnn.avg_pool2d", [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    if (plane_groups) {
      parallel_rows(s.batch * s.channels, s.out_h * work, [&](int64_t begin, int64_t end) {
        std::vector<char> scratch(plane_group_scratch(p, sizeof(scalar_t)));
        kernels.adaptive_avg_nchw(in, out, p, begin, end, scratch.data());
      });
      return;
    }
    const auto kernel = nhwc ? kernels.avg_nhwc : kernels.avg_nchw;
    parallel_rows(rows, work, [&](int64_t begin, int64_t end) { kernel(in, out, p, begin, end); });
  });
  return output;
}

// Windows that tile the input (kernel == stride, no padding, floor mode),
// NCHW: each input element takes its one window's share, or zero past the
// last window, in one pass that writes every row once.  The general kernel
// zeroes a row and then adds shares to it, with per-row setup that dominated
// on LeNet-sized planes (64x16x10x10: 0.16 ms, torch 0.13).  The result is
// the same, bit for bit: 0 + share.
template <typename T>
void avg_backward_tiling_nchw(const T* grad_out, T* grad_in, const Pool2dShape& s, T divisor,
                              int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t plane = r / s.in_h, oh = (r % s.in_h) / s.kernel_h;
    T* row = grad_in + r * s.in_w;
    int64_t iw = 0;
    if (oh < s.out_h) {
      const T* src = grad_out + (plane * s.out_h + oh) * s.out_w;
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const T share = src[ow] / divisor;
        for (int64_t k = 0; k < s.kernel_w; ++k) row[iw++] = share;
      }
    }
    for (; iw < s.in_w; ++iw) row[iw] = T(0);
  }
}

at::Tensor avg_pool2d_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                   at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                   at::IntArrayRef padding, bool ceil_mode,
                                   bool count_include_pad, std::optional<int64_t> divisor_override) {
  const Pool2dShape s = check_avg_pool2d_backward(grad_output, input_size, kernel_size, stride,
                                                  padding, ceil_mode, divisor_override);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  const PoolLayout layout = pool_layout(grad_input, s.in_h, s.in_w, s.out_h, s.out_w);
  if (layout == PoolLayout::strided) {
    avg_pool2d_backward_strided(grad_output, grad_input, s, count_include_pad, divisor_override);
    return grad_input;
  }
  const bool nhwc = layout == PoolLayout::nhwc;
  const at::Tensor go = grad_output.contiguous(nhwc ? at::MemoryFormat::ChannelsLast
                                                    : at::MemoryFormat::Contiguous);
  const bool tiling = s.kernel_h == s.stride_h && s.kernel_w == s.stride_w && s.pad_h == 0 &&
                      s.pad_w == 0 && !ceil_mode;
  if (!nhwc && tiling) {
    AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "pycnn.avg_pool2d_backward", [&] {
      const scalar_t divisor =
          static_cast<scalar_t>(divisor_override.value_or(s.kernel_h * s.kernel_w));
      const scalar_t* g = go.const_data_ptr<scalar_t>();
      scalar_t* gi = grad_input.data_ptr<scalar_t>();
      parallel_rows(s.batch * s.channels * s.in_h, s.in_w, [&](int64_t begin, int64_t end) {
        avg_backward_tiling_nchw(g, gi, s, divisor, begin, end);
      });
    });
    return grad_input;
  }
  const PoolParams p = pool_params(s, count_include_pad, divisor_override);
  const int64_t rows = (nhwc ? s.batch : s.batch * s.channels) * s.in_h;
  // Per input row: writing it, plus each element's share of covering windows.
  const int64_t work = s.in_w * (nhwc ? s.channels : 1) *
                       (1 + s.kernel_h * s.kernel_w / (s.stride_h * s.stride_w));
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "pycnn.avg_pool2d_backward", [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    parallel_rows(rows, work, [&](int64_t begin, int64_t end) {
      if (nhwc) {
        kernels.avg_backward_nhwc(g, gi, p, begin, end);
      } else {
        std::vector<scalar_t> shares(s.out_w);
        kernels.avg_backward_nchw(g, gi, p, begin, end, shares.data());
      }
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycnn, CPU, m) {
  m.impl("avg_pool2d", &avg_pool2d_cpu);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward_cpu);
}

}  // namespace pycnn
