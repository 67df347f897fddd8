#include "conv2d_pointwise.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "../activation.h"
#include "../common.h"
#include "../settings.h"
#include "gemm/kernel_set.h"
#include "strides.h"
#include "thread_scratch.h"

namespace pycnn {
namespace cpu {
namespace {

// A panel (channels x block pixels) stays in L1 beside its weights while
// every row group of the destination passes over it.
constexpr int64_t kPanelBytes = 32 * 1024;

// Planes smaller than this many pixels keep the GEMM engine: there a tile's
// channel reads are a few hundred bytes apart and hit L1 (ResNet-50's 7x7
// and 14x14 layers measured alike on both paths).
constexpr int64_t kMinPlanePixels = 784;

// dst[n][o][i][j] = bias[o] + sum_c W(o, c) * src[n][c][i * step_h][j * step_w]
// over the grid_h x grid_w pixels of each image.
template <typename T>
struct PointwiseProduct {
  int64_t batch;
  const T* src;
  Strides4 ss;
  int64_t src_channels;
  int64_t grid_h, grid_w, step_h, step_w;
  T* dst;
  Strides4 ds;
  int64_t dst_channels;
  const T* weight;
  int64_t weight_dst_stride, weight_src_stride;  // W(o, c) = weight[o * dst + c * src]
  const T* bias;
  int64_t bias_stride;
  bool relu;
};

// Neighbouring pixels of one block in one image (and one grid row, unless
// whole rows are contiguous on both sides): where channel 0 of the first
// reads and is stored, and where the run starts in the block.
struct PixelRun {
  int64_t src, dst, pos, len;
};

enum class Scratch { panel, block, runs };

// The lane kernel with the most accumulators that compute real rows for
// `rows` destination channels; the larger row count on ties (fewer
// broadcasts per multiply-add).
template <typename T>
const LaneKernel<T>& lane_kernel_for(const KernelSet<T>& set, int64_t rows) {
  int best = 1;
  double best_score = 0;
  for (int m = 1; m <= kMaxLaneRows; ++m) {
    const int64_t padded = (rows + m - 1) / m * m;
    const double score = double(set.lane[m].nv) * double(rows) / double(padded) * m;
    if (score >= best_score) {
      best = m;
      best_score = score;
    }
  }
  return set.lane[best];
}

// Stores a run of the product, bias added and ReLU applied: in place where
// the kernel wrote the destination itself.
template <typename T>
void finish_run(const T* values, T* dst, int64_t len, int64_t dst_pixel, bool biased, T bias,
                bool relu) {
  if (dst_pixel == 1) {
    if (!biased && !relu) {
      if (values != dst) std::memcpy(dst, values, sizeof(T) * len);
    } else if (!relu) {
      for (int64_t l = 0; l < len; ++l) dst[l] = values[l] + bias;
    } else {
      for (int64_t l = 0; l < len; ++l) dst[l] = relu_value(biased ? values[l] + bias : values[l]);
    }
    return;
  }
  for (int64_t l = 0; l < len; ++l) {
    const T x = biased ? values[l] + bias : values[l];
    dst[l * dst_pixel] = relu ? relu_value(x) : x;
  }
}

template <typename T>
void run_pointwise(const PointwiseProduct<T>& p) {
  const int64_t image_pixels = p.grid_h * p.grid_w;
  const int64_t pixels = p.batch * image_pixels;
  count_pointwise_conv_pass();
  if (pixels == 0 || p.dst_channels == 0) return;
  const KernelSet<T>& set = kernel_set<T>();
  const LaneKernel<T>& kernel = lane_kernel_for(set, p.dst_channels);
  const int64_t L = set.vector_width, mr = kernel.mr, nv = kernel.nv;
  const int64_t block = nv * L;  // pixels per block: one kernel call wide
  const int64_t row_groups = (p.dst_channels + mr - 1) / mr;
  const int64_t C = p.src_channels;
  const int64_t tsize = static_cast<int64_t>(sizeof(T));
  // Equal channel chunks, each at most a panel's worth.
  const int64_t max_chunk = std::max<int64_t>(16, kPanelBytes / (block * tsize));
  const int64_t chunks = std::max<int64_t>(1, (C + max_chunk - 1) / max_chunk);
  const int64_t chunk = (C + chunks - 1) / chunks;

  // Weights as [row group][c][mr], zero past the last destination channel.
  std::vector<T> packed(static_cast<size_t>(row_groups * std::max<int64_t>(C, 1) * mr), T(0));
  at::parallel_for(0, row_groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t rows = std::min(mr, p.dst_channels - g * mr);
      T* to = packed.data() + g * C * mr;
      for (int64_t i = 0; i < rows; ++i) {
        const T* from = p.weight + (g * mr + i) * p.weight_dst_stride;
        for (int64_t c = 0; c < C; ++c) to[c * mr + i] = from[c * p.weight_src_stride];
      }
    }
  });
  std::vector<int64_t> step_off(static_cast<size_t>(std::max<int64_t>(chunk, 1)));
  for (int64_t t = 0; t < chunk; ++t) step_off[t] = t * block;
  std::vector<int64_t> vec_off(static_cast<size_t>(nv));
  for (int64_t v = 0; v < nv; ++v) vec_off[v] = v * L;

