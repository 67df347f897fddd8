// Winograd F(2x2, 3x3) for exact float32 3x3 stride-1 convolutions with many
// channels (the forward and grad_input of VGG's and ResNet's 3x3 layers).
// cuDNN uses transforms like these in float32: an FFMA implicit GEMM reaches
// about 30 TFLOP/s on an H100, and cuDNN's float32 3x3 layers run at an
// equivalent 75-110.  F(2x2, 3x3) computes each 2x2 output tile from a 4x4
// input tile with 16 multiplies per channel pair instead of 36:
//   V = B^T d B   (input tile d, per tile and input channel),
//   U = G g G^T   (3x3 filter g, per output and input channel),
//   M[e] = sum over input channels of V[e] U[e]   (16 GEMMs: tiles x C x K),
//   Y = A^T M A   (the 2x2 outputs).
// The 16 GEMMs are the FFMA kernel's grouped 1x1 convolution (16 groups),
// run on scratch tensors whose strides describe the layouts below; the three
// transforms are elementwise kernels.  Everything is summed in a fixed order
// (the GEMM's K order, the transforms' fixed formulas): bitwise repeatable.
//
// grad_input of a stride-1 3x3 convolution with padding p <= 2 is the
// forward convolution of grad_output with the flipped, transposed filter
// and padding 2 - p, so it takes the same road.
//
// grad_weight is the same algorithm transposed (dW = d/dW of <dY, Y>):
//   V = B^T d B                (the forward's input transform),
//   Gt = A dY A^T              (each 2x2 tile of grad_output, zero past its edges),
//   M[e] = sum over tiles of Gt[e] V[e]   (16 GEMMs with the tiles as their
//                              reduction: the FFMA kernels' grad_weight of a
//                              grouped 1x1 convolution, split-K in a fixed order),
//   dW = G^T M G.
//
// Layouts (so that the transforms read and write along the tensor's own
// fastest dimension): for an NCHW tensor, V is [16][C][tiles] and M is
// [16][K][tiles]; for channels_last, [tiles][16][C] and [tiles][16][K].
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "../activation.h"
#include "../common.h"
#include "../conv2d.h"
#include "conv2d_fast.cuh"
#include "fast_divmod.cuh"

namespace pycnn {
namespace gpu {

// Output tiles of the transformed problem, and the index of element e
// (0..15) of tile t, channel c in a [16][channels][tiles] or a
// [tiles][16][channels] buffer.
struct WinogradTiles {
  int tiles_h, tiles_w, count;  // count = batch * tiles_h * tiles_w
  bool tile_major;              // [tiles][16][channels]

  PYCNN_HOST_DEVICE __forceinline__ int64_t at(int e, int channel, int tile, int channels) const {
    return tile_major ? (int64_t(tile) * 16 + e) * channels + channel
                      : (int64_t(e) * channels + channel) * count + tile;
  }
};

// The transforms' items: (tile, channel) pairs in the order the buffer's
// layout makes coalesced (channel fastest when tile-major, else tile).
struct WinogradItems {
  FastDivmod div_channels, div_tiles, div_tiles_w, div_tiles_h;
  bool tile_major;

  static WinogradItems make(const WinogradTiles& t, int channels) {
    return {FastDivmod::make(channels), FastDivmod::make(t.count), FastDivmod::make(t.tiles_w),
            FastDivmod::make(t.tiles_h), t.tile_major};
  }

  // Item i -> channel c, image n, tile row ty, tile column tx and flat tile.
  PYCNN_HOST_DEVICE __forceinline__ void decode(int i, int& c, int& n, int& ty, int& tx,
                                                int& tile) const {
    if (tile_major) {
      div_channels.divmod(i, tile, c);
    } else {
      div_tiles.divmod(i, c, tile);
    }
    int rest;
    div_tiles_w.divmod(tile, rest, tx);
    div_tiles_h.divmod(rest, n, ty);
  }
};

// v[e] for tile (n, ty, tx) of input channel c: B^T d B of the 4x4 input
// patch starting at (2 ty - pad_h, 2 tx - pad_w), zero outside the input.
template <typename T>
struct WinogradInputTransform {
  const T* input;
  Strides4i in_s;
  float* v;
  WinogradTiles tiles;
  WinogradItems items;
  int channels, in_h, in_w, pad_h, pad_w;

