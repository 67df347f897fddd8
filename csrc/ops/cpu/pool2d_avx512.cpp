// The pooling kernels for CPUs with AVX-512 (F, BW, VL, DQ): 16 floats or 8
// doubles a vector, with masked loads and stores for the ends of rows.
// Compiled with a function-level target, so the library still runs on CPUs
// without AVX-512; cpu_features.h decides at run time whether this is used.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../../shape.h"
#include "pool2d_simd.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
// GCC 12 flags the "undefined" upper halves inside its own cast and widen
// intrinsics (_mm512_castsi512_si256, _mm512_cvtepi32_epi64) as possibly
// uninitialised; they are by design.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace pycnn {
namespace {

struct Avx512F32 {
  using T = float;
  static constexpr int64_t L = 16;
  // Accumulator vectors a pixel may keep in registers (value and index each).
  static constexpr int kRegisterVectors = 8;
  using V = __m512;
  using I = __m512i;  // int32 flat indices
  using M = __mmask16;

  static M first(int64_t n) {
    return n >= 16 ? M(0xFFFF) : n <= 0 ? M(0) : M((1u << n) - 1u);
  }
  static __m512i lane_ids() {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  static __m512i offsets(int64_t stride) {
    return _mm512_mullo_epi32(lane_ids(), _mm512_set1_epi32(static_cast<int32_t>(stride)));
  }
  static __m512i evens() {
    return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  }
  static __m512i odds() { return _mm512_add_epi32(evens(), _mm512_set1_epi32(1)); }

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  // Full vectors go unmasked: a masked store does not forward to a later load.
  static V load(const T* p, int64_t n) {
    return n >= L ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(first(n), p);
  }
  // Lanes j < n read p[2j], so only p[0 .. 2n-2] is touched.
  static V load_stride2(const T* p, int64_t n) {
    const V lo = _mm512_maskz_loadu_ps(first(2 * n - 1), p);
    const V hi = _mm512_maskz_loadu_ps(first(2 * n - 17), p + 16);
    return _mm512_permutex2var_ps(lo, evens(), hi);
  }
  static void store(T* p, int64_t n, V v) {
    if (n >= L) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, first(n), v);
  }
  static void store_index(int64_t* p, int64_t n, I i) {
    const M m = first(n);
    _mm512_mask_storeu_epi64(p, __mmask8(m), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_mask_storeu_epi64(p + 8, __mmask8(m >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
  }
  // Non-temporal stores of a full vector at a 64-byte boundary (indices: two).
  static constexpr bool kNarrowIndices = false;
  static constexpr bool kMaxSweepsPastCaches = true;
  static constexpr bool kStreams = true;
  static void stream(T* p, V v) { _mm512_stream_ps(p, v); }
  static void stream_index(int64_t* p, I i) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p + 8),
                        _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
  }
  static void stream_fence() { _mm_sfence(); }
  static void add_to(T* p, int64_t n, V v) { store(p, n, _mm512_add_ps(load(p, n), v)); }
  // p[2j] += v[j]: deinterleave, add to the even elements, interleave back
  // (the odd ones are rewritten unchanged).
  static void add_to_stride2(T* p, int64_t n, V v) {
    const M m_lo = first(2 * n - 1), m_hi = first(2 * n - 17);
    const V lo = _mm512_maskz_loadu_ps(m_lo, p), hi = _mm512_maskz_loadu_ps(m_hi, p + 16);
    const V even = _mm512_add_ps(_mm512_permutex2var_ps(lo, evens(), hi), v);
    const V odd = _mm512_permutex2var_ps(lo, odds(), hi);
    // Output element 2k is even[k], 2k+1 is odd[k] (index 16 + k).
    const __m512i half = _mm512_srli_epi32(lane_ids(), 1);
    const __m512i from_odd = _mm512_slli_epi32(_mm512_and_si512(lane_ids(), _mm512_set1_epi32(1)), 4);
    const __m512i interleave_lo = _mm512_or_si512(half, from_odd);
    const __m512i interleave_hi = _mm512_add_epi32(interleave_lo, _mm512_set1_epi32(8));
    _mm512_mask_storeu_ps(p, m_lo, _mm512_permutex2var_ps(even, interleave_lo, odd));
    _mm512_mask_storeu_ps(p + 16, m_hi, _mm512_permutex2var_ps(even, interleave_hi, odd));
  }
  // Columns c < cols of the rows x cols tile at src (rows < L read as
  // zero), each as a vector whose lane r is row r: column[c] = src[r*src_stride + c].
  __attribute__((always_inline)) static void transpose_tile(const T* src, int64_t src_stride,
                                                            int64_t rows, int64_t cols,
                                                            V* column) {
    V r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < rows ? load(src + i * src_stride, cols) : zero();
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
      t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
      t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; ++i) {
      r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) column[i] = r[i];
  }
  static void transpose(const T* src, int64_t src_stride, int64_t rows, int64_t cols, T* dst,
                        int64_t dst_stride) {
    V column[L];
    transpose_tile(src, src_stride, rows, cols, column);
    for (int64_t i = 0; i < cols; ++i) store(dst + i * dst_stride, rows, column[i]);
  }

