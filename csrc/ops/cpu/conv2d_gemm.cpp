#include "conv2d_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../../shape.h"
#include "../activation.h"
#include "gemm/kernel_set.h"
#include "thread_scratch.h"

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

// Part of `count` consecutive images (each channels x rows x cols, whose
// element (c, row, col) is source coordinate (c, row0 + row, col0 + col)),
// readable at every offset the taps produce: the tensor itself when the
// part lies inside it, else a copy with zeros wherever it falls outside.
// Image m's part starts at data + m * image_stride.
template <typename T>
struct Window {
  const T* data;
  int64_t cs, rs, ws;
  int64_t row0, col0;
  int64_t image_stride;

  // Where source coordinate (row, col) of image m starts, from data.
  int64_t offset(int64_t m, int64_t row, int64_t col) const {
    return m * image_stride + (row - row0) * rs + (col - col0) * ws;
  }
};

// One image's part, copied with its zero border into `out`: [rows][cols][channels]
// when channels_last, else [channels][rows][cols].
template <typename T>
void copy_window(const T* image, int64_t cs, int64_t hs, int64_t ws, int64_t channels,
                 int64_t height, int64_t width, int64_t row0, int64_t rows, int64_t col0,
                 int64_t cols, bool channels_last, T* out) {
  const int64_t c_lo = std::max<int64_t>(0, -col0), c_hi = std::min(cols, width - col0);
  if (channels_last) {
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
    return;
  }
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
}

// `image` is the first of `count` images, `ns` elements apart.
template <typename T>
Window<T> make_window(const T* image, int64_t ns, int64_t count, int64_t cs, int64_t hs,
                      int64_t ws, int64_t channels, int64_t height, int64_t width, int64_t row0,
                      int64_t rows, int64_t col0, int64_t cols, bool channels_last,
                      Buffer<T>& buffer) {
  if (row0 >= 0 && row0 + rows <= height && col0 >= 0 && col0 + cols <= width) {
    return {image + row0 * hs + col0 * ws, cs, hs, ws, row0, col0, ns};
  }
  const int64_t size = channels * rows * cols;
  T* out = buffer.get(count * size);
  for (int64_t m = 0; m < count; ++m) {
    copy_window(image + m * ns, cs, hs, ws, channels, height, width, row0, rows, col0, cols,
                channels_last, out + m * size);
  }
  if (channels_last) return {out, 1, cols * channels, channels, row0, col0, size};
  return {out, rows * cols, cols, 1, row0, col0, size};
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
  bool relu = false;  // the forward of conv2d_relu

  // Where grid pixel (i, j) of an image is stored, from its image's origin.
  int64_t dst_offset(int64_t i, int64_t j) const {
    return (dst_h0 + i * dst_step_h) * dst.h + (dst_w0 + j * dst_step_w) * dst.w;
  }
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

// Pixels a task should reach, batching small images, before its micro-kernel
// tiles are nearly all full and its weight panels are reused enough.
constexpr int64_t kMinTaskPixels = 192;
// grad_weight's tasks reduce over their pixels into a weight-sized
// accumulator that lives in memory: more pixels per task, fewer passes over
// it.  Its working set may fill L2 (window plus grad_output rows): ResNet's
// 512-channel 7x7 grad_weight 14.9 -> 12.6 ms with four images per task.
constexpr int64_t kMinWgradPixels = 384;
constexpr int64_t kWgradTaskBytes = 1024 * 1024;

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

// Whole images per task when a task's band is a whole image.  Small images
// (ResNet's 7x7 layer4) give the micro-kernel too few pixels: 49 pixels fill
// 9 tiles of 6 rows (9 % idle), every weight panel streams from L3 once per
// image, and grad_weight reads and writes its weight-sized accumulator once
// per 49-pixel reduction.  Tasks take several images, as long as their
// working set stays within budget_bytes and every thread gets the same
// number of tasks.
int64_t images_per_unit(int64_t batch, int64_t groups, int64_t image_pixels,
                        int64_t image_bytes, int64_t target_pixels, int64_t budget_bytes) {
  const int64_t threads = at::get_num_threads();
  int64_t best = 1;
  for (int64_t count = 2; count <= batch && (count - 1) * image_pixels < target_pixels; ++count) {
    const int64_t units = (batch + count - 1) / count * groups;
    if (count * image_bytes > budget_bytes || units < threads) break;
    if (batch % count == 0 && units % threads == 0) best = count;
  }
  return best;
}

enum class Scratch { packed_weights, weight_partial };

// Where the weights of a GatherConv live: element (group g, destination
// column j, source channel ch, tap t) is
// data[g * group_stride + j * col_stride + ch * channel_stride + tap_off[t]].
template <typename T>
struct WeightLayout {
  const T* data;
  int64_t group_stride, col_stride, channel_stride;
  std::vector<int64_t> tap_off;
};

// Offset of each reduction step kd within a column's weights.
template <typename T>
std::vector<int64_t> weight_step_offsets(const GatherConv<T>& p, const WeightLayout<T>& w) {
  const int64_t ntaps = static_cast<int64_t>(p.taps.size());
  std::vector<int64_t> kd_off(static_cast<size_t>(p.src_channels * ntaps));
  for (int64_t kd = 0; kd < p.src_channels * ntaps; ++kd) {
    const int64_t ch = p.channel_fastest ? kd % p.src_channels : kd / ntaps;
    const int64_t t = p.channel_fastest ? kd / p.src_channels : kd % ntaps;
    kd_off[kd] = ch * w.channel_stride + w.tap_off[t];
  }
  return kd_off;
}

}  // namespace

