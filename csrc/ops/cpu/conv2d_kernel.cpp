#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../../shape.h"
#include "../activation.h"
#include "../conv2d.h"
#include "conv2d_gemm.h"
#include "conv2d_input_scatter.h"
#include "conv2d_narrow.h"
#include "conv2d_pointwise.h"
#include "conv2d_winograd.h"
#include "strides.h"

namespace pycnn {
namespace {

template <typename scalar_t>
void conv2d_forward_direct(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& bias, at::Tensor& output, const Conv2dShape& s,
                           bool relu) {
  const Strides4 is(input), ws(weight), os(output);
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* wt = weight.const_data_ptr<scalar_t>();
  const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  const int64_t b_stride = bias.defined() ? bias.stride(0) : 0;
  scalar_t* out = output.data_ptr<scalar_t>();
  const int64_t cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  at::parallel_for(0, s.batch * s.out_channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / s.out_channels, k = p % s.out_channels;
      const int64_t c0 = (k / kpg) * cpg;
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        const int64_t h0 = oh * s.stride_h - s.pad_h;
        const TapRange th = valid_taps(h0, s.in_h, s.kernel_h, s.dilation_h);
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const int64_t w0 = ow * s.stride_w - s.pad_w;
          const TapRange tw = valid_taps(w0, s.in_w, s.kernel_w, s.dilation_w);
          scalar_t acc = b ? b[k * b_stride] : scalar_t(0);
          for (int64_t c = 0; c < cpg; ++c) {
            const scalar_t* ip = in + n * is.n + (c0 + c) * is.c;
            const scalar_t* wp = wt + k * ws.n + c * ws.c;
            for (int64_t r = th.first; r < th.last; ++r) {
              const int64_t ih = h0 + r * s.dilation_h;
              for (int64_t q = tw.first; q < tw.last; ++q) {
                acc += ip[ih * is.h + (w0 + q * s.dilation_w) * is.w] * wp[r * ws.h + q * ws.w];
              }
            }
          }
          out[n * os.n + k * os.c + oh * os.h + ow * os.w] = relu ? relu_value(acc) : acc;
        }
      }
    }
  });
}

template <typename scalar_t>
void conv2d_input_backward_direct(const at::Tensor& grad_output, const at::Tensor& weight,
                                  at::Tensor& grad_input, const Conv2dShape& s) {
  const Strides4 gs(grad_output), ws(weight), is(grad_input);
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* wt = weight.const_data_ptr<scalar_t>();
  scalar_t* gi = grad_input.data_ptr<scalar_t>();
  const int64_t cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  // Gather form: every grad_input element is summed by one task, in a fixed order.
  at::parallel_for(0, s.batch * s.in_channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / s.in_channels, c = p % s.in_channels;
      const int64_t g = c / cpg, cg = c % cpg;
      for (int64_t ih = 0; ih < s.in_h; ++ih) {
        const TapRange oh_range = covering_outputs(ih, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
        for (int64_t iw = 0; iw < s.in_w; ++iw) {
          const TapRange ow_range = covering_outputs(iw, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
          scalar_t acc = 0;
          for (int64_t k = g * kpg; k < (g + 1) * kpg; ++k) {
            const scalar_t* gp = go + n * gs.n + k * gs.c;
            const scalar_t* wp = wt + k * ws.n + cg * ws.c;
            for (int64_t oh = oh_range.first; oh < oh_range.last; ++oh) {
              const int64_t dh = ih + s.pad_h - oh * s.stride_h;
              if (dh % s.dilation_h != 0) continue;
              const int64_t r = dh / s.dilation_h;
              for (int64_t ow = ow_range.first; ow < ow_range.last; ++ow) {
                const int64_t dw = iw + s.pad_w - ow * s.stride_w;
                if (dw % s.dilation_w != 0) continue;
                acc += gp[oh * gs.h + ow * gs.w] * wp[r * ws.h + (dw / s.dilation_w) * ws.w];
              }
            }
          }
          gi[n * is.n + c * is.c + ih * is.h + iw * is.w] = acc;
        }
      }
    }
  });
}

