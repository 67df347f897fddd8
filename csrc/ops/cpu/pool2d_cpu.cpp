#include "pool2d_cpu.h"

#include <ATen/Dispatch.h>

#include <atomic>

#include "../../shape.h"

namespace pycnn {

template <>
const PoolKernels<float>& pool_kernels<float>(CpuIsa isa) {
#if defined(__x86_64__)
  if (isa == CpuIsa::avx512) return pool_kernels_avx512_f32;
  if (isa == CpuIsa::avx2) return pool_kernels_avx2_f32;
#endif
  return pool_kernels_generic_f32;
}

template <>
const PoolKernels<double>& pool_kernels<double>(CpuIsa isa) {
#if defined(__x86_64__)
  if (isa == CpuIsa::avx512) return pool_kernels_avx512_f64;
  if (isa == CpuIsa::avx2) return pool_kernels_avx2_f64;
#endif
  return pool_kernels_generic_f64;
}

PoolLayout pool_layout(const at::Tensor& t, int64_t in_h, int64_t in_w, int64_t out_h,
                       int64_t out_w) {
  // Flat indices within a plane are int32 in the float kernels.
  constexpr int64_t kMaxPlane = int64_t{1} << 31;
  if (in_h * in_w >= kMaxPlane || out_h * out_w >= kMaxPlane) return PoolLayout::strided;
  if (t.is_contiguous()) return PoolLayout::nchw;
  if (is_channels_last(t)) return PoolLayout::nhwc;
  return PoolLayout::strided;
}

PoolParams pool_params(const Pool2dShape& s, bool count_include_pad,
                       std::optional<int64_t> divisor_override) {
  PoolParams p{};
  p.batch = s.batch;
  p.channels = s.channels;
  p.in_h = s.in_h;
  p.in_w = s.in_w;
  p.out_h = s.out_h;
  p.out_w = s.out_w;
  p.kernel_h = s.kernel_h;
  p.kernel_w = s.kernel_w;
  p.stride_h = s.stride_h;
  p.stride_w = s.stride_w;
  p.pad_h = s.pad_h;
  p.pad_w = s.pad_w;
  p.dilation_h = s.dilation_h;
  p.dilation_w = s.dilation_w;
  p.count_include_pad = count_include_pad;
  p.divisor_override = divisor_override.value_or(0);
  return p;
}

PoolParams adaptive_pool_params(const AdaptivePool2dShape& s) {
  PoolParams p{};
  p.batch = s.batch;
  p.channels = s.channels;
  p.in_h = s.in_h;
  p.in_w = s.in_w;
  p.out_h = s.out_h;
  p.out_w = s.out_w;
  p.dilation_h = p.dilation_w = 1;
  p.count_include_pad = true;
  return p;
}

bool adaptive_as_plain(PoolParams* p) {
  if (p->out_h <= 0 || p->out_w <= 0 || p->in_h % p->out_h != 0 || p->in_w % p->out_w != 0)
    return false;
  p->kernel_h = p->stride_h = p->in_h / p->out_h;
  p->kernel_w = p->stride_w = p->in_w / p->out_w;
  p->pad_h = p->pad_w = 0;
  p->dilation_h = p->dilation_w = 1;
  p->count_include_pad = true;
  p->divisor_override = 0;
  return true;
}

bool as_plain_with_row_vectors(PoolParams* p) {
  PoolParams plain = *p;
  if (!adaptive_as_plain(&plain) || plain.stride_w > 2) return false;
  *p = plain;
  return true;
}

// Measured (A/B in one process, 2 threads, float32): 64x16x10x10 -> 5x5
// (LeNet S4) max 72.8 -> 30.8 us, avg 32.9 -> 17.4; 8x512x14x14 -> 7x7 (VGG
// pool5) max 281 -> 165, avg 171 -> 125.  At 14 outputs a row (LeNet S2)
// the two were even (max) or the groups 10 % slower (avg); at 28, 20-35 %
// slower.
constexpr int64_t kPlaneGroupMaxOutW = 8;

namespace {

// Windows that tile the input (kernel == stride, no padding or dilation),
// none of them partial; input rows and columns past the last window are
// allowed.
bool tiles_exactly(const PoolParams& p) {
  return p.kernel_h == p.stride_h && p.kernel_w == p.stride_w && p.pad_h == 0 && p.pad_w == 0 &&
         p.dilation_h == 1 && p.dilation_w == 1 && p.out_h * p.stride_h <= p.in_h &&
         p.out_w * p.stride_w <= p.in_w;
}

}  // namespace

bool use_plane_groups(const PoolParams& p) {
  return tiles_exactly(p) && p.in_h == p.out_h * p.kernel_h && p.in_w == p.out_w * p.kernel_w &&
         p.out_w < kPlaneGroupMaxOutW && plane_group_scratch(p, 8) > 0;
}

int64_t plane_group_scratch_bytes(const PoolParams& p, int64_t element_size) {
  // As adaptive_*_nchw lay it out: 16 lanes of input, output and indices
  // (indices as wide as the elements).
  constexpr int64_t kMaxLanes = 16;
  return kMaxLanes * (p.in_h * p.in_w + 2 * p.out_h * p.out_w) * element_size;
}

int64_t plane_group_scratch(const PoolParams& p, int64_t element_size) {
  constexpr int64_t kMaxScratch = int64_t{8} << 20;
  const int64_t bytes = plane_group_scratch_bytes(p, element_size);
  return bytes <= kMaxScratch ? bytes : 0;
}

// Measured on VGG-16's pool1 and pool2 (8x64x224x224 and 8x128x112x112,
// NCHW, 2 threads, A/B interleaved in one process): in three runs,
// prefetching two output rows ahead took them from 8.1-8.9 to 3.6-5.8 ms
// and from 2.3 to 1.9 ms, and streaming stores took pool1 on to 3.3 ms; in
// two runs a quarter of an hour later (this machine's memory is shared) all
// variants took 8.7-9.4 and 3.0 ms.  Never slower on these sizes; on inputs
// that fit the caches both cost about 10 %, hence the threshold.  In
// channels_last (streaming only; three A/B runs): VGG pool1 5.0-5.4 ->
// 3.6-3.9 ms, the ResNet stem pool 0.94-0.98 -> 0.76-0.90, pool2 and pool3
// within their noise (-11 % to +16 %).
void set_large_call_hints(PoolParams* p, int64_t input_bytes, int64_t output_bytes) {
  p->input_past_caches = input_bytes >= kLargeCallBytes;
  p->prefetch_rows_ahead = p->input_past_caches ? 2 : 0;
  p->stream_stores = output_bytes >= kLargeCallBytes;
}

namespace {

// The nhwc tiles kernel for these windows and this dtype, or null.
template <typename T>
auto tiles_kernel(const PoolParams& p) {
  // On narrower pixels the scatter is faster: 64x16x10x10 (LeNet S4) 54 us
  // against its 43, 64x6x28x28 (S2) 151 against 54.
  constexpr int64_t kMinChannels = 32;
  return p.channels >= kMinChannels && tiles_exactly(p)
             ? pool_kernels<T>(active_cpu_isa()).max_backward_tiles_nhwc
             : nullptr;
}

bool has_tiles_kernel(const PoolParams& p, at::ScalarType dtype) {
  return dtype == at::kFloat ? tiles_kernel<float>(p) != nullptr
                             : dtype == at::kDouble && tiles_kernel<double>(p) != nullptr;
}

}  // namespace

bool prefer_gather(PoolLayout layout, const PoolParams& p, at::ScalarType dtype) {
  const bool no_overlap = max_covering_outputs(p.kernel_h, p.stride_h, p.dilation_h) == 1 &&
                          max_covering_outputs(p.kernel_w, p.stride_w, p.dilation_w) == 1;
  // The tiles kernel against the per-pixel gather, channels_last, A/B in
  // one process on Zen 3 (AVX2, 2 threads, direct calls): 8x512x14x14 k2
  // (VGG pool5) 90-155 us against 160-262 (torch 131-212), 8x128x112x112
  // 2.8-3.7 ms against 4.6-6.0, 64x32x10x10 72 us against 116-124 (torch
  // 75-80); a global 7x7 pool of 2048 channels even (64-95 us).
  if (layout == PoolLayout::nhwc && has_tiles_kernel(p, dtype)) return true;
  // The nchw gather's fixed cost per input row outweighs its savings on
  // rows shorter than this.
  constexpr int64_t kMinRow = 32;
  if (layout == PoolLayout::nchw)
    return no_overlap && p.kernel_w == 2 && p.stride_w == 2 && p.dilation_w == 1 &&
           p.in_w >= kMinRow;
  constexpr int64_t kMinChannels = 32;
  return layout == PoolLayout::nhwc && no_overlap && p.channels >= kMinChannels;
}

bool max_pool_backward_gather(const at::Tensor& grad_output, const at::Tensor& indices,
                              at::Tensor& grad_input, PoolLayout layout, const PoolParams& p) {
  const bool nhwc = layout == PoolLayout::nhwc;
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor go = grad_output.contiguous(format);
  const at::Tensor ix = indices.contiguous(format);
  const int64_t rows = (nhwc ? p.batch : p.batch * p.channels) * p.in_h;
  const int64_t covering = max_covering_outputs(p.kernel_h, p.stride_h, p.dilation_h) *
                           max_covering_outputs(p.kernel_w, p.stride_w, p.dilation_w);
  const int64_t work = p.in_w * (nhwc ? p.channels : 1) * (1 + covering);
  std::atomic<int64_t> matches{0};
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "pycnn.max_pool2d_backward", [&] {
    const PoolKernels<scalar_t>& kernels = pool_kernels<scalar_t>(active_cpu_isa());
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    const int64_t* i = ix.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    if (const auto tiles = nhwc ? tiles_kernel<scalar_t>(p) : nullptr) {
      parallel_rows(p.batch * p.out_h, p.out_w * p.channels * p.kernel_h * p.kernel_w,
                    [&](int64_t begin, int64_t end) {
                      int64_t found = 0;
                      tiles(g, i, gi, p, begin, end, &found);
                      matches.fetch_add(found, std::memory_order_relaxed);
                    });
      return;
    }
    parallel_rows(rows, work, [&](int64_t begin, int64_t end) {
      int64_t found = 0;
      if (nhwc) {
        kernels.max_backward_nhwc(g, i, gi, p, begin, end, &found);
      } else {
        kernels.max_backward_nchw(g, i, gi, p, begin, end, &found);
      }
      matches.fetch_add(found, std::memory_order_relaxed);
    });
  });
  return matches.load() == p.batch * p.channels * p.out_h * p.out_w;
}

