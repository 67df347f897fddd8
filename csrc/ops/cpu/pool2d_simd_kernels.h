// The pooling kernels, written once over a SIMD "lanes" type S and compiled
// once per instruction set: pool2d_generic.cpp, pool2d_avx2.cpp and
// pool2d_avx512.cpp each define their lanes types and then include this file
// under their own `#pragma GCC target`.  So that the copies never meet at
// link time, everything here has internal linkage (the anonymous namespace)
// and nothing here includes a header or uses a standard-library template:
// the including file includes <cstdint>, shape.h and pool2d_simd.h before it
// switches targets.
//
// Every kernel computes each output exactly as the reference loops in the
// ops' *_kernel.cpp files do: max pooling scans the window row by row and
// keeps the first maximum (a NaN always wins, so the last NaN is kept; an
// all -inf window reports its first valid element); sums run in the same
// order and are divided by the same divisor; gradients add each output's
// share in ascending output order.  All ISAs and layouts therefore agree bit
// for bit with the strided reference, whatever the thread split.
//
// What a lanes type S provides (L lanes of T; memory operations touch only
// lanes j < n, 1 <= n <= L, so the tails of rows need no scalar loop):
//   T, L, V (L values), I (L flat indices, int32 or int64), M (a lane mask)
//   V zero(), set1(T), add(V, V), div(V, V)
//   V load(p, n): p[j]        load_stride2(p, n): p[2j]
//   store(p, n, v)            store_index(p, n, i) (as int64)
//   kMaxSweepsPastCaches: whether max_nhwc_rows sweeps wide pixels in one pass
//     on inputs past the caches (else register blocks, as in the caches)
//   kStreams: whether S has stream(p, v), stream_index(p, i) (non-temporal
//     stores of a full vector to a boundary of its size, kStreamAlign) and
//     stream_fence()
//   add_to(p, n, v): p[j] += v[j]    add_to_stride2(p, n, v): p[2j] += v[j]
//   M better(v, best): v > best or v is NaN       V select(m, a, b), I select_index(m, a, b): m ? b : a
//   I index1(x): all lanes x     index_iota(step): lane j = j*step      index_add(I, I)
//   IndexElem: I's element type; load_index_elems(p[, n]), store_index_elems(p, i) (full vectors)
//   M index_equal(a, b, n), index64_equal(p, n, x): p[j] == x (both false in lanes >= n)
//   V add_where(m, acc, v): acc + v where m, else acc      int64_t count(m): lanes set
//   M lanes_between(lo, hi): lanes j with lo <= j < hi
//   V load_pairs(p, n): lane j = p[j/2]     M index64_equal_pairs(p, n, i): p[j/2] == i[j], j < n
//   kNarrowIndices: whether S has IndexTally, index_tally(), narrow_indices(ix, n, &tally)
//     (I of int32 from n int64), index_hit(i, pixel, n, &tally) (M: lanes j < n with
//     i[j] == pixel, counted), gather_pair_block(go, ix, first, &lo, &hi, &tally) (lane j of
//     lo:hi = go[j/2] where ix[j/2] == first + j, else 0, for 2L lanes) and
//     index_matches(tally) (the matches counted, or -1 for an index outside int32)
//   transpose(src, src_stride, rows, cols, dst, dst_stride): dst[c*dst_stride + r] =
//     src[r*src_stride + c] for r < rows, c < cols <= L (T-sized elements; L > 1 only);
//   transpose_tile(src, src_stride, rows, cols, V* column): the same into registers

namespace pycnn {
namespace {

// The unsigned integer of a size (no <type_traits> here; see the top).
template <int Bytes>
struct UintOf;
template <>
struct UintOf<4> {
  using type = uint32_t;
};
template <>
struct UintOf<8> {
  using type = uint64_t;
};

// Bitwise selects: data-dependent branches would mispredict on real data.
template <typename T>
inline T select_bits(bool take_b, T a, T b) {
  using U = typename UintOf<sizeof(T)>::type;
  U ua, ub;
  __builtin_memcpy(&ua, &a, sizeof(T));
  __builtin_memcpy(&ub, &b, sizeof(T));
  const U mask = U(0) - U(take_b);
  const U r = (ua & ~mask) | (ub & mask);
  T out;
  __builtin_memcpy(&out, &r, sizeof(T));
  return out;
}

// One lane of plain scalar code: the generic kernels, and the strides the
// vector kernels have no fast path for (gathers are slow on some CPUs).
template <typename Scalar>
struct ScalarLanes {
  using T = Scalar;
  static constexpr int64_t L = 1;
  static constexpr int kRegisterVectors = 4;
  using V = T;
  using I = int64_t;
  using M = bool;

  static V zero() { return T(0); }
  static V set1(T x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V div(V a, V b) { return a / b; }
  static V load(const T* p, int64_t) { return *p; }
  static V load_stride2(const T* p, int64_t) { return *p; }
  static void store(T* p, int64_t, V v) { *p = v; }
  static void store_index(int64_t* p, int64_t, I i) { *p = i; }
  static constexpr bool kNarrowIndices = false;
  static constexpr bool kMaxSweepsPastCaches = true;
  static constexpr bool kStreams = false;
  static void add_to(T* p, int64_t, V v) { *p += v; }
  static void add_to_stride2(T* p, int64_t, V v) { *p += v; }
  // Bitwise |, and selects rather than ifs: data-dependent branches
  // mispredict about half the time on real data.
  static M better(V v, V best) { return (v > best) | (v != v); }
  static V select(M m, V a, V b) { return select_bits(m, a, b); }
  static I select_index(M m, I a, I b) { return select_bits(m, a, b); }

  using IndexElem = int64_t;
  static I load_index_elems(const IndexElem* p) { return *p; }
  static I load_index_elems(const IndexElem* p, int64_t) { return *p; }
  static void store_index_elems(IndexElem* p, I i) { *p = i; }
  static M index_equal(I a, I b, int64_t) { return a == b; }
  static M index64_equal(const int64_t* p, int64_t, int64_t value) { return *p == value; }
  static V add_where(M m, V acc, V v) { return m ? acc + v : acc; }
  static int64_t count(M m) { return m; }
  static M lanes_between(int64_t lo, int64_t hi) { return lo <= 0 && 0 < hi; }
  static V load_pairs(const T* p, int64_t) { return *p; }
  static M index64_equal_pairs(const int64_t* p, int64_t, I i) { return *p == i; }
  static I index1(int64_t x) { return x; }
  static I index_iota(int64_t) { return 0; }
  static I index_add(I a, I b) { return a + b; }
};

template <typename T>
inline T negative_infinity() {
  return -static_cast<T>(__builtin_huge_val());
}

// The max kernels' indices may be null (max_pool2d without indices, for
// calls that record no graph): then only the values are written.  Offsets
// into them go through this, never through null + offset.
inline int64_t* offset_or_null(int64_t* indices, int64_t offset) {
  return indices != nullptr ? indices + offset : nullptr;
}

// The valid taps of one output's window: rows h + i*dh (i < nh), columns
// w + j*dw (j < nw), all inside the input.
struct Window {
  int64_t h, nh, dh, w, nw, dw;
};

inline TapRange taps_inside(int64_t start, int64_t in, int64_t kernel, int64_t dilation) {
  // valid_taps without its divisions in the usual undilated case.
  if (dilation == 1) return {min_i64(kernel, max_i64(0, -start)), min_i64(kernel, max_i64(0, in - start))};
  return valid_taps(start, in, kernel, dilation);
}

inline Window max_pool_window(const PoolParams& p, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  const TapRange th = taps_inside(h0, p.in_h, p.kernel_h, p.dilation_h);
  const TapRange tw = taps_inside(w0, p.in_w, p.kernel_w, p.dilation_w);
  return {h0 + th.first * p.dilation_h, th.last - th.first, p.dilation_h,
          w0 + tw.first * p.dilation_w, tw.last - tw.first, p.dilation_w};
}

inline AvgWindow avg_window_h(const PoolParams& p, int64_t oh) {
  return avg_pool_window(oh, p.in_h, p.kernel_h, p.stride_h, p.pad_h);
}
inline AvgWindow avg_window_w(const PoolParams& p, int64_t ow) {
  return avg_pool_window(ow, p.in_w, p.kernel_w, p.stride_w, p.pad_w);
}
inline int64_t avg_divisor(const PoolParams& p, const AvgWindow& wh, const AvgWindow& ww) {
  return avg_pool_divisor(wh, ww, p.count_include_pad, p.divisor_override);
}

// Window rules for the kernels that take any window shape: each gives an
// output's window, its divisor (for averages), and the output rows
// [first, last) whose windows may reach input rows [a, b).
struct MaxPoolRule {
  const PoolParams& p;
  Window window(int64_t oh, int64_t ow, int64_t* divisor) const {
    *divisor = 1;
    return max_pool_window(p, oh, ow);
  }
};

struct AvgPoolRule {
  const PoolParams& p;
  Window window(int64_t oh, int64_t ow, int64_t* divisor) const {
    const AvgWindow wh = avg_window_h(p, oh), ww = avg_window_w(p, ow);
    *divisor = avg_divisor(p, wh, ww);
    return {wh.begin, wh.end - wh.begin, 1, ww.begin, ww.end - ww.begin, 1};
  }
  TapRange rows_reaching(int64_t a, int64_t b) const {
    return {covering_outputs(a, p.out_h, p.kernel_h, p.stride_h, p.pad_h, 1).first,
            covering_outputs(b - 1, p.out_h, p.kernel_h, p.stride_h, p.pad_h, 1).last};
  }
  // Whether the windows tile the input exactly: each element in one window.
  bool tiles() const {
    return p.kernel_h == p.stride_h && p.kernel_w == p.stride_w && p.pad_h == 0 &&
           p.pad_w == 0 && p.in_h == p.out_h * p.kernel_h && p.in_w == p.out_w * p.kernel_w;
  }
};

// Adaptive windows, computed once per call (their divisions are not cheap)
// for up to kCachedWindows outputs along each dimension, else on demand.
constexpr int64_t kCachedWindows = 512;

struct AdaptiveRule {
  const PoolParams& p;
  bool cached;
  int32_t h_start[kCachedWindows], h_end[kCachedWindows];
  int32_t w_start[kCachedWindows], w_end[kCachedWindows];

