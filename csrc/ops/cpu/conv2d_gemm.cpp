#include "conv2d_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../../shape.h"
#include "gemm/kernel_set.h"

namespace pycnn {
namespace cpu {

namespace {

// One tap of the sliding window: it reads the source at (dh, dw) from a
// pixel's origin and pairs with weight tap (r, s).
struct Tap {
  int64_t dh, dw, r, s;
};

// A 4-D tensor's data and its strides in (N, C, H, W) order.
template <typename T>
struct View4 {
  T* data;
  int64_t n, c, h, w;
};

template <typename T>
View4<T> view_of(const at::Tensor& t) {
  return {static_cast<T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Grows on demand and never shrinks: one per thread, reused across tasks.
template <typename U>
struct Buffer {
  at::Tensor storage;
  U* get(int64_t count) {
    if (!storage.defined() || storage.numel() < count) {
      storage = at::empty({std::max<int64_t>(count, 1)},
                          at::TensorOptions().dtype(c10::CppTypeToScalarType<U>::value));
    }
    return storage.data_ptr<U>();
  }
};

// Part of one image (channels x rows x cols, whose element (c, row, col) is
// source coordinate (c, row0 + row, col0 + col)), readable at every offset
// the taps produce: the tensor itself when the part lies inside it, else a
// copy with zeros wherever it falls outside.
template <typename T>
struct Window {
  const T* data;
  int64_t cs, rs, ws;
  int64_t row0, col0;
};

template <typename T>
Window<T> make_window(const T* image, int64_t cs, int64_t hs, int64_t ws, int64_t channels,
                      int64_t height, int64_t width, int64_t row0, int64_t rows, int64_t col0,
                      int64_t cols, bool channels_last, Buffer<T>& buffer) {
  if (row0 >= 0 && row0 + rows <= height && col0 >= 0 && col0 + cols <= width) {
    return {image + row0 * hs + col0 * ws, cs, hs, ws, row0, col0};
  }
  T* out = buffer.get(channels * rows * cols);
  const int64_t c_lo = std::max<int64_t>(0, -col0), c_hi = std::min(cols, width - col0);
  if (channels_last) {
    // [rows][cols][channels]
    for (int64_t r = 0; r < rows; ++r) {
      T* line = out + r * cols * channels;
      const int64_t src_row = row0 + r;
      if (src_row < 0 || src_row >= height || c_lo >= c_hi) {
        std::memset(line, 0, sizeof(T) * cols * channels);
        continue;
      }
      std::memset(line, 0, sizeof(T) * std::max<int64_t>(c_lo, 0) * channels);
      for (int64_t c = c_lo; c < c_hi; ++c) {
        const T* src = image + src_row * hs + (col0 + c) * ws;
        T* dst = line + c * channels;
        if (cs == 1) {
          std::memcpy(dst, src, sizeof(T) * channels);
        } else {
          for (int64_t ch = 0; ch < channels; ++ch) dst[ch] = src[ch * cs];
        }
      }
      if (c_hi < cols) std::memset(line + c_hi * channels, 0, sizeof(T) * (cols - c_hi) * channels);
    }
    return {out, 1, cols * channels, channels, row0, col0};
  }
  // [channels][rows][cols]
  for (int64_t ch = 0; ch < channels; ++ch) {
    for (int64_t r = 0; r < rows; ++r) {
      T* line = out + (ch * rows + r) * cols;
      const int64_t src_row = row0 + r;
      if (src_row < 0 || src_row >= height || c_lo >= c_hi) {
        std::memset(line, 0, sizeof(T) * cols);
        continue;
      }
      if (c_lo > 0) std::memset(line, 0, sizeof(T) * c_lo);
      const T* src = image + ch * cs + src_row * hs + (col0 + c_lo) * ws;
      if (ws == 1) {
        std::memcpy(line + c_lo, src, sizeof(T) * (c_hi - c_lo));
      } else {
        for (int64_t c = c_lo; c < c_hi; ++c) line[c] = src[(c - c_lo) * ws];
      }
      if (c_hi < cols) std::memset(line + c_hi, 0, sizeof(T) * (cols - c_hi));
    }
  }
  return {out, rows * cols, cols, 1, row0, col0};
}

// A convolution-like product in gather form, for one group of one image:
//   dst[o][pixel(i, j)] = bias[o] + sum_{ch, tap} W(o, ch, tap) * src[ch][i*step_h + tap.dh][j*step_w + tap.dw]
// over the grid_h x grid_w pixels, with pixel (i, j) stored at dst row
// dst_h0 + i*dst_step_h, column dst_w0 + j*dst_step_w.  The forward pass is
// one such product; grad_input is one per stride phase.
template <typename T>
struct GatherConv {
  int64_t batch, groups;
  View4<const T> src;
  int64_t src_channels, src_height, src_width;  // src_channels per group
  View4<T> dst;
  int64_t dst_channels;  // per group
  std::vector<Tap> taps;
  int64_t grid_h, grid_w, step_h, step_w;
  int64_t dst_h0, dst_w0, dst_step_h, dst_step_w;
  const T* bias;  // per output channel (all groups), or nullptr
  int64_t bias_stride;
  // Reduction order: (tap, channel) when the source is channels_last, so
  // consecutive steps read neighbouring addresses; else (channel, tap).
  bool channel_fastest;
};

// Where each reduction step (channel, tap) reads, relative to a pixel's origin.
template <typename T>
void fill_step_offsets(const Window<T>& win, const std::vector<Tap>& taps, int64_t channels,
                       bool channel_fastest, int64_t* out) {
  const int64_t ntaps = static_cast<int64_t>(taps.size());
  for (int64_t ch = 0; ch < channels; ++ch) {
    for (int64_t t = 0; t < ntaps; ++t) {
      const int64_t kd = channel_fastest ? t * channels + ch : ch * ntaps + t;
      out[kd] = ch * win.cs + taps[t].dh * win.rs + taps[t].dw * win.ws;
    }
  }
}

struct TapBounds {
  int64_t min_dh, max_dh, min_dw, max_dw;
};

TapBounds tap_bounds(const std::vector<Tap>& taps) {
  TapBounds b{0, 0, 0, 0};
  for (size_t t = 0; t < taps.size(); ++t) {
    if (t == 0 || taps[t].dh < b.min_dh) b.min_dh = taps[t].dh;
    if (t == 0 || taps[t].dh > b.max_dh) b.max_dh = taps[t].dh;
    if (t == 0 || taps[t].dw < b.min_dw) b.min_dw = taps[t].dw;
    if (t == 0 || taps[t].dw > b.max_dw) b.max_dw = taps[t].dw;
  }
  return b;
}

// Bytes a task's working set (window, accumulator) may take: half of L2,
// leaving the rest to the weights.
constexpr int64_t kBandBytes = 512 * 1024;

// Output-grid rows per task: a working set within kBandBytes, and enough
// tasks to keep every thread busy even for one image.
int64_t band_rows_for(int64_t grid_h, int64_t units_without_bands, int64_t bytes_per_row) {
  const int64_t threads = at::get_num_threads();
  int64_t rows = grid_h;
  while (rows > 1 && rows * bytes_per_row > kBandBytes) rows = (rows + 1) / 2;
  while (rows > 1 && units_without_bands * ((grid_h + rows - 1) / rows) < 4 * threads) {
    rows = (rows + 1) / 2;
  }
  return std::max<int64_t>(rows, 1);
}

// Scratch that outlives the call, one per thread and Purpose: a fresh
// weight-sized buffer (9 MB for a 512x512 3x3 layer) costs a page fault per
// 4 KiB on every call, 3-4 ms at this machine's fault rate, more than
// packing it.  Each thread keeps the largest size it has needed (bounded by
// the largest layer's weights).
enum class Scratch { packed_weights, weight_partial };

template <Scratch Purpose, typename T>
T* thread_scratch(int64_t count) {
  static thread_local std::vector<T> storage;
  if (static_cast<int64_t>(storage.size()) < count) storage.resize(static_cast<size_t>(count));
  return storage.data();
}

// Weights as B panels for the micro-kernel: [group][column tile][kd][NR],
// zero past the last column.  The panels live in the calling thread's
// scratch until its next call.
template <typename T, typename WeightAt>
const T* pack_weights(const GatherConv<T>& p, int64_t nr, WeightAt weight_at) {
  const int64_t ntaps = static_cast<int64_t>(p.taps.size());
  const int64_t kd_count = p.src_channels * ntaps;
  const int64_t tiles = (p.dst_channels + nr - 1) / nr;
  T* const packed = thread_scratch<Scratch::packed_weights, T>(p.groups * tiles * kd_count * nr);
  // A transpose through an L1-sized block: each column's kKdBlock reduction
  // steps are read together (neighbours in a weight row), then written out
  // as whole panel rows.  Reading one element of each of the NR weight rows
  // per step, as the panel's order would, strides C*R*S elements and misses
  // L1 on most reads: the block saves about 0.5 ms per call on a 512x512 3x3
  // layer, whose remaining ~3.5 ms is writing 9 MB of panels.
  constexpr int64_t kKdBlock = 16, kMaxNr = 64;
  TORCH_INTERNAL_ASSERT(nr <= kMaxNr, "pack_weights: NR ", nr, " exceeds ", kMaxNr);
  at::parallel_for(0, p.groups * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gt = begin; gt < end; ++gt) {
      const int64_t g = gt / tiles, tile = gt % tiles;
      T* panel = packed + gt * kd_count * nr;
      const int64_t cols = std::min(nr, p.dst_channels - tile * nr);
      T block[kMaxNr][kKdBlock];
      int64_t ch_of[kKdBlock];
      const Tap* tap_of[kKdBlock];
      for (int64_t kd0 = 0; kd0 < kd_count; kd0 += kKdBlock) {
        const int64_t steps = std::min(kKdBlock, kd_count - kd0);
        for (int64_t k = 0; k < steps; ++k) {
          const int64_t kd = kd0 + k;
          ch_of[k] = p.channel_fastest ? kd % p.src_channels : kd / ntaps;
          tap_of[k] = &p.taps[p.channel_fastest ? kd / p.src_channels : kd % ntaps];
        }
        for (int64_t j = 0; j < cols; ++j)
          for (int64_t k = 0; k < steps; ++k)
            block[j][k] = weight_at(g, tile * nr + j, ch_of[k], *tap_of[k]);
        for (int64_t k = 0; k < steps; ++k) {
          T* row = panel + (kd0 + k) * nr;
          for (int64_t j = 0; j < cols; ++j) row[j] = block[j][k];
          for (int64_t j = cols; j < nr; ++j) row[j] = T(0);
        }
      }
    }
  });
  return packed;
}

// Bytes of weights one reduction block spans (kc x NR): well inside L2, so
// they stay there while every pixel tile of a band reads them.
constexpr int64_t kWeightBlockBytes = 192 * 1024;

// Writes a band's accumulator ([pixel][nr], `cols` valid columns) to its
// destination: pixel q of column j goes to dst[j * channel_stride + dst_off[q]].
template <typename T>
void store_band(const T* acc, int64_t pixels, int64_t nr, int64_t cols, T* dst,
                int64_t channel_stride, const int64_t* dst_off, bool contiguous) {
  if (channel_stride == 1) {  // channels_last: each pixel's channels are one run
    for (int64_t q = 0; q < pixels; ++q) std::memcpy(dst + dst_off[q], acc + q * nr, sizeof(T) * cols);
    return;
  }
  // Transpose in blocks of pixels small enough to stay in L1.
  constexpr int64_t kBlock = 16;
  for (int64_t q0 = 0; q0 < pixels; q0 += kBlock) {
    const int64_t q1 = std::min(pixels, q0 + kBlock);
    for (int64_t j = 0; j < cols; ++j) {
      T* column = dst + j * channel_stride;
      const T* src = acc + j;
      if (contiguous) {
        T* run = column + dst_off[0];
        for (int64_t q = q0; q < q1; ++q) run[q] = src[q * nr];
      } else {
        for (int64_t q = q0; q < q1; ++q) column[dst_off[q]] = src[q * nr];
      }
    }
  }
}

template <typename T, typename WeightAt>
void run_gather_conv(const GatherConv<T>& p, WeightAt weight_at) {
  if (p.batch == 0 || p.grid_h == 0 || p.grid_w == 0 || p.dst_channels == 0) return;
  const IndirectKernel<T>& kernel = kernel_for_columns(kernel_set<T>(), p.dst_channels);
  const int64_t mr = kernel.mr, nr = kernel.nr;
  const int64_t ntaps = static_cast<int64_t>(p.taps.size());
  const int64_t kd_count = p.src_channels * ntaps;
  const int64_t col_tiles = (p.dst_channels + nr - 1) / nr;
  const T* const packed = pack_weights(p, nr, weight_at);

  std::vector<T> bias_padded;
  if (p.bias) {
    bias_padded.assign(static_cast<size_t>(p.groups * col_tiles * nr), T(0));
    for (int64_t g = 0; g < p.groups; ++g)
      for (int64_t o = 0; o < p.dst_channels; ++o)
        bias_padded[g * col_tiles * nr + o] = p.bias[(g * p.dst_channels + o) * p.bias_stride];
  }

  const TapBounds tb = tap_bounds(p.taps);
  const int64_t win_cols = ntaps ? (p.grid_w - 1) * p.step_w + tb.max_dw - tb.min_dw + 1 : 0;
  // Per output-grid row: its share of the window and of the accumulator.
  const int64_t row_bytes = static_cast<int64_t>(sizeof(T)) *
                            (p.src_channels * win_cols * std::max<int64_t>(p.step_h, 1) + p.grid_w * nr);
  const int64_t band_rows = band_rows_for(p.grid_h, p.batch * p.groups, row_bytes);
  const int64_t bands = (p.grid_h + band_rows - 1) / band_rows;
  const int64_t kc_block = std::max<int64_t>(64, kWeightBlockBytes / (nr * static_cast<int64_t>(sizeof(T))));
  // Whether a band's pixels are one run in dst, in order (NCHW output of
  // the forward pass and of stride-1 grad_input).
  const int64_t pixel_stride = p.dst_step_w * p.dst.w;
  const bool band_contiguous =
      pixel_stride == 1 && (p.dst_step_h * p.dst.h == p.grid_w || band_rows == 1);

  at::parallel_for(0, p.batch * p.groups * bands, 1, [&](int64_t begin, int64_t end) {
    Buffer<T> window_buffer, acc_buffer;
    Buffer<int64_t> offset_buffer;
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / (p.groups * bands);
      const int64_t g = (unit / bands) % p.groups;
      const int64_t i0 = (unit % bands) * band_rows;
      const int64_t i1 = std::min(p.grid_h, i0 + band_rows);
      const int64_t pixels = (i1 - i0) * p.grid_w;
      const int64_t tiles = (pixels + mr - 1) / mr;

      int64_t* step_off = offset_buffer.get(kd_count + 2 * tiles * mr);
      int64_t* row_off = step_off + kd_count;   // [tile][mr]: where each pixel's window starts
      int64_t* dst_off = row_off + tiles * mr;  // [pixel]: where it is stored
      Window<T> win{nullptr, 0, 0, 0, 0, 0};
      if (ntaps > 0) {
        const int64_t row0 = i0 * p.step_h + tb.min_dh;
        const int64_t rows = (i1 - 1) * p.step_h + tb.max_dh - row0 + 1;
        const T* image = p.src.data + n * p.src.n + g * p.src_channels * p.src.c;
        win = make_window(image, p.src.c, p.src.h, p.src.w, p.src_channels, p.src_height,
                          p.src_width, row0, rows, tb.min_dw, win_cols, p.channel_fastest,
                          window_buffer);
        fill_step_offsets(win, p.taps, p.src_channels, p.channel_fastest, step_off);
      }
      for (int64_t q = 0; q < tiles * mr; ++q) {
        // Slots past the last pixel repeat their tile's first pixel:
        // computed, never stored.
        const int64_t pixel = q < pixels ? q : q / mr * mr;
        const int64_t i = i0 + pixel / p.grid_w, j = pixel % p.grid_w;
        row_off[q] = (i * p.step_h - win.row0) * win.rs + (j * p.step_w - win.col0) * win.ws;
        if (q < pixels) {
          dst_off[q] = (p.dst_h0 + i * p.dst_step_h) * p.dst.h + (p.dst_w0 + j * p.dst_step_w) * p.dst.w;
        }
      }

      T* dst_image = p.dst.data + n * p.dst.n + g * p.dst_channels * p.dst.c;
      const T* panels = packed + g * col_tiles * kd_count * nr;
      const T* bias = p.bias ? bias_padded.data() + g * col_tiles * nr : nullptr;
      T* acc = acc_buffer.get(tiles * mr * nr);  // [pixel][nr] of the current column tile
      for (int64_t tile = 0; tile < col_tiles; ++tile) {
        const T* b = panels + tile * kd_count * nr;
        const T* init = bias ? bias + tile * nr : nullptr;
        // Reduction blocks keep the weights they read in L2 while every
        // pixel tile of the band passes over them.
        for (int64_t kc0 = 0;; kc0 += kc_block) {
          const int64_t kc = std::min(kc_block, kd_count - kc0);
          for (int64_t t = 0; t < tiles; ++t) {
            kernel.run(kc, win.data, row_off + t * mr, step_off + kc0, b + kc0 * nr, nr,
                       acc + t * mr * nr, nr, init, kc0 > 0);
          }
          if (kc0 + kc >= kd_count) break;
        }
        store_band(acc, pixels, nr, std::min(nr, p.dst_channels - tile * nr),
                   dst_image + tile * nr * p.dst.c, p.dst.c, dst_off, band_contiguous);
      }
    }
  });
}

std::vector<Tap> forward_taps(const Conv2dShape& s) {
  std::vector<Tap> taps;
  for (int64_t r = 0; r < s.kernel_h; ++r)
    for (int64_t q = 0; q < s.kernel_w; ++q)
      taps.push_back({r * s.dilation_h - s.pad_h, q * s.dilation_w - s.pad_w, r, q});
  return taps;
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> phase_taps(int64_t phase, int64_t kernel, int64_t stride,
                                                    int64_t pad, int64_t dilation) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t r = 0; r < kernel; ++r) {
    const int64_t shift = phase + pad - r * dilation;
    if (((shift % stride) + stride) % stride == 0) out.push_back({r, shift / stride});
  }
  return out;
}

bool conv2d_gemm_suits(const Conv2dShape& s) { return s.out_channels_per_group() >= 2; }

template <typename T>
void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s) {
  GatherConv<T> p;
  p.batch = s.batch;
  p.groups = s.groups;
  const View4<T> in = view_of<T>(input);
  p.src = {in.data, in.n, in.c, in.h, in.w};
  p.src_channels = s.in_channels_per_group();
  p.src_height = s.in_h;
  p.src_width = s.in_w;
  p.dst = view_of<T>(output);
  p.dst_channels = s.out_channels_per_group();
  p.taps = forward_taps(s);
  p.grid_h = s.out_h;
  p.grid_w = s.out_w;
  p.step_h = s.stride_h;
  p.step_w = s.stride_w;
  p.dst_h0 = p.dst_w0 = 0;
  p.dst_step_h = p.dst_step_w = 1;
  p.bias = bias.defined() ? bias.const_data_ptr<T>() : nullptr;
  p.bias_stride = bias.defined() ? bias.stride(0) : 0;
  p.channel_fastest = is_channels_last(input);
  const View4<const T> w = view_of<const T>(weight);
  const int64_t kpg = s.out_channels_per_group();
  run_gather_conv(p, [&](int64_t g, int64_t o, int64_t ch, const Tap& tap) {
    return w.data[(g * kpg + o) * w.n + ch * w.c + tap.r * w.h + tap.s * w.w];
  });
}

