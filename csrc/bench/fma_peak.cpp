#include "fma_peak.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <mutex>

#include "../ops/cpu/cpu_features.h"

namespace pycnn::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct Block {
  float (*run)(int64_t, float);
  int64_t flops_per_iteration;
};

Block active_block() {
  switch (active_cpu_isa()) {
    case CpuIsa::avx512: return {fma_block_avx512, kFmaBlockFlopsAvx512};
    case CpuIsa::avx2: return {fma_block_avx2, kFmaBlockFlopsAvx2};
    default: return {fma_block_generic, kFmaBlockFlopsGeneric};
  }
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs blocks on the calling thread for about `seconds` and returns its rate
// in flop/s.  Blocks of a few microseconds keep the clock reads negligible.
double window_rate(const Block& block, double seconds, float seed, float* sink) {
  constexpr int64_t kIterations = 4096;
  double flops = 0;
  float keep = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  do {
    keep += block.run(kIterations, seed);
    flops += static_cast<double>(kIterations * block.flops_per_iteration);
    elapsed = seconds_since(start);
  } while (elapsed < seconds);
  *sink += keep;
  return flops / elapsed;
}

// The best of several windows: other processes and interrupts only ever take
// cycles away, so the fastest window is the closest to what the core can do.
double thread_rate(const Block& block, double seconds, float seed, float* sink) {
  constexpr int kWindows = 8;
  double best = 0;
  for (int w = 0; w < kWindows; ++w) {
    best = std::max(best, window_rate(block, seconds / kWindows, seed, sink));
  }
  return best;
}

}  // namespace

FmaPeak measure_fma_peak(int threads, double seconds) {
  const Block block = active_block();
  std::mutex mutex;
  double total_rate = 0;
  int ran = 0;
  float sink = 0;
  // One chunk per thread that runs: each measures its own best rate while the
  // others run too, and the rates add up.  A thread that got several chunks
  // (torch allowed fewer threads than asked) still counts once.
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    float local_sink = 0;
    window_rate(block, seconds * 0.25, 1.0f + static_cast<float>(begin), &local_sink);  // clocks ramp up
    const double rate = thread_rate(block, seconds, 1.0f + static_cast<float>(begin), &local_sink);
    std::lock_guard<std::mutex> lock(mutex);
    total_rate += rate;
    ++ran;
    sink += local_sink;
  });
  // The sums converge to 12 per lane, never to NaN; the check keeps `sink`
  // (and so every block's result) observable.
  if (sink != sink) return {0.0, ran};
  return {total_rate * 1e-9, ran};
}

}  // namespace pycnn::bench
