// The pooling kernels for CPUs with AVX2: 8 floats or 4 doubles a vector;
// the ends of rows use AVX masked loads and piecewise stores.  Compiled with a
// function-level target, so the library still runs on CPUs without AVX2;
// cpu_features.h decides at run time whether this is used.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../../shape.h"
#include "pool2d_simd.h"

#pragma GCC push_options
#pragma GCC target("avx2")

namespace pycnn {
namespace {

// Stores of a vector's first n lanes (n below a full vector), in 16-, 8- and
// 4-byte pieces rather than with vmaskmov: AMD's Zen cores run the store form
// of vmaskmov as a long microcoded sequence.  (Six-channel channels_last
// pixels, LeNet's, end every pixel with such a store: the classic S2 average
// pool's backward took 0.45-0.7 ms with vmaskmov against torch's 0.34-0.38.)
inline void store_first_lanes(float* p, int64_t n, __m256 v) {
  __m128 part = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(p, part);
    part = _mm256_extractf128_ps(v, 1);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
    part = _mm_movehl_ps(part, part);
    p += 2;
    n -= 2;
  }
  if (n >= 1) _mm_store_ss(p, part);
}
// The same for 64-bit lanes (doubles or int64), n < 4.
inline void store_first_lanes64(void* p, int64_t n, __m256i v) {
  char* q = static_cast<char*>(p);
  __m128i part = _mm256_castsi256_si128(v);
  if (n >= 2) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), part);
    part = _mm256_extracti128_si256(v, 1);
    q += 16;
    n -= 2;
  }
  if (n >= 1) _mm_storel_epi64(reinterpret_cast<__m128i*>(q), part);
}

struct Avx2F32 {
  using T = float;
  static constexpr int64_t L = 8;
  // Accumulator vectors a pixel may keep in registers (value and index each).
  static constexpr int kRegisterVectors = 4;
  using V = __m256;
  using I = __m256i;  // int32 flat indices
  using M = __m256;   // all-ones lanes

