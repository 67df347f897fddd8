// Depthwise convolution (one input channel per group, any channel multiplier
// kpg = out_channels / groups) for square kernels of a compile-time size
// K = 3, 5 or 7, where every offset fits in int.  The reference functors
// (conv2d_direct.cuh) pay several 64-bit divisions per element, and their
// grad_weight gives one block to each weight element, so a 1-input-channel
// LeNet C1 (six 5x5 filters over 800k pixels) ran on 150 blocks.  Here:
//   * forward: one thread per input-channel pixel; its K x K window is read
//     once and serves the kpg output channels that read that input channel;
//   * grad_input: one thread per input element, a gather over the outputs
//     whose windows hold it, their rows and columns found once per thread;
//   * grad_weight: the batch's output pixels in chunks, one block per
//     (chunk, input channel) holding K x K sums per thread, reduced by a
//     fixed tree (warp shuffles, then the warps in order) into one partial
//     per chunk, which ChunkTotals adds in chunk order: no atomics, the same
//     result run after run.
// Items run in the memory order of the tensor written, so neighbouring
// threads touch neighbouring addresses in NCHW and in channels_last.
// Taps are summed in the reference functors' order.
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include "../activation.h"
#include "../common.h"
#include "../conv2d.h"
#include "cuda_common.cuh"
#include "fast_divmod.cuh"

namespace pycnn {
namespace gpu {

// The convolution's options and sizes, in int.
struct DepthwiseShape {
  int batch, channels, kpg;  // input channels; output channels per input channel
  int in_h, in_w, out_h, out_w;
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;

  static DepthwiseShape make(const Conv2dShape& s) {
    return {int(s.batch), int(s.in_channels), int(s.out_channels_per_group()),
            int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w),
            int(s.stride_h), int(s.stride_w), int(s.pad_h), int(s.pad_w),
            int(s.dilation_h), int(s.dilation_w)};
  }
};

// A flat index over (N, C, H, W) counted in one tensor's memory order:
// (n, h, w, c) for channels_last, (n, c, h, w) otherwise.
struct PixelOrder {
  bool channels_last;
  FastDivmod div_c, div_w, div_h;

  static PixelOrder make(bool cl, int channels, int height, int width) {
    return {cl, FastDivmod::make(channels), FastDivmod::make(width), FastDivmod::make(height)};
  }

  PYCNN_HOST_DEVICE __forceinline__ void decode(int i, int& n, int& c, int& h, int& w) const {
    int rest;
    if (channels_last) {
      div_c.divmod(i, rest, c);
      div_w.divmod(rest, rest, w);
      div_h.divmod(rest, n, h);
    } else {
      div_w.divmod(i, rest, w);
      div_h.divmod(rest, rest, h);
      div_c.divmod(rest, n, c);
    }
  }
};

template <typename scalar_t, int K>
struct DepthwiseFastForward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* input;
  const scalar_t* weight;
  const scalar_t* bias;  // null when the convolution has none
  scalar_t* output;
  Strides4i in_s, w_s, out_s;
  int bias_stride;
  DepthwiseShape s;
  PixelOrder order;  // over (N, input channels, out_h, out_w), in the output's order
  int items;
  bool relu;  // conv2d_relu

  static DepthwiseFastForward make(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const Conv2dShape& shape, bool relu) {
    const DepthwiseShape s = DepthwiseShape::make(shape);
    return {input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
            bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
            output.mutable_data_ptr<scalar_t>(),
            strides32_of(input), strides32_of(weight), strides32_of(output),
            bias.defined() ? int(bias.stride(0)) : 0, s,
            PixelOrder::make(is_channels_last(output), s.channels, s.out_h, s.out_w),
            s.batch * s.channels * s.out_h * s.out_w, relu};
  }

  PYCNN_HOST_DEVICE void operator()(int i) const {
    int n, c, y, x;
    order.decode(i, n, c, y, x);
    const int h0 = y * s.stride_h - s.pad_h, w0 = x * s.stride_w - s.pad_w;
    const scalar_t* plane = input + n * in_s.n + c * in_s.c;
    acc_t v[K][K];
    bool inside[K][K];
#pragma unroll
    for (int r = 0; r < K; ++r) {
      const int ih = h0 + r * s.dil_h;
#pragma unroll
      for (int q = 0; q < K; ++q) {
        const int iw = w0 + q * s.dil_w;
        inside[r][q] = unsigned(ih) < unsigned(s.in_h) && unsigned(iw) < unsigned(s.in_w);
        v[r][q] = inside[r][q] ? static_cast<acc_t>(plane[ih * in_s.h + iw * in_s.w]) : acc_t(0);
      }
    }
    for (int j = 0; j < s.kpg; ++j) {
      const int k = c * s.kpg + j;
      const scalar_t* wk = weight + k * w_s.n;
      acc_t acc = acc_t(0);
#pragma unroll
      for (int r = 0; r < K; ++r)
#pragma unroll
        for (int q = 0; q < K; ++q)
          if (inside[r][q]) acc += v[r][q] * static_cast<acc_t>(wk[r * w_s.h + q * w_s.w]);
      if (bias != nullptr) acc += static_cast<acc_t>(bias[k * bias_stride]);
      if (relu) acc = relu_value(acc);
      output[out_s.at(n, k, y, x)] = static_cast<scalar_t>(acc);
    }
  }
};

