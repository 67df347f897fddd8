// AVX-512 block of the multiply-add peak measurement (see fma_peak.h).  Only
// this function is compiled for AVX-512, so the library still loads and runs
// on CPUs without it.
#include <immintrin.h>

#include "fma_peak.h"

namespace pycnn::bench {

namespace {
// Two FMA pipes with a latency of four cycles need eight chains in flight;
// twelve leave headroom for longer latencies without running out of the 32
// vector registers.
constexpr int kChains = 12;
}  // namespace

const int64_t kFmaBlockFlopsAvx512 = kChains * 16 * 2;

__attribute__((target("avx512f"))) float fma_block_avx512(int64_t iterations, float seed) {
  // acc = acc * a + b converges to b / (1 - a) = 1: no overflow, no denormals.
  const __m512 a = _mm512_set1_ps(0.999f);
  const __m512 b = _mm512_set1_ps(0.001f);
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(seed + 0.01f * static_cast<float>(i));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  // Summed through memory: GCC 12's _mm512_reduce_add_ps warns about an
  // uninitialised register inside its own header.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0.f;
  for (float lane : lanes) total += lane;
  return total;
}

}  // namespace pycnn::bench
