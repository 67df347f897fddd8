// Pooling at memory speed: the same arithmetic, rules and summation order as
// the reference functors (max_pool2d.cuh, avg_pool2d.cuh, adaptive_*.cuh),
// for the common case of a dense NCHW or dense channels_last tensor whose
// elements all lie below 2^31:
//   * int indices, the flat item decoded with FastDivmod (the reference
//     functors pay several 64-bit divisions per element);
//   * channels_last: one thread per pixel and 16 bytes of channels (8 half,
//     4 float), so that every load and store is a 16-byte vector and a warp
//     reads whole lines; the int64 indices as 16-byte vectors too;
//   * NCHW: one thread per element, consecutive threads along a row;
//   * backward in gather form (each input element sums the outputs whose
//     windows hold it, in window order): no atomics, no scatter, and every
//     element written once.
// Windows are walked tap by tap with bounds tests (dilation 1 needs no
// division); the few divisions left (a dilated window's first tap, the
// outputs covering an input) are 32-bit.
#pragma once

#include <ATen/AccumulateType.h>

#include <cstdint>
#include <limits>

#include "cuda_common.cuh"
#include "fast_divmod.cuh"

namespace pycnn {
namespace gpu {

// Item i of a dense tensor: channels_last items are (n, y, x, a run of kV
// channels starting at c), NCHW items single elements (plane n * C + c, y, x).
struct ItemLayout {
  bool channels_last;
  int channels, height, width;
  FastDivmod div_cv, div_w, div_h;  // channel vectors per pixel (channels_last), width, height

  static ItemLayout make(bool cl, int64_t channels, int64_t height, int64_t width, int v) {
    ItemLayout l;
    l.channels_last = cl;
    l.channels = int(channels), l.height = int(height), l.width = int(width);
    l.div_cv = FastDivmod::make(cl ? channels / v : 1);
    l.div_w = FastDivmod::make(width);
    l.div_h = FastDivmod::make(height);
    return l;
  }

  struct Item {
    int index;  // n (channels_last) or the plane n * C + c (NCHW)
    int y, x, c;
  };

  PYCNN_HOST_DEVICE __forceinline__ Item decode(int i, int v) const {
    Item it;
    int rest;
    if (channels_last) {
      int cv;
      div_cv.divmod(i, rest, cv);
      it.c = cv * v;
    } else {
      rest = i;
      it.c = 0;
    }
    div_w.divmod(rest, rest, it.x);
    div_h.divmod(rest, it.index, it.y);
    return it;
  }

