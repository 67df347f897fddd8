// conv2d's fast kernels for exact float32 (FFMA): one translation unit per
// kernel family, so that the families compile in parallel.
#include "conv2d_cuda.h"
#include "conv2d_fast_launch.cuh"

namespace pycnn {
namespace gpu {

using Kernelsffma = SimtKernels;
PYCNN_DEFINE_FAST_CONV(ffma, Kernelsffma)

}  // namespace gpu
}  // namespace pycnn