  explicit AdaptiveRule(const PoolParams& params)
      : p(params), cached(params.out_h <= kCachedWindows && params.out_w <= kCachedWindows) {
    if (!cached) return;
    for (int64_t o = 0; o < p.out_h; ++o) {
      h_start[o] = static_cast<int32_t>(adaptive_start(o, p.out_h, p.in_h));
      h_end[o] = static_cast<int32_t>(adaptive_end(o, p.out_h, p.in_h));
    }
    for (int64_t o = 0; o < p.out_w; ++o) {
      w_start[o] = static_cast<int32_t>(adaptive_start(o, p.out_w, p.in_w));
      w_end[o] = static_cast<int32_t>(adaptive_end(o, p.out_w, p.in_w));
    }
  }
  int64_t rows_begin(int64_t oh) const { return cached ? h_start[oh] : adaptive_start(oh, p.out_h, p.in_h); }
  int64_t rows_end(int64_t oh) const { return cached ? h_end[oh] : adaptive_end(oh, p.out_h, p.in_h); }
  int64_t cols_begin(int64_t ow) const { return cached ? w_start[ow] : adaptive_start(ow, p.out_w, p.in_w); }
  int64_t cols_end(int64_t ow) const { return cached ? w_end[ow] : adaptive_end(ow, p.out_w, p.in_w); }
  Window window(int64_t oh, int64_t ow, int64_t* divisor) const {
    const int64_t h0 = rows_begin(oh), h1 = rows_end(oh), w0 = cols_begin(ow), w1 = cols_end(ow);
    *divisor = (h1 - h0) * (w1 - w0);
    return {h0, h1 - h0, 1, w0, w1 - w0, 1};
  }
  // Windows start and end in ascending order, so the rows reaching [a, b)
  // run from the first covering row a to the last covering row b - 1.
  TapRange rows_reaching(int64_t a, int64_t b) const {
    return {adaptive_covering_outputs(a, p.in_h, p.out_h).first,
            adaptive_covering_outputs(b - 1, p.in_h, p.out_h).last};
  }
  bool tiles() const { return p.in_h % p.out_h == 0 && p.in_w % p.out_w == 0; }
};

// Scalar versions of one output in the reference order, for the outputs at
// the edges of NCHW rows (whose windows are clipped).
template <typename T>
inline void max_one(const T* plane, int64_t in_w, const Window& win, T* out, int64_t* index) {
  int64_t best = win.h * in_w + win.w;
  T best_val = negative_infinity<T>();
  for (int64_t i = 0; i < win.nh; ++i) {
    const int64_t row = (win.h + i * win.dh) * in_w;
    for (int64_t j = 0; j < win.nw; ++j) {
      const int64_t pix = row + win.w + j * win.dw;
      const T v = plane[pix];
      const bool better = (v > best_val) | (v != v);
      best_val = better ? v : best_val;
      best = better ? pix : best;
    }
  }
  *out = best_val;
  if (index != nullptr) *index = best;
}

template <typename T>
inline T sum_one(const T* plane, int64_t in_w, const AvgWindow& wh, const AvgWindow& ww) {
  T sum = 0;
  for (int64_t ih = wh.begin; ih < wh.end; ++ih)
    for (int64_t iw = ww.begin; iw < ww.end; ++iw) sum += plane[ih * in_w + iw];
  return sum;
}

// Lane j reads p[j * STRIDE]: contiguous loads, or two loads and a deinterleave.
template <class S, int STRIDE>
inline typename S::V load_taps(const typename S::T* p, int64_t n) {
  static_assert(STRIDE == 1 || STRIDE == 2);
  if constexpr (STRIDE == 1) return S::load(p, n);
  else return S::load_stride2(p, n);
}

template <class S, int STRIDE>
inline void add_taps(typename S::T* p, int64_t n, typename S::V v) {
  static_assert(STRIDE == 1 || STRIDE == 2);
  if constexpr (STRIDE == 1) S::add_to(p, n, v);
  else S::add_to_stride2(p, n, v);
}

// Calls body.template operator()<Lanes, STRIDE>() with the stride as a
// constant where S has a fast path for it, and with one scalar lane (whose
// stride does not matter) where it has not.
template <class S, class Body>
inline void with_stride(int64_t stride, const Body& body) {
  if (stride == 1) body.template operator()<S, 1>();
  else if (stride == 2) body.template operator()<S, 2>();
  else body.template operator()<ScalarLanes<typename S::T>, 1>();
}

// ---------------------------------------------------------------- NCHW rows
// Vectors run along an output row; lane j is output ow + j, whose taps sit
// `stride_w` apart in the input row.  Outputs with clipped windows (at most
// a few at each end) take the scalar path.

// Asks the caches for the input rows the windows of output row r (plane,
// oh) read.  Each output row of a 2x2 max pool reads two input rows through
// stride-2 deinterleaving loads; in some runs on the development VM the
// hardware prefetcher alone held VGG pool1 to half the speed this gives
// (in others the two were even: pool2d_cpu.cpp, set_large_call_hints).
template <typename T>
inline void prefetch_window_rows(const T* in, const PoolParams& p, int64_t r) {
  const int64_t plane = r / p.out_h, oh = r % p.out_h;
  const int64_t h0 = max_i64(0, oh * p.stride_h - p.pad_h);
  const int64_t h1 = min_i64(p.in_h, oh * p.stride_h - p.pad_h + (p.kernel_h - 1) * p.dilation_h + 1);
  const T* base = in + plane * p.in_h * p.in_w;
  const char* first = reinterpret_cast<const char*>(base + h0 * p.in_w);
  const char* last = reinterpret_cast<const char*>(base + h1 * p.in_w);
  for (const char* q = first; q < last; q += 64) __builtin_prefetch(q, 0, 0);
}

// The alignment a non-temporal store of one vector needs: its size (the
// rows callers stream start on 64-byte lines, so every full vector of them
// streams, not only those on a line's first byte).
template <class S>
constexpr uintptr_t kStreamAlign = sizeof(typename S::V);

// A store of values, non-temporal under the same conditions as below.
template <class S>
inline void store_values(typename S::T* dst, int64_t n, typename S::V v, bool stream) {
  if constexpr (S::kStreams) {
    if (stream && n == S::L && (reinterpret_cast<uintptr_t>(dst) & (kStreamAlign<S> - 1)) == 0) {
      S::stream(dst, v);
      return;
    }
  }
  S::store(dst, n, v);
}

// Stores of a full vector's values and indices, non-temporal where the
// caller asked (PoolParams::stream_stores: outputs far larger than the
// caches, where a plain store first reads each line it will overwrite) and
// S can: full vectors on kStreamAlign boundaries.  Callers that stream end with
// S::stream_fence(), so the stores are visible when the threads join.
template <class S>
inline void store_values_and_indices(typename S::T* dst, int64_t* dst_index, int64_t n,
                                     typename S::V v, typename S::I i, bool stream) {
  if (dst_index == nullptr) return store_values<S>(dst, n, v, stream);
  if constexpr (S::kStreams) {
    const uintptr_t addresses = reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(dst_index);
    if (stream && n == S::L && (addresses & (kStreamAlign<S> - 1)) == 0) {
      S::stream(dst, v);
      S::stream_index(dst_index, i);
      return;
    }
  }
  S::store(dst, n, v);
  S::store_index(dst_index, n, i);
}

// Full output vectors per block in max_nchw_rows' long rows: 4 took VGG
// pool1 to 3.6-4.3 ms, 2 to 7.6, and 8 (with run-time indexing) slowed
// short rows by up to 30 %.
constexpr int kRowBlock = 4;

template <class S, int STRIDE>
void max_nchw_rows(const typename S::T* in, typename S::T* out, int64_t* indices,
                   const PoolParams& p, int64_t begin, int64_t end) {
  using T = typename S::T;
  using V = typename S::V;
  using I = typename S::I;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const OutputSpan inner =
      interior_outputs(p.out_w, p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  const I lane_offsets = S::index_iota(p.stride_w);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t plane = r / p.out_h, oh = r % p.out_h;
    const T* src = in + plane * in_plane;
    T* dst = out + plane * out_plane + oh * p.out_w;
    if (p.prefetch_rows_ahead > 0 && r + p.prefetch_rows_ahead < end)
      prefetch_window_rows(in, p, r + p.prefetch_rows_ahead);
    int64_t* dst_index = offset_or_null(indices, plane * out_plane + oh * p.out_w);
    for (int64_t ow = 0; ow < inner.begin; ++ow)
      max_one(src, p.in_w, max_pool_window(p, oh, ow), dst + ow, offset_or_null(dst_index, ow));
    const Window rows = max_pool_window(p, oh, inner.begin);
    // Long rows: kRowBlock full vectors at a time, each window row in turn
    // over the whole block, so that the input is read in runs of
    // kRowBlock * L taps per row rather than one vector per row in turn
    // (VGG pool1, 8x64x224x224 NCHW, 2 threads: 8.7 -> 3.6-4.3 ms; pool2
    // 3.1 -> 2.3-3.0; in cache it ran at 0.85 ns per output on one core
    // either way, from memory at 2.3 before).  Each lane still sees its taps
    // in window order: the same results.
    int64_t ow = inner.begin;
    for (; ow + kRowBlock * S::L <= inner.end; ow += kRowBlock * S::L) {
      V best[kRowBlock];
      I best_index[kRowBlock];
#pragma unroll
      for (int b = 0; b < kRowBlock; ++b) {
        best[b] = S::set1(negative_infinity<T>());
        best_index[b] = S::index_add(
            lane_offsets, S::index1(rows.h * p.in_w + (ow + b * S::L) * p.stride_w - p.pad_w));
      }
      for (int64_t i = 0; i < rows.nh; ++i) {
        const int64_t row = (rows.h + i * rows.dh) * p.in_w;
        for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
#pragma unroll
          for (int b = 0; b < kRowBlock; ++b) {
            const int64_t tap = row + (ow + b * S::L) * p.stride_w - p.pad_w + kw * p.dilation_w;
            const V v = load_taps<S, STRIDE>(src + tap, S::L);
            const typename S::M better = S::better(v, best[b]);
            best[b] = S::select(better, best[b], v);
            best_index[b] =
                S::select_index(better, best_index[b], S::index_add(lane_offsets, S::index1(tap)));
          }
        }
      }
#pragma unroll
      for (int b = 0; b < kRowBlock; ++b)
        store_values_and_indices<S>(dst + ow + b * S::L, offset_or_null(dst_index, ow + b * S::L),
                                    S::L, best[b], best_index[b], p.stream_stores);
    }
    for (; ow < inner.end; ow += S::L) {
      const int64_t n = min_i64(S::L, inner.end - ow);
      const int64_t w0 = ow * p.stride_w - p.pad_w;
      V best = S::set1(negative_infinity<T>());
      I best_index = S::index_add(lane_offsets, S::index1(rows.h * p.in_w + w0));
      for (int64_t i = 0; i < rows.nh; ++i) {
        const int64_t row = (rows.h + i * rows.dh) * p.in_w + w0;
        for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
          const int64_t tap = row + kw * p.dilation_w;
          const V v = load_taps<S, STRIDE>(src + tap, n);
          const typename S::M better = S::better(v, best);
          best = S::select(better, best, v);
          best_index =
              S::select_index(better, best_index, S::index_add(lane_offsets, S::index1(tap)));
        }
      }
      store_values_and_indices<S>(dst + ow, offset_or_null(dst_index, ow), n, best, best_index,
                                  p.stream_stores);
    }
    for (int64_t ow = inner.end; ow < p.out_w; ++ow)
      max_one(src, p.in_w, max_pool_window(p, oh, ow), dst + ow, offset_or_null(dst_index, ow));
  }
  if constexpr (S::kStreams) {
    if (p.stream_stores) S::stream_fence();
  }
}

template <class S, int STRIDE>
void avg_nchw_rows(const typename S::T* in, typename S::T* out, const PoolParams& p,
                   int64_t begin, int64_t end) {
  using T = typename S::T;
  using V = typename S::V;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const OutputSpan inner = interior_outputs(p.out_w, p.in_w, p.kernel_w, p.stride_w, p.pad_w, 1);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t plane = r / p.out_h, oh = r % p.out_h;
    const T* src = in + plane * in_plane;
    T* dst = out + plane * out_plane + oh * p.out_w;
    const AvgWindow wh = avg_window_h(p, oh);
    auto edge = [&](int64_t ow) {
      const AvgWindow ww = avg_window_w(p, ow);
      dst[ow] = sum_one(src, p.in_w, wh, ww) / static_cast<T>(avg_divisor(p, wh, ww));
    };
    for (int64_t ow = 0; ow < inner.begin; ++ow) edge(ow);
    if (inner.begin < inner.end) {
      // Interior windows are unclipped along w, so they share one divisor.
      const V divisor = S::set1(static_cast<T>(avg_divisor(p, wh, avg_window_w(p, inner.begin))));
      // Long rows in blocks, each window row over the block, as in
      // max_nchw_rows (VGG pool1's shape, 2 threads: 8.5 -> 4.5 ms, pool2's
      // 2.3 -> 1.9; shorter rows unchanged).  The same sums in the same order.
      int64_t ow = inner.begin;
      for (; ow + kRowBlock * S::L <= inner.end; ow += kRowBlock * S::L) {
        V sum[kRowBlock];
#pragma unroll
        for (int b = 0; b < kRowBlock; ++b) sum[b] = S::zero();
        for (int64_t ih = wh.begin; ih < wh.end; ++ih) {
          const T* row = src + ih * p.in_w + ow * p.stride_w - p.pad_w;
          for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
#pragma unroll
            for (int b = 0; b < kRowBlock; ++b)
              sum[b] = S::add(sum[b], load_taps<S, STRIDE>(row + b * S::L * p.stride_w + kw, S::L));
          }
        }
#pragma unroll
        for (int b = 0; b < kRowBlock; ++b) S::store(dst + ow + b * S::L, S::L, S::div(sum[b], divisor));
      }
      for (; ow < inner.end; ow += S::L) {
        const int64_t n = min_i64(S::L, inner.end - ow);
        const int64_t w0 = ow * p.stride_w - p.pad_w;
        V sum = S::zero();
        for (int64_t ih = wh.begin; ih < wh.end; ++ih) {
          const T* row = src + ih * p.in_w + w0;
          for (int64_t kw = 0; kw < p.kernel_w; ++kw)
            sum = S::add(sum, load_taps<S, STRIDE>(row + kw, n));
        }
        S::store(dst + ow, n, S::div(sum, divisor));
      }
    }
    for (int64_t ow = inner.end; ow < p.out_w; ++ow) edge(ow);
  }
}

