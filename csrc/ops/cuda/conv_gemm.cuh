// conv2d's three products as implicit GEMMs for the pipelined kernels of
// igemm_block.cuh (tensor-core and FFMA).  A "Gemm" here says, per thread
// block, which tile of which product it computes, which global elements
// each thread copies into the shared-memory stages (the Producer), and where
// each finished element goes (the epilogue sink).  The block code and the
// maths (mma.sync or FFMA) know nothing of convolutions.
//
// ConvGemm: forward and grad_input, both "activation x weights":
//   C[m, n] = sum over k of A[m, k] B[n, k], per group, where
//   m = a pixel (img, qh, qw) of a pixel grid, n = an output channel of the
//   product, k = (tap ir, is; channel c) with c fastest.  A[m, k] is the
//   activation at source row y = qh * mul_h + o0_h + ir * od_h (x likewise;
//   zero outside the source) and B[n, k] the weight at tap
//   (r0 + ir * rstep, s0 + is * sstep).
//     forward:    source = input, grid = the output pixels, mul = stride,
//                 o0 = -pad, od = dilation, every tap;
//     grad_input: source = grad_output, one product per stride phase
//                 (ph, pw) (a ConvPhase each, precomputed on the host):
//                 grid = the input pixels (qh * stride_h + ph, ..),
//                 taps = those r with (ph + pad - r * dilation) divisible by
//                 the stride (an arithmetic progression), mul = 1,
//                 o0 = (ph + pad - r0 * dilation) / stride,
//                 od = -rstep * dilation / stride.  A phase without taps
//                 has K = 0 and writes zeros.
// WgradGemm: grad_weight, C[m, n] = sum over pixels p of A[p, m] B[p, n],
//   m = an output channel, n = (tap, c) with c fastest, p = (img, oh, ow),
//   K split into ranges whose partial sums go to a float workspace, added
//   later in a fixed order (conv2d_pack.cuh's WgradFinalize).
//
// All strides are in elements.  Every index and offset is 32-bit: the host
// chooses these kernels only when every element they may touch lies below
// 2^31 (conv_fits_int32).  Offsets are formed in uint32_t, wrapping: a row
// of the padding (a negative coordinate) may wrap, but it is never read, and
// every offset that is read is exact.  Granules are kV consecutive elements along the operand's
// contiguous dimension (channels); the host guarantees that a granule never
// straddles a tap, a group or a tensor's end (channel counts padded to kV).
#pragma once

#include <cstdint>
#include <type_traits>

#include "../activation.h"
#include "cuda_common.cuh"
#include "fast_divmod.cuh"
#include "mma_ops.cuh"