  const int64_t src_pixel = p.step_w * p.ss.w, dst_pixel = p.ds.w;
  // Whether consecutive grid rows continue each other's runs on both sides.
  const bool rows_join = p.step_h * p.ss.h == p.grid_w * src_pixel && p.ds.h == p.grid_w * dst_pixel;
  const int64_t blocks = (pixels + block - 1) / block;

  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    T* panel = thread_scratch<Scratch::panel, T>(chunk * block);
    T* acc = thread_scratch<Scratch::block, T>(row_groups * mr * block);  // [row][pixel]
    PixelRun* runs = thread_scratch<Scratch::runs, PixelRun>(block);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t q0 = b * block, count = std::min(block, pixels - q0);
      int64_t nruns = 0;
      for (int64_t q = q0; q < q0 + count;) {
        const int64_t n = q / image_pixels, local = q % image_pixels;
        const int64_t i = local / p.grid_w, j = local % p.grid_w;
        const int64_t left = rows_join ? image_pixels - local : p.grid_w - j;
        const int64_t len = std::min(left, q0 + count - q);
        runs[nruns++] = {n * p.ss.n + i * p.step_h * p.ss.h + j * src_pixel,
                         n * p.ds.n + i * p.ds.h + j * dst_pixel, q - q0, len};
        q += len;
      }
      // A whole block in one run of the destination takes the kernel's
      // stores directly (full row groups); others go through `acc`.
      const bool direct = nruns == 1 && count == block && dst_pixel == 1;
      const auto target = [&](int64_t g) {
        const bool full = g * mr + mr <= p.dst_channels;
        return direct && full ? std::make_pair(p.dst + runs[0].dst + g * mr * p.ds.c, p.ds.c)
                              : std::make_pair(acc + g * mr * block, block);
      };
      for (int64_t c0 = 0; c0 < C; c0 += chunk) {
        const int64_t kc = std::min(chunk, C - c0);
        for (int64_t c = 0; c < kc; ++c) {
          T* row = panel + c * block;
          const T* from = p.src + (c0 + c) * p.ss.c;
          for (int64_t r = 0; r < nruns; ++r) {
            const PixelRun& run = runs[r];
            if (src_pixel == 1) {
              std::memcpy(row + run.pos, from + run.src, sizeof(T) * run.len);
            } else {
              for (int64_t l = 0; l < run.len; ++l) row[run.pos + l] = from[run.src + l * src_pixel];
            }
          }
          if (count < block) std::fill(row + count, row + block, T(0));
        }
        for (int64_t g = 0; g < row_groups; ++g) {
          const auto [out, ldc] = target(g);
          kernel.run(kc, packed.data() + (g * C + c0) * mr, panel, vec_off.data(), step_off.data(),
                     out, ldc, c0 > 0);
        }
      }
      for (int64_t o = 0; o < p.dst_channels; ++o) {
        const auto [out, ldc] = target(o / mr);
        const T* values = out + (o % mr) * ldc;
        const T bias = p.bias ? p.bias[o * p.bias_stride] : T(0);
        T* to = p.dst + o * p.ds.c;
        for (int64_t r = 0; r < nruns; ++r) {
          const PixelRun& run = runs[r];
          finish_run(values + run.pos, to + run.dst, run.len, dst_pixel, p.bias != nullptr, bias,
                     p.relu);
        }
      }
    }
  });
}

bool pointwise_shape(const Conv2dShape& s) {
  return cpu_conv_kernels() == kCpuConvKernelsAuto && s.groups == 1 && s.kernel_h == 1 && s.kernel_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

}  // namespace

bool conv2d_forward_pointwise_suits(const Conv2dShape& s, const at::Tensor& input,
                                    const at::Tensor& output) {
  return pointwise_shape(s) && s.in_channels > 0 && s.out_h * s.out_w >= kMinPlanePixels &&
         is_plain_nchw(input) && is_plain_nchw(output);
}

bool conv2d_input_backward_pointwise_suits(const Conv2dShape& s, const at::Tensor& grad_output,
                                           const at::Tensor& grad_input) {
  return pointwise_shape(s) && s.stride_h == 1 && s.stride_w == 1 && s.out_channels > 0 &&
         s.in_h * s.in_w >= kMinPlanePixels && is_plain_nchw(grad_output) &&
         is_plain_nchw(grad_input);
}

template <typename T>
void conv2d_forward_pointwise(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const Conv2dShape& s, bool relu) {
  const Strides4 ws(weight);
  run_pointwise(PointwiseProduct<T>{s.batch, input.const_data_ptr<T>(), Strides4(input),
                                    s.in_channels, s.out_h, s.out_w, s.stride_h, s.stride_w,
                                    output.mutable_data_ptr<T>(), Strides4(output), s.out_channels,
                                    weight.const_data_ptr<T>(), ws.n, ws.c,
                                    bias.defined() ? bias.const_data_ptr<T>() : nullptr,
                                    bias.defined() ? bias.stride(0) : 0, relu});
}

template <typename T>
void conv2d_input_backward_pointwise(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const Conv2dShape& s) {
  // The destination is the input: row c of the product is input channel c,
  // and the source channels are the output channels k.
  const Strides4 ws(weight);
  run_pointwise(PointwiseProduct<T>{s.batch, grad_output.const_data_ptr<T>(),
                                    Strides4(grad_output), s.out_channels, s.in_h, s.in_w, 1, 1,
                                    grad_input.mutable_data_ptr<T>(), Strides4(grad_input),
                                    s.in_channels, weight.const_data_ptr<T>(), ws.c, ws.n, nullptr,
                                    0, false});
}

template void conv2d_forward_pointwise<float>(const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&, const at::Tensor&,
                                              const Conv2dShape&, bool);
template void conv2d_forward_pointwise<double>(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&,
                                               const Conv2dShape&, bool);
template void conv2d_input_backward_pointwise<float>(const at::Tensor&, const at::Tensor&,
                                                     const at::Tensor&, const Conv2dShape&);
template void conv2d_input_backward_pointwise<double>(const at::Tensor&, const at::Tensor&,
                                                      const at::Tensor&, const Conv2dShape&);

}  // namespace cpu
}  // namespace pycnn