template <typename T>
void pack_columns(const T* first, int64_t col_stride, int64_t cols, int64_t nr,
                  const int64_t* kd_off, int64_t kd0, int64_t kd1, T* dst) {
  const KernelSet<T>& set = kernel_set<T>();
  const int64_t lanes = set.vector_width;
  // A transpose through an L1-sized block: each column's kKdBlock reduction
  // steps are read together (neighbours in a weight row, one copy where
  // they are consecutive), then written out as whole panel rows, a SIMD
  // tile at a time.  Reading one element of each of the NR weight rows per
  // step, as the panel's order would, strides C*R*S elements and misses L1
  // on most reads.
  constexpr int64_t kKdBlock = 64, kMaxNr = 64;
  TORCH_INTERNAL_ASSERT(nr <= kMaxNr, "pack_columns: NR ", nr, " exceeds ", kMaxNr);
  alignas(64) T block[kMaxNr][kKdBlock];
  const T* column[kMaxNr];
  for (int64_t j = 0; j < cols; ++j) column[j] = first + j * col_stride;
  for (int64_t j = cols; j < nr; ++j) std::fill_n(block[j], kKdBlock, T(0));
  for (int64_t b0 = kd0; b0 < kd1; b0 += kKdBlock) {
    const int64_t steps = std::min(kKdBlock, kd1 - b0);
    const int64_t* off = kd_off + b0;
    bool consecutive = true;
    for (int64_t k = 1; k < steps; ++k) consecutive = consecutive && off[k] == off[0] + k;
    if (consecutive) {
      for (int64_t j = 0; j < cols; ++j)
        std::memcpy(block[j], column[j] + off[0], sizeof(T) * steps);
    } else {
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t k = 0; k < steps; ++k) block[j][k] = column[j][off[k]];
    }
    T* rows = dst + (b0 - kd0) * nr;
    int64_t k0 = 0;
    if (set.transpose != nullptr && nr % lanes == 0) {
      for (; k0 + lanes <= steps; k0 += lanes)
        for (int64_t j0 = 0; j0 < nr; j0 += lanes)
          set.transpose(&block[j0][k0], kKdBlock, rows + k0 * nr + j0, nr);
    }
    for (int64_t k = k0; k < steps; ++k)
      for (int64_t j = 0; j < nr; ++j) rows[k * nr + j] = block[j][k];
  }
}

