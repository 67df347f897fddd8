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

constexpr const char* kForward = "pycnn.adaptive_avg_pool2d";
constexpr const char* kBackward = "pycnn.adaptive_avg_pool2d_backward";

// The reference: any strides, one plane per task.
void adaptive_avg_pool2d_strided(const at::Tensor& input, at::Tensor& output,
                                 const AdaptivePool2dShape& s) {
  const Strides4 is(input), os(output);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), kForward, [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        const scalar_t* ip = in + n * is.n + c * is.c;
        scalar_t* op = out + n * os.n + c * os.c;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const int64_t h0 = adaptive_start(oh, s.out_h, s.in_h), h1 = adaptive_end(oh, s.out_h, s.in_h);
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const int64_t w0 = adaptive_start(ow, s.out_w, s.in_w), w1 = adaptive_end(ow, s.out_w, s.in_w);
            scalar_t sum = 0;
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) sum += ip[ih * is.h + iw * is.w];
            op[oh * os.h + ow * os.w] = sum / static_cast<scalar_t>((h1 - h0) * (w1 - w0));
          }
        }
      }
    });
  });
}

// The reference: any strides, one plane per task.
void adaptive_avg_pool2d_backward_strided(const at::Tensor& grad_output, at::Tensor& grad_input,
                                          const AdaptivePool2dShape& s) {
  const Strides4 gs(grad_output), is(grad_input);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), kBackward, [&] {
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
          const int64_t h0 = adaptive_start(oh, s.out_h, s.in_h), h1 = adaptive_end(oh, s.out_h, s.in_h);
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const int64_t w0 = adaptive_start(ow, s.out_w, s.in_w), w1 = adaptive_end(ow, s.out_w, s.in_w);
            const scalar_t share =
                gop[oh * gs.h + ow * gs.w] / static_cast<scalar_t>((h1 - h0) * (w1 - w0));
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) gip[ih * is.h + iw * is.w] += share;
          }
        }
      }
    });
  });
}

at::Tensor adaptive_avg_pool2d_cpu(const at::Tensor& input, at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = check_adaptive_pool2d(input, output_size, kForward);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  if (output.numel() == 0) return output;
  const PoolLayout layout = pool_layout(input, s.in_h, s.in_w, s.out_h, s.out_w);
  if (layout == PoolLayout::strided) {
    adaptive_avg_pool2d_strided(input, output, s);
    return output;
  }
  PoolParams p = adaptive_pool_params(s);
  p.input_past_caches = input.nbytes() >= kLargeCallBytes;
  const int64_t taps = ((s.in_h + s.out_h - 1) / s.out_h + 1) * ((s.in_w + s.out_w - 1) / s.out_w + 1);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), kForward, [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    if (layout == PoolLayout::nhwc) {
      parallel_rows(s.batch * s.out_h, s.out_w * s.channels * taps, [&](int64_t begin, int64_t end) {
        kernels.adaptive_avg_nhwc(in, out, p, begin, end);
      });
    } else if (as_plain_with_row_vectors(&p)) {
      parallel_rows(s.batch * s.channels * s.out_h, s.out_w * taps, [&](int64_t begin, int64_t end) {
        kernels.avg_nchw(in, out, p, begin, end);
      });
    } else {
      parallel_rows(s.batch * s.channels, s.out_h * s.out_w * taps, [&](int64_t begin, int64_t end) {
        std::vector<char> scratch(plane_group_scratch(p, sizeof(scalar_t)));
        kernels.adaptive_avg_nchw(in, out, p, begin, end, scratch.empty() ? nullptr : scratch.data());
      });
    }
  });
  return output;
}

at::Tensor adaptive_avg_pool2d_backward_cpu(const at::Tensor& grad_output,
                                            at::IntArrayRef input_size) {
  const AdaptivePool2dShape s =
      check_adaptive_pool2d_backward(grad_output, nullptr, input_size, kBackward);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0) return grad_input;
  const PoolLayout layout = pool_layout(grad_input, s.in_h, s.in_w, s.out_h, s.out_w);
  if (layout == PoolLayout::strided) {
    adaptive_avg_pool2d_backward_strided(grad_output, grad_input, s);
    return grad_input;
  }
  const bool nhwc = layout == PoolLayout::nhwc;
  const at::Tensor go = grad_output.contiguous(nhwc ? at::MemoryFormat::ChannelsLast
                                                    : at::MemoryFormat::Contiguous);
  if (s.in_h == s.out_h && s.in_w == s.out_w) {
    // Windows of one pixel (AlexNet's and VGG's pools at 224 x 224): each
    // element's gradient is its own, 0 + g / 1 as the kernels would add it,
    // in one flat pass.  (The kernels' per-window loop took VGG's 8x512x7x7
    // channels_last 51-69 us against torch's 30-42 on Zen 3.)
    AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), kBackward, [&] {
      const scalar_t* g = go.const_data_ptr<scalar_t>();
      scalar_t* gi = grad_input.data_ptr<scalar_t>();
      at::parallel_for(0, go.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) gi[i] = scalar_t(0) + g[i];
      });
    });
    return grad_input;
  }
  PoolParams p = adaptive_pool_params(s);
  const int64_t rows = (nhwc ? s.batch : s.batch * s.channels) * s.in_h;
  const int64_t work = 2 * s.in_w * (nhwc ? s.channels : 1);
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), kBackward, [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    if (nhwc) {
      parallel_rows(rows, work, [&](int64_t begin, int64_t end) {
        kernels.adaptive_avg_backward_nhwc(g, gi, p, begin, end);
      });
    } else if (as_plain_with_row_vectors(&p)) {
      parallel_rows(rows, work, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> shares(s.out_w);
        kernels.avg_backward_nchw(g, gi, p, begin, end, shares.data());
      });
    } else {
      parallel_rows(rows, work, [&](int64_t begin, int64_t end) {
        kernels.adaptive_avg_backward_nchw(g, gi, p, begin, end);
      });
    }
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycnn, CPU, m) {
  m.impl("adaptive_avg_pool2d", &adaptive_avg_pool2d_cpu);
  m.impl("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_cpu);
}

}  // namespace pycnn
