#include "cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include <unistd.h>

namespace pycnn {

namespace {

CpuIsa initial_isa() {
  const CpuIsa detected = detected_cpu_isa();
  CpuIsa requested;
  const char* env = std::getenv("PYCNN_CPU_ISA");
  if (env != nullptr && parse_cpu_isa(env, &requested) && requested < detected) return requested;
  return detected;
}

std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

CpuIsa detected_cpu_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::avx2;
#endif
  return CpuIsa::generic;
}

CpuIsa active_cpu_isa() { return static_cast<CpuIsa>(active_isa_slot().load(std::memory_order_relaxed)); }

bool set_cpu_isa(CpuIsa isa) {
  if (isa > detected_cpu_isa()) return false;
  active_isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512: return "avx512";
    case CpuIsa::avx2: return "avx2";
    default: return "generic";
  }
}

long l2_cache_bytes() {
  static const long bytes = [] {
    long reported = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return reported > 0 ? reported : 1L << 20;
  }();
  return bytes;
}

bool parse_cpu_isa(const char* name, CpuIsa* isa) {
  for (CpuIsa candidate : {CpuIsa::generic, CpuIsa::avx2, CpuIsa::avx512}) {
    if (std::strcmp(name, cpu_isa_name(candidate)) == 0) {
      *isa = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace pycnn