  PYCNN_HOST_DEVICE void operator()(int64_t index) const {
    int c, n, ty, tx, tile;
    items.decode(int(index), c, n, ty, tx, tile);
    const T* plane = input + n * in_s.n + c * in_s.c;
    const int y0 = 2 * ty - pad_h, x0 = 2 * tx - pad_w;
    float d[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int y = y0 + i, x = x0 + j;
        d[i][j] = unsigned(y) < unsigned(in_h) && unsigned(x) < unsigned(in_w)
                      ? static_cast<float>(plane[y * in_s.h + x * in_s.w])
                      : 0.f;
      }
    // Rows: B^T d (B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]).
    float t[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      t[0][j] = d[0][j] - d[2][j];
      t[1][j] = d[1][j] + d[2][j];
      t[2][j] = d[2][j] - d[1][j];
      t[3][j] = d[1][j] - d[3][j];
    }
    // Columns: (B^T d) B.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float r[4] = {t[i][0] - t[i][2], t[i][1] + t[i][2], t[i][2] - t[i][1], t[i][1] - t[i][3]};
#pragma unroll
      for (int j = 0; j < 4; ++j) v[tiles.at(i * 4 + j, c, tile, channels)] = r[j];
    }
  }
};

// u[e][k][c] = (G g G^T)[e] for the filter g from output channel k to input
// channel c, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].  For grad_input
// (transposed), k and c swap roles and g is rotated by 180 degrees.
template <typename T>
struct WinogradWeightTransform {
  const T* weight;
  Strides4d w_s;
  float* u;
  int out_channels, in_channels;  // of the transformed problem
  bool transposed;

  PYCNN_HOST_DEVICE void operator()(int64_t index) const {
    const int k = int(index / in_channels), c = int(index % in_channels);
    float g[3][3];
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
      for (int s = 0; s < 3; ++s)
        g[r][s] = static_cast<float>(transposed ? weight[offset_of(w_s, c, k, 2 - r, 2 - s)]
                                                : weight[offset_of(w_s, k, c, r, s)]);
    float t[4][3];  // G g
#pragma unroll
    for (int s = 0; s < 3; ++s) {
      t[0][s] = g[0][s];
      t[1][s] = 0.5f * (g[0][s] + g[1][s] + g[2][s]);
      t[2][s] = 0.5f * (g[0][s] - g[1][s] + g[2][s]);
      t[3][s] = g[2][s];
    }
    const int64_t plane = int64_t(out_channels) * in_channels;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                          0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
#pragma unroll
      for (int j = 0; j < 4; ++j) u[(i * 4 + j) * plane + index] = r[j];
    }
  }
};

// The 2x2 outputs of tile (n, ty, tx), output channel k: A^T M A
// (A^T = [1 1 1 0; 0 1 -1 -1]), plus the bias; the parts of a tile past
// the output's edge are not written.
template <typename T>
struct WinogradOutputTransform {
  const float* m;
  const T* bias;  // null when none
  T* output;
  Strides4i out_s;
  WinogradTiles tiles;
  WinogradItems items;
  int channels, out_h, out_w, bias_stride;
  bool relu;  // conv2d_relu

  PYCNN_HOST_DEVICE void operator()(int64_t index) const {
    int k, n, ty, tx, tile;
    items.decode(int(index), k, n, ty, tx, tile);
    float mv[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) mv[i][j] = m[tiles.at(i * 4 + j, k, tile, channels)];
    float t[2][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      t[0][j] = mv[0][j] + mv[1][j] + mv[2][j];
      t[1][j] = mv[1][j] - mv[2][j] - mv[3][j];
    }
    const float b = bias != nullptr ? static_cast<float>(bias[k * bias_stride]) : 0.f;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int y = 2 * ty + i;
      if (y >= out_h) continue;
      float y0 = t[i][0] + t[i][1] + t[i][2] + b;
      float y1 = t[i][1] - t[i][2] - t[i][3] + b;
      if (relu) y0 = relu_value(y0), y1 = relu_value(y1);
      T* row = output + n * out_s.n + k * out_s.c + y * out_s.h;
      row[(2 * tx) * out_s.w] = static_cast<T>(y0);
      if (2 * tx + 1 < out_w) row[(2 * tx + 1) * out_s.w] = static_cast<T>(y1);
    }
  }
};

