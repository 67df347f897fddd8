#include "conv2d_narrow.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../activation.h"
#include "../common.h"
#include "conv2d_gemm.h"
#include "gemm/kernel_set.h"
#include "strides.h"

namespace pycnn {
namespace cpu {
namespace {

// Largest zero-bordered source copy a thread keeps (see the header).
constexpr int64_t kMaxPaddedBytes = int64_t{16} << 20;

// One tap: it reads the source at (dh, dw) from a pixel's origin and pairs
// with weight tap (r, q).
struct LaneTap {
  int64_t dh, dw, r, q;
};

// One product over a grid of destination pixels: pixel (i, j) is
//   sum over source channels ch and taps of W(o, ch, r, q) * src[ch][i*src_step_h + dh][j + dw]
// and is stored at row dst_h0 + i*dst_step_h, column dst_w0 + j*dst_step_w.
// The forward pass is one such pass; grad_input one per stride phase.
struct LanePass {
  std::vector<LaneTap> taps;
  int64_t grid_h, grid_w, src_step_h;
  int64_t dst_h0, dst_w0, dst_step_h, dst_step_w;
};

template <typename T>
struct LaneConv {
  int64_t batch;
  const T* src;
  Strides4 ss;
  int64_t src_channels, src_h, src_w;
  T* dst;
  Strides4 ds;
  int64_t dst_channels;  // 1..kMaxLaneRows
  const T* bias;         // per destination channel, or nullptr
  int64_t bias_stride;
  std::vector<LanePass> passes;
  bool relu;  // the forward of conv2d_relu
};

struct Margins {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
};

// The zero border every pass's reads need, vectors rounded up to L lanes.
Margins margins_for(const std::vector<LanePass>& passes, int64_t src_h, int64_t src_w, int64_t L) {
  Margins m;
  for (const LanePass& pass : passes) {
    if (pass.grid_h == 0 || pass.grid_w == 0) continue;
    const int64_t last_row = (pass.grid_h - 1) * pass.src_step_h;
    const int64_t last_col = (pass.grid_w + L - 1) / L * L - 1;
    for (const LaneTap& tap : pass.taps) {
      m.top = std::max(m.top, -tap.dh);
      m.left = std::max(m.left, -tap.dw);
      m.bottom = std::max(m.bottom, last_row + tap.dh - (src_h - 1));
      m.right = std::max(m.right, last_col + tap.dw - (src_w - 1));
    }
  }
  return m;
}

template <typename T, typename WeightAt>
void run_lane_conv(const LaneConv<T>& p, WeightAt weight_at) {
  if (p.batch == 0) return;
  const KernelSet<T>& set = kernel_set<T>();
  const LaneKernel<T>& kernel = set.lane[p.dst_channels];
  const int64_t L = set.vector_width, mr = kernel.mr, nv = kernel.nv;
  const Margins m = margins_for(p.passes, p.src_h, p.src_w, L);
  const int64_t pw = m.left + p.src_w + m.right;
  const int64_t plane = (m.top + p.src_h + m.bottom) * pw;

  // Per pass: weights packed [step][mr] and where each step reads, with
  // steps in (channel, tap) order.
  std::vector<std::vector<T>> packed(p.passes.size());
  std::vector<std::vector<int64_t>> stepoff(p.passes.size());
  for (size_t k = 0; k < p.passes.size(); ++k) {
    const std::vector<LaneTap>& taps = p.passes[k].taps;
    for (int64_t ch = 0; ch < p.src_channels; ++ch) {
      for (const LaneTap& tap : taps) {
        for (int64_t o = 0; o < mr; ++o) packed[k].push_back(weight_at(o, ch, tap.r, tap.q));
        stepoff[k].push_back(ch * plane + tap.dh * pw + tap.dw);
      }
    }
  }

  at::parallel_for(0, p.batch, 1, [&](int64_t begin, int64_t end) {
    // Zero once: later images rewrite only the interior.
    std::vector<T> padded(static_cast<size_t>(p.src_channels * plane), T(0));
    std::vector<T> tile(static_cast<size_t>(mr * nv * L));
    std::vector<int64_t> vecoff(static_cast<size_t>(nv));
    for (int64_t n = begin; n < end; ++n) {
      const T* image = p.src + n * p.ss.n;
      for (int64_t ch = 0; ch < p.src_channels; ++ch) {
        for (int64_t y = 0; y < p.src_h; ++y) {
          const T* from = image + ch * p.ss.c + y * p.ss.h;
          T* to = padded.data() + ch * plane + (m.top + y) * pw + m.left;
          if (p.ss.w == 1) {
            std::memcpy(to, from, sizeof(T) * p.src_w);
          } else {
            for (int64_t x = 0; x < p.src_w; ++x) to[x] = from[x * p.ss.w];
          }
        }
      }
      T* dst_image = p.dst + n * p.ds.n;
      for (size_t k = 0; k < p.passes.size(); ++k) {
        const LanePass& pass = p.passes[k];
        const int64_t per_row = (pass.grid_w + L - 1) / L;
        const int64_t vectors = pass.grid_h * per_row;
        const int64_t steps = static_cast<int64_t>(stepoff[k].size());
        for (int64_t v0 = 0; v0 < vectors; v0 += nv) {
          for (int64_t v = 0; v < nv; ++v) {
            // Slots past the last vector repeat it: computed, never stored.
            const int64_t q = std::min(v0 + v, vectors - 1);
            const int64_t i = q / per_row, j0 = (q % per_row) * L;
            vecoff[v] = (m.top + i * pass.src_step_h) * pw + m.left + j0;
          }
          if (p.bias) {
            for (int64_t o = 0; o < mr; ++o)
              std::fill_n(tile.data() + o * nv * L, nv * L, p.bias[o * p.bias_stride]);
          }
          kernel.run(steps, packed[k].data(), padded.data(), vecoff.data(), stepoff[k].data(),
                     tile.data(), nv * L, p.bias != nullptr);
          if (p.relu) apply_relu(tile.data(), mr * nv * L);
          for (int64_t v = 0; v < nv && v0 + v < vectors; ++v) {
            const int64_t i = (v0 + v) / per_row, j0 = ((v0 + v) % per_row) * L;
            const int64_t count = std::min(L, pass.grid_w - j0);
            for (int64_t o = 0; o < p.dst_channels; ++o) {
              T* row = dst_image + o * p.ds.c + (pass.dst_h0 + i * pass.dst_step_h) * p.ds.h;
              const T* values = tile.data() + o * nv * L + v * L;
              const int64_t step = pass.dst_step_w * p.ds.w;
              T* out = row + (pass.dst_w0 + j0 * pass.dst_step_w) * p.ds.w;
              if (step == 1) {
                std::memcpy(out, values, sizeof(T) * count);
              } else {
                for (int64_t l = 0; l < count; ++l) out[l * step] = values[l];
              }
            }
          }
        }
      }
    }
  });
}

std::vector<LanePass> forward_passes(const Conv2dShape& s) {
  LanePass pass{{}, s.out_h, s.out_w, s.stride_h, 0, 0, 1, 1};
  for (int64_t r = 0; r < s.kernel_h; ++r)
    for (int64_t q = 0; q < s.kernel_w; ++q)
      pass.taps.push_back({r * s.dilation_h - s.pad_h, q * s.dilation_w - s.pad_w, r, q});
  return {pass};
}

// Input rows ph, ph + stride, ... see the same kernel rows: one pass per
// (row phase, column phase), each a stride-1 product over grad_output.
std::vector<LanePass> input_backward_passes(const Conv2dShape& s) {
  std::vector<LanePass> passes;
  for (int64_t ph = 0; ph < std::min(s.stride_h, s.in_h); ++ph) {
    for (int64_t pw = 0; pw < std::min(s.stride_w, s.in_w); ++pw) {
      LanePass pass{{},
                    (s.in_h - ph + s.stride_h - 1) / s.stride_h,
                    (s.in_w - pw + s.stride_w - 1) / s.stride_w,
                    1,
                    ph,
                    pw,
                    s.stride_h,
                    s.stride_w};
      for (const auto& [r, dh] : phase_taps(ph, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h))
        for (const auto& [q, dw] : phase_taps(pw, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w))
          pass.taps.push_back({dh, dw, r, q});
      passes.push_back(pass);
    }
  }
  return passes;
}

// Whether a thread's zero-bordered copy of one source image stays within
// kMaxPaddedBytes.
bool padded_copy_fits(const std::vector<LanePass>& passes, int64_t channels, int64_t h, int64_t w,
                      const at::Tensor& t) {
  const int64_t L = t.scalar_type() == at::kDouble ? kernel_set<double>().vector_width
                                                   : kernel_set<float>().vector_width;
  const Margins m = margins_for(passes, h, w, L);
  const double bytes = double(channels) * double(m.top + h + m.bottom) *
                       double(m.left + w + m.right) * double(t.element_size());
  return bytes <= double(kMaxPaddedBytes);
}

}  // namespace

bool conv2d_forward_narrow_suits(const Conv2dShape& s, const at::Tensor& input,
                                 const at::Tensor& output) {
  return s.groups == 1 && s.out_channels <= kMaxLaneRows && s.stride_w == 1 &&
         is_plain_nchw(input) && is_plain_nchw(output) &&
         padded_copy_fits(forward_passes(s), s.in_channels, s.in_h, s.in_w, input);
}

bool conv2d_input_backward_narrow_suits(const Conv2dShape& s, const at::Tensor& grad_output,
                                        const at::Tensor& grad_input) {
  return s.groups == 1 && s.in_channels <= kMaxLaneRows && is_plain_nchw(grad_output) &&
         is_plain_nchw(grad_input) &&
         padded_copy_fits(input_backward_passes(s), s.out_channels, s.out_h, s.out_w, grad_output);
}

template <typename T>
void conv2d_forward_narrow(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s,
                           bool relu) {
  const LaneConv<T> p{s.batch,
                      input.const_data_ptr<T>(),
                      Strides4(input),
                      s.in_channels,
                      s.in_h,
                      s.in_w,
                      output.mutable_data_ptr<T>(),
                      Strides4(output),
                      s.out_channels,
                      bias.defined() ? bias.const_data_ptr<T>() : nullptr,
                      bias.defined() ? bias.stride(0) : 0,
                      forward_passes(s),
                      relu};
  const T* w = weight.const_data_ptr<T>();
  const Strides4 ws(weight);
  run_lane_conv(p, [&](int64_t o, int64_t ch, int64_t r, int64_t q) {
    return w[o * ws.n + ch * ws.c + r * ws.h + q * ws.w];
  });
}

template <typename T>
void conv2d_input_backward_narrow(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const Conv2dShape& s) {
  const LaneConv<T> p{s.batch,
                      grad_output.const_data_ptr<T>(),
                      Strides4(grad_output),
                      s.out_channels,
                      s.out_h,
                      s.out_w,
                      grad_input.mutable_data_ptr<T>(),
                      Strides4(grad_input),
                      s.in_channels,
                      nullptr,
                      0,
                      input_backward_passes(s),
                      false};
  const T* w = weight.const_data_ptr<T>();
  const Strides4 ws(weight);
  // The destination is the input: row c of the product is input channel c,
  // and the source channels are the output channels k.
  run_lane_conv(p, [&](int64_t c, int64_t k, int64_t r, int64_t q) {
    return w[k * ws.n + c * ws.c + r * ws.h + q * ws.w];
  });
}

template void conv2d_forward_narrow<float>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const Conv2dShape&, bool);
template void conv2d_forward_narrow<double>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                            const at::Tensor&, const Conv2dShape&, bool);
template void conv2d_input_backward_narrow<float>(const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, const Conv2dShape&);
template void conv2d_input_backward_narrow<double>(const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, const Conv2dShape&);

}  // namespace cpu
}  // namespace pycnn