namespace pycnn {
namespace gpu {

// Far outside any source: a row with no pixel gets this coordinate so that
// its bounds test fails without a separate flag.
constexpr int kNoPixel = -(1 << 29);

PYCNN_HOST_DEVICE __forceinline__ bool inside(int v, int size) {
  return static_cast<unsigned>(v) < static_cast<unsigned>(size);
}

PYCNN_HOST_DEVICE __forceinline__ int gcd_int(int a, int b) {
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// ---------------------------------------------------------------- forward and grad_input

// One product of a ConvGemm: the forward's only one, or one stride phase of
// grad_input.  Precomputed on the host, read by the kernels from their
// parameters (constant memory), so that none of it occupies registers.
struct ConvPhase {
  int pixels;                  // M: batch * qh * qw
  FastDivmod div_qw, div_qh;   // m -> (img, qh, qw)
  int taps_h, taps_w;
  int mul_h, mul_w, o0_h, o0_w, od_h, od_w;  // source coordinates
  int r0, s0, rstep, sstep;                  // weight taps
  int e_mul_h, e_mul_w, e_add_h, e_add_w;    // output coordinates
};

constexpr int kMaxConvPhases = 16;  // grad_input with stride up to 4 x 4

template <typename T>
struct ConvGemmParams {
  const T* a;                                  // activations (img, y, x, channel)
  uint32_t a_img, a_row, a_pix, a_c, a_group;  // a_group: offset of a group's channel 0
  int a_h, a_w;
  const T* b;                                  // weights (n, channel, r, s) of group 0
  uint32_t b_n, b_c, b_r, b_s, b_group;
  T* out;                                      // (img, y, x, n)
  uint32_t o_img, o_row, o_pix, o_c, o_group;
  const T* bias;                               // forward only; null when none
  uint32_t bias_stride;
  bool pair_stores;  // out channels contiguous and aligned: two at a time
  bool relu;         // forward of conv2d_relu: max(v, 0) after the bias
  int n_size;        // N: output channels per group (forward), input channels (grad_input)
  int k_channels;    // channels per tap in K (padded to a whole granule)
  int num_phases;
  ConvPhase phase[kMaxConvPhases];
};

// The tap progression of one stride phase of grad_input along one axis.
struct PhaseTaps {
  int pixels;  // grid positions of the phase: ceil((size - phase) / stride)
  int first, step, count;
  int o0, od;
};

PYCNN_HOST_DEVICE inline PhaseTaps phase_taps(int phase, int size, int kernel, int stride, int pad,
                                             int dil) {
  PhaseTaps t;
  t.pixels = (size - phase + stride - 1) / stride;
  t.step = stride / gcd_int(stride, dil);
  t.first = -1;
  for (int r = 0; r < t.step && r < kernel; ++r) {
    if ((phase + pad - r * dil) % stride == 0) {
      t.first = r;
      break;
    }
  }
  t.count = t.first < 0 ? 0 : (kernel - 1 - t.first) / t.step + 1;
  t.o0 = t.first < 0 ? 0 : (phase + pad - t.first * dil) / stride;
  t.od = -(t.step * dil) / stride;
  return t;
}

// The forward's one product: output pixels, every tap.
PYCNN_HOST_DEVICE inline ConvPhase forward_phase(int batch, int out_h, int out_w, int kernel_h,
                                                 int kernel_w, int stride_h, int stride_w, int pad_h,
                                                 int pad_w, int dil_h, int dil_w) {
  ConvPhase ph;
  ph.pixels = batch * out_h * out_w;
  ph.div_qw = FastDivmod::make(out_w);
  ph.div_qh = FastDivmod::make(out_h);
  ph.taps_h = kernel_h, ph.taps_w = kernel_w;
  ph.mul_h = stride_h, ph.mul_w = stride_w;
  ph.o0_h = -pad_h, ph.o0_w = -pad_w;
  ph.od_h = dil_h, ph.od_w = dil_w;
  ph.r0 = 0, ph.s0 = 0, ph.rstep = 1, ph.sstep = 1;
  ph.e_mul_h = 1, ph.e_mul_w = 1, ph.e_add_h = 0, ph.e_add_w = 0;
  return ph;
}

// Phase (ph, pw) of grad_input: input pixels (qh * stride_h + ph, ..).
PYCNN_HOST_DEVICE inline ConvPhase input_grad_phase(int ph, int pw, int batch, int in_h, int in_w,
                                                    int kernel_h, int kernel_w, int stride_h,
                                                    int stride_w, int pad_h, int pad_w, int dil_h,
                                                    int dil_w) {
  const PhaseTaps th = phase_taps(ph, in_h, kernel_h, stride_h, pad_h, dil_h);
  const PhaseTaps tw = phase_taps(pw, in_w, kernel_w, stride_w, pad_w, dil_w);
  ConvPhase p;
  p.pixels = batch * th.pixels * tw.pixels;
  p.div_qw = FastDivmod::make(tw.pixels > 0 ? tw.pixels : 1);
  p.div_qh = FastDivmod::make(th.pixels > 0 ? th.pixels : 1);
  const bool any = th.count > 0 && tw.count > 0;
  p.taps_h = any ? th.count : 0, p.taps_w = any ? tw.count : 0;
  p.mul_h = 1, p.mul_w = 1;
  p.o0_h = th.o0, p.o0_w = tw.o0;
  p.od_h = th.od, p.od_w = tw.od;
  p.r0 = th.first, p.s0 = tw.first, p.rstep = th.step, p.sstep = tw.step;
  p.e_mul_h = stride_h, p.e_mul_w = stride_w, p.e_add_h = ph, p.e_add_w = pw;
  return p;
}

// What one thread block of a ConvGemm computes (uniform over the block).
struct ConvTile {
  bool active;
  int group, phase, m0, n0;
  int k_steps;
};

template <typename T>
PYCNN_HOST_DEVICE inline ConvTile make_conv_tile(const ConvGemmParams<T>& p, int bx, int by,
                                                 int bz, int bm, int bn, int bk) {
  ConvTile t;
  t.group = bz / p.num_phases;
  t.phase = bz - t.group * p.num_phases;
  const ConvPhase& ph = p.phase[t.phase];
  t.m0 = bx * bm;
  t.n0 = by * bn;
  t.active = t.m0 < ph.pixels;
  const int64_t k_total = int64_t(ph.taps_h) * ph.taps_w * p.k_channels;
  t.k_steps = static_cast<int>((k_total + bk - 1) / bk);
  return t;
}

PYCNN_HOST_DEVICE __forceinline__ void decode_pixel(const ConvPhase& ph, int m, int& img, int& qh,
                                                    int& qw) {
  int rows;
  ph.div_qw.divmod(m, rows, qw);
  ph.div_qh.divmod(rows, img, qh);
}

// The copies of one thread into the A (activations) and B (weights) tiles
// of a stage.  Both tiles are K-contiguous with kCols granule columns per
// row; thread tid owns column tid % kCols of rows tid / kCols + i kRowStep,
// so one K position (ir, is, c) serves all its rows of both tiles.
template <typename T, class Math, class ATile, class BTile>
struct ConvProducer {
  static constexpr int kV = Math::kV;
  static constexpr int kCols = Math::BK / kV;
  static constexpr int kRowStep = Math::kThreads / kCols;
  static constexpr int kRowsA = Math::BM / kRowStep;
  static constexpr int kRowsB = Math::BN / kRowStep;
  static_assert(Math::kThreads % kCols == 0 && Math::BM % kRowStep == 0 &&
                    Math::BN % kRowStep == 0,
                "the threads must tile both operands exactly");

  int c, ir, is;  // this thread's K position: channel, tap
  uint32_t a_off[kRowsA];
  int a_y[kRowsA], a_x[kRowsA];
  uint32_t b_off[kRowsB];
  bool b_ok[kRowsB];

  PYCNN_HOST_DEVICE __forceinline__ void normalize(const ConvGemmParams<T>& p, const ConvTile& t) {
    while (c >= p.k_channels) {
      c -= p.k_channels;
      if (++is == p.phase[t.phase].taps_w) {
        is = 0;
        ++ir;
      }
    }
  }

  PYCNN_HOST_DEVICE __forceinline__ void begin(const ConvGemmParams<T>& p, const ConvTile& t,
                                               int tid) {
    const ConvPhase& ph = p.phase[t.phase];
    const int col = tid % kCols;
    c = col * kV, ir = 0, is = 0;
    normalize(p, t);
#pragma unroll
    for (int i = 0; i < kRowsA; ++i) {
      const int row = tid / kCols + i * kRowStep;
      const int m = t.m0 + row;
      a_off[i] = 0, a_y[i] = kNoPixel, a_x[i] = kNoPixel;
      if (m < ph.pixels) {
        int img, qh, qw;
        decode_pixel(ph, m, img, qh, qw);
        a_y[i] = qh * ph.mul_h + ph.o0_h;
        a_x[i] = qw * ph.mul_w + ph.o0_w;
        a_off[i] = uint32_t(img) * p.a_img + uint32_t(t.group) * p.a_group +
                   uint32_t(a_y[i]) * p.a_row + uint32_t(a_x[i]) * p.a_pix;
      }
    }
#pragma unroll
    for (int j = 0; j < kRowsB; ++j) {
      const int row = tid / kCols + j * kRowStep;
      const int n = t.n0 + row;
      b_ok[j] = n < p.n_size;
      b_off[j] = uint32_t(t.group) * p.b_group + uint32_t(n) * p.b_n;
    }
  }

  template <class Copier>
  PYCNN_HOST_DEVICE __forceinline__ void load(const Copier& cp, int tid, uint8_t* a_stage,
                                              uint8_t* b_stage, const ConvGemmParams<T>& p,
                                              const ConvTile& t) const {
    const ConvPhase& ph = p.phase[t.phase];
    const bool k_ok = ir < ph.taps_h;
    const int dy = ir * ph.od_h, dx = is * ph.od_w;
    const uint32_t a_delta = uint32_t(dy) * p.a_row + uint32_t(dx) * p.a_pix + uint32_t(c) * p.a_c;
#pragma unroll
    for (int i = 0; i < kRowsA; ++i) {
      const bool ok = k_ok && inside(a_y[i] + dy, p.a_h) && inside(a_x[i] + dx, p.a_w);
      const int smem = ATile::offset(tid / kCols + i * kRowStep, tid % kCols);
      cp.template copy<Math::kCopyBytes>(tid, a_stage + smem, ok ? p.a + (a_off[i] + a_delta) : p.a, ok);
    }
    const uint32_t b_delta = uint32_t(ph.r0 + ir * ph.rstep) * p.b_r +
                             uint32_t(ph.s0 + is * ph.sstep) * p.b_s + uint32_t(c) * p.b_c;
#pragma unroll
    for (int j = 0; j < kRowsB; ++j) {
      const bool ok = k_ok && b_ok[j];
      const int smem = BTile::offset(tid / kCols + j * kRowStep, tid % kCols);
      cp.template copy<Math::kCopyBytes>(tid, b_stage + smem, ok ? p.b + (b_off[j] + b_delta) : p.b, ok);
    }
  }

  PYCNN_HOST_DEVICE __forceinline__ void advance(const ConvGemmParams<T>& p, const ConvTile& t) {
    c += Math::BK;
    normalize(p, t);
  }
};

// The FFMA kernels' copies (4-byte elements, any strides): thread tid owns
// one row (a pixel of A, a weight row of B) and kPer consecutive K elements
// of it, each with its own tap (a group of them may cross into the next tap
// when the channel count is not a multiple of kPer).  Few rows per thread
// keep the per-thread state small.
template <typename T, class Math, class ATile, class BTile>
struct SimtConvProducer {
  static constexpr int BK = Math::BK;
  static constexpr int kPerA = Math::BM * BK / Math::kThreads;
  static constexpr int kPerB = Math::BN * BK / Math::kThreads;
  static constexpr int kThreadsPerRowA = BK / kPerA, kThreadsPerRowB = BK / kPerB;
  static_assert(kPerA * Math::kThreads == Math::BM * BK && kPerB * Math::kThreads == Math::BN * BK &&
                    BK % kPerA == 0 && BK % kPerB == 0,
                "the threads must tile both operands exactly");

  struct KPos {
    int c, is, ir;
  };
  KPos ka, kb;  // K position of the thread's first A and B element
  uint32_t a_off, b_off;
  int a_y, a_x;
  bool b_ok;

  PYCNN_HOST_DEVICE static __forceinline__ void normalize(const ConvGemmParams<T>& p,
                                                          const ConvPhase& ph, KPos& k) {
    while (k.c >= p.k_channels) {
      k.c -= p.k_channels;
      if (++k.is == ph.taps_w) {
        k.is = 0;
        ++k.ir;
      }
    }
  }

  PYCNN_HOST_DEVICE static __forceinline__ void next(const ConvGemmParams<T>& p, const ConvPhase& ph,
                                                     KPos& k) {
    if (++k.c == p.k_channels) {
      k.c = 0;
      if (++k.is == ph.taps_w) {
        k.is = 0;
        ++k.ir;
      }
    }
  }

  PYCNN_HOST_DEVICE __forceinline__ void begin(const ConvGemmParams<T>& p, const ConvTile& t,
                                               int tid) {
    const ConvPhase& ph = p.phase[t.phase];
    ka = {(tid % kThreadsPerRowA) * kPerA, 0, 0};
    kb = {(tid % kThreadsPerRowB) * kPerB, 0, 0};
    normalize(p, ph, ka);
    normalize(p, ph, kb);
    const int m = t.m0 + tid / kThreadsPerRowA;
    a_off = 0, a_y = kNoPixel, a_x = kNoPixel;
    if (m < ph.pixels) {
      int img, qh, qw;
      decode_pixel(ph, m, img, qh, qw);
      a_y = qh * ph.mul_h + ph.o0_h;
      a_x = qw * ph.mul_w + ph.o0_w;
      a_off = uint32_t(img) * p.a_img + uint32_t(t.group) * p.a_group + uint32_t(a_y) * p.a_row +
              uint32_t(a_x) * p.a_pix;
    }
    const int n = t.n0 + tid / kThreadsPerRowB;
    b_ok = n < p.n_size;
    b_off = uint32_t(t.group) * p.b_group + uint32_t(n) * p.b_n;
  }

  template <class Copier>
  PYCNN_HOST_DEVICE __forceinline__ void load(const Copier& cp, int tid, uint8_t* a_stage,
                                              uint8_t* b_stage, const ConvGemmParams<T>& p,
                                              const ConvTile& t) const {
    const ConvPhase& ph = p.phase[t.phase];
    const int row_a = tid / kThreadsPerRowA, col_a = (tid % kThreadsPerRowA) * kPerA;
    if (ka.c + kPerA <= p.k_channels) {
      // The usual case: the thread's elements are channels of one tap.
      const int dy = ka.ir * ph.od_h, dx = ka.is * ph.od_w;
      const bool ok = ka.ir < ph.taps_h && inside(a_y + dy, p.a_h) && inside(a_x + dx, p.a_w);
      const uint32_t off = a_off + uint32_t(dy) * p.a_row + uint32_t(dx) * p.a_pix + uint32_t(ka.c) * p.a_c;
#pragma unroll
      for (int j = 0; j < kPerA; ++j)
        cp.template copy<Math::kCopyBytes>(tid, a_stage + ATile::offset(row_a, col_a + j),
                                           ok ? p.a + (off + uint32_t(j) * p.a_c) : p.a, ok);
    } else {
      KPos k = ka;
#pragma unroll
      for (int j = 0; j < kPerA; ++j) {
        const int dy = k.ir * ph.od_h, dx = k.is * ph.od_w;
        const bool ok = k.ir < ph.taps_h && inside(a_y + dy, p.a_h) && inside(a_x + dx, p.a_w);
        const uint32_t off = a_off + uint32_t(dy) * p.a_row + uint32_t(dx) * p.a_pix + uint32_t(k.c) * p.a_c;
        cp.template copy<Math::kCopyBytes>(tid, a_stage + ATile::offset(row_a, col_a + j),
                                           ok ? p.a + off : p.a, ok);
        if (j + 1 < kPerA) next(p, ph, k);
      }
    }
    const int row_b = tid / kThreadsPerRowB, col_b = (tid % kThreadsPerRowB) * kPerB;
    if (kb.c + kPerB <= p.k_channels) {
      const bool ok = b_ok && kb.ir < ph.taps_h;
      const uint32_t off = b_off + uint32_t(ph.r0 + kb.ir * ph.rstep) * p.b_r +
                           uint32_t(ph.s0 + kb.is * ph.sstep) * p.b_s + uint32_t(kb.c) * p.b_c;
#pragma unroll
      for (int j = 0; j < kPerB; ++j)
        cp.template copy<Math::kCopyBytes>(tid, b_stage + BTile::offset(row_b, col_b + j),
                                           ok ? p.b + (off + uint32_t(j) * p.b_c) : p.b, ok);
    } else {
      KPos k = kb;
#pragma unroll
      for (int j = 0; j < kPerB; ++j) {
        const bool ok = b_ok && k.ir < ph.taps_h;
        const uint32_t off = b_off + uint32_t(ph.r0 + k.ir * ph.rstep) * p.b_r +
                             uint32_t(ph.s0 + k.is * ph.sstep) * p.b_s + uint32_t(k.c) * p.b_c;
        cp.template copy<Math::kCopyBytes>(tid, b_stage + BTile::offset(row_b, col_b + j),
                                           ok ? p.b + off : p.b, ok);
        if (j + 1 < kPerB) next(p, ph, k);
      }
    }
  }

  PYCNN_HOST_DEVICE __forceinline__ void advance(const ConvGemmParams<T>& p, const ConvTile& t) {
    const ConvPhase& ph = p.phase[t.phase];
    ka.c += BK;
    kb.c += BK;
    normalize(p, ph, ka);
    normalize(p, ph, kb);
  }
};

// Writes a thread's finished elements: rows are pixels of the tile's grid,
// columns channels of the group (pairs of neighbouring columns).
template <typename T>
struct ConvSink {
  const ConvGemmParams<T>& p;
  const ConvTile& t;

  struct Row {
    uint32_t offset;
    bool valid;
  };

  PYCNN_HOST_DEVICE __forceinline__ Row row(int r) const {
    const ConvPhase& ph = p.phase[t.phase];
    const int m = t.m0 + r;
    Row out{0, m < ph.pixels};
    if (out.valid) {
      int img, qh, qw;
      decode_pixel(ph, m, img, qh, qw);
      const int y = qh * ph.e_mul_h + ph.e_add_h, x = qw * ph.e_mul_w + ph.e_add_w;
      out.offset = uint32_t(img) * p.o_img + uint32_t(y) * p.o_row + uint32_t(x) * p.o_pix +
                   uint32_t(t.group) * p.o_group;
    }
    return out;
  }

  PYCNN_HOST_DEVICE __forceinline__ void pair(const Row& r, int col, float v0, float v1) const {
    const int n = t.n0 + col;
    if (!r.valid || n >= p.n_size) return;
    const bool second = n + 1 < p.n_size;
    if (p.bias != nullptr) {
      const uint32_t channel = uint32_t(t.group * p.n_size + n);
      v0 += static_cast<float>(p.bias[channel * p.bias_stride]);
      if (second) v1 += static_cast<float>(p.bias[(channel + 1) * p.bias_stride]);
    }
    if (p.relu) v0 = relu_value(v0), v1 = relu_value(v1);
    T* dst = p.out + (r.offset + uint32_t(n) * p.o_c);
    if (second && p.pair_stores) {
      store_pack<T, 2>(dst, Pack<T, 2>{{static_cast<T>(v0), static_cast<T>(v1)}});
    } else {
      dst[0] = static_cast<T>(v0);
      if (second) dst[p.o_c] = static_cast<T>(v1);
    }
  }
};

// ---------------------------------------------------------------- grad_weight

template <typename T>
struct WgradParams {
  const T* go;  // grad_output (img, oh, ow, channel)
  uint32_t go_img, go_row, go_pix, go_c, go_group;
  const T* in;  // input (img, y, x, channel)
  uint32_t in_img, in_row, in_pix, in_c, in_group;
  float* ws;    // [splits][groups][m_size][n_size]
  int groups;
  int m_size;      // output channels per group (padded to a granule)
  int n_size;      // taps * k_channels
  int k_channels;  // input channels per tap (padded to a granule)
  int kernel_w;
  int in_h, in_w, out_h, out_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int pixels;  // K: batch * out_h * out_w
  FastDivmod div_ow, div_ohw;
  int steps;            // ceil(pixels / BK)
  int steps_per_split;  // the splits cover the steps in order
  int splits;
};

struct WgradTile {
  bool active;
  int group, split, m0, n0;
  int p_begin, p_end;  // this split's pixels
  int k_steps;
};

template <typename T>
PYCNN_HOST_DEVICE inline WgradTile make_wgrad_tile(const WgradParams<T>& p, int bx, int by, int bz,
                                                   int bm, int bn, int bk) {
  WgradTile t;
  t.group = bz / p.splits;
  t.split = bz - t.group * p.splits;
  t.m0 = bx * bm;
  t.n0 = by * bn;
  const int first = t.split * p.steps_per_split;
  const int last = first + p.steps_per_split < p.steps ? first + p.steps_per_split : p.steps;
  t.k_steps = last > first ? last - first : 0;
  t.p_begin = first * bk;
  t.p_end = last * bk < p.pixels ? last * bk : p.pixels;
  t.active = true;  // an empty split still writes its zeros
  return t;
}

// Copies of one thread: A (grad_output) is M-contiguous, B (input)
// N-contiguous; rows of both tiles are pixels.  The thread owns one granule
// column of each (an output-channel granule of A; a (tap, channel) granule
// of B) and kRows consecutive rows, so that it decodes one pixel per step and
// steps to the next ones.
template <typename T, class Math, class ATile, class BTile>
struct WgradProducer {
  static constexpr int kV = Math::kV;
  static constexpr int kColsA = Math::BM / kV, kColsB = Math::BN / kV;
  static constexpr int kRowsA = Math::BK * kColsA / Math::kThreads;
  static constexpr int kRowsB = Math::BK * kColsB / Math::kThreads;
  static_assert(kRowsA * Math::kThreads == Math::BK * kColsA &&
                    kRowsB * Math::kThreads == Math::BK * kColsB && kRowsA >= 1 && kRowsB >= 1,
                "the threads must tile both operands exactly");

  int p0;  // first pixel of the current step
  uint32_t a_chan, b_chan;
  bool a_ok, b_ok;
  int b_dy, b_dx;

  struct Pixel {
    int img, oh, ow;
  };

  PYCNN_HOST_DEVICE __forceinline__ void begin(const WgradParams<T>& p, const WgradTile& t, int tid) {
    p0 = t.p_begin;
    const int col_a = tid % kColsA, col_b = tid % kColsB;
    const int m = t.m0 + col_a * kV;
    a_ok = m < p.m_size;
    a_chan = uint32_t(t.group) * p.go_group + uint32_t(m) * p.go_c;
    const int n = t.n0 + col_b * kV;
    b_ok = n < p.n_size;
    const int tap = b_ok ? n / p.k_channels : 0;
    const int c = b_ok ? n - tap * p.k_channels : 0;
    const int r = tap / p.kernel_w, s = tap - (tap / p.kernel_w) * p.kernel_w;
    b_dy = r * p.dil_h - p.pad_h;
    b_dx = s * p.dil_w - p.pad_w;
    b_chan = uint32_t(t.group) * p.in_group + uint32_t(c) * p.in_c;
  }

  PYCNN_HOST_DEVICE static __forceinline__ Pixel decode(const WgradParams<T>& p, int q) {
    Pixel px;
    int rest;
    p.div_ohw.divmod(q, px.img, rest);
    p.div_ow.divmod(rest, px.oh, px.ow);
    return px;
  }

  PYCNN_HOST_DEVICE static __forceinline__ void next(const WgradParams<T>& p, Pixel& px) {
    if (++px.ow == p.out_w) {
      px.ow = 0;
      if (++px.oh == p.out_h) {
        px.oh = 0;
        ++px.img;
      }
    }
  }

  template <class Copier>
  PYCNN_HOST_DEVICE __forceinline__ void load(const Copier& cp, int tid, uint8_t* a_stage,
                                              uint8_t* b_stage, const WgradParams<T>& p,
                                              const WgradTile& t) const {
    const int row_a = (tid / kColsA) * kRowsA;
    Pixel px = decode(p, p0 + row_a);
#pragma unroll
    for (int i = 0; i < kRowsA; ++i) {
      const bool ok = a_ok && p0 + row_a + i < t.p_end;
      const uint32_t off = uint32_t(px.img) * p.go_img + uint32_t(px.oh) * p.go_row +
                           uint32_t(px.ow) * p.go_pix + a_chan;
      const int smem = ATile::offset(row_a + i, tid % kColsA);
      cp.template copy<Math::kCopyBytes>(tid, a_stage + smem, ok ? p.go + off : p.go, ok);
      if (i + 1 < kRowsA) next(p, px);
    }
    const int row_b = (tid / kColsB) * kRowsB;
    px = decode(p, p0 + row_b);
#pragma unroll
    for (int j = 0; j < kRowsB; ++j) {
      const int y = px.oh * p.stride_h + b_dy, x = px.ow * p.stride_w + b_dx;
      const bool ok = b_ok && p0 + row_b + j < t.p_end && inside(y, p.in_h) && inside(x, p.in_w);
      const uint32_t off = uint32_t(px.img) * p.in_img + uint32_t(y) * p.in_row +
                           uint32_t(x) * p.in_pix + b_chan;
      const int smem = BTile::offset(row_b + j, tid % kColsB);
      cp.template copy<Math::kCopyBytes>(tid, b_stage + smem, ok ? p.in + off : p.in, ok);
      if (j + 1 < kRowsB) next(p, px);
    }
  }

  PYCNN_HOST_DEVICE __forceinline__ void advance(const WgradParams<T>&, const WgradTile&) {
    p0 += Math::BK;
  }
};

// Partial sums of a split into the workspace.
template <typename T>
struct WgradSink {
  const WgradParams<T>& p;
  const WgradTile& t;

  struct Row {
    uint32_t offset;
    bool valid;
  };

  PYCNN_HOST_DEVICE __forceinline__ Row row(int r) const {
    const int m = t.m0 + r;
    return Row{(uint32_t(t.split * p.groups + t.group) * uint32_t(p.m_size) + uint32_t(m)) *
                   uint32_t(p.n_size),
               m < p.m_size};
  }

  PYCNN_HOST_DEVICE __forceinline__ void pair(const Row& r, int col, float v0, float v1) const {
    const int n = t.n0 + col;
    if (!r.valid || n >= p.n_size) return;
    float* dst = p.ws + r.offset + n;
    if (n + 1 < p.n_size && (p.n_size & 1) == 0) {
      store_pack<float, 2>(dst, Pack<float, 2>{{v0, v1}});
    } else {
      dst[0] = v0;
      if (n + 1 < p.n_size) dst[1] = v1;
    }
  }
};

// The two kinds of product, as the block code sees them.
template <typename T>
struct ConvGemm {
  using Params = ConvGemmParams<T>;
  using Tile = ConvTile;
  using Sink = ConvSink<T>;
  static constexpr bool kKContiguous = true;
  template <class Math, class ATile, class BTile>
  using Producer = std::conditional_t<Math::kV == 1, SimtConvProducer<T, Math, ATile, BTile>,
                                      ConvProducer<T, Math, ATile, BTile>>;
  PYCNN_HOST_DEVICE static Tile tile(const Params& p, int bx, int by, int bz, int bm, int bn,
                                     int bk) {
    return make_conv_tile(p, bx, by, bz, bm, bn, bk);
  }
};

template <typename T>
struct WgradGemm {
  using Params = WgradParams<T>;
  using Tile = WgradTile;
  using Sink = WgradSink<T>;
  static constexpr bool kKContiguous = false;
  template <class Math, class ATile, class BTile>
  using Producer = WgradProducer<T, Math, ATile, BTile>;
  PYCNN_HOST_DEVICE static Tile tile(const Params& p, int bx, int by, int bz, int bm, int bn,
                                     int bk) {
    return make_wgrad_tile(p, bx, by, bz, bm, bn, bk);
  }
};

}  // namespace gpu
}  // namespace pycnn
