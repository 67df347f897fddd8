// The CPU's fp32 multiply-add peak as this machine delivers it, measured
// rather than looked up, so that the benchmark's "% of peak" reflects the
// clock the cores actually run at (turbo, shared hosts, virtual machines).
#pragma once

#include <cstdint>

namespace pycnn::bench {

// One block of the measurement loop for each instruction set: `iterations`
// rounds of independent multiply-adds on registers, no memory traffic.  The
// result depends on every operation, so the compiler cannot drop any; the
// caller only keeps it alive.  Each lives in its own translation unit,
// compiled for its instruction set by function attributes, and may be called
// only when the CPU supports that instruction set.
float fma_block_generic(int64_t iterations, float seed);
float fma_block_avx2(int64_t iterations, float seed);
float fma_block_avx512(int64_t iterations, float seed);

// Floating-point operations per iteration of each block (a multiply-add
// counts two).
extern const int64_t kFmaBlockFlopsGeneric;
extern const int64_t kFmaBlockFlopsAvx2;
extern const int64_t kFmaBlockFlopsAvx512;

struct FmaPeak {
  double gflops;  // all threads together
  int threads;    // threads that actually ran at the same time
};

// Runs the block of the active instruction set (pycnn::active_cpu_isa) on
// `threads` threads at once through at::parallel_for for about `seconds`
// (after a short warm-up) and returns the summed rate.  Fewer threads run
// when torch's thread count is lower than `threads`.
FmaPeak measure_fma_peak(int threads, double seconds);

}  // namespace pycnn::bench