RowBands max_pool_row_bands(const Pool2dShape& s) {
  RowBands bands{std::vector<int64_t>(s.out_h), std::vector<int64_t>(s.out_h)};
  for (int64_t oh = 0; oh < s.out_h; ++oh) {
    const int64_t h0 = oh * s.stride_h - s.pad_h;
    const TapRange taps = valid_taps(h0, s.in_h, s.kernel_h, s.dilation_h);
    bands.lo[oh] = h0 + taps.first * s.dilation_h;
    bands.hi[oh] = taps.last > taps.first ? h0 + (taps.last - 1) * s.dilation_h + 1 : bands.lo[oh];
  }
  return bands;
}

RowBands adaptive_row_bands(const AdaptivePool2dShape& s) {
  RowBands bands{std::vector<int64_t>(s.out_h), std::vector<int64_t>(s.out_h)};
  for (int64_t oh = 0; oh < s.out_h; ++oh) {
    bands.lo[oh] = adaptive_start(oh, s.out_h, s.in_h);
    bands.hi[oh] = adaptive_end(oh, s.out_h, s.in_h);
  }
  return bands;
}

namespace {

// Input rows [begin, end) of the images (nchw: planes; nhwc: images with
// `channels` interleaved): zero them, then add every gradient whose index
// lands in them, visiting only the output rows whose windows reach them.
template <typename T, bool kChannelsLast>
bool scatter_rows(const T* grad_out, const int64_t* indices, T* grad_in, const PoolParams& p,
                  const RowBands& bands, int64_t begin, int64_t end) {
  const int64_t c = kChannelsLast ? p.channels : 1;
  const int64_t in_image = p.in_h * p.in_w * c, out_image = p.out_h * p.out_w * c;
  bool ok = true;
  // Each image (or part) is zeroed just before its scatter, while it is in
  // L1 or L2 (zeroing the whole chunk first cost LeNet S2 and VGG pool5's
  // NCHW backward 10-15 %).
  const uint64_t plane = static_cast<uint64_t>(p.in_h * p.in_w);
  for (int64_t r = begin; r < end;) {
    const int64_t image = r / p.in_h, a = r % p.in_h, b = std::min(p.in_h, a + (end - r));
    if (a == 0 && b == p.in_h) {
      // A run of whole images: any index inside its image is fine, in any
      // window.  One loop over the run, not one pass of this loop per image:
      // a global pool's images have one output each (16k of them in ResNet-50's).
      const int64_t images = (end - r) / p.in_h;
      // Small images are zeroed a group at a time, so that a fill call
      // covers at least kFillBytes.
      constexpr int64_t kFillBytes = 16 << 10;
      const int64_t group = std::max<int64_t>(1, kFillBytes / (in_image * int64_t(sizeof(T))));
      for (int64_t i = image; i < image + images; ++i) {
        T* g = grad_in + i * in_image;
        if ((i - image) % group == 0)
          std::fill(g, g + std::min(group, image + images - i) * in_image, T(0));
        const T* go = grad_out + i * out_image;
        const int64_t* ix = indices + i * out_image;
        for (int64_t o = 0; o < out_image; o += c) {
          for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t target = ix[o + ch];
            if (static_cast<uint64_t>(target) >= plane) {
              ok = false;
              continue;
            }
            g[target * c + ch] += go[o + ch];
          }
        }
      }
      r += images * p.in_h;
      continue;
    }
    r += b - a;
    T* g = grad_in + image * in_image;
    const int64_t lo = a * p.in_w, hi = b * p.in_w;
    std::fill(g + lo * c, g + hi * c, T(0));
    const T* go = grad_out + image * out_image;
    const int64_t* ix = indices + image * out_image;
    // Part of the image: only the output rows whose windows reach it, and
    // only their indices that land in it (the other parts take the rest).
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      if (bands.hi[oh] <= a || bands.lo[oh] >= b) continue;
      const int64_t band_lo = bands.lo[oh] * p.in_w, band_hi = bands.hi[oh] * p.in_w;
      const int64_t row = oh * p.out_w * c;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        for (int64_t ch = 0; ch < c; ++ch) {
          const int64_t o = row + ow * c + ch;
          const int64_t target = ix[o];
          if (target < band_lo || target >= band_hi) {
            ok = false;
          } else if (target >= lo && target < hi) {
            g[target * c + ch] += go[o];
          }
        }
      }
    }
  }
  return ok;
}

}  // namespace