// Rows (plane, ih) of grad_input: zero them, then add the share of every
// output whose window reaches them, in ascending output order.  Along a row,
// the outputs of the interior go by tap kw, from the last tap to the first,
// so that each input element still receives its outputs in ascending order.
template <class S, int STRIDE>
void avg_backward_nchw_rows(const typename S::T* grad_out, typename S::T* grad_in,
                            const PoolParams& p, int64_t begin, int64_t end,
                            typename S::T* shares) {
  using T = typename S::T;
  using V = typename S::V;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const OutputSpan inner = interior_outputs(p.out_w, p.in_w, p.kernel_w, p.stride_w, p.pad_w, 1);
  const AvgPoolRule rule{p};
  for (int64_t r = begin; r < end;) {
    const int64_t plane = r / p.in_h, a = r % p.in_h, b = min_i64(p.in_h, a + (end - r));
    r += b - a;
    T* g = grad_in + plane * in_plane;
    for (int64_t i = a * p.in_w; i < b * p.in_w; ++i) g[i] = 0;
    const TapRange reaching = rule.rows_reaching(a, b);
    for (int64_t oh = reaching.first; oh < reaching.last; ++oh) {
      const AvgWindow wh = avg_window_h(p, oh);
      const int64_t lo = max_i64(wh.begin, a), hi = min_i64(wh.end, b);
      if (lo >= hi) continue;
      const T* go = grad_out + plane * out_plane + oh * p.out_w;
      auto edge_share = [&](int64_t ow) {
        shares[ow] = go[ow] / static_cast<T>(avg_divisor(p, wh, avg_window_w(p, ow)));
      };
      for (int64_t ow = 0; ow < inner.begin; ++ow) edge_share(ow);
      if (inner.begin < inner.end) {
        const V divisor =
            S::set1(static_cast<T>(avg_divisor(p, wh, avg_window_w(p, inner.begin))));
        for (int64_t ow = inner.begin; ow < inner.end; ow += S::L) {
          const int64_t n = min_i64(S::L, inner.end - ow);
          S::store(shares + ow, n, S::div(S::load(go + ow, n), divisor));
        }
      }
      for (int64_t ow = inner.end; ow < p.out_w; ++ow) edge_share(ow);
      for (int64_t ih = lo; ih < hi; ++ih) {
        T* row = g + ih * p.in_w;
        auto edge_add = [&](int64_t ow) {
          const AvgWindow ww = avg_window_w(p, ow);
          for (int64_t iw = ww.begin; iw < ww.end; ++iw) row[iw] += shares[ow];
        };
        for (int64_t ow = 0; ow < inner.begin; ++ow) edge_add(ow);
        for (int64_t kw = p.kernel_w - 1; kw >= 0; --kw) {
          for (int64_t ow = inner.begin; ow < inner.end; ow += S::L) {
            const int64_t n = min_i64(S::L, inner.end - ow);
            add_taps<S, STRIDE>(row + ow * p.stride_w - p.pad_w + kw, n, S::load(shares + ow, n));
          }
        }
        for (int64_t ow = inner.end; ow < p.out_w; ++ow) edge_add(ow);
      }
    }
  }
}

