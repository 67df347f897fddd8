#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include <cmath>
#include <limits>

#include "../../shape.h"
#include "../pool2d.h"
#include "../settings.h"
#include "pool2d_cpu.h"
#include "strides.h"

namespace pycnn {
namespace {

constexpr const char* kForward = "pycnn.adaptive_max_pool2d";
constexpr const char* kBackward = "pycnn.adaptive_max_pool2d_backward";

// The reference: any strides, one plane per task.
void adaptive_max_pool2d_strided(const at::Tensor& input, at::Tensor& output,
                                 at::Tensor& indices, const AdaptivePool2dShape& s) {
  const Strides4 is(input), os(output);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), kForward, [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    int64_t* idx = indices.data_ptr<int64_t>();
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        const scalar_t* ip = in + n * is.n + c * is.c;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const int64_t h0 = adaptive_start(oh, s.out_h, s.in_h), h1 = adaptive_end(oh, s.out_h, s.in_h);
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const int64_t w0 = adaptive_start(ow, s.out_w, s.in_w), w1 = adaptive_end(ow, s.out_w, s.in_w);
            int64_t best = h0 * s.in_w + w0;
            scalar_t best_val = -std::numeric_limits<scalar_t>::infinity();
            for (int64_t ih = h0; ih < h1; ++ih) {
              for (int64_t iw = w0; iw < w1; ++iw) {
                const scalar_t v = ip[ih * is.h + iw * is.w];
                if (v > best_val || std::isnan(v)) {
                  best_val = v;
                  best = ih * s.in_w + iw;
                }
              }
            }
            const int64_t o = n * os.n + c * os.c + oh * os.h + ow * os.w;
            out[o] = best_val;
            idx[o] = best;
          }
        }
      }
    });
  });
}

// The reference: any strides, one plane per task; reports indices outside the plane.
void adaptive_max_pool2d_backward_strided(const at::Tensor& grad_output,
                                          const at::Tensor& indices, at::Tensor& grad_input,
                                          const AdaptivePool2dShape& s) {
  const Strides4 gs(grad_output), xs(indices), is(grad_input);
  const int64_t plane = s.in_h * s.in_w;
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), kBackward, [&] {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / s.channels, c = p % s.channels;
        scalar_t* gip = gi + n * is.n + c * is.c;
        for (int64_t h = 0; h < s.in_h; ++h)
          for (int64_t w = 0; w < s.in_w; ++w) gip[h * is.h + w * is.w] = 0;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          for (int64_t ow = 0; ow < s.out_w; ++ow) {
            const int64_t target = idx[n * xs.n + c * xs.c + oh * xs.h + ow * xs.w];
            TORCH_CHECK(target >= 0 && target < plane, kBackward, ": index ", target,
                        " is outside the input plane of ", s.in_h, " x ", s.in_w);
            gip[(target / s.in_w) * is.h + (target % s.in_w) * is.w] +=
                go[n * gs.n + c * gs.c + oh * gs.h + ow * gs.w];
          }
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d_cpu(const at::Tensor& input,
                                                           at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = check_adaptive_pool2d(input, output_size, kForward);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  if (output.numel() == 0) return {output, indices};
  const PoolLayout layout = pool_layout(input, s.in_h, s.in_w, s.out_h, s.out_w);
  if (layout == PoolLayout::strided) {
    adaptive_max_pool2d_strided(input, output, indices, s);
    return {output, indices};
  }
  PoolParams p = adaptive_pool_params(s);
  p.input_past_caches = input.nbytes() >= kLargeCallBytes;
  const int64_t taps = ((s.in_h + s.out_h - 1) / s.out_h + 1) * ((s.in_w + s.out_w - 1) / s.out_w + 1);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), kForward, [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    int64_t* idx = indices.data_ptr<int64_t>();
    if (layout == PoolLayout::nhwc) {
      parallel_rows(s.batch * s.out_h, s.out_w * s.channels * taps, [&](int64_t begin, int64_t end) {
        kernels.adaptive_max_nhwc(in, out, idx, p, begin, end);
      });
    } else if (as_plain_with_row_vectors(&p)) {
      parallel_rows(s.batch * s.channels * s.out_h, s.out_w * taps, [&](int64_t begin, int64_t end) {
        kernels.max_nchw(in, out, idx, p, begin, end);
      });
    } else {
      parallel_rows(s.batch * s.channels, s.out_h * s.out_w * taps, [&](int64_t begin, int64_t end) {
        std::vector<char> scratch(plane_group_scratch(p, sizeof(scalar_t)));
        kernels.adaptive_max_nchw(in, out, idx, p, begin, end,
                                  scratch.empty() ? nullptr : scratch.data());
      });
    }
  });
  return {output, indices};
}

at::Tensor adaptive_max_pool2d_backward_cpu(const at::Tensor& grad_output,
                                            const at::Tensor& indices,
                                            at::IntArrayRef input_size) {
  const AdaptivePool2dShape s =
      check_adaptive_pool2d_backward(grad_output, &indices, input_size, kBackward);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0) return grad_input;
  const PoolLayout layout = pool_layout(grad_input, s.in_h, s.in_w, s.out_h, s.out_w);
  PoolParams p = adaptive_pool_params(s);
  const bool ok = layout != PoolLayout::strided &&
                  (adaptive_as_plain(&p) && prefer_gather(layout, p, grad_output.scalar_type())
                       ? max_pool_backward_gather(grad_output, indices, grad_input, layout, p)
                       : max_pool_backward_scatter(grad_output, indices, grad_input, layout, p,
                                                   adaptive_row_bands(s)));
  if (!ok) {
    if (layout != PoolLayout::strided) count_max_pool_reference_fallback();
    adaptive_max_pool2d_backward_strided(grad_output, indices, grad_input, s);
  }
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(pycnn, CPU, m) {
  m.impl("adaptive_max_pool2d", &adaptive_max_pool2d_cpu);
  m.impl("adaptive_max_pool2d_backward", &adaptive_max_pool2d_backward_cpu);
}

}  // namespace pycnn