  // Offset of (y, x) of the item's image / plane in a tensor of this
  // layout and channel count with spatial size h x w.
  PYCNN_HOST_DEVICE __forceinline__ int offset(const Item& it, int h, int w, int y, int x) const {
    return channels_last ? ((it.index * h + y) * w + x) * channels + it.c : (it.index * h + y) * w + x;
  }
};

struct PoolWindow32 {
  int kh, kw, sh, sw, ph, pw, dh, dw;
  FastDivmod div_sh, div_sw;
};

// valid_taps (shape.h) in int.
PYCNN_HOST_DEVICE __forceinline__ void taps32(int start, int in, int kernel, int dil, int& first,
                                              int& last) {
  if (dil == 1) {
    first = start < 0 ? -start : 0;
    last = in - start < kernel ? in - start : kernel;
  } else {
    first = start < 0 ? (-start + dil - 1) / dil : 0;
    last = (in - start + dil - 1) / dil;
    if (last > kernel) last = kernel;
  }
  if (first > last) first = last;
}

// covering_outputs (shape.h) in int: [first, last) of the outputs whose
// windows span input position i.
PYCNN_HOST_DEVICE __forceinline__ void covering32(int i, int out, int kernel, int stride,
                                                  const FastDivmod& div_stride, int pad, int dil,
                                                  int& first, int& last) {
  const int lo = i + pad - dil * (kernel - 1);  // first = ceil(lo / stride), at least 0
  first = lo <= 0 ? 0 : int(div_stride.div(uint32_t(lo + stride - 1)));
  const int hi = i + pad;  // last = floor(hi / stride) + 1 (hi >= 0)
  last = int(div_stride.div(uint32_t(hi))) + 1;
  if (last > out) last = out;
  if (first > last) first = last;
}

// kV values converted to T, stored as one vector.
template <typename T, int kV, typename A>
PYCNN_HOST_DEVICE __forceinline__ void store_values(T* p, const A (&v)[kV]) {
  Pack<T, kV> out;
#pragma unroll
  for (int j = 0; j < kV; ++j) out.v[j] = static_cast<T>(v[j]);
  store_pack<T, kV>(p, out);
}

// kV int64 indices as 16-byte vectors.
template <int kV>
PYCNN_HOST_DEVICE __forceinline__ void store_indices(int64_t* dst, const int64_t (&v)[kV]) {
  if constexpr (kV % 2 == 0) {
#pragma unroll
    for (int j = 0; j < kV; j += 2) store_pack<int64_t, 2>(dst + j, Pack<int64_t, 2>{{v[j], v[j + 1]}});
  } else {
    dst[0] = v[0];
  }
}

template <int kV>
PYCNN_HOST_DEVICE __forceinline__ void load_indices(const int64_t* src, int64_t (&v)[kV]) {
  if constexpr (kV % 2 == 0) {
#pragma unroll
    for (int j = 0; j < kV; j += 2) {
      const Pack<int64_t, 2> two = load_pack<int64_t, 2>(src + j);
      v[j] = two.v[0], v[j + 1] = two.v[1];
    }
  } else {
    v[0] = src[0];
  }
}

// The reference's rule: NaN wins (the last one), the first maximum among
// equals; an all -inf window reports its first element.
template <typename T, int kV>
struct MaxPoolForwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* input;
  T* output;
  int64_t* indices;  // laid out like output
  ItemLayout l;      // items over the output
  int in_h, in_w, out_h, out_w;
  PoolWindow32 w;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item o = l.decode(i, kV);
    const int h0 = o.y * w.sh - w.ph, w0 = o.x * w.sw - w.pw;
    int fh, lh, fw, lw;
    taps32(h0, in_h, w.kh, w.dh, fh, lh);
    taps32(w0, in_w, w.kw, w.dw, fw, lw);
    acc_t best[kV];
    int64_t best_at[kV];
    const int64_t first = int64_t(h0 + fh * w.dh) * in_w + (w0 + fw * w.dw);
#pragma unroll
    for (int j = 0; j < kV; ++j) best[j] = -std::numeric_limits<acc_t>::infinity(), best_at[j] = first;
    for (int kh = fh; kh < lh; ++kh) {
      const int ih = h0 + kh * w.dh;
      for (int kw = fw; kw < lw; ++kw) {
        const int iw = w0 + kw * w.dw;
        const Pack<T, kV> v = load_pack<T, kV>(input + l.offset(o, in_h, in_w, ih, iw));
#pragma unroll
        for (int j = 0; j < kV; ++j) {
          const acc_t x = static_cast<acc_t>(v.v[j]);
          if (replaces_max(x, best[j])) best[j] = x, best_at[j] = int64_t(ih) * in_w + iw;
        }
      }
    }
    const int at = l.offset(o, out_h, out_w, o.y, o.x);
    store_values<T, kV>(output + at, best);
    store_indices<kV>(indices + at, best_at);
  }
};

// Gathers, for each input element, the gradients of the outputs whose
// windows cover it and chose it (the reference's rule and order).
template <typename T, int kV>
struct MaxPoolBackwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* grad_output;
  const int64_t* indices;  // laid out like grad_output
  T* grad_input;
  ItemLayout l;  // items over grad_input
  int in_h, in_w, out_h, out_w;
  PoolWindow32 w;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item p = l.decode(i, kV);
    int foh, loh, fow, low;
    covering32(p.y, out_h, w.kh, w.sh, w.div_sh, w.ph, w.dh, foh, loh);
    covering32(p.x, out_w, w.kw, w.sw, w.div_sw, w.pw, w.dw, fow, low);
    const int64_t target = int64_t(p.y) * in_w + p.x;
    acc_t acc[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) acc[j] = acc_t(0);
    for (int oh = foh; oh < loh; ++oh) {
      for (int ow = fow; ow < low; ++ow) {
        const int at = l.offset(p, out_h, out_w, oh, ow);
        const Pack<T, kV> g = load_pack<T, kV>(grad_output + at);
        int64_t idx[kV];
        load_indices<kV>(indices + at, idx);
#pragma unroll
        for (int j = 0; j < kV; ++j)
          if (idx[j] == target) acc[j] += static_cast<acc_t>(g.v[j]);
      }
    }
    store_values<T, kV>(grad_input + l.offset(p, in_h, in_w, p.y, p.x), acc);
  }
};

// avg_pool_window (shape.h) in int.
struct AvgWindow32 {
  int begin, end, padded_len;
};
PYCNN_HOST_DEVICE __forceinline__ AvgWindow32 avg_window32(int o, int in, int kernel, int stride,
                                                           int pad) {
  int begin = o * stride - pad;
  int end = begin + kernel < in + pad ? begin + kernel : in + pad;
  const int padded_len = end - begin;
  begin = begin > 0 ? begin : 0;
  end = end < in ? end : in;
  return {begin, end, padded_len};
}