template <typename scalar_t>
void conv2d_weight_backward_direct(const at::Tensor& grad_output, const at::Tensor& input,
                                   at::Tensor& grad_weight, const Conv2dShape& s) {
  const Strides4 gs(grad_output), is(input), ws(grad_weight);
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* gw = grad_weight.data_ptr<scalar_t>();
  const int64_t cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  at::parallel_for(0, s.out_channels * cpg, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t k = p / cpg, cg = p % cpg;
      const int64_t c = (k / kpg) * cpg + cg;
      for (int64_t r = 0; r < s.kernel_h; ++r) {
        for (int64_t q = 0; q < s.kernel_w; ++q) {
          scalar_t acc = 0;
          for (int64_t n = 0; n < s.batch; ++n) {
            const scalar_t* gp = go + n * gs.n + k * gs.c;
            const scalar_t* ip = in + n * is.n + c * is.c;
            for (int64_t oh = 0; oh < s.out_h; ++oh) {
              const int64_t ih = oh * s.stride_h - s.pad_h + r * s.dilation_h;
              if (ih < 0 || ih >= s.in_h) continue;
              for (int64_t ow = 0; ow < s.out_w; ++ow) {
                const int64_t iw = ow * s.stride_w - s.pad_w + q * s.dilation_w;
                if (iw < 0 || iw >= s.in_w) continue;
                acc += gp[oh * gs.h + ow * gs.w] * ip[ih * is.h + iw * is.w];
              }
            }
          }
          gw[k * ws.n + cg * ws.c + r * ws.h + q * ws.w] = acc;
        }
      }
    }
  });
}

// conv2d, and with relu conv2d_relu: the ReLU applied to each output as it
// is stored.
at::Tensor conv2d_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias_opt, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                              bool relu) {
  const Conv2dShape s = check_conv2d(input, weight, bias_opt, stride, padding, dilation, groups, relu);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  const at::Tensor bias = bias_opt.value_or(at::Tensor());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pycnn.conv2d", [&] {
    if (cpu::conv2d_forward_narrow_suits(s, input, output)) {
      cpu::conv2d_forward_narrow<scalar_t>(input, weight, bias, output, s, relu);
    } else if (cpu::conv2d_forward_pointwise_suits(s, input, output)) {
      cpu::conv2d_forward_pointwise<scalar_t>(input, weight, bias, output, s, relu);
    } else if (cpu::conv2d_winograd_suits(s)) {
      cpu::conv2d_forward_winograd<scalar_t>(input, weight, bias, output, s, relu);
    } else if (cpu::conv2d_gemm_suits(s)) {
      cpu::conv2d_forward_gemm<scalar_t>(input, weight, bias, output, s, relu);
    } else {
      conv2d_forward_direct<scalar_t>(input, weight, bias, output, s, relu);
    }
  });
  return output;
}

at::Tensor conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_forward_cpu(input, weight, bias, stride, padding, dilation, groups, false);
}

at::Tensor conv2d_relu_cpu(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_forward_cpu(input, weight, bias, stride, padding, dilation, groups, true);
}

at::Tensor conv2d_input_backward_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                     at::IntArrayRef input_size, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation,
                                     int64_t groups) {
  const Conv2dShape s = check_conv2d_input_backward(grad_output, weight, input_size, stride,
                                                    padding, dilation, groups);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "pycnn.conv2d_input_backward", [&] {
    if (cpu::conv2d_input_scatter_suits(s)) {
      cpu::conv2d_input_backward_scatter<scalar_t>(grad_output, weight, grad_input, s);
    } else if (cpu::conv2d_input_backward_narrow_suits(s, grad_output, grad_input)) {
      cpu::conv2d_input_backward_narrow<scalar_t>(grad_output, weight, grad_input, s);
    } else if (cpu::conv2d_input_backward_pointwise_suits(s, grad_output, grad_input)) {
      cpu::conv2d_input_backward_pointwise<scalar_t>(grad_output, weight, grad_input, s);
    } else if (cpu::conv2d_input_backward_winograd_suits(s)) {
      cpu::conv2d_input_backward_winograd<scalar_t>(grad_output, weight, grad_input, s);
    } else if (cpu::conv2d_gemm_suits(s)) {
      cpu::conv2d_input_backward_gemm<scalar_t>(grad_output, weight, grad_input, s);
    } else {
      conv2d_input_backward_direct<scalar_t>(grad_output, weight, grad_input, s);
    }
  });
  return grad_input;
}