template <typename T>
void conv2d_input_backward_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s) {
  const View4<T> go = view_of<T>(grad_output);
  const View4<const T> w = view_of<const T>(weight);
  const int64_t kpg = s.out_channels_per_group();
  const auto weight_at = [&](int64_t g, int64_t c, int64_t k, const Tap& tap) {
    return w.data[(g * kpg + k) * w.n + c * w.c + tap.r * w.h + tap.s * w.w];
  };
  // Input rows ph, ph + stride, ... all see the same subset of kernel rows:
  // each (row phase, column phase) is a stride-1 gather over grad_output.
  for (int64_t ph = 0; ph < std::min(s.stride_h, s.in_h); ++ph) {
    for (int64_t pw = 0; pw < std::min(s.stride_w, s.in_w); ++pw) {
      GatherConv<T> p;
      p.batch = s.batch;
      p.groups = s.groups;
      p.src = {go.data, go.n, go.c, go.h, go.w};
      p.src_channels = kpg;
      p.src_height = s.out_h;
      p.src_width = s.out_w;
      p.dst = view_of<T>(grad_input);
      p.dst_channels = s.in_channels_per_group();
      for (const auto& [r, dh] : phase_taps(ph, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h))
        for (const auto& [q, dw] : phase_taps(pw, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w))
          p.taps.push_back({dh, dw, r, q});
      p.grid_h = (s.in_h - ph + s.stride_h - 1) / s.stride_h;
      p.grid_w = (s.in_w - pw + s.stride_w - 1) / s.stride_w;
      p.step_h = p.step_w = 1;
      p.dst_h0 = ph;
      p.dst_w0 = pw;
      p.dst_step_h = s.stride_h;
      p.dst_step_w = s.stride_w;
      p.bias = nullptr;
      p.bias_stride = 0;
      p.channel_fastest = is_channels_last(grad_output);
      run_gather_conv(p, weight_at);
    }
  }
}

