// The contract between the pooling ops' CPU entry points (which own tensors,
// checks and threads) and their SIMD kernels, which are compiled once per
// instruction set (pool2d_generic.cpp, pool2d_avx2.cpp, pool2d_avx512.cpp)
// and chosen at run time.  Only plain data and function pointers cross it:
// no inline code may live here, because the ISA translation units include
// this header and an inline function compiled there with AVX-512 could be
// the copy the linker keeps for everyone.
//
// Layouts: "nchw" is a dense contiguous tensor, "nhwc" a dense channels_last
// one; the kernels index raw pointers accordingly.  Every flat index inside
// a plane must fit in int32 (callers check fits_pool_kernels).
#pragma once

#include <cstdint>

#include "cpu_features.h"

namespace pycnn {

// The geometry of one pooling call.  For adaptive pooling the window fields
// are unused (windows come from adaptive_start/adaptive_end), except when a
// caller turns an evenly dividing adaptive pool into a plain one.
struct PoolParams {
  int64_t batch, channels, in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  // avg_pool2d's divisor options; divisor_override 0 means none (as in shape.h).
  bool count_include_pad;
  int64_t divisor_override;
  // Hints for calls far larger than the caches (pool2d_cpu.h's
  // set_large_call_hints sets them): non-temporal stores for the outputs
  // (a plain store first reads each line it overwrites; max_nchw, max_nhwc
  // and the NCHW max backward), software prefetch of the input rows this
  // many output rows ahead (max_nchw; 0: none), and whether the input is
  // past the caches (max_nhwc then sweeps each wide pixel in one pass).
  bool stream_stores;
  int64_t prefetch_rows_ahead;
  bool input_past_caches;
};

// Kernels for one dtype and instruction set.  Each handles a range of rows
// [begin, end) so that the caller can split the work over threads; the
// comment says what a row is.  Backward kernels write every element of their
// grad_input rows (no pre-zeroing needed) and add contributions in the
// reference order, so results do not depend on the split.
template <typename T>
struct PoolKernels {
  // max_pool2d forward.  nchw rows: (plane, oh); nhwc rows: (n, oh).  The
  // indices (here and in adaptive_max_*) may be null: values only.
  void (*max_nchw)(const T* in, T* out, int64_t* indices, const PoolParams& p, int64_t begin,
                   int64_t end);
  void (*max_nhwc)(const T* in, T* out, int64_t* indices, const PoolParams& p, int64_t begin,
                   int64_t end);
  // avg_pool2d forward, same rows.
  void (*avg_nchw)(const T* in, T* out, const PoolParams& p, int64_t begin, int64_t end);
  void (*avg_nhwc)(const T* in, T* out, const PoolParams& p, int64_t begin, int64_t end);
  // avg_pool2d backward.  nchw rows: (plane, ih), with `scratch` holding
  // out_w elements; nhwc rows: (n, ih).
  void (*avg_backward_nchw)(const T* grad_out, T* grad_in, const PoolParams& p, int64_t begin,
                            int64_t end, T* scratch);
  void (*avg_backward_nhwc)(const T* grad_out, T* grad_in, const PoolParams& p, int64_t begin,
                            int64_t end);
  // Adaptive pooling forward.  nchw runs vectors across planes: rows are
  // planes (n, c), with `scratch` of plane_group_scratch_bytes, or null to go
  // one plane at a time; nhwc rows: (n, oh).
  void (*adaptive_max_nchw)(const T* in, T* out, int64_t* indices, const PoolParams& p,
                            int64_t begin, int64_t end, void* scratch);
  void (*adaptive_max_nhwc)(const T* in, T* out, int64_t* indices, const PoolParams& p,
                            int64_t begin, int64_t end);
  void (*adaptive_avg_nchw)(const T* in, T* out, const PoolParams& p, int64_t begin,
                            int64_t end, void* scratch);
  void (*adaptive_avg_nhwc)(const T* in, T* out, const PoolParams& p, int64_t begin,
                            int64_t end);
  // adaptive_avg_pool2d backward.  nchw rows: (plane, ih); nhwc rows: (n, ih).
  void (*adaptive_avg_backward_nchw)(const T* grad_out, T* grad_in, const PoolParams& p,
                                     int64_t begin, int64_t end);
  void (*adaptive_avg_backward_nhwc)(const T* grad_out, T* grad_in, const PoolParams& p,
                                     int64_t begin, int64_t end);
  // max_pool2d backward (and adaptive pooling turned plain), by gathering.
  // nchw rows: (plane, ih), for windows 2 wide at stride 2 along w that do
  // not overlap along h; nhwc rows: (n, ih).  *matches receives how many
  // (output, element) pairs matched: the rows' share of the output count
  // when every index names a tap of its own window.
  void (*max_backward_nchw)(const T* grad_out, const int64_t* indices, T* grad_in,
                            const PoolParams& p, int64_t begin, int64_t end, int64_t* matches);
  void (*max_backward_nhwc)(const T* grad_out, const int64_t* indices, T* grad_in,
                            const PoolParams& p, int64_t begin, int64_t end, int64_t* matches);
  // The same where windows tile the input exactly (tiles_exactly), nhwc,
  // rows (n, oh) of outputs; *matches -1 for an index outside int32.  Null
  // in the tables whose lanes type lacks it (kNarrowIndices).
  void (*max_backward_tiles_nhwc)(const T* grad_out, const int64_t* indices, T* grad_in,
                                  const PoolParams& p, int64_t begin, int64_t end,
                                  int64_t* matches);
};

// Bytes of scratch adaptive_{max,avg}_nchw use, for elements of `element_size`.
int64_t plane_group_scratch_bytes(const PoolParams& p, int64_t element_size);

// The kernels for the given instruction set (an ISA this build has no
// kernels for falls back to the next lower one).
template <typename T>
const PoolKernels<T>& pool_kernels(CpuIsa isa);
template <>
const PoolKernels<float>& pool_kernels<float>(CpuIsa isa);
template <>
const PoolKernels<double>& pool_kernels<double>(CpuIsa isa);

// One table per instruction set and dtype, each defined in its own
// translation unit with constant initialisation (no code runs at load time;
// C++20's constinit checks it, C++17 builds, torch 2.11's, do it unchecked).
#if __cplusplus >= 202002L
#define PYCNN_CONSTINIT constinit
#else
#define PYCNN_CONSTINIT
#endif
extern const PoolKernels<float> pool_kernels_generic_f32;
extern const PoolKernels<double> pool_kernels_generic_f64;
extern const PoolKernels<float> pool_kernels_avx2_f32;
extern const PoolKernels<double> pool_kernels_avx2_f64;
extern const PoolKernels<float> pool_kernels_avx512_f32;
extern const PoolKernels<double> pool_kernels_avx512_f64;

}  // namespace pycnn