// ---------------------------------------------------------------- NHWC rows
// Vectors run along channels, which are contiguous; a pixel's window is the
// same for all of them.  Pixels of up to S::kRegisterVectors vectors keep
// their accumulators in registers.  Wider ones either accumulate in the
// output row itself (in L1), each tap sweeping the pixel's channels in one
// forward run of up to kChannelBlock, or (inputs that fit the caches) go
// block by block of S::kRegisterVectors vectors in registers.
// Past the caches the single sweep wins: the hardware prefetchers keep up
// with streams that only move forward (VGG pool3, 25.7 MB, 1.2-1.3 ms swept
// against 1.7 by blocks); in the caches the blocks do (A/B in one process:
// AlexNet pool2 and pool5, VGG pool5 max 15-25 % faster; average pools of
// 256-2048 channels, ResNet's global ones and a 3x3 stride-2 one, 14-32 %).
// With AVX2 (4 vectors of 8 in registers) the max pool's blocks win past the
// caches too, where the buffered sweep's loads and stores of the running
// maxima and indices cost more (A/B on Zen 3, channels_last with indices:
// the ResNet stem pool 1.85 -> 1.28 ms, VGG pool1 7.5 -> 6.1, pool2 3.6 ->
// 2.4; average pools even): S::kMaxSweepsPastCaches says which.
constexpr int64_t kChannelBlock = 1024;

template <class S, int G, class Body>
inline void call_with_group(int64_t vectors, const Body& body) {
  if constexpr (G > S::kRegisterVectors) body.template operator()<0>();
  else if (vectors == G) body.template operator()<G>();
  else call_with_group<S, G + 1>(vectors, body);
}

// Calls body.template operator()<G>() with the number of vectors G of a
// pixel of `channels` where they fit in registers, else with G = 0.
template <class S, class Body>
inline void with_vectors(int64_t channels, const Body& body) {
  call_with_group<S, 1>((channels + S::L - 1) / S::L, body);
}

// Lanes in vector g of G over `channels` (only the last may be partial).
template <class S>
inline int64_t lanes_of(int g, int64_t channels) {
  return min_i64(S::L, channels - g * S::L);
}

// The `width` channels at `image` of a pixel `channels` wide.
template <class S, int G>
inline void max_pixel_registers(const typename S::T* image, int64_t in_w, int64_t channels,
                                int64_t width, const Window& win, typename S::T* dst,
                                int64_t* dst_index, bool stream) {
  using T = typename S::T;
  using V = typename S::V;
  using I = typename S::I;
  V best[G];
  I best_index[G];
  for (int g = 0; g < G; ++g) {
    best[g] = S::set1(negative_infinity<T>());
    best_index[g] = S::index1(win.h * in_w + win.w);
  }
  for (int64_t i = 0; i < win.nh; ++i) {
    const int64_t row = (win.h + i * win.dh) * in_w + win.w;
    for (int64_t j = 0; j < win.nw; ++j) {
      const int64_t pix = row + j * win.dw;
      const T* src = image + pix * channels;
      const I here = S::index1(pix);
      for (int g = 0; g < G; ++g) {
        const V v = S::load(src + g * S::L, lanes_of<S>(g, width));
        const typename S::M better = S::better(v, best[g]);
        best[g] = S::select(better, best[g], v);
        best_index[g] = S::select_index(better, best_index[g], here);
      }
    }
  }
  for (int g = 0; g < G; ++g)
    store_values_and_indices<S>(dst + g * S::L, offset_or_null(dst_index, g * S::L),
                                lanes_of<S>(g, width), best[g], best_index[g], stream);
}

template <class S>
inline void max_pixel_buffered(const typename S::T* image, int64_t in_w, int64_t channels,
                               const Window& win, typename S::T* dst, int64_t* dst_index,
                               typename S::IndexElem* index_buf) {
  using T = typename S::T;
  using V = typename S::V;
  using I = typename S::I;
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t width = min_i64(kChannelBlock, channels - c0);
    T* best = dst + c0;
    // The first tap initialises: the scan from -inf would take its value
    // (or keep -inf, which it then is) and always keeps its index.
    const int64_t first = win.h * in_w + win.w;
    for (int64_t c = 0; c < width; c += S::L) {
      const int64_t n = min_i64(S::L, width - c);
      S::store(best + c, n, S::load(image + first * channels + c0 + c, n));
      S::store_index_elems(index_buf + c, S::index1(first));
    }
    for (int64_t i = 0; i < win.nh; ++i) {
      const int64_t row = (win.h + i * win.dh) * in_w + win.w;
      for (int64_t j = (i == 0); j < win.nw; ++j) {
        const int64_t pix = row + j * win.dw;
        const T* src = image + pix * channels + c0;
        const I here = S::index1(pix);
        for (int64_t c = 0; c < width; c += S::L) {
          const int64_t n = min_i64(S::L, width - c);
          const V v = S::load(src + c, n), b = S::load(best + c, n);
          const typename S::M better = S::better(v, b);
          S::store(best + c, n, S::select(better, b, v));
          S::store_index_elems(index_buf + c,
                               S::select_index(better, S::load_index_elems(index_buf + c), here));
        }
      }
    }
    if (dst_index != nullptr)
      for (int64_t c = 0; c < width; c += S::L)
        S::store_index(dst_index + c0 + c, min_i64(S::L, width - c), S::load_index_elems(index_buf + c));
  }
}

// The `width` channels at `image` of a pixel `channels` wide.
template <class S, int G>
inline void avg_pixel_registers(const typename S::T* image, int64_t in_w, int64_t channels,
                                int64_t width, const Window& win, typename S::V divisor,
                                typename S::T* dst) {
  using V = typename S::V;
  V sum[G];
  for (int g = 0; g < G; ++g) sum[g] = S::zero();
  for (int64_t i = 0; i < win.nh; ++i) {
    const int64_t row = (win.h + i * win.dh) * in_w + win.w;
    for (int64_t j = 0; j < win.nw; ++j) {
      const typename S::T* src = image + (row + j * win.dw) * channels;
      for (int g = 0; g < G; ++g)
        sum[g] = S::add(sum[g], S::load(src + g * S::L, lanes_of<S>(g, width)));
    }
  }
  for (int g = 0; g < G; ++g)
    S::store(dst + g * S::L, lanes_of<S>(g, width), S::div(sum[g], divisor));
}