  static __m256i lane_ids() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static __m256i first_bits(int64_t n) {
    const int32_t k = static_cast<int32_t>(n < 0 ? 0 : n > 8 ? 8 : n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), lane_ids());
  }
  // The same lanes as int64 masks, for the two halves of an index vector.
  static __m256i first_bits64(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static __m256i offsets(int64_t s) {
    return _mm256_mullo_epi32(lane_ids(), _mm256_set1_epi32(static_cast<int32_t>(s)));
  }
  static V masked_load(const T* p, int64_t n) {
    if (n >= 8) return _mm256_loadu_ps(p);
    return _mm256_maskload_ps(p, first_bits(n));
  }
  static void masked_store(T* p, int64_t n, V v) {
    if (n >= 8) _mm256_storeu_ps(p, v);
    else store_first_lanes(p, n, v);
  }
  static V even_of(V lo, V hi) {
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  }
  static V odd_of(V lo, V hi) {
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  }

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V load(const T* p, int64_t n) { return masked_load(p, n); }
  static V load_stride2(const T* p, int64_t n) {
    return even_of(masked_load(p, 2 * n - 1), masked_load(p + 8, 2 * n - 9));
  }
  static void store(T* p, int64_t n, V v) { masked_store(p, n, v); }
  static constexpr bool kMaxSweepsPastCaches = false;  // see kChannelBlock
  static constexpr bool kStreams = true;
  static void stream(T* p, V v) { _mm256_stream_ps(p, v); }
  static void stream_index(int64_t* p, I i) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(i)));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p + 4),
                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(i, 1)));
  }
  static void stream_fence() { _mm_sfence(); }
  static void store_index(int64_t* p, int64_t n, I i) {
    const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(i));
    const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(i, 1));
    if (n >= 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4), hi);
    } else {
      if (n >= 4) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), lo);
        store_first_lanes64(p + 4, n - 4, hi);
      } else {
        store_first_lanes64(p, n, lo);
      }
    }
  }
  static void add_to(T* p, int64_t n, V v) { masked_store(p, n, _mm256_add_ps(masked_load(p, n), v)); }
  static void add_to_stride2(T* p, int64_t n, V v) {
    const V lo = masked_load(p, 2 * n - 1), hi = masked_load(p + 8, 2 * n - 9);
    const V even = _mm256_add_ps(even_of(lo, hi), v), odd = odd_of(lo, hi);
    const V mixed_lo = _mm256_unpacklo_ps(even, odd), mixed_hi = _mm256_unpackhi_ps(even, odd);
    masked_store(p, 2 * n - 1, _mm256_permute2f128_ps(mixed_lo, mixed_hi, 0x20));
    masked_store(p + 8, 2 * n - 9, _mm256_permute2f128_ps(mixed_lo, mixed_hi, 0x31));
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
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
      t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
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
    const int64_t k = (n + 1) / 2;
    const __m128 half = _mm_maskload_ps(p, _mm256_castsi256_si128(first_bits(k)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(half),
                                    _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
  }
  static M index64_equal_pairs(const int64_t* p, int64_t n, I i) {
    const __m256i x = _mm256_maskload_epi64(reinterpret_cast<const long long*>(p),
                                            first_bits64((n + 1) / 2));
    const __m256i lo = _mm256_and_si256(
        first_bits64(n), _mm256_cmpeq_epi64(_mm256_permute4x64_epi64(x, 0x50),
                                            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(i))));
    const __m256i hi = _mm256_and_si256(
        first_bits64(n - 4), _mm256_cmpeq_epi64(_mm256_permute4x64_epi64(x, 0xFA),
                                                _mm256_cvtepi32_epi64(_mm256_extracti128_si256(i, 1))));
    return even_of(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi));
  }
  // Indices narrowed to int32 (planes fit int32) once per vector for the
  // max-pool gradients' blocks (pool2d_simd_kernels.h, kNarrowIndices).
  // The tally counts the matches lane by lane and ORs the raw indices into
  // `seen`, so that any index outside [0, 2^31) still fails the match count.
  static constexpr bool kNarrowIndices = true;
  struct IndexTally {
    __m256i hits, seen;
  };
  static IndexTally index_tally() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
  static I narrow_pair(__m256i a, __m256i b, IndexTally* tally) {
    tally->seen = _mm256_or_si256(tally->seen, _mm256_or_si256(a, b));
    const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    return _mm256_blend_epi32(_mm256_permutevar8x32_epi32(a, low_halves),
                              _mm256_permutevar8x32_epi32(b, low_halves), 0xF0);
  }
  static I narrow_indices(const int64_t* ix, int64_t n, IndexTally* tally) {
    if (n >= 8)
      return narrow_pair(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ix)),
                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ix + 4)), tally);
    const auto* q = reinterpret_cast<const long long*>(ix);
    return narrow_pair(_mm256_maskload_epi64(q, first_bits64(n)),
                       _mm256_maskload_epi64(q + 4, first_bits64(n - 4)), tally);
  }
  // Lanes j < n whose index is `pixel`, counted.
  static M index_hit(I index, int64_t pixel, int64_t n, IndexTally* tally) {
    __m256i hit = _mm256_cmpeq_epi32(index, _mm256_set1_epi32(static_cast<int32_t>(pixel)));
    if (n < 8) hit = _mm256_and_si256(hit, first_bits(n));
    tally->hits = _mm256_sub_epi32(tally->hits, hit);
    return _mm256_castsi256_ps(hit);
  }
  static void gather_pair_block(const T* go, const int64_t* ix, int64_t first, V* lo, V* hi,
                                IndexTally* tally) {
    const I index = narrow_indices(ix, 8, tally);
    const __m256i first_pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256i second_pairs = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    const __m256i expected = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(first)), lane_ids());
    const __m256i hit_lo =
        _mm256_cmpeq_epi32(_mm256_permutevar8x32_epi32(index, first_pairs), expected);
    const __m256i hit_hi = _mm256_cmpeq_epi32(_mm256_permutevar8x32_epi32(index, second_pairs),
                                              _mm256_add_epi32(expected, _mm256_set1_epi32(8)));
    tally->hits = _mm256_sub_epi32(_mm256_sub_epi32(tally->hits, hit_lo), hit_hi);
    const V g = _mm256_loadu_ps(go);
    // 0 + g, not g: the scatter's sum, so -0 gradients come out as +0 alike.
    *lo = _mm256_add_ps(zero(), _mm256_and_ps(_mm256_castsi256_ps(hit_lo),
                                              _mm256_permutevar8x32_ps(g, first_pairs)));
    *hi = _mm256_add_ps(zero(), _mm256_and_ps(_mm256_castsi256_ps(hit_hi),
                                              _mm256_permutevar8x32_ps(g, second_pairs)));
  }
  // The tally's match count, or -1 where some index had bits 31..63 set.
  static int64_t index_matches(const IndexTally& tally) {
    if (!_mm256_testz_si256(tally.seen, _mm256_set1_epi64x(int64_t(-1) << 31))) return -1;
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), tally.hits);
    int64_t total = 0;
    for (int j = 0; j < 8; ++j) total += lanes[j];
    return total;
  }
  static M better(V v, V best) {
    return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  static V select(M m, V a, V b) { return _mm256_blendv_ps(a, b, m); }
  static I select_index(M m, I a, I b) {
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
  }
  using IndexElem = int32_t;
  static I load_index_elems(const IndexElem* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static I load_index_elems(const IndexElem* p, int64_t n) {
    if (n >= 8) return load_index_elems(p);
    return _mm256_maskload_epi32(reinterpret_cast<const int*>(p), first_bits(n));
  }
  static void store_index_elems(IndexElem* p, I i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), i);
  }
  static M index_equal(I a, I b, int64_t n) {
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpeq_epi32(a, b), first_bits(n)));
  }
  static M index64_equal(const int64_t* p, int64_t n, int64_t value) {
    const __m256i x = _mm256_set1_epi64x(value);
    const __m256i m_lo = first_bits64(n), m_hi = first_bits64(n - 4);
    const __m256i lo = _mm256_and_si256(
        m_lo, _mm256_cmpeq_epi64(_mm256_maskload_epi64(reinterpret_cast<const long long*>(p), m_lo), x));
    const __m256i hi = _mm256_and_si256(
        m_hi,
        _mm256_cmpeq_epi64(_mm256_maskload_epi64(reinterpret_cast<const long long*>(p + 4), m_hi), x));
    // The low halves of the eight 64-bit lane masks, in order.
    return even_of(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi));
  }
  static V add_where(M m, V acc, V v) { return _mm256_add_ps(acc, _mm256_and_ps(m, v)); }
  static int64_t count(M m) { return __builtin_popcount(_mm256_movemask_ps(m)); }
  static M lanes_between(int64_t lo, int64_t hi) {
    return _mm256_castsi256_ps(_mm256_andnot_si256(first_bits(lo), first_bits(hi)));
  }
  static I index1(int64_t x) { return _mm256_set1_epi32(static_cast<int32_t>(x)); }
  static I index_iota(int64_t step) { return offsets(step); }
  static I index_add(I a, I b) { return _mm256_add_epi32(a, b); }
};