template <typename scalar_t, int K>
struct DepthwiseFastInputGrad {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  const scalar_t* weight;
  scalar_t* grad_input;
  Strides4i go_s, w_s, gi_s;
  DepthwiseShape s;
  PixelOrder order;  // over grad_input, in its order
  FastDivmod div_sh, div_sw;
  int items;

  static DepthwiseFastInputGrad make(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const Conv2dShape& shape) {
    const DepthwiseShape s = DepthwiseShape::make(shape);
    return {grad_output.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
            grad_input.mutable_data_ptr<scalar_t>(),
            strides32_of(grad_output), strides32_of(weight), strides32_of(grad_input), s,
            PixelOrder::make(is_channels_last(grad_input), s.channels, s.in_h, s.in_w),
            FastDivmod::make(s.stride_h), FastDivmod::make(s.stride_w),
            s.batch * s.channels * s.in_h * s.in_w};
  }

  // The output o whose tap `tap` lands on input position i, if there is one.
  PYCNN_HOST_DEVICE __forceinline__ static bool source(int i, int tap, int pad, int dil,
                                                      const FastDivmod& div_stride, int out,
                                                      int& o) {
    const int t = i + pad - tap * dil;
    if (t < 0) return false;
    int rem;
    div_stride.divmod(t, o, rem);
    return rem == 0 && o < out;
  }

  PYCNN_HOST_DEVICE void operator()(int i) const {
    int n, c, y, x;
    order.decode(i, n, c, y, x);
    int oh[K], ow[K];
    bool row_ok[K], col_ok[K];
#pragma unroll
    for (int r = 0; r < K; ++r) row_ok[r] = source(y, r, s.pad_h, s.dil_h, div_sh, s.out_h, oh[r]);
#pragma unroll
    for (int q = 0; q < K; ++q) col_ok[q] = source(x, q, s.pad_w, s.dil_w, div_sw, s.out_w, ow[q]);
    acc_t acc = acc_t(0);
    for (int j = 0; j < s.kpg; ++j) {
      const int k = c * s.kpg + j;
      const scalar_t* go_plane = grad_output + n * go_s.n + k * go_s.c;
      const scalar_t* wk = weight + k * w_s.n;
      // Outputs in increasing order, as the reference gathers them.
#pragma unroll
      for (int r = K - 1; r >= 0; --r) {
        if (!row_ok[r]) continue;
#pragma unroll
        for (int q = K - 1; q >= 0; --q) {
          if (!col_ok[q]) continue;
          acc += static_cast<acc_t>(go_plane[oh[r] * go_s.h + ow[q] * go_s.w]) *
                 static_cast<acc_t>(wk[r * w_s.h + q * w_s.w]);
        }
      }
    }
    grad_input[gi_s.at(n, c, y, x)] = static_cast<scalar_t>(acc);
  }
};

// grad_weight, pass 1: block b = (input channel c, chunk) sums, for each of
// c's kpg output channels k, the K x K products over the chunk's output
// pixels p = (n, oh, ow) into partial[(k * K * K + tap) * chunks + chunk].
template <typename scalar_t, int K>
struct DepthwiseFastWeightGrad {
  using acc_t = at::acc_type<scalar_t, true>;
  static constexpr int kTaps = K * K;
  const scalar_t* grad_output;
  const scalar_t* input;
  acc_t* partial;
  Strides4i go_s, in_s;
  DepthwiseShape s;
  FastDivmod div_w, div_h;  // out_w, out_h
  int pixels, chunks, chunk_length;