namespace {

// Rows [kd0, kd1) of the B panel of column tile `tile` in group g, as
// dst[(kd - kd0) * nr + j], zero past the last column.
template <typename T>
void pack_panel(const GatherConv<T>& p, const WeightLayout<T>& w, const int64_t* kd_off,
                int64_t g, int64_t tile, int64_t nr, int64_t kd0, int64_t kd1, T* dst) {
  pack_columns(w.data + g * w.group_stride + tile * nr * w.col_stride, w.col_stride,
               std::min(nr, p.dst_channels - tile * nr), nr, kd_off, kd0, kd1, dst);
}

// Weights as B panels for the micro-kernel: [group][column tile][kd][NR].
// The panels live in the calling thread's scratch until its next call.
template <typename T>
const T* pack_weights(const GatherConv<T>& p, int64_t nr, const WeightLayout<T>& w) {
  const int64_t kd_count = p.src_channels * static_cast<int64_t>(p.taps.size());
  const int64_t tiles = (p.dst_channels + nr - 1) / nr;
  T* const packed = thread_scratch<Scratch::packed_weights, T>(p.groups * tiles * kd_count * nr);
  const std::vector<int64_t> kd_off = weight_step_offsets(p, w);
  at::parallel_for(0, p.groups * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gt = begin; gt < end; ++gt) {
      pack_panel(p, w, kd_off.data(), gt / tiles, gt % tiles, nr, 0, kd_count,
                 packed + gt * kd_count * nr);
    }
  });
  return packed;
}

// Bytes of weights one reduction block spans (kc x NR): well inside L2, so
// they stay there while every pixel tile of a band reads them.
constexpr int64_t kWeightBlockBytes = 192 * 1024;

// Writes a band's accumulator ([pixel][nr], `cols` valid columns) to its
// destination: pixel q of column j goes to dst[j * channel_stride + dst_off[q]],
// through the ReLU for conv2d_relu (in the copy: a pass of its own over the
// accumulator cost VGG conv1_2's forward 2 ms of 38).
template <bool kRelu, typename T>
void store_band_as(const T* acc, int64_t pixels, int64_t nr, int64_t cols, T* dst,
                   int64_t channel_stride, const int64_t* dst_off, bool contiguous) {
  const auto value = [](T v) { return kRelu ? relu_value(v) : v; };
  if (channel_stride == 1) {  // channels_last: each pixel's channels are one run
    for (int64_t q = 0; q < pixels; ++q) {
      if constexpr (kRelu) {
        T* out = dst + dst_off[q];
        const T* in = acc + q * nr;
        for (int64_t j = 0; j < cols; ++j) out[j] = value(in[j]);
      } else {
        std::memcpy(dst + dst_off[q], acc + q * nr, sizeof(T) * cols);
      }
    }
    return;
  }
  // Where the pixels are one run (NCHW, a row or an image at a time), full
  // L x L blocks go through the SIMD transpose (with the ReLU in it for
  // conv2d_relu).
  int64_t done = 0;
  const KernelSet<T>& set = kernel_set<T>();
  const int64_t lanes = set.vector_width;
  const TransposeFn<T> transpose = kRelu ? set.transpose_relu : set.transpose;
  if (contiguous && transpose != nullptr && lanes > 1 && cols >= lanes) {
    const int64_t full_cols = cols / lanes * lanes;
    T* run = dst + dst_off[0];
    for (; done + lanes <= pixels; done += lanes) {
      for (int64_t j0 = 0; j0 < full_cols; j0 += lanes) {
        transpose(acc + done * nr + j0, nr, run + j0 * channel_stride + done, channel_stride);
      }
      for (int64_t j = full_cols; j < cols; ++j)
        for (int64_t q = done; q < done + lanes; ++q) run[j * channel_stride + q] = value(acc[q * nr + j]);
    }
  }
  // Transpose in blocks of pixels small enough to stay in L1.
  constexpr int64_t kBlock = 16;
  for (int64_t q0 = done; q0 < pixels; q0 += kBlock) {
    const int64_t q1 = std::min(pixels, q0 + kBlock);
    for (int64_t j = 0; j < cols; ++j) {
      T* column = dst + j * channel_stride;
      const T* src = acc + j;
      if (contiguous) {
        T* run = column + dst_off[0];
        for (int64_t q = q0; q < q1; ++q) run[q] = value(src[q * nr]);
      } else {
        for (int64_t q = q0; q < q1; ++q) column[dst_off[q]] = value(src[q * nr]);
      }
    }
  }
}