at::Tensor conv2d_weight_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                      at::IntArrayRef weight_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups) {
  const Conv2dShape s = check_conv2d_weight_backward(grad_output, input, weight_size, stride,
                                                     padding, dilation, groups);
  at::Tensor grad_weight = empty_output(weight_size, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "pycnn.conv2d_weight_backward", [&] {
    if (cpu::conv2d_weight_backward_winograd_suits(s)) {
      cpu::conv2d_weight_backward_winograd<scalar_t>(grad_output, input, grad_weight, s);
    } else if (cpu::conv2d_gemm_suits(s)) {
      cpu::conv2d_weight_backward_gemm<scalar_t>(grad_output, input, grad_weight, s);
    } else {
      conv2d_weight_backward_direct<scalar_t>(grad_output, input, grad_weight, s);
    }
  });
  return grad_weight;
}

// Sum of n contiguous values in 16 independent lanes (which the compiler
// vectorises), added in a fixed order: no -ffast-math reassociation needed.
template <typename scalar_t>
scalar_t sum_run(const scalar_t* x, int64_t n) {
  constexpr int kLanes = 16;
  scalar_t lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[i + l];
  scalar_t total = 0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  for (; i < n; ++i) total += x[i];
  return total;
}

at::Tensor conv2d_bias_backward_cpu(const at::Tensor& grad_output) {
  check_conv2d_bias_backward(grad_output);
  const int64_t batch = grad_output.size(0), channels = grad_output.size(1);
  const int64_t height = grad_output.size(2), width = grad_output.size(3);
  at::Tensor grad_bias = empty_output({channels}, grad_output.options());
  const Strides4 gs(grad_output);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "pycnn.conv2d_bias_backward", [&] {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    scalar_t* gb = grad_bias.data_ptr<scalar_t>();
    if (gs.c == 1 && channels > 1) {
      // channels_last: walk the pixels once, a block of channels per task.
      constexpr int64_t kBlock = 64;
      at::parallel_for(0, (channels + kBlock - 1) / kBlock, 1, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
          const int64_t k0 = blk * kBlock, k1 = std::min(channels, k0 + kBlock);
          scalar_t acc[kBlock] = {};
          for (int64_t n = 0; n < batch; ++n)
            for (int64_t h = 0; h < height; ++h)
              for (int64_t w = 0; w < width; ++w) {
                const scalar_t* px = go + n * gs.n + h * gs.h + w * gs.w;
                for (int64_t k = k0; k < k1; ++k) acc[k - k0] += px[k];
              }
          for (int64_t k = k0; k < k1; ++k) gb[k] = acc[k - k0];
        }
      });
      return;
    }
    const bool rows_contiguous = gs.w == 1;
    const bool planes_contiguous = rows_contiguous && gs.h == width;
    at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        scalar_t acc = 0;
        for (int64_t n = 0; n < batch; ++n) {
          const scalar_t* plane = go + n * gs.n + k * gs.c;
          if (planes_contiguous) {
            acc += sum_run(plane, height * width);
            continue;
          }
          for (int64_t h = 0; h < height; ++h) {
            if (rows_contiguous) {
              acc += sum_run(plane + h * gs.h, width);
            } else {
              for (int64_t w = 0; w < width; ++w) acc += plane[h * gs.h + w * gs.w];
            }
          }
        }
        gb[k] = acc;
      }
    });
  });
  return grad_bias;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycnn, CPU, m) {
  m.impl("conv2d", &conv2d_cpu);
  m.impl("conv2d_input_backward", &conv2d_input_backward_cpu);
  m.impl("conv2d_weight_backward", &conv2d_weight_backward_cpu);
  m.impl("conv2d_bias_backward", &conv2d_bias_backward_cpu);
  m.impl("conv2d_relu", &conv2d_relu_cpu);
}

}  // namespace pycnn