template <typename T>
void conv2d_weight_backward_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& grad_weight, const Conv2dShape& s) {
  const int64_t kpg = s.out_channels_per_group(), cpg = s.in_channels_per_group();
  const IndirectKernel<T>& kernel = kernel_for_columns(kernel_set<T>(), kpg);
  const int64_t mr = kernel.mr, nr = kernel.nr;
  const std::vector<Tap> taps = forward_taps(s);
  const int64_t ntaps = static_cast<int64_t>(taps.size());
  const int64_t kd_count = cpg * ntaps;
  const int64_t kd_padded = round_up(kd_count, mr);
  const int64_t cols_padded = round_up(kpg, nr);
  const bool channel_fastest = is_channels_last(input);
  const View4<const T> in = view_of<const T>(input);
  const View4<const T> go = view_of<const T>(grad_output);
  const TapBounds tb = tap_bounds(taps);
  const int64_t win_cols = (s.out_w - 1) * s.stride_w + tb.max_dw - tb.min_dw + 1;
  const int64_t row_bytes = static_cast<int64_t>(sizeof(T)) *
                            (cpg * win_cols * s.stride_h + s.out_w * cols_padded);
  const int64_t band_rows = band_rows_for(s.out_h, s.batch * s.groups, row_bytes);
  const int64_t bands = (s.out_h + band_rows - 1) / band_rows;

  // One accumulator per thread, summed in thread order at the end: the
  // result does not depend on timing.  Tile-major, [group][kd tile][column
  // tile][MR][NR], so that the micro-kernel's accumulator block is one
  // contiguous run: the accumulator of a large layer (9 MB for VGG's conv5)
  // lives in memory, and consecutive blocks then stream through the
  // prefetcher instead of costing MR scattered misses each.
  const int64_t col_tiles = cols_padded / nr, tile_size = mr * nr;
  const int64_t partial_size = s.groups * kd_padded * cols_padded;
  const auto partial_index = [&](int64_t g, int64_t kd, int64_t col) {
    return g * kd_padded * cols_padded + ((kd / mr) * col_tiles + col / nr) * tile_size +
           (kd % mr) * nr + col % nr;
  };
  std::vector<T*> partials(at::get_num_threads(), nullptr);
  const int64_t units = s.batch * s.groups * bands;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    T*& partial = partials[at::get_thread_num()];
    if (partial == nullptr) {
      partial = thread_scratch<Scratch::weight_partial, T>(partial_size);
      std::fill_n(partial, partial_size, T(0));
    }
    Buffer<T> window_buffer, grad_buffer;
    Buffer<int64_t> offset_buffer;
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / (s.groups * bands);
      const int64_t g = (unit / bands) % s.groups;
      const int64_t i0 = (unit % bands) * band_rows;
      const int64_t i1 = std::min(s.out_h, i0 + band_rows);
      const int64_t pixels = (i1 - i0) * s.out_w;

      const int64_t row0 = i0 * s.stride_h + tb.min_dh;
      const int64_t rows = (i1 - 1) * s.stride_h + tb.max_dh - row0 + 1;
      const Window<T> win = make_window(in.data + n * in.n + g * cpg * in.c, in.c, in.h, in.w, cpg,
                                        s.in_h, s.in_w, row0, rows, tb.min_dw, win_cols,
                                        channel_fastest, window_buffer);
      int64_t* kd_off = offset_buffer.get(kd_padded + pixels);
      int64_t* pixel_off = kd_off + kd_padded;
      fill_step_offsets(win, taps, cpg, channel_fastest, kd_off);
      for (int64_t kd = kd_count; kd < kd_padded; ++kd) kd_off[kd] = kd_off[0];
      for (int64_t q = 0; q < pixels; ++q) {
        const int64_t i = i0 + q / s.out_w, j = q % s.out_w;
        pixel_off[q] = (i * s.stride_h - win.row0) * win.rs + (j * s.stride_w - win.col0) * win.ws;
      }
      // grad_output of the band as [pixel][column], zero past the last column.
      T* grad = grad_buffer.get(pixels * cols_padded);
      const T* go_image = go.data + n * go.n + g * kpg * go.c;
      for (int64_t q = 0; q < pixels; ++q) {
        const T* src = go_image + (i0 + q / s.out_w) * go.h + (q % s.out_w) * go.w;
        T* dst = grad + q * cols_padded;
        for (int64_t k = 0; k < kpg; ++k) dst[k] = src[k * go.c];
        for (int64_t k = kpg; k < cols_padded; ++k) dst[k] = 0;
      }
      for (int64_t kd0 = 0; kd0 < kd_padded; kd0 += mr) {
        for (int64_t col0 = 0; col0 < cols_padded; col0 += nr) {
          kernel.run(pixels, win.data, kd_off + kd0, pixel_off, grad + col0, cols_padded,
                     partial + partial_index(g, kd0, col0), nr, nullptr, true);
        }
      }
    }
  });

  // The sum of the partials, in thread order, written into grad_weight one
  // accumulator tile at a time: the partials are read in runs and a column
  // tile's NR rows of grad_weight stay cached while its kd tiles fill them.
  // (Gathering each weight element's partials in grad_weight's order read
  // every one from another cache line: half of VGG conv5's wgrad time.)
  std::vector<const T*> parts;
  for (const T* partial : partials)
    if (partial != nullptr) parts.push_back(partial);
  const View4<T> gw = view_of<T>(grad_weight);
  const int64_t kd_tiles = kd_padded / mr;
  at::parallel_for(0, s.groups * col_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t g = unit / col_tiles, ct = unit % col_tiles;
      for (int64_t kt = 0; kt < kd_tiles; ++kt) {
        const int64_t base = partial_index(g, kt * mr, ct * nr);
        for (int64_t i = 0; i < mr && kt * mr + i < kd_count; ++i) {
          const int64_t kd = kt * mr + i;
          const int64_t ch = channel_fastest ? kd % cpg : kd / ntaps;
          const int64_t t = channel_fastest ? kd / cpg : kd % ntaps;
          T* dst = gw.data + (g * kpg) * gw.n + ch * gw.c + taps[t].r * gw.h + taps[t].s * gw.w;
          for (int64_t j = 0; j < nr && ct * nr + j < kpg; ++j) {
            T sum = 0;
            for (const T* part : parts) sum += part[base + i * nr + j];
            dst[(ct * nr + j) * gw.n] = sum;
          }
        }
      }
    }
  });
}

#define PYCNN_INSTANTIATE(T)                                                                     \
  template void conv2d_forward_gemm<T>(const at::Tensor&, const at::Tensor&, const at::Tensor&, \
                                       const at::Tensor&, const Conv2dShape&);                  \
  template void conv2d_input_backward_gemm<T>(const at::Tensor&, const at::Tensor&,             \
                                              const at::Tensor&, const Conv2dShape&);           \
  template void conv2d_weight_backward_gemm<T>(const at::Tensor&, const at::Tensor&,            \
                                               const at::Tensor&, const Conv2dShape&);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace cpu
}  // namespace pycnn