  static V load_pairs(const T* p, int64_t n) {
    const V v = _mm512_maskz_loadu_ps(first((n + 1) / 2), p);
    return _mm512_permutexvar_ps(_mm512_srli_epi32(lane_ids(), 1), v);
  }
  static M index64_equal_pairs(const int64_t* p, int64_t n, I i) {
    const __m512i x = _mm512_maskz_loadu_epi64(__mmask8(first((n + 1) / 2)), p);
    const __m512i lo = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), x);
    const __m512i hi = _mm512_permutexvar_epi64(_mm512_setr_epi64(4, 4, 5, 5, 6, 6, 7, 7), x);
    const M m = first(n);
    const __mmask8 eq_lo = _mm512_mask_cmpeq_epi64_mask(
        __mmask8(m), lo, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    const __mmask8 eq_hi = _mm512_mask_cmpeq_epi64_mask(
        __mmask8(m >> 8), hi, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(i, 1)));
    return M(eq_lo | (unsigned(eq_hi) << 8));
  }
  static M better(V v, V best) {
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, a, b); }
  static I select_index(M m, I a, I b) { return _mm512_mask_blend_epi32(m, a, b); }
  using IndexElem = int32_t;
  static I load_index_elems(const IndexElem* p) { return _mm512_loadu_si512(p); }
  static I load_index_elems(const IndexElem* p, int64_t n) {
    return _mm512_maskz_loadu_epi32(first(n), p);
  }
  static void store_index_elems(IndexElem* p, I i) { _mm512_storeu_si512(p, i); }
  static M index_equal(I a, I b, int64_t n) { return _mm512_mask_cmpeq_epi32_mask(first(n), a, b); }
  static M index64_equal(const int64_t* p, int64_t n, int64_t value) {
    const M m = first(n);
    const __m512i x = _mm512_set1_epi64(value);
    const __mmask8 lo = _mm512_mask_cmpeq_epi64_mask(
        __mmask8(m), _mm512_maskz_loadu_epi64(__mmask8(m), p), x);
    const __mmask8 hi = _mm512_mask_cmpeq_epi64_mask(
        __mmask8(m >> 8), _mm512_maskz_loadu_epi64(__mmask8(m >> 8), p + 8), x);
    return M(lo | (unsigned(hi) << 8));
  }
  static V add_where(M m, V acc, V v) { return _mm512_mask_add_ps(acc, m, acc, v); }
  static int64_t count(M m) { return __builtin_popcount(m); }
  static M lanes_between(int64_t lo, int64_t hi) { return M(first(hi) & ~first(lo)); }
  static I index1(int64_t x) { return _mm512_set1_epi32(static_cast<int32_t>(x)); }
  static I index_iota(int64_t step) { return offsets(step); }
  static I index_add(I a, I b) { return _mm512_add_epi32(a, b); }
};

struct Avx512F64 {
  using T = double;
  static constexpr int64_t L = 8;
  // Accumulator vectors a pixel may keep in registers (value and index each).
  static constexpr int kRegisterVectors = 8;
  using V = __m512d;
  using I = __m512i;  // int64 flat indices
  using M = __mmask8;