template <typename T>
void store_band(const T* acc, int64_t pixels, int64_t nr, int64_t cols, T* dst,
                int64_t channel_stride, const int64_t* dst_off, bool contiguous, bool relu) {
  if (relu) {
    store_band_as<true>(acc, pixels, nr, cols, dst, channel_stride, dst_off, contiguous);
  } else {
    store_band_as<false>(acc, pixels, nr, cols, dst, channel_stride, dst_off, contiguous);
  }
}

// The bias of every group, zero-padded to whole column tiles.
template <typename T>
std::vector<T> padded_bias(const GatherConv<T>& p, int64_t col_tiles, int64_t nr) {
  std::vector<T> bias;
  if (p.bias) {
    bias.assign(static_cast<size_t>(p.groups * col_tiles * nr), T(0));
    for (int64_t g = 0; g < p.groups; ++g)
      for (int64_t o = 0; o < p.dst_channels; ++o)
        bias[g * col_tiles * nr + o] = p.bias[(g * p.dst_channels + o) * p.bias_stride];
  }
  return bias;
}

// Bytes of one weight block in the column-split path: the block is packed
// and used within one thread, so it stays in L2 beside the accumulator.
constexpr int64_t kSplitBlockBytes = 64 * 1024;

// Whether the threads should split the output channels rather than the
// images: a batch with too few pixels to give every thread a task of
// kMinTaskPixels, under weights larger than its activations (ResNet's 7x7
// layer4 at batch 1-4: 9.4 MB of weights, 0.2-0.7 MB of padded input).
// Split by images, a thread had one image of 49 pixels or a band of it, and
// packed weights for it alone; split by columns, each thread packs one L2
// block of its column tile at a time, just before every pixel of the batch
// passes over it.  Measured here, forward plus grad_input of that layer:
// batch 1 11.2 -> 4.7 ms, batch 4 16.7 -> 13.7 ms; at batch 8 the two
// splits tie, and a stride-2 layer (256 -> 512 channels, 14x14 input) lost
// a quarter with columns, so larger batches keep the image split.
template <typename T>
bool column_split_suits(const GatherConv<T>& p, int64_t mr, int64_t nr, int64_t window_bytes) {
  const int64_t threads = at::get_num_threads();
  const int64_t col_tiles = (p.dst_channels + nr - 1) / nr;
  const int64_t tsize = static_cast<int64_t>(sizeof(T));
  const int64_t pixels = p.batch * p.grid_h * p.grid_w;
  const int64_t acc_bytes = round_up(pixels, mr) * nr * tsize;
  const int64_t weight_bytes = col_tiles * nr * p.src_channels * static_cast<int64_t>(p.taps.size()) * tsize;
  return p.groups == 1 && !p.taps.empty() && p.src_channels > 0 && col_tiles % threads == 0 &&
         pixels < kMinTaskPixels * threads && acc_bytes <= kBandBytes &&
         window_bytes <= weight_bytes;
}