template <class S>
inline void avg_pixel_buffered(const typename S::T* image, int64_t in_w, int64_t channels,
                               const Window& win, typename S::V divisor, typename S::T* dst) {
  using T = typename S::T;
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t width = min_i64(kChannelBlock, channels - c0);
    T* sum = dst + c0;
    // The first tap initialises, as 0 + x like the reference's first addition.
    const T* first = image + (win.h * in_w + win.w) * channels + c0;
    for (int64_t c = 0; c < width; c += S::L) {
      const int64_t n = min_i64(S::L, width - c);
      S::store(sum + c, n, S::add(S::zero(), S::load(first + c, n)));
    }
    for (int64_t i = 0; i < win.nh; ++i) {
      const int64_t row = (win.h + i * win.dh) * in_w + win.w;
      for (int64_t j = (i == 0); j < win.nw; ++j) {
        const T* src = image + (row + j * win.dw) * channels + c0;
        for (int64_t c = 0; c < width; c += S::L) {
          const int64_t n = min_i64(S::L, width - c);
          S::store(sum + c, n, S::add(S::load(sum + c, n), S::load(src + c, n)));
        }
      }
    }
    for (int64_t c = 0; c < width; c += S::L) {
      const int64_t n = min_i64(S::L, width - c);
      S::store(sum + c, n, S::div(S::load(sum + c, n), divisor));
    }
  }
}

// Rows (n, oh) of the output.
template <class S, class Rule>
void max_nhwc_rows(const typename S::T* in, typename S::T* out, int64_t* indices,
                   const PoolParams& p, const Rule& rule, int64_t begin, int64_t end) {
  const int64_t c = p.channels, in_image = p.in_h * p.in_w * c;
  alignas(64) typename S::IndexElem index_buf[kChannelBlock];
  with_vectors<S>(c, [&]<int G>() {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / p.out_h, oh = r % p.out_h;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        int64_t unused;
        const Window win = rule.window(oh, ow, &unused);
        const int64_t o = (r * p.out_w + ow) * c;
        if constexpr (G > 0) {
          max_pixel_registers<S, G>(in + n * in_image, p.in_w, c, c, win, out + o,
                                    offset_or_null(indices, o), p.stream_stores);
        } else if (!p.input_past_caches || !S::kMaxSweepsPastCaches) {
          constexpr int kBlock = S::kRegisterVectors;
          int64_t c0 = 0;
          for (; c0 + kBlock * S::L <= c; c0 += kBlock * S::L)
            max_pixel_registers<S, kBlock>(in + n * in_image + c0, p.in_w, c, kBlock * S::L,
                                           win, out + o + c0, offset_or_null(indices, o + c0),
                                           p.stream_stores);
          if (c0 < c)
            with_vectors<S>(c - c0, [&]<int Tail>() {
              if constexpr (Tail > 0)
                max_pixel_registers<S, Tail>(in + n * in_image + c0, p.in_w, c, c - c0, win,
                                             out + o + c0, offset_or_null(indices, o + c0),
                                             p.stream_stores);
            });
        } else {
          max_pixel_buffered<S>(in + n * in_image, p.in_w, c, win, out + o,
                                offset_or_null(indices, o), index_buf);
        }
      }
    }
  });
  if constexpr (S::kStreams) {
    if (p.stream_stores) S::stream_fence();
  }
}

template <class S, class Rule>
void avg_nhwc_rows(const typename S::T* in, typename S::T* out, const PoolParams& p,
                   const Rule& rule, int64_t begin, int64_t end) {
  using T = typename S::T;
  const int64_t c = p.channels, in_image = p.in_h * p.in_w * c;
  with_vectors<S>(c, [&]<int G>() {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / p.out_h, oh = r % p.out_h;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        int64_t divisor;
        const Window win = rule.window(oh, ow, &divisor);
        const typename S::V d = S::set1(static_cast<T>(divisor));
        T* dst = out + (r * p.out_w + ow) * c;
        if constexpr (G > 0) {
          avg_pixel_registers<S, G>(in + n * in_image, p.in_w, c, c, win, d, dst);
        } else if (!p.input_past_caches) {
          constexpr int kBlock = S::kRegisterVectors;
          int64_t c0 = 0;
          for (; c0 + kBlock * S::L <= c; c0 += kBlock * S::L)
            avg_pixel_registers<S, kBlock>(in + n * in_image + c0, p.in_w, c, kBlock * S::L, win,
                                           d, dst + c0);
          if (c0 < c)
            with_vectors<S>(c - c0, [&]<int Tail>() {
              if constexpr (Tail > 0)
                avg_pixel_registers<S, Tail>(in + n * in_image + c0, p.in_w, c, c - c0, win, d,
                                             dst + c0);
            });
        } else {
          avg_pixel_buffered<S>(in + n * in_image, p.in_w, c, win, d, dst);
        }
      }
    }
  });
}

// Rows (n, ih) of grad_input: zero them, then add each output's share to the
// pixels of its window inside them, outputs in ascending order.
template <class S, class Rule>
void avg_backward_nhwc_rows(const typename S::T* grad_out, typename S::T* grad_in,
                            const PoolParams& p, const Rule& rule, int64_t begin, int64_t end) {
  using T = typename S::T;
  using V = typename S::V;
  const int64_t c = p.channels, in_image = p.in_h * p.in_w * c;
  alignas(64) T shares[kChannelBlock + S::L];  // room for a whole last vector
  for (int64_t r = begin; r < end;) {
    const int64_t n = r / p.in_h, a = r % p.in_h, b = min_i64(p.in_h, a + (end - r));
    r += b - a;
    T* g = grad_in + n * in_image;
    // Where windows tile the input, each element takes exactly one share,
    // stored as 0 + share (the reference's single addition); else the rows
    // start at zero and accumulate.
    const bool tiles = rule.tiles();
    if (!tiles)
      for (int64_t i = a * p.in_w * c; i < b * p.in_w * c; ++i) g[i] = 0;
    const TapRange reaching = rule.rows_reaching(a, b);
    for (int64_t oh = reaching.first; oh < reaching.last; ++oh) {
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        int64_t divisor;
        const Window win = rule.window(oh, ow, &divisor);
        const int64_t lo = max_i64(win.h, a), hi = min_i64(win.h + win.nh, b);
        if (lo >= hi) continue;
        const T* go = grad_out + ((n * p.out_h + oh) * p.out_w + ow) * c;
        const V d = S::set1(static_cast<T>(divisor));
        if (c <= S::L * S::kRegisterVectors) {
          // Narrow pixels: each vector of shares stays in a register for the
          // whole window (LeNet S2's six channels: 2x faster than through
          // the buffer below; 512 channels: 2x slower).
          for (int64_t ch = 0; ch < c; ch += S::L) {
            const int64_t lanes = min_i64(S::L, c - ch);
            const V share = S::div(S::load(go + ch, lanes), d);
            for (int64_t ih = lo; ih < hi; ++ih) {
              T* px = g + (ih * p.in_w + win.w) * c + ch;
              for (int64_t j = 0; j < win.nw; ++j, px += c) {
                if (tiles)
                  S::store(px, lanes, S::add(S::zero(), share));
                else
                  S::add_to(px, lanes, share);
              }
            }
          }
          continue;
        }
        for (int64_t c0 = 0; c0 < c; c0 += kChannelBlock) {
          const int64_t width = min_i64(kChannelBlock, c - c0);
          // Whole vectors into the buffer and out of it, whatever the lanes
          // in use: a vector stored in pieces and reloaded whole stalls on
          // store forwarding.
          for (int64_t ch = 0; ch < width; ch += S::L)
            S::store(shares + ch, S::L, S::div(S::load(go + c0 + ch, min_i64(S::L, width - ch)), d));
          for (int64_t ih = lo; ih < hi; ++ih) {
            for (int64_t j = 0; j < win.nw; ++j) {
              T* px = g + (ih * p.in_w + win.w + j) * c + c0;
              for (int64_t ch = 0; ch < width; ch += S::L) {
                const int64_t lanes = min_i64(S::L, width - ch);
                if (tiles)
                  S::store(px + ch, lanes, S::add(S::zero(), S::load(shares + ch, S::L)));
                else
                  S::add_to(px + ch, lanes, S::load(shares + ch, S::L));
              }
            }
          }
        }
      }
    }
  }
}

// ------------------------------------------------------ max-pool gradients
// Gathers rather than scatters: each grad_input element sums, in ascending
// output order, the gradients of the outputs that cover it and whose index
// names it.  Every element is written once, rows split freely over threads,
// and the count of matches checks the indices: it equals the number of
// outputs exactly when each index names a tap of its own window.  (Any other
// index makes the caller fall back to the reference scatter.)

// Whether an output whose window starts `delta` before an input position
// has a tap on it (the window covers it); no division in the usual case.
inline bool lands_on_tap(int64_t delta, int64_t dilation) {
  return dilation == 1 || delta % dilation == 0;
}

