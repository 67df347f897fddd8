// Output-shape and window-index arithmetic for convolution and pooling.
//
// This is the single definition of these formulas for every backend: the
// argument checks, the CPU kernels and the CUDA kernels all include it, so
// a shape can never be computed two different ways.  Everything is int64_t:
// products of sizes overflow int32 on large tensors.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PYCNN_HOST_DEVICE __host__ __device__
#else
#define PYCNN_HOST_DEVICE
#endif

namespace pycnn {

PYCNN_HOST_DEVICE inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
PYCNN_HOST_DEVICE inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

// Floor division for a positive divisor (C++ '/' truncates toward zero).
PYCNN_HOST_DEVICE inline int64_t div_floor(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

PYCNN_HOST_DEVICE inline int64_t div_ceil(int64_t a, int64_t b) { return -div_floor(-a, b); }

// Extent of a dilated kernel: the distance from its first to last tap, plus one.
PYCNN_HOST_DEVICE inline int64_t dilated_extent(int64_t kernel, int64_t dilation) {
  return dilation * (kernel - 1) + 1;
}

// Length of a convolution's output along one dimension.  Callers must first
// check that the padded input is at least the dilated kernel's extent; the
// result is then >= 1.
PYCNN_HOST_DEVICE inline int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride,
                                                  int64_t pad, int64_t dilation) {
  return (in + 2 * pad - dilated_extent(kernel, dilation)) / stride + 1;
}

// Length of a pooling output along one dimension, torch's rule: with
// ceil_mode the last window may run past the input, but must start inside
// the input or its left padding.  The result may be < 1; callers reject that.
PYCNN_HOST_DEVICE inline int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride,
                                                  int64_t pad, int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilated_extent(kernel, dilation);
  int64_t out = div_floor(span + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Adaptive pooling: output cell i of `out` covers input [start, end) of `in`.
PYCNN_HOST_DEVICE inline int64_t adaptive_start(int64_t i, int64_t out, int64_t in) {
  return (i * in) / out;
}
PYCNN_HOST_DEVICE inline int64_t adaptive_end(int64_t i, int64_t out, int64_t in) {
  return ((i + 1) * in + out - 1) / out;
}

// Average-pool window along one dimension: the clipped input range
// [begin, end) that is summed, and `padded_len`, the window's length counting
// padding (but not past the padded input), which count_include_pad divides by.
struct AvgWindow {
  int64_t begin, end, padded_len;
};
PYCNN_HOST_DEVICE inline AvgWindow avg_pool_window(int64_t o, int64_t in, int64_t kernel,
                                                   int64_t stride, int64_t pad) {
  int64_t begin = o * stride - pad;
  int64_t end = min_i64(begin + kernel, in + pad);
  const int64_t padded_len = end - begin;
  begin = max_i64(begin, 0);
  end = min_i64(end, in);
  return {begin, end, padded_len};
}

// avg_pool2d's divisor, torch's rule: divisor_override when non-zero (0
// means none; the checks reject an explicit 0), else the window's area
// counting padding (count_include_pad) or only the input elements it covers.
PYCNN_HOST_DEVICE inline int64_t avg_pool_divisor(const AvgWindow& wh, const AvgWindow& ww,
                                                  bool count_include_pad,
                                                  int64_t divisor_override) {
  if (divisor_override != 0) return divisor_override;
  if (count_include_pad) return wh.padded_len * ww.padded_len;
  return (wh.end - wh.begin) * (ww.end - ww.begin);
}

// Taps of a strided, dilated window that land inside [0, in): the window
// for output o starts at o*stride - pad; tap k sits at start + k*dilation.
// Returns the first and one-past-last valid tap.
struct TapRange {
  int64_t first, last;
};
PYCNN_HOST_DEVICE inline TapRange valid_taps(int64_t start, int64_t in, int64_t kernel,
                                             int64_t dilation) {
  int64_t first = start < 0 ? div_ceil(-start, dilation) : 0;
  int64_t last = div_ceil(in - start, dilation);
  if (last > kernel) last = kernel;
  if (first > last) first = last;
  return {first, last};
}

// The outputs [begin, end) whose windows lie wholly inside the input, every
// tap valid: o*stride - pad >= 0 and o*stride - pad + dilation*(kernel-1) < in.
// Kernels run these without bounds checks; end == begin when there are none.
struct OutputSpan {
  int64_t begin, end;
};
PYCNN_HOST_DEVICE inline OutputSpan interior_outputs(int64_t out, int64_t in, int64_t kernel,
                                                     int64_t stride, int64_t pad,
                                                     int64_t dilation) {
  const int64_t begin = min_i64(out, div_ceil(pad, stride));
  const int64_t end = min_i64(out, div_floor(in - 1 + pad - dilation * (kernel - 1), stride) + 1);
  return {begin, max_i64(begin, end)};
}

// The most outputs whose windows can cover one input position: the length
// of the range covering_outputs returns, at most.
PYCNN_HOST_DEVICE inline int64_t max_covering_outputs(int64_t kernel, int64_t stride,
                                                      int64_t dilation) {
  return dilation * (kernel - 1) / stride + 1;
}

// For the gradient of a strided convolution: input position i receives from
// output positions o with o*stride - pad + k*dilation == i.  Returns the
// range [first, last) of outputs whose windows cover i (some taps may still
// miss i when dilation > 1 or stride > 1; callers test divisibility).
PYCNN_HOST_DEVICE inline TapRange covering_outputs(int64_t i, int64_t out, int64_t kernel,
                                                   int64_t stride, int64_t pad, int64_t dilation) {
  // o*stride <= i + pad  and  o*stride + dilation*(kernel-1) >= i + pad
  int64_t first = div_ceil(i + pad - dilation * (kernel - 1), stride);
  int64_t last = div_floor(i + pad, stride) + 1;
  if (first < 0) first = 0;
  if (last > out) last = out;
  if (first > last) first = last;
  return {first, last};
}

// Adaptive pooling's inverse: the output cells [first, last) whose windows
// contain input position i.  It is adaptive_start/adaptive_end with the
// roles of in and out swapped, and exact (every cell in the range covers i).
PYCNN_HOST_DEVICE inline TapRange adaptive_covering_outputs(int64_t i, int64_t in, int64_t out) {
  return {adaptive_start(i, in, out), adaptive_end(i, in, out)};
}

}  // namespace pycnn