// gt[e] for tile (n, ty, tx) of grad_output channel k: A dY A^T of the 2x2
// gradient tile at (2 ty, 2 tx), zero past the output's edge (A's rows:
// (1, 0), (1, 1), (1, -1), (0, -1)), in the layout of the forward's M.
template <typename T>
struct WinogradGradOutputTransform {
  const T* grad_output;
  Strides4i go_s;
  float* gt;
  WinogradTiles tiles;
  WinogradItems items;
  int channels, out_h, out_w;

  PYCNN_HOST_DEVICE void operator()(int64_t index) const {
    int k, n, ty, tx, tile;
    items.decode(int(index), k, n, ty, tx, tile);
    const T* plane = grad_output + n * go_s.n + k * go_s.c;
    float g[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int y = 2 * ty + i, x = 2 * tx + j;
        g[i][j] = y < out_h && x < out_w ? static_cast<float>(plane[y * go_s.h + x * go_s.w]) : 0.f;
      }
    // Rows: A g.
    float t[4][2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      t[0][j] = g[0][j];
      t[1][j] = g[0][j] + g[1][j];
      t[2][j] = g[0][j] - g[1][j];
      t[3][j] = -g[1][j];
    }
    // Columns: (A g) A^T.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float r[4] = {t[i][0], t[i][0] + t[i][1], t[i][0] - t[i][1], -t[i][1]};
#pragma unroll
      for (int j = 0; j < 4; ++j) gt[tiles.at(i * 4 + j, k, tile, channels)] = r[j];
    }
  }
};

// grad_weight[k][c] = G^T M G from the products m, a [16 K][C] float
// matrix (row e K + k); G^T's rows: (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0),
// (0, 1/2, 1/2, 1).
template <typename T>
struct WinogradWeightGradTransform {
  const float* m;
  T* grad_weight;
  Strides4d w_s;
  int out_channels, in_channels;

  PYCNN_HOST_DEVICE void operator()(int64_t index) const {
    const int k = int(index / in_channels), c = int(index % in_channels);
    const int64_t plane = int64_t(out_channels) * in_channels;
    float v[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) v[i][j] = m[(i * 4 + j) * plane + index];
    float z[3][4];  // G^T M
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float half_sum = 0.5f * (v[1][j] + v[2][j]);
      z[0][j] = v[0][j] + half_sum;
      z[1][j] = 0.5f * (v[1][j] - v[2][j]);
      z[2][j] = half_sum + v[3][j];
    }
#pragma unroll
    for (int r = 0; r < 3; ++r) {
      const float half_sum = 0.5f * (z[r][1] + z[r][2]);
      grad_weight[offset_of(w_s, k, c, r, 0)] = static_cast<T>(z[r][0] + half_sum);
      grad_weight[offset_of(w_s, k, c, r, 1)] = static_cast<T>(0.5f * (z[r][1] - z[r][2]));
      grad_weight[offset_of(w_s, k, c, r, 2)] = static_cast<T>(half_sum + z[r][3]);
    }
  }
};

// Whether Winograd serves a convolution with these (forward-problem) sizes:
// many channels on both sides (with few, the transforms' memory traffic
// outweighs the multiplies saved), and every index within int32.
constexpr int64_t kWinogradMinChannels = 128;
constexpr int64_t kWinogradMaxScratchBytes = int64_t(4) << 30;