struct AvgOptions32 {
  bool count_include_pad;
  int divisor_override;  // 0: none
};

PYCNN_HOST_DEVICE __forceinline__ int avg_divisor32(const AvgWindow32& wh, const AvgWindow32& ww,
                                                    const AvgOptions32& opt) {
  if (opt.divisor_override != 0) return opt.divisor_override;
  if (opt.count_include_pad) return wh.padded_len * ww.padded_len;
  return (wh.end - wh.begin) * (ww.end - ww.begin);
}

template <typename T, int kV>
struct AvgPoolForwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* input;
  T* output;
  ItemLayout l;  // items over the output
  int in_h, in_w, out_h, out_w;
  PoolWindow32 w;
  AvgOptions32 opt;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item o = l.decode(i, kV);
    const AvgWindow32 wh = avg_window32(o.y, in_h, w.kh, w.sh, w.ph);
    const AvgWindow32 ww = avg_window32(o.x, in_w, w.kw, w.sw, w.pw);
    acc_t sum[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) sum[j] = acc_t(0);
    for (int ih = wh.begin; ih < wh.end; ++ih) {
      for (int iw = ww.begin; iw < ww.end; ++iw) {
        const Pack<T, kV> v = load_pack<T, kV>(input + l.offset(o, in_h, in_w, ih, iw));
#pragma unroll
        for (int j = 0; j < kV; ++j) sum[j] += static_cast<acc_t>(v.v[j]);
      }
    }
    const int divisor = avg_divisor32(wh, ww, opt);
    if (divisor != 0) {
#pragma unroll
      for (int j = 0; j < kV; ++j) sum[j] /= static_cast<acc_t>(divisor);
    }
    store_values<T, kV>(output + l.offset(o, out_h, out_w, o.y, o.x), sum);
  }
};

template <typename T, int kV>
struct AvgPoolBackwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* grad_output;
  T* grad_input;
  ItemLayout l;  // items over grad_input
  int in_h, in_w, out_h, out_w;
  PoolWindow32 w;
  AvgOptions32 opt;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item p = l.decode(i, kV);
    // A window covers p exactly when its unclipped span does (dilation 1).
    int foh, loh, fow, low;
    covering32(p.y, out_h, w.kh, w.sh, w.div_sh, w.ph, 1, foh, loh);
    covering32(p.x, out_w, w.kw, w.sw, w.div_sw, w.pw, 1, fow, low);
    acc_t acc[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) acc[j] = acc_t(0);
    for (int oh = foh; oh < loh; ++oh) {
      const AvgWindow32 wh = avg_window32(oh, in_h, w.kh, w.sh, w.ph);
      for (int ow = fow; ow < low; ++ow) {
        const AvgWindow32 ww = avg_window32(ow, in_w, w.kw, w.sw, w.pw);
        const int divisor = avg_divisor32(wh, ww, opt);
        const Pack<T, kV> g = load_pack<T, kV>(grad_output + l.offset(p, out_h, out_w, oh, ow));
#pragma unroll
        for (int j = 0; j < kV; ++j) {
          acc_t share = static_cast<acc_t>(g.v[j]);
          if (divisor != 0) share /= static_cast<acc_t>(divisor);
          acc[j] += share;
        }
      }
    }
    store_values<T, kV>(grad_input + l.offset(p, in_h, in_w, p.y, p.x), acc);
  }
};

// adaptive_start / adaptive_end (shape.h) in int (the host checks that
// out * in fits).
PYCNN_HOST_DEVICE __forceinline__ int adaptive_start32(int i, int out, int in) { return (i * in) / out; }
PYCNN_HOST_DEVICE __forceinline__ int adaptive_end32(int i, int out, int in) {
  return ((i + 1) * in + out - 1) / out;
}

template <typename T, int kV>
struct AdaptiveAvgForwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* input;
  T* output;
  ItemLayout l;  // items over the output
  int in_h, in_w, out_h, out_w;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item o = l.decode(i, kV);
    const int h0 = adaptive_start32(o.y, out_h, in_h), h1 = adaptive_end32(o.y, out_h, in_h);
    const int w0 = adaptive_start32(o.x, out_w, in_w), w1 = adaptive_end32(o.x, out_w, in_w);
    acc_t sum[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) sum[j] = acc_t(0);
    for (int ih = h0; ih < h1; ++ih) {
      for (int iw = w0; iw < w1; ++iw) {
        const Pack<T, kV> v = load_pack<T, kV>(input + l.offset(o, in_h, in_w, ih, iw));
#pragma unroll
        for (int j = 0; j < kV; ++j) sum[j] += static_cast<acc_t>(v.v[j]);
      }
    }
    const acc_t count = static_cast<acc_t>((h1 - h0) * (w1 - w0));