template <typename T>
void run_column_split(const GatherConv<T>& p, const WeightLayout<T>& weights,
                      const IndirectKernel<T>& kernel, const TapBounds& tb, int64_t win_rows,
                      int64_t win_cols) {
  const int64_t mr = kernel.mr, nr = kernel.nr;
  const int64_t kd_count = p.src_channels * static_cast<int64_t>(p.taps.size());
  const int64_t col_tiles = (p.dst_channels + nr - 1) / nr;
  const std::vector<T> bias = padded_bias(p, col_tiles, nr);
  const std::vector<int64_t> kd_off = weight_step_offsets(p, weights);
  const int64_t image_pixels = p.grid_h * p.grid_w, pixels = p.batch * image_pixels;
  const int64_t tiles = (pixels + mr - 1) / mr;

  // Every image's window, shared by the threads.
  Buffer<T> window_buffer;
  const Window<T> win = make_window(p.src.data, p.src.n, p.batch, p.src.c, p.src.h, p.src.w,
                                    p.src_channels, p.src_height, p.src_width, tb.min_dh, win_rows,
                                    tb.min_dw, win_cols, p.channel_fastest, window_buffer);
  std::vector<int64_t> step_off(static_cast<size_t>(kd_count));
  fill_step_offsets(win, p.taps, p.src_channels, p.channel_fastest, step_off.data());
  std::vector<int64_t> row_off(static_cast<size_t>(tiles * mr)), dst_off(static_cast<size_t>(image_pixels));
  for (int64_t q = 0; q < tiles * mr; ++q) {
    const int64_t pixel = q < pixels ? q : q / mr * mr;  // past the end: computed, never stored
    const int64_t m = pixel / image_pixels, local = pixel % image_pixels;
    const int64_t i = local / p.grid_w, j = local % p.grid_w;
    row_off[q] = win.offset(m, i * p.step_h, j * p.step_w);
  }
  for (int64_t q = 0; q < image_pixels; ++q) dst_off[q] = p.dst_offset(q / p.grid_w, q % p.grid_w);
  const bool contiguous = p.dst_step_w * p.dst.w == 1 && p.dst_step_h * p.dst.h == p.grid_w;
  const int64_t kc_block = std::max<int64_t>(32, kSplitBlockBytes / (nr * static_cast<int64_t>(sizeof(T))));

  at::parallel_for(0, col_tiles, 1, [&](int64_t begin, int64_t end) {
    Buffer<T> acc_buffer, block_buffer;
    T* acc = acc_buffer.get(tiles * mr * nr);  // [pixel][nr]
    T* block = block_buffer.get(kc_block * nr);
    for (int64_t tile = begin; tile < end; ++tile) {
      const T* init = bias.empty() ? nullptr : bias.data() + tile * nr;
      for (int64_t kc0 = 0; kc0 < kd_count; kc0 += kc_block) {
        const int64_t kc = std::min(kc_block, kd_count - kc0);
        pack_panel(p, weights, kd_off.data(), 0, tile, nr, kc0, kc0 + kc, block);
        for (int64_t t = 0; t < tiles; ++t) {
          kernel.run(kc, win.data, row_off.data() + t * mr, step_off.data() + kc0, block, nr,
                     acc + t * mr * nr, nr, init, kc0 > 0);
        }
      }
      const int64_t cols = std::min(nr, p.dst_channels - tile * nr);
      for (int64_t n = 0; n < p.batch; ++n) {
        store_band(acc + n * image_pixels * nr, image_pixels, nr, cols,
                   p.dst.data + n * p.dst.n + tile * nr * p.dst.c, p.dst.c, dst_off.data(),
                   contiguous, p.relu);
      }
    }
  });
}