  static M first(int64_t n) { return n >= 8 ? M(0xFF) : n <= 0 ? M(0) : M((1u << n) - 1u); }
  static __m512i offsets(int64_t s) {
    return _mm512_setr_epi64(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
  }
  static __m512i evens() { return _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14); }
  static __m512i odds() { return _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15); }

  static V zero() { return _mm512_setzero_pd(); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V div(V a, V b) { return _mm512_div_pd(a, b); }
  static V load(const T* p, int64_t n) {
    return n >= L ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(first(n), p);
  }
  static V load_stride2(const T* p, int64_t n) {
    const V lo = _mm512_maskz_loadu_pd(first(2 * n - 1), p);
    const V hi = _mm512_maskz_loadu_pd(first(2 * n - 9), p + 8);
    return _mm512_permutex2var_pd(lo, evens(), hi);
  }
  static void store(T* p, int64_t n, V v) {
    if (n >= L) _mm512_storeu_pd(p, v);
    else _mm512_mask_storeu_pd(p, first(n), v);
  }
  static void store_index(int64_t* p, int64_t n, I i) { _mm512_mask_storeu_epi64(p, first(n), i); }
  static constexpr bool kNarrowIndices = false;
  static constexpr bool kMaxSweepsPastCaches = true;
  static constexpr bool kStreams = true;
  static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
  static void stream_index(int64_t* p, I i) { _mm512_stream_si512(reinterpret_cast<__m512i*>(p), i); }
  static void stream_fence() { _mm_sfence(); }
  static void add_to(T* p, int64_t n, V v) { store(p, n, _mm512_add_pd(load(p, n), v)); }
  static void add_to_stride2(T* p, int64_t n, V v) {
    const M m_lo = first(2 * n - 1), m_hi = first(2 * n - 9);
    const V lo = _mm512_maskz_loadu_pd(m_lo, p), hi = _mm512_maskz_loadu_pd(m_hi, p + 8);
    const V even = _mm512_add_pd(_mm512_permutex2var_pd(lo, evens(), hi), v);
    const V odd = _mm512_permutex2var_pd(lo, odds(), hi);
    const __m512i interleave_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i interleave_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_mask_storeu_pd(p, m_lo, _mm512_permutex2var_pd(even, interleave_lo, odd));
    _mm512_mask_storeu_pd(p + 8, m_hi, _mm512_permutex2var_pd(even, interleave_hi, odd));
  }
  // Columns c < cols of the rows x cols tile at src (rows < L read as
  // zero), each as a vector whose lane r is row r: column[c] = src[r*src_stride + c].
  __attribute__((always_inline)) static void transpose_tile(const T* src, int64_t src_stride,
                                                            int64_t rows, int64_t cols,
                                                            V* column) {
    V r[8], t[8];
#pragma GCC unroll 16
    for (int i = 0; i < 8; ++i) r[i] = i < rows ? load(src + i * src_stride, cols) : zero();
#pragma GCC unroll 16
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0x88);
      r[i + 1] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0x88);
      r[i + 2] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0xDD);
      r[i + 3] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) column[i] = t[i];
  }
  static void transpose(const T* src, int64_t src_stride, int64_t rows, int64_t cols, T* dst,
                        int64_t dst_stride) {
    V column[L];
    transpose_tile(src, src_stride, rows, cols, column);
    for (int64_t i = 0; i < cols; ++i) store(dst + i * dst_stride, rows, column[i]);
  }

  static V load_pairs(const T* p, int64_t n) {
    const V v = _mm512_maskz_loadu_pd(first((n + 1) / 2), p);
    return _mm512_permutexvar_pd(_mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), v);
  }
  static M index64_equal_pairs(const int64_t* p, int64_t n, I i) {
    const __m512i x = _mm512_maskz_loadu_epi64(first((n + 1) / 2), p);
    return _mm512_mask_cmpeq_epi64_mask(
        first(n), _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), x), i);
  }
  static M better(V v, V best) {
    return _mm512_cmp_pd_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
  }
  static V select(M m, V a, V b) { return _mm512_mask_blend_pd(m, a, b); }
  static I select_index(M m, I a, I b) { return _mm512_mask_blend_epi64(m, a, b); }
  using IndexElem = int64_t;
  static I load_index_elems(const IndexElem* p) { return _mm512_loadu_si512(p); }
  static I load_index_elems(const IndexElem* p, int64_t n) {
    return _mm512_maskz_loadu_epi64(first(n), p);
  }
  static void store_index_elems(IndexElem* p, I i) { _mm512_storeu_si512(p, i); }
  static M index_equal(I a, I b, int64_t n) { return _mm512_mask_cmpeq_epi64_mask(first(n), a, b); }
  static M index64_equal(const int64_t* p, int64_t n, int64_t value) {
    return _mm512_mask_cmpeq_epi64_mask(first(n), _mm512_maskz_loadu_epi64(first(n), p),
                                        _mm512_set1_epi64(value));
  }
  static V add_where(M m, V acc, V v) { return _mm512_mask_add_pd(acc, m, acc, v); }
  static int64_t count(M m) { return __builtin_popcount(m); }
  static M lanes_between(int64_t lo, int64_t hi) { return M(first(hi) & ~first(lo)); }
  static I index1(int64_t x) { return _mm512_set1_epi64(x); }
  static I index_iota(int64_t step) { return offsets(step); }
  static I index_add(I a, I b) { return _mm512_add_epi64(a, b); }
};

}  // namespace
}  // namespace pycnn

#include "pool2d_simd_kernels.h"

namespace pycnn {

PYCNN_CONSTINIT const PoolKernels<float> pool_kernels_avx512_f32 = make_pool_kernels<Avx512F32>();
PYCNN_CONSTINIT const PoolKernels<double> pool_kernels_avx512_f64 = make_pool_kernels<Avx512F64>();

}  // namespace pycnn

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
