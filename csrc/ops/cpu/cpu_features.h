// Which SIMD instruction set the CPU kernels use.  The library is compiled
// for baseline x86-64; the AVX2 and AVX-512 kernels are compiled with
// function-level target attributes and chosen here at run time, so the same
// build runs on any x86-64 CPU.
#pragma once

namespace pycnn {

enum class CpuIsa { generic = 0, avx2 = 1, avx512 = 2 };

// The best instruction set this CPU supports.
CpuIsa detected_cpu_isa();
// The one the kernels use: the detected one, capped by the PYCNN_CPU_ISA
// environment variable (generic, avx2 or avx512) or by set_cpu_isa.
CpuIsa active_cpu_isa();
// Caps the kernels at `isa` (for tests and benchmarks); returns false when
// the CPU does not support it, leaving the choice unchanged.
bool set_cpu_isa(CpuIsa isa);
const char* cpu_isa_name(CpuIsa isa);
// Parses a name from cpu_isa_name; returns false if it is not one.
bool parse_cpu_isa(const char* name, CpuIsa* isa);

// Bytes of one core's L2 cache, as the C library reports it (1 MiB where it
// reports none), for working sets sized to stay there.
long l2_cache_bytes();

}  // namespace pycnn