inline bool winograd_sizes_fit(int64_t batch, int64_t in_channels, int64_t out_channels,
                               int64_t out_h, int64_t out_w) {
  if (in_channels < kWinogradMinChannels || out_channels < kWinogradMinChannels) return false;
  const int64_t tiles = batch * ((out_h + 1) / 2) * ((out_w + 1) / 2);
  const int64_t v = 16 * tiles * in_channels, m = 16 * tiles * out_channels;
  return v <= kInt32Limit && m <= kInt32Limit && 4 * (v + m) <= kWinogradMaxScratchBytes;
}

// Whether Winograd applies (the caller has chosen the FFMA family: float32,
// TF32 off).  grad_input reads the filter rotated: padding 2 - p >= 0.
inline bool winograd_applies(const Conv2dShape& s, bool input_grad) {
  if (s.groups != 1 || s.kernel_h != 3 || s.kernel_w != 3 || s.stride_h != 1 || s.stride_w != 1 ||
      s.dilation_h != 1 || s.dilation_w != 1 || s.out_h < 1 || s.out_w < 1) {
    return false;
  }
  if (input_grad) {
    return s.pad_h <= 2 && s.pad_w <= 2 &&
           winograd_sizes_fit(s.batch, s.out_channels, s.in_channels, s.in_h, s.in_w);
  }
  return winograd_sizes_fit(s.batch, s.in_channels, s.out_channels, s.out_h, s.out_w);
}

// The 2x2 output tiles of `batch` images of out_h x out_w.
inline WinogradTiles winograd_tiles(int64_t batch, int64_t out_h, int64_t out_w) {
  WinogradTiles t{};
  t.tiles_h = int((out_h + 1) / 2), t.tiles_w = int((out_w + 1) / 2);
  t.count = int(batch) * t.tiles_h * t.tiles_w;
  return t;
}

// A [16][channels][tiles] (or, tile_major, [tiles][16][channels]) buffer
// seen as the GEMMs' operand: [tiles, 16 channels, 1, 1], 16 groups.
inline at::Tensor tiles_as_pixels(const at::Tensor& buf, const WinogradTiles& t, int64_t channels,
                                  bool tile_major) {
  return buf.as_strided({t.count, 16 * channels, 1, 1},
                        tile_major ? std::vector<int64_t>{16 * channels, 1, 1, 1}
                                   : std::vector<int64_t>{1, t.count, 1, 1});
}

// The 16 products as a grouped 1x1 convolution: tiles as its pixels.
inline Conv2dShape products_shape(const WinogradTiles& t, int64_t cin, int64_t cout) {
  Conv2dShape s{};
  s.batch = t.count, s.in_channels = 16 * cin, s.in_h = s.in_w = 1;
  s.out_channels = 16 * cout, s.kernel_h = s.kernel_w = 1, s.out_h = s.out_w = 1;
  s.stride_h = s.stride_w = s.dilation_h = s.dilation_w = 1;
  s.groups = 16;
  return s;
}

// V = B^T d B of every tile and channel of `input` (layout following it),
// seen as the GEMMs' activation.
template <class L>
at::Tensor winograd_input(const at::Tensor& input, const WinogradTiles& t, int64_t pad_h,
                          int64_t pad_w, L& launcher) {
  const int64_t cin = input.size(1);
  at::Tensor v_buf = launcher.empty({16 * int64_t(t.count) * cin}, at::kFloat);
  WinogradTiles tv = t;
  tv.tile_major = is_channels_last(input);
  launcher.elementwise(
      WinogradInputTransform<float>{input.const_data_ptr<float>(), strides32_of(input),
                                    v_buf.mutable_data_ptr<float>(), tv,
                                    WinogradItems::make(tv, int(cin)), int(cin),
                                    int(input.size(2)), int(input.size(3)), int(pad_h), int(pad_w)},
      int64_t(t.count) * cin);
  return tiles_as_pixels(v_buf, t, cin, tv.tile_major);
}

