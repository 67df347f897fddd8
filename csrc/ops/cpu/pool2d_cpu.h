// What the four pooling ops' CPU entry points share: which kernel layout
// their tensors allow, the kernels' parameters, the split of rows over
// threads, and the max-pool gradient scatter (max_pool2d and
// adaptive_max_pool2d).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../pool2d.h"
#include "pool2d_simd.h"

namespace pycnn {

// nchw: dense contiguous; nhwc: dense channels_last (the two layouts
// empty_in_layout_of gives outputs); strided: anything else, which takes the
// reference loops.
enum class PoolLayout { nchw, nhwc, strided };

// The layout of `t` for kernels over planes of in_h x in_w (and outputs of
// out_h x out_w): strided also when the planes are too large for the
// kernels' int32 flat indices.
PoolLayout pool_layout(const at::Tensor& t, int64_t in_h, int64_t in_w, int64_t out_h,
                       int64_t out_w);

PoolParams pool_params(const Pool2dShape& s, bool count_include_pad = true,
                       std::optional<int64_t> divisor_override = std::nullopt);
PoolParams adaptive_pool_params(const AdaptivePool2dShape& s);
// Adaptive pooling whose windows tile the input evenly (in % out == 0 in
// both dimensions) is plain pooling with kernel = stride = in / out and no
// padding: same windows, same divisor.  Rewrites `p` so and returns true
// when that holds.
bool adaptive_as_plain(PoolParams* p);
// adaptive_as_plain, but only where the plain NCHW kernels then run vectors
// along rows (stride 1 or 2); otherwise plane groups are faster.
bool as_plain_with_row_vectors(PoolParams* p);

// Runs f(begin, end) over [0, rows), split over threads so that each chunk
// does at least a minimum of work (work_per_row, e.g. elements times taps).
template <typename F>
void parallel_rows(int64_t rows, int64_t work_per_row, const F& f) {
  constexpr int64_t kMinWorkPerChunk = int64_t{1} << 15;
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerChunk / std::max<int64_t>(1, work_per_row));
  at::parallel_for(0, rows, grain, f);
}

// Whether max_pool_backward_gather applies and beats the scatter: windows
// that do not overlap, and for nchw 2 wide at stride 2 along w (VGG's 2x2)
// on rows of 32 or more, for nhwc pixels wide enough to fill vectors, or
// any pixels where the windows tile the input and the ISA has the tiles
// kernel.  Elsewhere the gather's work
// per input element exceeds the scatter's per output.  (A vector scatter for
// overlapping nhwc windows, each output adding its gradient to every tap of
// its window under a lane mask, measured 0.75-1.0x the scalar scatter on
// AlexNet's and ResNet's 3x3 stride-2 pools: 9 read-modify-writes of a
// vector per vector of outputs, chained through the taps windows share.)
bool prefer_gather(PoolLayout layout, const PoolParams& p, at::ScalarType dtype);

// Whether a plain NCHW max or avg pool should run on the adaptive kernels'
// plane groups (one plane per vector lane): its windows tile the input
// exactly (kernel == stride, no padding or dilation), so the adaptive
// windows are the same, and its output rows are too short to fill a row
// vector.  The planes must fit plane_group_scratch.
bool use_plane_groups(const PoolParams& p);

// PoolParams' hints for a call reading `input_bytes` and writing
// `output_bytes` (values and indices): streaming stores and input prefetch
// where they exceed kLargeCallBytes, well past what the caches hold.
constexpr int64_t kLargeCallBytes = int64_t(16) << 20;
void set_large_call_hints(PoolParams* p, int64_t input_bytes, int64_t output_bytes);

// The max-pool gradient of plain pooling (or adaptive pooling made plain):
// every grad_input element gathers, in output order, the gradients of the
// outputs that cover it and chose it.  grad_input must be nchw or nhwc
// (dense); grad_output and indices are brought to its layout.  Returns
// false, leaving grad_input unspecified, if some index does not name a tap
// of its own window; the caller then runs the reference, which handles any
// index inside the plane and reports the others.
bool max_pool_backward_gather(const at::Tensor& grad_output, const at::Tensor& indices,
                              at::Tensor& grad_input, PoolLayout layout, const PoolParams& p);

// The scratch to give adaptive_{max,avg}_nchw: plane_group_scratch_bytes,
// or none (one plane at a time) past a few megabytes.
int64_t plane_group_scratch(const PoolParams& p, int64_t element_size);

// The input rows [lo[oh], hi[oh]) that the windows of output row oh cover.
struct RowBands {
  std::vector<int64_t> lo, hi;
};
RowBands max_pool_row_bands(const Pool2dShape& s);
RowBands adaptive_row_bands(const AdaptivePool2dShape& s);

// The max-pool gradient by scattering, for any windows: grad_input = 0, then
// grad_input[indices] += grad_output, plane by plane in output order
// (deterministic, no atomics), split over threads by input rows.  grad_input must be nchw or nhwc (dense)
// and grad_output is brought to its layout.  Returns false, leaving
// grad_input unspecified, if some index is not inside the rows its output's
// window covers; the caller then runs the reference, which handles any
// index inside the plane and reports the others.
bool max_pool_backward_scatter(const at::Tensor& grad_output, const at::Tensor& indices,
                               at::Tensor& grad_input, PoolLayout layout, const PoolParams& p,
                               const RowBands& bands);

}  // namespace pycnn