struct Avx2F64 {
  using T = double;
  static constexpr int64_t L = 4;
  // Accumulator vectors a pixel may keep in registers (value and index each).
  static constexpr int kRegisterVectors = 4;
  using V = __m256d;
  using I = __m256i;  // int64 flat indices
  using M = __m256d;  // all-ones lanes

  static __m256i first_bits(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static __m256i offsets(int64_t s) { return _mm256_setr_epi64x(0, s, 2 * s, 3 * s); }
  static V masked_load(const T* p, int64_t n) {
    if (n >= 4) return _mm256_loadu_pd(p);
    return _mm256_maskload_pd(p, first_bits(n));
  }
  static void masked_store(T* p, int64_t n, V v) {
    if (n >= 4) _mm256_storeu_pd(p, v);
    else store_first_lanes64(p, n, _mm256_castpd_si256(v));
  }
  static V even_of(V lo, V hi) { return _mm256_permute4x64_pd(_mm256_unpacklo_pd(lo, hi), 0xD8); }
  static V odd_of(V lo, V hi) { return _mm256_permute4x64_pd(_mm256_unpackhi_pd(lo, hi), 0xD8); }

  static V zero() { return _mm256_setzero_pd(); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V load(const T* p, int64_t n) { return masked_load(p, n); }
  static V load_stride2(const T* p, int64_t n) {
    return even_of(masked_load(p, 2 * n - 1), masked_load(p + 4, 2 * n - 5));
  }
  static void store(T* p, int64_t n, V v) { masked_store(p, n, v); }
  static constexpr bool kNarrowIndices = false;
  static constexpr bool kMaxSweepsPastCaches = false;  // see kChannelBlock
  static constexpr bool kStreams = true;
  static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
  static void stream_index(int64_t* p, I i) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), i); }
  static void stream_fence() { _mm_sfence(); }
  static void store_index(int64_t* p, int64_t n, I i) {
    if (n >= 4) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), i);
    else store_first_lanes64(p, n, i);
  }
  static void add_to(T* p, int64_t n, V v) { masked_store(p, n, _mm256_add_pd(masked_load(p, n), v)); }
  static void add_to_stride2(T* p, int64_t n, V v) {
    const V lo = masked_load(p, 2 * n - 1), hi = masked_load(p + 4, 2 * n - 5);
    const V even = _mm256_add_pd(even_of(lo, hi), v), odd = odd_of(lo, hi);
    const V mixed_lo = _mm256_unpacklo_pd(even, odd), mixed_hi = _mm256_unpackhi_pd(even, odd);
    masked_store(p, 2 * n - 1, _mm256_permute2f128_pd(mixed_lo, mixed_hi, 0x20));
    masked_store(p + 4, 2 * n - 5, _mm256_permute2f128_pd(mixed_lo, mixed_hi, 0x31));
  }
  // Columns c < cols of the rows x cols tile at src (rows < L read as
  // zero), each as a vector whose lane r is row r: column[c] = src[r*src_stride + c].
  __attribute__((always_inline)) static void transpose_tile(const T* src, int64_t src_stride,
                                                            int64_t rows, int64_t cols,
                                                            V* column) {
    V r[4], t[4];
#pragma GCC unroll 16
    for (int i = 0; i < 4; ++i) r[i] = i < rows ? load(src + i * src_stride, cols) : zero();
    t[0] = _mm256_unpacklo_pd(r[0], r[1]);
    t[1] = _mm256_unpackhi_pd(r[0], r[1]);
    t[2] = _mm256_unpacklo_pd(r[2], r[3]);
    t[3] = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t[0], t[2], 0x20);
    r[1] = _mm256_permute2f128_pd(t[1], t[3], 0x20);
    r[2] = _mm256_permute2f128_pd(t[0], t[2], 0x31);
    r[3] = _mm256_permute2f128_pd(t[1], t[3], 0x31);
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
    const __m128i two = _mm_cmpgt_epi64(_mm_set1_epi64x((n + 1) / 2), _mm_setr_epi32(0, 0, 1, 0));
    const __m128d half = _mm_maskload_pd(p, two);
    return _mm256_permute4x64_pd(_mm256_castpd128_pd256(half), 0x50);
  }
  static M index64_equal_pairs(const int64_t* p, int64_t n, I i) {
    const __m128i two = _mm_cmpgt_epi64(_mm_set1_epi64x((n + 1) / 2), _mm_setr_epi32(0, 0, 1, 0));
    const __m128i x = _mm_maskload_epi64(reinterpret_cast<const long long*>(p), two);
    return index_equal(_mm256_permute4x64_epi64(_mm256_castsi128_si256(x), 0x50), i, n);
  }
  static M better(V v, V best) {
    return _mm256_or_pd(_mm256_cmp_pd(v, best, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
  }
  static V select(M m, V a, V b) { return _mm256_blendv_pd(a, b, m); }
  static I select_index(M m, I a, I b) {
    return _mm256_castpd_si256(
        _mm256_blendv_pd(_mm256_castsi256_pd(a), _mm256_castsi256_pd(b), m));
  }
  using IndexElem = int64_t;
  static I load_index_elems(const IndexElem* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static I load_index_elems(const IndexElem* p, int64_t n) {
    if (n >= 4) return load_index_elems(p);
    return _mm256_maskload_epi64(reinterpret_cast<const long long*>(p), first_bits(n));
  }
  static void store_index_elems(IndexElem* p, I i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), i);
  }
  static M index_equal(I a, I b, int64_t n) {
    return _mm256_castsi256_pd(_mm256_and_si256(_mm256_cmpeq_epi64(a, b), first_bits(n)));
  }
  static M index64_equal(const int64_t* p, int64_t n, int64_t value) {
    return index_equal(load_index_elems(p, n), _mm256_set1_epi64x(value), n);
  }
  static V add_where(M m, V acc, V v) { return _mm256_add_pd(acc, _mm256_and_pd(m, v)); }
  static int64_t count(M m) { return __builtin_popcount(_mm256_movemask_pd(m)); }
  static M lanes_between(int64_t lo, int64_t hi) {
    return _mm256_castsi256_pd(_mm256_andnot_si256(first_bits(lo), first_bits(hi)));
  }
  static I index1(int64_t x) { return _mm256_set1_epi64x(x); }
  static I index_iota(int64_t step) { return offsets(step); }
  static I index_add(I a, I b) { return _mm256_add_epi64(a, b); }
};

}  // namespace
}  // namespace pycnn

#include "pool2d_simd_kernels.h"

namespace pycnn {

PYCNN_CONSTINIT const PoolKernels<float> pool_kernels_avx2_f32 = make_pool_kernels<Avx2F32>();
PYCNN_CONSTINIT const PoolKernels<double> pool_kernels_avx2_f64 = make_pool_kernels<Avx2F64>();

}  // namespace pycnn

#pragma GCC pop_options

#endif  // __x86_64__