template <typename T>
void run_gather_conv(const GatherConv<T>& p, const WeightLayout<T>& weights) {
  if (p.batch == 0 || p.grid_h == 0 || p.grid_w == 0 || p.dst_channels == 0) return;
  const IndirectKernel<T>& kernel = kernel_for_columns(kernel_set<T>(), p.dst_channels);
  const int64_t mr = kernel.mr, nr = kernel.nr;
  const int64_t ntaps = static_cast<int64_t>(p.taps.size());
  const int64_t kd_count = p.src_channels * ntaps;
  const int64_t col_tiles = (p.dst_channels + nr - 1) / nr;
  const TapBounds tb = tap_bounds(p.taps);
  const int64_t win_cols = ntaps ? (p.grid_w - 1) * p.step_w + tb.max_dw - tb.min_dw + 1 : 0;
  const int64_t win_rows = ntaps ? (p.grid_h - 1) * p.step_h + tb.max_dh - tb.min_dh + 1 : 0;
  const int64_t window_bytes =
      p.batch * p.src_channels * win_rows * win_cols * static_cast<int64_t>(sizeof(T));
  if (column_split_suits(p, mr, nr, window_bytes)) {
    run_column_split(p, weights, kernel, tb, win_rows, win_cols);
    return;
  }
  const T* const packed = pack_weights(p, nr, weights);
  const std::vector<T> bias_padded = padded_bias(p, col_tiles, nr);

  // Per output-grid row: its share of the window and of the accumulator.
  const int64_t row_bytes = static_cast<int64_t>(sizeof(T)) *
                            (p.src_channels * win_cols * std::max<int64_t>(p.step_h, 1) + p.grid_w * nr);
  const int64_t band_rows = band_rows_for(p.grid_h, p.batch * p.groups, row_bytes);
  const int64_t bands = (p.grid_h + band_rows - 1) / band_rows;
  const int64_t per_unit =
      bands == 1 ? images_per_unit(p.batch, p.groups, p.grid_h * p.grid_w, row_bytes * p.grid_h,
                                   kMinTaskPixels, kBandBytes)
                 : 1;
  const int64_t image_groups = (p.batch + per_unit - 1) / per_unit;
  const int64_t kc_block = std::max<int64_t>(64, kWeightBlockBytes / (nr * static_cast<int64_t>(sizeof(T))));
  // Whether a task's pixels are one run in dst, in order (NCHW output of
  // the forward pass and of stride-1 grad_input, one image per task).
  const int64_t pixel_stride = p.dst_step_w * p.dst.w;
  const bool band_contiguous = per_unit == 1 && pixel_stride == 1 &&
                               (p.dst_step_h * p.dst.h == p.grid_w || band_rows == 1);

  at::parallel_for(0, image_groups * p.groups * bands, 1, [&](int64_t begin, int64_t end) {
    Buffer<T> window_buffer, acc_buffer;
    Buffer<int64_t> offset_buffer;
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / (p.groups * bands) * per_unit;
      const int64_t count = std::min(per_unit, p.batch - n);
      const int64_t g = (unit / bands) % p.groups;
      const int64_t i0 = (unit % bands) * band_rows;
      const int64_t i1 = std::min(p.grid_h, i0 + band_rows);
      const int64_t band_pixels = (i1 - i0) * p.grid_w;
      const int64_t pixels = count * band_pixels;
      const int64_t tiles = (pixels + mr - 1) / mr;

      int64_t* step_off = offset_buffer.get(kd_count + 2 * tiles * mr);
      int64_t* row_off = step_off + kd_count;   // [tile][mr]: where each pixel's window starts
      int64_t* dst_off = row_off + tiles * mr;  // [pixel]: where it is stored
      Window<T> win{nullptr, 0, 0, 0, 0, 0, 0};
      if (ntaps > 0) {
        const int64_t row0 = i0 * p.step_h + tb.min_dh;
        const int64_t rows = (i1 - 1) * p.step_h + tb.max_dh - row0 + 1;
        const T* image = p.src.data + n * p.src.n + g * p.src_channels * p.src.c;
        win = make_window(image, p.src.n, count, p.src.c, p.src.h, p.src.w, p.src_channels,
                          p.src_height, p.src_width, row0, rows, tb.min_dw, win_cols,
                          p.channel_fastest, window_buffer);
        fill_step_offsets(win, p.taps, p.src_channels, p.channel_fastest, step_off);
      }
      for (int64_t q = 0; q < tiles * mr; ++q) {
        // Slots past the last pixel repeat their tile's first pixel:
        // computed, never stored.
        const int64_t pixel = q < pixels ? q : q / mr * mr;
        const int64_t m = pixel / band_pixels, local = pixel % band_pixels;
        const int64_t i = i0 + local / p.grid_w, j = local % p.grid_w;
        row_off[q] = win.offset(m, i * p.step_h, j * p.step_w);
        if (q < pixels) dst_off[q] = m * p.dst.n + p.dst_offset(i, j);
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
                   dst_image + tile * nr * p.dst.c, p.dst.c, dst_off, band_contiguous, p.relu);
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
                         const at::Tensor& bias, const at::Tensor& output, const Conv2dShape& s,
                         bool relu) {
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
  p.relu = relu;
  const View4<const T> w = view_of<const T>(weight);
  WeightLayout<T> layout{w.data, p.dst_channels * w.n, w.n, w.c, {}};
  for (const Tap& tap : p.taps) layout.tap_off.push_back(tap.r * w.h + tap.s * w.w);
  run_gather_conv(p, layout);
}

template <typename T>
void conv2d_input_backward_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                                const at::Tensor& grad_input, const Conv2dShape& s) {
  const View4<T> go = view_of<T>(grad_output);
  const View4<const T> w = view_of<const T>(weight);
  const int64_t kpg = s.out_channels_per_group();
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
      // Column c, source channel k: weight[g * kpg + k][c].
      WeightLayout<T> layout{w.data, kpg * w.n, w.c, w.n, {}};
      for (const Tap& tap : p.taps) layout.tap_off.push_back(tap.r * w.h + tap.s * w.w);
      run_gather_conv(p, layout);
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
  const int64_t per_unit =
      bands == 1 ? images_per_unit(s.batch, s.groups, s.out_h * s.out_w, row_bytes * s.out_h,
                                   kMinWgradPixels, kWgradTaskBytes)
                 : 1;
  const int64_t image_groups = (s.batch + per_unit - 1) / per_unit;

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
  const int64_t units = image_groups * s.groups * bands;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    T*& partial = partials[at::get_thread_num()];
    // With one group, a thread's first task writes its whole accumulator
    // (the micro-kernel stores instead of adding), so only grouped
    // convolutions pay for zeroing it.
    bool fresh = partial == nullptr;
    if (fresh) {
      partial = thread_scratch<Scratch::weight_partial, T>(partial_size);
      if (s.groups > 1) {
        std::fill_n(partial, partial_size, T(0));
        fresh = false;
      }
    }
    Buffer<T> window_buffer, grad_buffer;
    Buffer<int64_t> offset_buffer;
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / (s.groups * bands) * per_unit;
      const int64_t count = std::min(per_unit, s.batch - n);
      const int64_t g = (unit / bands) % s.groups;
      const int64_t i0 = (unit % bands) * band_rows;
      const int64_t i1 = std::min(s.out_h, i0 + band_rows);
      const int64_t band_pixels = (i1 - i0) * s.out_w;
      const int64_t pixels = count * band_pixels;

      const int64_t row0 = i0 * s.stride_h + tb.min_dh;
      const int64_t rows = (i1 - 1) * s.stride_h + tb.max_dh - row0 + 1;
      const Window<T> win = make_window(in.data + n * in.n + g * cpg * in.c, in.n, count, in.c,
                                        in.h, in.w, cpg, s.in_h, s.in_w, row0, rows, tb.min_dw,
                                        win_cols, channel_fastest, window_buffer);
      int64_t* kd_off = offset_buffer.get(kd_padded + pixels);
      int64_t* pixel_off = kd_off + kd_padded;
      fill_step_offsets(win, taps, cpg, channel_fastest, kd_off);
      for (int64_t kd = kd_count; kd < kd_padded; ++kd) kd_off[kd] = kd_off[0];
      for (int64_t q = 0; q < pixels; ++q) {
        const int64_t m = q / band_pixels, local = q % band_pixels;
        const int64_t i = i0 + local / s.out_w, j = local % s.out_w;
        pixel_off[q] = win.offset(m, i * s.stride_h, j * s.stride_w);
      }
      // grad_output of the band as [pixel][column], zero past the last column.
      T* grad = grad_buffer.get(pixels * cols_padded);
      const T* go_image = go.data + n * go.n + g * kpg * go.c;
      for (int64_t q = 0; q < pixels; ++q) {
        const int64_t m = q / band_pixels, local = q % band_pixels;
        const T* src = go_image + m * go.n + (i0 + local / s.out_w) * go.h + (local % s.out_w) * go.w;
        T* dst = grad + q * cols_padded;
        for (int64_t k = 0; k < kpg; ++k) dst[k] = src[k * go.c];
        for (int64_t k = kpg; k < cols_padded; ++k) dst[k] = 0;
      }
      for (int64_t kd0 = 0; kd0 < kd_padded; kd0 += mr) {
        for (int64_t col0 = 0; col0 < cols_padded; col0 += nr) {
          kernel.run(pixels, win.data, kd_off + kd0, pixel_off, grad + col0, cols_padded,
                     partial + partial_index(g, kd0, col0), nr, nullptr, !fresh);
        }
      }
      fresh = false;
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
                                       const at::Tensor&, const Conv2dShape&, bool);            \
  template void conv2d_input_backward_gemm<T>(const at::Tensor&, const at::Tensor&,             \
                                              const at::Tensor&, const Conv2dShape&);           \
  template void conv2d_weight_backward_gemm<T>(const at::Tensor&, const at::Tensor&,            \
                                               const at::Tensor&, const Conv2dShape&);          \
  template void pack_columns<T>(const T*, int64_t, int64_t, int64_t, const int64_t*, int64_t,   \
                                int64_t, T*);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace cpu
}  // namespace pycnn
