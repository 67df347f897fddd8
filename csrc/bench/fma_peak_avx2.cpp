// AVX2+FMA block of the multiply-add peak measurement (see fma_peak.h).  Only
// this function is compiled for AVX2, so the library still loads and runs on
// CPUs without it.
#include <immintrin.h>

#include "fma_peak.h"

namespace pycnn::bench {

namespace {
// Enough independent chains to cover two FMA pipes at up to six cycles of
// latency, within the 16 vector registers.
constexpr int kChains = 12;
}  // namespace

const int64_t kFmaBlockFlopsAvx2 = kChains * 8 * 2;

__attribute__((target("avx2,fma"))) float fma_block_avx2(int64_t iterations, float seed) {
  const __m256 a = _mm256_set1_ps(0.999f);
  const __m256 b = _mm256_set1_ps(0.001f);
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(seed + 0.01f * static_cast<float>(i));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0.f;
  for (float lane : lanes) total += lane;
  return total;
}

}  // namespace pycnn::bench