// Walks covering_outputs(i, ...) for i = first, first+1, ... without a
// division per step.
struct CoveringWalk {
  int64_t out, stride, lo_q, lo_r, hi_q, hi_r;
  // Outputs o with o*stride in [i + pad - extent + 1 .. i + pad], extent = dilation*(kernel-1)+1.
  CoveringWalk(int64_t i, int64_t out_, int64_t kernel, int64_t stride_, int64_t pad,
               int64_t dilation)
      : out(out_), stride(stride_) {
    const int64_t lo = i + pad - dilation * (kernel - 1), hi = i + pad;
    lo_q = div_floor(lo, stride);
    lo_r = lo - lo_q * stride;
    hi_q = div_floor(hi, stride);
    hi_r = hi - hi_q * stride;
  }
  TapRange range() const {
    const int64_t first = max_i64(0, lo_q + (lo_r != 0)), last = min_i64(out, hi_q + 1);
    return {first, max_i64(first, last)};
  }
  void next() {
    if (++lo_r == stride) lo_r = 0, ++lo_q;
    if (++hi_r == stride) hi_r = 0, ++hi_q;
  }
};

// Adds to the channels of grad_input pixel `pix` the gradients of output
// `o` (an offset into grad_out and indices) that chose it.  Up to
// S::kRegisterVectors vectors accumulate in registers (acc), more in the
// pixel itself.
template <class S, int G>
inline void gather_output(const typename S::T* grad_out, const int64_t* indices, int64_t o,
                          int64_t pix, int64_t channels, typename S::V* acc, int64_t* count) {
  for (int g = 0; g < G; ++g) {
    const int64_t n = lanes_of<S>(g, channels), c = g * S::L;
    const typename S::M hit = S::index64_equal(indices + o + c, n, pix);
    acc[g] = S::add_where(hit, acc[g], S::load(grad_out + o + c, n));
    *count += S::count(hit);
  }
}

template <class S>
inline void gather_output_buffered(const typename S::T* grad_out, const int64_t* indices,
                                   int64_t o, int64_t pix, int64_t channels, typename S::T* dst,
                                   int64_t* count) {
  for (int64_t c = 0; c < channels; c += S::L) {
    const int64_t n = min_i64(S::L, channels - c);
    const typename S::M hit = S::index64_equal(indices + o + c, n, pix);
    S::store(dst + c, n, S::add_where(hit, S::load(dst + c, n), S::load(grad_out + o + c, n)));
    *count += S::count(hit);
  }
}

// Rows (n, ih) of grad_input.
template <class S>
void max_backward_nhwc(const typename S::T* grad_out, const int64_t* indices,
                       typename S::T* grad_in, const PoolParams& p, int64_t begin, int64_t end,
                       int64_t* matches) {
  using T = typename S::T;
  using V = typename S::V;
  const int64_t c = p.channels, in_image = p.in_h * p.in_w * c;
  int64_t count = 0;
  with_vectors<S>(c, [&]<int G>() {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / p.in_h, ih = r % p.in_h;
      const TapRange rows =
          covering_outputs(ih, p.out_h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
      CoveringWalk cols(0, p.out_w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
      for (int64_t iw = 0; iw < p.in_w; ++iw, cols.next()) {
        const int64_t pix = ih * p.in_w + iw;
        T* dst = grad_in + n * in_image + pix * c;
        V acc[G > 0 ? G : 1];
        if constexpr (G > 0) {
          for (int g = 0; g < G; ++g) acc[g] = S::zero();
        } else {
          for (int64_t ch = 0; ch < c; ch += S::L) S::store(dst + ch, min_i64(S::L, c - ch), S::zero());
        }
        const TapRange ows = cols.range();
        for (int64_t oh = rows.first; oh < rows.last; ++oh) {
          if (!lands_on_tap(ih + p.pad_h - oh * p.stride_h, p.dilation_h)) continue;
          for (int64_t ow = ows.first; ow < ows.last; ++ow) {
            if (!lands_on_tap(iw + p.pad_w - ow * p.stride_w, p.dilation_w)) continue;
            const int64_t o = ((n * p.out_h + oh) * p.out_w + ow) * c;
            if constexpr (G > 0)
              gather_output<S, G>(grad_out, indices, o, pix, c, acc, &count);
            else
              gather_output_buffered<S>(grad_out, indices, o, pix, c, dst, &count);
          }
        }
        if constexpr (G > 0)
          for (int g = 0; g < G; ++g) S::store(dst + g * S::L, lanes_of<S>(g, c), acc[g]);
      }
    }
  });
  *matches = count;
}

// Rows (plane, ih) of grad_input, for windows 2 wide at stride 2 along w
// (VGG's and LeNet's 2x2 pools) that do not overlap along h.  Vectors run
// along the input row: lane iw belongs to output ow = (iw + pad_w) / 2, so a
// vector of L inputs reads L/2 outputs, each spread over two lanes.  Each
// element has one candidate output at most, so it is written once.
template <class S>
void max_backward_nchw(const typename S::T* grad_out, const int64_t* indices,
                       typename S::T* grad_in, const PoolParams& p, int64_t begin, int64_t end,
                       int64_t* matches) {
  using T = typename S::T;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const typename S::I lanes = S::index_iota(1);
  int64_t count = 0;
  for (int64_t r = begin; r < end;) {
    const int64_t plane = r / p.in_h, a = r % p.in_h, b = min_i64(p.in_h, a + (end - r));
    r += b - a;
    CoveringWalk walk(a, p.out_h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
    for (int64_t ih = a; ih < b; ++ih, walk.next()) {
      T* row = grad_in + plane * in_plane + ih * p.in_w;
      const TapRange rows = walk.range();
      const int64_t oh = rows.first;
      if (rows.first == rows.last || !lands_on_tap(ih + p.pad_h - oh * p.stride_h, p.dilation_h)) {
        for (int64_t iw = 0; iw < p.in_w; iw += S::L)
          store_values<S>(row + iw, min_i64(S::L, p.in_w - iw), S::zero(), p.stream_stores);
        continue;
      }
      const T* go = grad_out + plane * out_plane + oh * p.out_w;
      const int64_t* ix = indices + plane * out_plane + oh * p.out_w;
      auto chunk = [&](int64_t iw, int64_t n) {
        const int64_t ow = (iw + p.pad_w) / 2;  // iw + pad_w is even here, or n == 1
        // Lanes past the last output's window stay zero.
        const int64_t live = min_i64(n, 2 * (p.out_w - ow));
        typename S::V g = S::zero();
        if (live > 0) {
          const typename S::M hit = S::index64_equal_pairs(
              ix + ow, live, S::index_add(lanes, S::index1(ih * p.in_w + iw)));
          g = S::add_where(hit, g, S::load_pairs(go + ow, live));
          count += S::count(hit);
        }
        store_values<S>(row + iw, n, g, p.stream_stores);
      };
      int64_t iw = 0;
      if (p.pad_w % 2 == 1) chunk(iw++, 1);  // aligns the vectors to whole outputs
      if constexpr (S::kNarrowIndices) {
        // Whole blocks of 2L inputs whose L outputs all exist.
        typename S::IndexTally tally = S::index_tally();
        for (; iw + 2 * S::L <= p.in_w && (iw + p.pad_w) / 2 + S::L <= p.out_w; iw += 2 * S::L) {
          typename S::V lo, hi;
          const int64_t ow = (iw + p.pad_w) / 2;
          S::gather_pair_block(go + ow, ix + ow, ih * p.in_w + iw, &lo, &hi, &tally);
          store_values<S>(row + iw, S::L, lo, p.stream_stores);
          store_values<S>(row + iw + S::L, S::L, hi, p.stream_stores);
        }
        const int64_t found = S::index_matches(tally);
        if (found < 0) {  // an index no plane holds: the caller falls back
          if (p.stream_stores) S::stream_fence();
          *matches = -1;
          return;
        }
        count += found;
      }
      for (; iw < p.in_w; iw += S::L) chunk(iw, min_i64(S::L, p.in_w - iw));
    }
  }
  if constexpr (S::kStreams) {
    if (p.stream_stores) S::stream_fence();
  }
  *matches = count;
}

// Rows (n, oh) of outputs whose windows tile the input (kernel == stride, no
// padding or dilation, no partial window; tiles_exactly()): each output
// narrows its indices to int32 once, into a buffer, then writes the k_h x
// k_w pixels of its window, comparing the narrowed indices with each pixel's
// number (the per-pixel gather compares the int64 indices again for every
// pixel).  Input pixels no window covers (the right and bottom remainders)
// are zeroed by the rows they belong to.  Measured: prefer_gather, pool2d_cpu.cpp.
template <class S>
void max_backward_tiles_nhwc(const typename S::T* grad_out, const int64_t* indices,
                             typename S::T* grad_in, const PoolParams& p, int64_t begin,
                             int64_t end, int64_t* matches) {
  if constexpr (S::kNarrowIndices) {
    using T = typename S::T;
    using V = typename S::V;
    const int64_t c = p.channels, in_image = p.in_h * p.in_w * c;
    const int64_t covered_w = p.out_w * p.stride_w, covered_h = p.out_h * p.stride_h;
    auto zero_pixels = [&](T* first, int64_t pixels) {
      for (int64_t i = 0; i < pixels * c; i += S::L)
        S::store(first + i, min_i64(S::L, pixels * c - i), S::zero());
    };
    alignas(64) typename S::IndexElem narrowed[kChannelBlock];
    typename S::IndexTally tally = S::index_tally();
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / p.out_h, oh = r % p.out_h, top = oh * p.stride_h;
      T* image = grad_in + n * in_image;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const int64_t o = (r * p.out_w + ow) * c, left = ow * p.stride_w;
        for (int64_t c0 = 0; c0 < c; c0 += kChannelBlock) {
          const int64_t width = min_i64(kChannelBlock, c - c0);
          for (int64_t ch = 0; ch < width; ch += S::L)
            S::store_index_elems(narrowed + ch, S::narrow_indices(indices + o + c0 + ch,
                                                                  min_i64(S::L, width - ch), &tally));
          for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
            for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
              const int64_t pixel = (top + kh) * p.in_w + left + kw;
              T* dst = image + pixel * c + c0;
              for (int64_t ch = 0; ch < width; ch += S::L) {
                const int64_t lanes = min_i64(S::L, width - ch);
                const typename S::M hit =
                    S::index_hit(S::load_index_elems(narrowed + ch), pixel, lanes, &tally);
                const V g = S::load(grad_out + o + c0 + ch, lanes);
                S::store(dst + ch, lanes, S::add_where(hit, S::zero(), g));
              }
            }
          }
        }
      }
      if (covered_w < p.in_w)
        for (int64_t kh = 0; kh < p.kernel_h; ++kh)
          zero_pixels(image + ((top + kh) * p.in_w + covered_w) * c, p.in_w - covered_w);
      if (oh == p.out_h - 1 && covered_h < p.in_h)
        zero_pixels(image + covered_h * p.in_w * c, (p.in_h - covered_h) * p.in_w);
    }
    *matches = S::index_matches(tally);
  } else {
    (void)grad_out, (void)indices, (void)grad_in, (void)p, (void)begin, (void)end;
    *matches = -1;  // not in this S's table
  }
}