// Forward convolution by F(2x2, 3x3): output = conv(input, weight) + bias
// (with relu, max(that, 0)), stride 1, padding (pad_h, pad_w); `transposed`:
// the weight is read as the 180-degree rotation of its transpose (grad_input).
template <class L>
void winograd_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                   const at::Tensor& output, int64_t pad_h, int64_t pad_w, bool transposed,
                   L& launcher, int tile, bool relu) {
  const int64_t cin = input.size(1);
  const int64_t cout = output.size(1), out_h = output.size(2), out_w = output.size(3);
  const WinogradTiles t = winograd_tiles(input.size(0), out_h, out_w);
  const bool out_major = is_channels_last(output);
  const at::Tensor v = winograd_input(input, t, pad_h, pad_w, launcher);

  // U as a [16 K, C, 1, 1] weight: group e's output channels e K .. e K + K - 1.
  at::Tensor u = launcher.empty({16 * cout, cin, 1, 1}, at::kFloat);
  launcher.elementwise(
      WinogradWeightTransform<float>{weight.const_data_ptr<float>(), strides_of(weight),
                                     u.mutable_data_ptr<float>(), int(cout), int(cin), transposed},
      cout * cin);

  at::Tensor m_buf = launcher.empty({16 * int64_t(t.count) * cout}, at::kFloat);
  const at::Tensor m = tiles_as_pixels(m_buf, t, cout, out_major);
  conv_forward_fast<SimtKernels>(v, u, at::Tensor(), m, products_shape(t, cin, cout), launcher,
                                 tile, false);

  WinogradTiles tm = t;
  tm.tile_major = out_major;
  launcher.elementwise(
      WinogradOutputTransform<float>{m_buf.const_data_ptr<float>(),
                                     bias.defined() ? bias.const_data_ptr<float>() : nullptr,
                                     output.mutable_data_ptr<float>(), strides32_of(output), tm,
                                     WinogradItems::make(tm, int(cout)), int(cout), int(out_h),
                                     int(out_w), bias.defined() ? int(bias.stride(0)) : 0, relu},
      int64_t(t.count) * cout);
}

// grad_weight of the stride-1 3x3 convolution with padding (pad_h,
// pad_w) by F(2x2, 3x3): grad_weight = d conv(input, W) / dW applied to
// grad_output.  Returns the GEMM's number of K splits (for tests).
template <class L>
int64_t winograd_weight_grad(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& grad_weight, int64_t pad_h, int64_t pad_w,
                             L& launcher, int tile) {
  const int64_t cin = input.size(1);
  const int64_t cout = grad_output.size(1), out_h = grad_output.size(2), out_w = grad_output.size(3);
  const WinogradTiles t = winograd_tiles(input.size(0), out_h, out_w);
  const bool go_major = is_channels_last(grad_output);
  const at::Tensor v = winograd_input(input, t, pad_h, pad_w, launcher);  // the GEMM's input

  // Gt as the GEMM's grad_output: [tiles, 16 K, 1, 1].
  at::Tensor gt_buf = launcher.empty({16 * int64_t(t.count) * cout}, at::kFloat);
  WinogradTiles tg = t;
  tg.tile_major = go_major;
  launcher.elementwise(
      WinogradGradOutputTransform<float>{grad_output.const_data_ptr<float>(),
                                         strides32_of(grad_output), gt_buf.mutable_data_ptr<float>(),
                                         tg, WinogradItems::make(tg, int(cout)), int(cout),
                                         int(out_h), int(out_w)},
      int64_t(t.count) * cout);
  const at::Tensor gt = tiles_as_pixels(gt_buf, t, cout, go_major);

  // M: the grouped 1x1 convolution's weight gradient, [16 K, C, 1, 1].
  at::Tensor m = launcher.empty({16 * cout, cin, 1, 1}, at::kFloat);
  const int64_t splits =
      conv_weight_backward_fast<SimtKernels>(gt, v, m, products_shape(t, cin, cout), launcher, tile);

  launcher.elementwise(
      WinogradWeightGradTransform<float>{m.const_data_ptr<float>(),
                                         grad_weight.mutable_data_ptr<float>(),
                                         strides_of(grad_weight), int(cout), int(cin)},
      cout * cin);
  return splits;
}

}  // namespace gpu
}  // namespace pycnn
