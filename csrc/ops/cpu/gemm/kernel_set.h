// The micro-kernel set the CPU convolutions use on this machine.
#pragma once

#include "microkernels.h"

namespace pycnn {
namespace cpu {

// Follows active_cpu_isa() (cpu_features.h), so tests can pin an ISA.
template <typename T>
const KernelSet<T>& kernel_set();

// The shape whose NR covers `cols` output columns with the least padding
// (ties go to the earlier, preferred shape).
template <typename T>
const IndirectKernel<T>& kernel_for_columns(const KernelSet<T>& set, int64_t cols);

}  // namespace cpu
}  // namespace pycnn