// ------------------------------------------------------ NCHW, plane groups
// Adaptive windows vary along a row, so NCHW adaptive pooling runs vectors
// across planes instead: a group of L planes is transposed tile by tile into
// pixel-major scratch (lane j = plane j, like NHWC with L channels), pooled
// there with every lane sharing the windows, and transposed back.  (Gathers
// would do without the transposes but are slow on some CPUs.)  One plane at a
// time, in scalar code, for one lane or when the scratch would be too large.

// Bytes of scratch for groups of up to kMaxLanes planes of `element_size`
// elements: a transposed group, its outputs and their indices.
constexpr int64_t kMaxLanes = 16;
struct PlaneGroupScratch {
  int64_t in_elements, out_elements;
  explicit PlaneGroupScratch(const PoolParams& p)
      : in_elements(kMaxLanes * p.in_h * p.in_w), out_elements(kMaxLanes * p.out_h * p.out_w) {}
};

template <typename T>
void adaptive_max_plane(const T* src, T* dst, int64_t* dst_index, const PoolParams& p) {
  const AdaptiveRule rule(p);
  for (int64_t o = 0; o < p.out_h * p.out_w; ++o) {
    int64_t unused;
    const Window win = rule.window(o / p.out_w, o % p.out_w, &unused);
    T best = negative_infinity<T>();
    int64_t best_index = win.h * p.in_w + win.w;
    for (int64_t ih = win.h; ih < win.h + win.nh; ++ih) {
      for (int64_t iw = win.w; iw < win.w + win.nw; ++iw) {
        const int64_t pix = ih * p.in_w + iw;
        const T v = src[pix];
        const bool better = (v > best) | (v != v);
        best = select_bits(better, best, v);
        best_index = select_bits(better, best_index, pix);
      }
    }
    dst[o] = best;
    if (dst_index != nullptr) dst_index[o] = best_index;
  }
}

template <typename T>
void adaptive_avg_plane(const T* src, T* dst, const PoolParams& p) {
  const AdaptiveRule rule(p);
  for (int64_t o = 0; o < p.out_h * p.out_w; ++o) {
    int64_t divisor;
    const Window win = rule.window(o / p.out_w, o % p.out_w, &divisor);
    T sum = 0;
    for (int64_t ih = win.h; ih < win.h + win.nh; ++ih)
      for (int64_t iw = win.w; iw < win.w + win.nw; ++iw) sum += src[ih * p.in_w + iw];
    dst[o] = sum / static_cast<T>(divisor);
  }
}

// Planes [first, first + n) into pixel-major `group` (L lanes a pixel).
template <class S>
inline void transpose_planes_in(const typename S::T* src, int64_t plane, int64_t n,
                                typename S::T* group) {
  for (int64_t t = 0; t < plane; t += S::L)
    S::transpose(src + t, plane, n, min_i64(S::L, plane - t), group + t * S::L, S::L);
}

// Pixel-major `group` (out_plane outputs, L lanes each) back into n planes.
template <class S>
inline void transpose_planes_out(const typename S::T* group, int64_t out_plane, int64_t n,
                                 typename S::T* dst) {
  for (int64_t o = 0; o < out_plane; o += S::L)
    S::transpose(group + o * S::L, S::L, min_i64(S::L, out_plane - o), n, dst + o, out_plane);
}

// Planes [begin, end); `scratch` holds PlaneGroupScratch's elements, or is null.
template <class S>
void adaptive_max_nchw(const typename S::T* in, typename S::T* out, int64_t* indices,
                       const PoolParams& p, int64_t begin, int64_t end, void* scratch) {
  using T = typename S::T;
  using V = typename S::V;
  using I = typename S::I;
  using E = typename S::IndexElem;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  if constexpr (S::L > 1) {
    if (scratch != nullptr) {
      static_assert(sizeof(E) == sizeof(T) && S::L <= kMaxLanes);
      const PlaneGroupScratch sizes(p);
      T* group_in = static_cast<T*>(scratch);
      T* group_out = group_in + sizes.in_elements;
      E* group_index = reinterpret_cast<E*>(group_out + sizes.out_elements);
      alignas(64) E tile[S::L * S::L];
      const AdaptiveRule rule(p);
      for (int64_t first = begin; first < end; first += S::L) {
        const int64_t n = min_i64(S::L, end - first);
        transpose_planes_in<S>(in + first * in_plane, in_plane, n, group_in);
        for (int64_t o = 0; o < out_plane; ++o) {
          int64_t unused;
          const Window win = rule.window(o / p.out_w, o % p.out_w, &unused);
          V best = S::set1(negative_infinity<T>());
          I best_index = S::index1(win.h * p.in_w + win.w);
          for (int64_t ih = win.h; ih < win.h + win.nh; ++ih) {
            for (int64_t iw = win.w; iw < win.w + win.nw; ++iw) {
              const int64_t pix = ih * p.in_w + iw;
              const V v = S::load(group_in + pix * S::L, S::L);
              const typename S::M better = S::better(v, best);
              best = S::select(better, best, v);
              best_index = S::select_index(better, best_index, S::index1(pix));
            }
          }
          S::store(group_out + o * S::L, S::L, best);
          S::store_index_elems(group_index + o * S::L, best_index);
        }
        transpose_planes_out<S>(group_out, out_plane, n, out + first * out_plane);
        // Indices go through a tile, to widen them to int64.
        for (int64_t o = 0; indices != nullptr && o < out_plane; o += S::L) {
          const int64_t outputs = min_i64(S::L, out_plane - o);
          S::transpose(reinterpret_cast<const T*>(group_index + o * S::L), S::L, outputs, n,
                       reinterpret_cast<T*>(tile), S::L);
          for (int64_t j = 0; j < n; ++j)
            S::store_index(indices + (first + j) * out_plane + o, outputs,
                           S::load_index_elems(tile + j * S::L));
        }
      }
      return;
    }
  }
  for (int64_t plane = begin; plane < end; ++plane)
    adaptive_max_plane(in + plane * in_plane, out + plane * out_plane,
                       offset_or_null(indices, plane * out_plane), p);
}