  static DepthwiseFastWeightGrad make(const at::Tensor& grad_output, const at::Tensor& input,
                                      const Conv2dShape& shape) {
    const DepthwiseShape s = DepthwiseShape::make(shape);
    const int pixels = s.batch * s.out_h * s.out_w;
    // Enough blocks to fill a large GPU, each with at least four pixels per
    // thread; shape-only, so the summation order is too.
    const int64_t by_blocks = (1024 + s.channels - 1) / s.channels;
    const int64_t by_length = (pixels + 4 * kThreadsPerBlock - 1) / (4 * kThreadsPerBlock);
    const int64_t wanted = std::max<int64_t>(1, std::min(by_blocks, by_length));
    const int chunk_length = int((pixels + wanted - 1) / wanted);
    return {grad_output.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(), nullptr,
            strides32_of(grad_output), strides32_of(input), s,
            FastDivmod::make(s.out_w), FastDivmod::make(s.out_h), pixels,
            (pixels + chunk_length - 1) / chunk_length, chunk_length};
  }

  int blocks() const { return chunks * s.channels; }
  int64_t partial_count() const { return int64_t(s.channels) * s.kpg * kTaps * chunks; }

  PYCNN_HOST_DEVICE __forceinline__ void block_range(int block, int& c, int& chunk, int& begin,
                                                     int& end) const {
    c = block / chunks;
    chunk = block - c * chunks;
    begin = chunk * chunk_length;
    end = begin + chunk_length < pixels ? begin + chunk_length : pixels;
  }

  // acc[r * K + q] += grad_output[n, k, oh, ow] * input[n, c, ih, iw] for
  // pixel p's taps inside the input.
  PYCNN_HOST_DEVICE __forceinline__ void accumulate(int p, int c, int k, acc_t* acc) const {
    int n, y, x, rest;
    div_w.divmod(p, rest, x);
    div_h.divmod(rest, n, y);
    const acc_t g = static_cast<acc_t>(grad_output[go_s.at(n, k, y, x)]);
    const scalar_t* plane = input + n * in_s.n + c * in_s.c;
    const int h0 = y * s.stride_h - s.pad_h, w0 = x * s.stride_w - s.pad_w;
#pragma unroll
    for (int r = 0; r < K; ++r) {
      const int ih = h0 + r * s.dil_h;
      if (unsigned(ih) >= unsigned(s.in_h)) continue;
#pragma unroll
      for (int q = 0; q < K; ++q) {
        const int iw = w0 + q * s.dil_w;
        if (unsigned(iw) < unsigned(s.in_w))
          acc[r * K + q] += g * static_cast<acc_t>(plane[ih * in_s.h + iw * in_s.w]);
      }
    }
  }

  PYCNN_HOST_DEVICE __forceinline__ void store_partial(int chunk, int k, int tap, acc_t sum) const {
    partial[(int64_t(k) * kTaps + tap) * chunks + chunk] = sum;
  }
};

// Pass 2's store: grad_weight (contiguous) element e = k * K * K + tap.
template <typename scalar_t>
struct StoreWeightGrad {
  scalar_t* grad_weight;
  template <typename acc_t>
  PYCNN_HOST_DEVICE void store(int64_t e, acc_t sum) const {
    grad_weight[e] = static_cast<scalar_t>(sum);
  }
};

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = kThreadsPerBlock / kWarpSize;

#if defined(__CUDACC__)
template <class Op>
__global__ void __launch_bounds__(kThreadsPerBlock) depthwise_weight_grad_kernel(const Op op) {
  using acc_t = typename Op::acc_t;
  constexpr int kTaps = Op::kTaps;
  __shared__ acc_t warp_sums[kWarpsPerBlock][kTaps];
  int c, chunk, begin, end;
  op.block_range(blockIdx.x, c, chunk, begin, end);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (int j = 0; j < op.s.kpg; ++j) {
    const int k = c * op.s.kpg + j;
    acc_t acc[kTaps];
#pragma unroll
    for (int t = 0; t < kTaps; ++t) acc[t] = acc_t(0);
    for (int p = begin + threadIdx.x; p < end; p += kThreadsPerBlock) op.accumulate(p, c, k, acc);
#pragma unroll
    for (int t = 0; t < kTaps; ++t) {
      // A butterfly: every lane ends with the same sum, in a fixed order.
#pragma unroll
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], offset);
    }
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < kTaps; ++t) warp_sums[warp][t] = acc[t];
    }
    __syncthreads();
    if (threadIdx.x < kTaps) {
      acc_t sum = acc_t(0);
#pragma unroll
      for (int w = 0; w < kWarpsPerBlock; ++w) sum += warp_sums[w][threadIdx.x];
      op.store_partial(chunk, k, threadIdx.x, sum);
    }
    __syncthreads();  // warp_sums is rewritten for the next channel
  }
}
#endif

}  // namespace gpu
}  // namespace pycnn
