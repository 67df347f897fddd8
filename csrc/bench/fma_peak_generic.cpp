// Baseline block of the multiply-add peak measurement (see fma_peak.h), for
// CPUs without AVX2: 128-bit vectors through the compiler's vector
// extension (SSE2 on x86-64, NEON elsewhere), a separate multiply and add
// where the baseline has no fused instruction.
#include "fma_peak.h"

namespace pycnn::bench {

namespace {
constexpr int kChains = 12;
typedef float Float4 __attribute__((vector_size(16)));
}  // namespace

const int64_t kFmaBlockFlopsGeneric = kChains * 4 * 2;

float fma_block_generic(int64_t iterations, float seed) {
  const Float4 a = {0.999f, 0.999f, 0.999f, 0.999f};
  const Float4 b = {0.001f, 0.001f, 0.001f, 0.001f};
  Float4 acc[kChains];
  for (int i = 0; i < kChains; ++i) {
    const float start = seed + 0.01f * static_cast<float>(i);
    acc[i] = Float4{start, start, start, start};
  }
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * a + b;
  }
  Float4 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum += acc[i];
  return sum[0] + sum[1] + sum[2] + sum[3];
}

}  // namespace pycnn::bench