#pragma unroll
    for (int j = 0; j < kV; ++j) sum[j] = sum[j] / count;
    store_values<T, kV>(output + l.offset(o, out_h, out_w, o.y, o.x), sum);
  }
};

template <typename T, int kV>
struct AdaptiveAvgBackwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* grad_output;
  T* grad_input;
  ItemLayout l;  // items over grad_input
  int in_h, in_w, out_h, out_w;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item p = l.decode(i, kV);
    const int foh = adaptive_start32(p.y, in_h, out_h), loh = adaptive_end32(p.y, in_h, out_h);
    const int fow = adaptive_start32(p.x, in_w, out_w), low = adaptive_end32(p.x, in_w, out_w);
    acc_t acc[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) acc[j] = acc_t(0);
    for (int oh = foh; oh < loh; ++oh) {
      const int rows = adaptive_end32(oh, out_h, in_h) - adaptive_start32(oh, out_h, in_h);
      for (int ow = fow; ow < low; ++ow) {
        const int cols = adaptive_end32(ow, out_w, in_w) - adaptive_start32(ow, out_w, in_w);
        const Pack<T, kV> g = load_pack<T, kV>(grad_output + l.offset(p, out_h, out_w, oh, ow));
#pragma unroll
        for (int j = 0; j < kV; ++j) acc[j] += static_cast<acc_t>(g.v[j]) / static_cast<acc_t>(rows * cols);
      }
    }
    store_values<T, kV>(grad_input + l.offset(p, in_h, in_w, p.y, p.x), acc);
  }
};

template <typename T, int kV>
struct AdaptiveMaxForwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* input;
  T* output;
  int64_t* indices;
  ItemLayout l;  // items over the output
  int in_h, in_w, out_h, out_w;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item o = l.decode(i, kV);
    const int h0 = adaptive_start32(o.y, out_h, in_h), h1 = adaptive_end32(o.y, out_h, in_h);
    const int w0 = adaptive_start32(o.x, out_w, in_w), w1 = adaptive_end32(o.x, out_w, in_w);
    acc_t best[kV];
    int64_t best_at[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j)
      best[j] = -std::numeric_limits<acc_t>::infinity(), best_at[j] = int64_t(h0) * in_w + w0;
    for (int ih = h0; ih < h1; ++ih) {
      for (int iw = w0; iw < w1; ++iw) {
        const Pack<T, kV> v = load_pack<T, kV>(input + l.offset(o, in_h, in_w, ih, iw));
#pragma unroll
        for (int j = 0; j < kV; ++j) {
          const acc_t x = static_cast<acc_t>(v.v[j]);
          if (replaces_max(x, best[j])) best[j] = x, best_at[j] = int64_t(ih) * in_w + iw;
        }
      }
    }
    const int at = l.offset(o, out_h, out_w, o.y, o.x);
    store_values<T, kV>(output + at, best);
    store_indices<kV>(indices + at, best_at);
  }
};

template <typename T, int kV>
struct AdaptiveMaxBackwardFast {
  using acc_t = at::acc_type<T, true>;
  const T* grad_output;
  const int64_t* indices;
  T* grad_input;
  ItemLayout l;  // items over grad_input
  int in_h, in_w, out_h, out_w;

  PYCNN_HOST_DEVICE void operator()(int i) const {
    const ItemLayout::Item p = l.decode(i, kV);
    const int foh = adaptive_start32(p.y, in_h, out_h), loh = adaptive_end32(p.y, in_h, out_h);
    const int fow = adaptive_start32(p.x, in_w, out_w), low = adaptive_end32(p.x, in_w, out_w);
    const int64_t target = int64_t(p.y) * in_w + p.x;
    acc_t acc[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) acc[j] = acc_t(0);
    for (int oh = foh; oh < loh; ++oh) {
      for (int ow = fow; ow < low; ++ow) {
        const int at = l.offset(p, out_h, out_w, oh, ow);
        const Pack<T, kV> g = load_pack<T, kV>(grad_output + at);
        int64_t idx[kV];
        load_indices<kV>(indices + at, idx);
#pragma unroll
        for (int j = 0; j < kV; ++j)
          if (idx[j] == target) acc[j] += static_cast<acc_t>(g.v[j]);
      }
    }
    store_values<T, kV>(grad_input + l.offset(p, in_h, in_w, p.y, p.x), acc);
  }
};

}  // namespace gpu
}  // namespace pycnn