template <class S>
void adaptive_avg_nchw(const typename S::T* in, typename S::T* out, const PoolParams& p,
                       int64_t begin, int64_t end, void* scratch) {
  using T = typename S::T;
  using V = typename S::V;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  if constexpr (S::L > 1) {
    if (out_plane == 1) {
      // Global pooling: sum the transposed tiles straight from registers, in
      // pixel order; the group's L results are adjacent in the output.
      for (int64_t first = begin; first < end; first += S::L) {
        const int64_t n = min_i64(S::L, end - first);
        V sum = S::zero();
        for (int64_t t = 0; t < in_plane; t += S::L) {
          const int64_t cols = min_i64(S::L, in_plane - t);
          V column[S::L];
          S::transpose_tile(in + first * in_plane + t, in_plane, n, cols, column);
          for (int64_t c = 0; c < cols; ++c) sum = S::add(sum, column[c]);
        }
        S::store(out + first, n, S::div(sum, S::set1(static_cast<T>(in_plane))));
      }
      return;
    }
    if (scratch != nullptr) {
      const PlaneGroupScratch sizes(p);
      T* group_in = static_cast<T*>(scratch);
      T* group_out = group_in + sizes.in_elements;
      const AdaptiveRule rule(p);
      for (int64_t first = begin; first < end; first += S::L) {
        const int64_t n = min_i64(S::L, end - first);
        transpose_planes_in<S>(in + first * in_plane, in_plane, n, group_in);
        for (int64_t o = 0; o < out_plane; ++o) {
          int64_t divisor;
          const Window win = rule.window(o / p.out_w, o % p.out_w, &divisor);
          V sum = S::zero();
          for (int64_t ih = win.h; ih < win.h + win.nh; ++ih)
            for (int64_t iw = win.w; iw < win.w + win.nw; ++iw)
              sum = S::add(sum, S::load(group_in + (ih * p.in_w + iw) * S::L, S::L));
          S::store(group_out + o * S::L, S::L, S::div(sum, S::set1(static_cast<T>(divisor))));
        }
        transpose_planes_out<S>(group_out, out_plane, n, out + first * out_plane);
      }
      return;
    }
  }
  for (int64_t plane = begin; plane < end; ++plane)
    adaptive_avg_plane(in + plane * in_plane, out + plane * out_plane, p);
}

// Rows (plane, ih) of grad_input for adaptive windows.  Vectors run along
// the input row, L elements at a time, each accumulating in a register the
// shares of the outputs whose windows cover it, in output order; every
// element is written once.
template <class S>
void adaptive_avg_backward_nchw(const typename S::T* grad_out, typename S::T* grad_in,
                                const PoolParams& p, int64_t begin, int64_t end) {
  using T = typename S::T;
  using V = typename S::V;
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const AdaptiveRule rule(p);
  // The plane's shares, computed once (if they fit).
  alignas(64) T shares[kCachedWindows];
  const bool cache_shares = out_plane <= kCachedWindows;
  for (int64_t r = begin; r < end;) {
    const int64_t plane = r / p.in_h, a = r % p.in_h, b = min_i64(p.in_h, a + (end - r));
    r += b - a;
    const T* go = grad_out + plane * out_plane;
    auto share_of = [&](int64_t oh, int64_t ow) {
      const int64_t area = (rule.rows_end(oh) - rule.rows_begin(oh)) *
                           (rule.cols_end(ow) - rule.cols_begin(ow));
      return go[oh * p.out_w + ow] / static_cast<T>(area);
    };
    if (out_plane == 1) {
      // Global pooling: one share for the whole plane, written straight
      // (as 0 + share, like the reference's first and only addition).
      const V share = S::add(S::zero(), S::set1(share_of(0, 0)));
      T* g = grad_in + plane * in_plane;
      for (int64_t i = a * p.in_w; i < b * p.in_w; i += S::L)
        S::store(g + i, min_i64(S::L, b * p.in_w - i), share);
      continue;
    }
    if (cache_shares)
      for (int64_t oh = 0; oh < p.out_h; ++oh)
        for (int64_t ow = 0; ow < p.out_w; ++ow) shares[oh * p.out_w + ow] = share_of(oh, ow);
    for (int64_t ih = a; ih < b; ++ih) {
      T* row = grad_in + plane * in_plane + ih * p.in_w;
      const TapRange rows = rule.rows_reaching(ih, ih + 1);
      // Outputs from ow_first on have windows ending past the segment's start.
      int64_t ow_first = 0;
      for (int64_t iw = 0; iw < p.in_w; iw += S::L) {
        const int64_t n = min_i64(S::L, p.in_w - iw);
        while (ow_first < p.out_w && rule.cols_end(ow_first) <= iw) ++ow_first;
        V acc = S::zero();
        for (int64_t oh = rows.first; oh < rows.last; ++oh) {
          for (int64_t ow = ow_first; ow < p.out_w && rule.cols_begin(ow) < iw + n; ++ow) {
            const T share = cache_shares ? shares[oh * p.out_w + ow] : share_of(oh, ow);
            acc = S::add_where(S::lanes_between(rule.cols_begin(ow) - iw, rule.cols_end(ow) - iw),
                               acc, S::set1(share));
          }
        }
        S::store(row + iw, n, acc);
      }
    }
  }
}

// ---------------------------------------------------------------- the table

template <class S>
void max_nchw(const typename S::T* in, typename S::T* out, int64_t* indices, const PoolParams& p,
              int64_t begin, int64_t end) {
  with_stride<S>(p.stride_w, [&]<class Lanes, int K>() {
    max_nchw_rows<Lanes, K>(in, out, indices, p, begin, end);
  });
}

template <class S>
void avg_nchw(const typename S::T* in, typename S::T* out, const PoolParams& p, int64_t begin,
              int64_t end) {
  with_stride<S>(p.stride_w,
                 [&]<class Lanes, int K>() { avg_nchw_rows<Lanes, K>(in, out, p, begin, end); });
}

template <class S>
void avg_backward_nchw(const typename S::T* grad_out, typename S::T* grad_in, const PoolParams& p,
                       int64_t begin, int64_t end, typename S::T* scratch) {
  with_stride<S>(p.stride_w, [&]<class Lanes, int K>() {
    avg_backward_nchw_rows<Lanes, K>(grad_out, grad_in, p, begin, end, scratch);
  });
}

template <class S>
void max_nhwc(const typename S::T* in, typename S::T* out, int64_t* indices, const PoolParams& p,
              int64_t begin, int64_t end) {
  max_nhwc_rows<S>(in, out, indices, p, MaxPoolRule{p}, begin, end);
}

template <class S>
void avg_nhwc(const typename S::T* in, typename S::T* out, const PoolParams& p, int64_t begin,
              int64_t end) {
  avg_nhwc_rows<S>(in, out, p, AvgPoolRule{p}, begin, end);
}

template <class S>
void avg_backward_nhwc(const typename S::T* grad_out, typename S::T* grad_in, const PoolParams& p,
                       int64_t begin, int64_t end) {
  avg_backward_nhwc_rows<S>(grad_out, grad_in, p, AvgPoolRule{p}, begin, end);
}

template <class S>
void adaptive_max_nhwc(const typename S::T* in, typename S::T* out, int64_t* indices,
                       const PoolParams& p, int64_t begin, int64_t end) {
  max_nhwc_rows<S>(in, out, indices, p, AdaptiveRule(p), begin, end);
}

template <class S>
void adaptive_avg_nhwc(const typename S::T* in, typename S::T* out, const PoolParams& p,
                       int64_t begin, int64_t end) {
  avg_nhwc_rows<S>(in, out, p, AdaptiveRule(p), begin, end);
}

template <class S>
void adaptive_avg_backward_nhwc(const typename S::T* grad_out, typename S::T* grad_in,
                                const PoolParams& p, int64_t begin, int64_t end) {
  avg_backward_nhwc_rows<S>(grad_out, grad_in, p, AdaptiveRule(p), begin, end);
}

template <class S>
constexpr PoolKernels<typename S::T> make_pool_kernels() {
  return {&max_nchw<S>,          &max_nhwc<S>,          &avg_nchw<S>,
          &avg_nhwc<S>,          &avg_backward_nchw<S>, &avg_backward_nhwc<S>,
          &adaptive_max_nchw<S>, &adaptive_max_nhwc<S>, &adaptive_avg_nchw<S>,
          &adaptive_avg_nhwc<S>, &adaptive_avg_backward_nchw<S>, &adaptive_avg_backward_nhwc<S>,
          &max_backward_nchw<S>, &max_backward_nhwc<S>,
          S::kNarrowIndices ? &max_backward_tiles_nhwc<S> : nullptr};
}

}  // namespace
}  // namespace pycnn