bool max_pool_backward_scatter(const at::Tensor& grad_output, const at::Tensor& indices,
                               at::Tensor& grad_input, PoolLayout layout, const PoolParams& p,
                               const RowBands& bands) {
  const auto format =
      layout == PoolLayout::nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor go = grad_output.contiguous(format);
  const at::Tensor ix = indices.contiguous(format);
  const int64_t images = layout == PoolLayout::nhwc ? p.batch : p.batch * p.channels;
  const int64_t per_pixel = layout == PoolLayout::nhwc ? p.channels : 1;
  // Work per input row: zeroing it, plus about its share of the outputs.
  const int64_t work = per_pixel * (p.in_w + (p.out_h * p.out_w + p.in_h - 1) / p.in_h);
  std::atomic<bool> ok{true};
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "pycnn.max_pool_backward", [&] {
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    const int64_t* i = ix.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    parallel_rows(images * p.in_h, work, [&](int64_t begin, int64_t end) {
      const bool chunk_ok =
          layout == PoolLayout::nhwc
              ? scatter_rows<scalar_t, true>(g, i, gi, p, bands, begin, end)
              : scatter_rows<scalar_t, false>(g, i, gi, p, bands, begin, end);
      if (!chunk_ok) ok.store(false, std::memory_order_relaxed);
    });
  });
  return ok.load();
}

}  // namespace pycnn
