// Calls every pycnn op through the dispatcher, as a C++ program linked to
// libpycnn would, and compares with ATen's own ops (fine as a reference in a
// test).  No Python: this checks that the library registers and runs on its
// own.  Exit status 0 when every check passes; each failure is printed.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <array>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "ops/common.h"

namespace {

int checks = 0;
int failures = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::cerr << "FAILED: " << what << "\n";
  }
}

std::string str(c10::IntArrayRef v) { return pycnn::format_sizes(v); }

// |ours - ref| <= tol * (1 + max|ref|): float64 to rounding; float32 against a
// float64 reference.  NaN anywhere (an unwritten, poisoned element) fails.
void expect_close(const at::Tensor& ours, const at::Tensor& ref, const std::string& what) {
  if (ours.sizes() != ref.sizes()) {
    expect(false, what + ": shape " + str(ours.sizes()) + ", ATen " + str(ref.sizes()));
    return;
  }
  if (ref.numel() == 0) {
    expect(true, what);
    return;
  }
  const at::Tensor o = ours.to(at::kDouble), r = ref.to(at::kDouble);
  const double tol = ours.scalar_type() == at::kDouble ? 1e-10 : 1e-4;
  const double scale = r.abs().max().item<double>();
  const double error = (o - r).abs().max().item<double>();
  std::ostringstream msg;
  msg << what << ": max error " << error << " (allowed " << tol * (1 + scale) << ")";
  expect(error <= tol * (1 + scale), msg.str());
}

void expect_equal(const at::Tensor& ours, const at::Tensor& ref, const std::string& what) {
  expect(ours.sizes() == ref.sizes() && at::equal(ours, ref), what + ": not equal to ATen's");
}

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using Ints = c10::IntArrayRef;
using Tensor = at::Tensor;

std::vector<int64_t> sizes_of(const Tensor& t) { return t.sizes().vec(); }

at::Tensor in_layout(const at::Tensor& t, bool channels_last) {
  return channels_last ? t.contiguous(at::MemoryFormat::ChannelsLast) : t;
}

// ----------------------------------------------------------------- conv2d

struct ConvCase {
  int64_t n, c_in, c_out, h, w, kh, kw;
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
  bool bias;
};

void test_conv2d(at::ScalarType dtype, bool channels_last) {
  auto conv = op<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, Ints, Ints,
                        Ints, int64_t)>("pycnn::conv2d");
  auto input_backward =
      op<Tensor(const Tensor&, const Tensor&, Ints, Ints, Ints, Ints, int64_t)>(
          "pycnn::conv2d_input_backward");
  auto weight_backward =
      op<Tensor(const Tensor&, const Tensor&, Ints, Ints, Ints, Ints, int64_t)>(
          "pycnn::conv2d_weight_backward");
  auto bias_backward = op<Tensor(const Tensor&)>("pycnn::conv2d_bias_backward");

  const std::vector<ConvCase> cases = {
      {2, 3, 8, 9, 11, 3, 3, {1}, {1}, {1}, 1, true},
      {1, 17, 33, 13, 7, 3, 3, {2}, {0}, {1}, 1, false},
      {2, 16, 16, 10, 12, 3, 3, {1}, {1}, {1}, 16, true},  // depthwise
      {1, 12, 8, 9, 9, 5, 3, {1, 2}, {2, 1}, {1, 2}, 4, true},
      {1, 4, 5, 23, 17, 11, 11, {4}, {5}, {1}, 1, true},
      {1, 64, 3, 6, 5, 1, 1, {1}, {0}, {1}, 1, true},
      {0, 3, 4, 5, 5, 3, 3, {1}, {1}, {1}, 1, true},
  };
  for (const ConvCase& c : cases) {
    std::ostringstream name;
    name << "conv2d " << at::toString(dtype) << (channels_last ? " channels_last" : "")
         << " input [" << c.n << ", " << c.c_in << ", " << c.h << ", " << c.w << "] weight ["
         << c.c_out << ", " << c.c_in / c.groups << ", " << c.kh << ", " << c.kw << "] stride "
         << str(c.stride) << " padding " << str(c.padding) << " dilation " << str(c.dilation)
         << " groups " << c.groups;
    const auto opts = at::TensorOptions().dtype(dtype);
    const Tensor x = in_layout(at::randn({c.n, c.c_in, c.h, c.w}, opts), channels_last);
    const Tensor w = at::randn({c.c_out, c.c_in / c.groups, c.kh, c.kw}, opts);
    const std::optional<Tensor> b =
        c.bias ? std::optional<Tensor>(at::randn({c.c_out}, opts)) : std::nullopt;
    const Tensor x64 = x.to(at::kDouble), w64 = w.to(at::kDouble);
    const std::optional<Tensor> b64 =
        b ? std::optional<Tensor>(b->to(at::kDouble)) : std::nullopt;

    const Tensor out = conv.call(x, w, b, c.stride, c.padding, c.dilation, c.groups);
    const Tensor ref = at::conv2d(x64, w64, b64, c.stride, c.padding, c.dilation, c.groups);
    expect_close(out, ref, name.str() + ": output");
    expect(out.scalar_type() == dtype, name.str() + ": output dtype");
    expect(!channels_last || c.n == 0 || out.is_contiguous(at::MemoryFormat::ChannelsLast),
           name.str() + ": output is channels_last like the input");

    const Tensor grad = in_layout(at::randn(ref.sizes(), opts), channels_last);
    const auto [gi, gw, gb] = at::convolution_backward(
        grad.to(at::kDouble), x64, w64, std::vector<int64_t>{c.c_out}, c.stride, c.padding,
        c.dilation, false, {0, 0}, c.groups, {true, true, true});
    expect_close(input_backward.call(grad, w, sizes_of(x), c.stride, c.padding, c.dilation,
                                     c.groups),
                 gi, name.str() + ": input backward");
    expect_close(weight_backward.call(grad, x, sizes_of(w), c.stride, c.padding, c.dilation,
                                      c.groups),
                 gw, name.str() + ": weight backward");
    expect_close(bias_backward.call(grad), gb, name.str() + ": bias backward");
  }
}

// ----------------------------------------------------------------- pooling

struct PoolCase {
  int64_t n, c, h, w;
  std::vector<int64_t> kernel, stride, padding, dilation;
  bool ceil_mode;
};

const std::vector<PoolCase> kPoolCases = {
    {2, 3, 9, 10, {2}, {}, {0}, {1}, false},
    {1, 17, 11, 7, {3}, {2}, {1}, {1}, true},
    {2, 4, 12, 13, {3, 2}, {1, 2}, {1, 1}, {2, 1}, false},
    {1, 16, 5, 70, {2, 5}, {2, 3}, {1, 2}, {1, 1}, true},
    {0, 3, 6, 6, {2}, {2}, {0}, {1}, false},
};

std::string pool_name(const char* what, const PoolCase& c, at::ScalarType dtype,
                      bool channels_last) {
  std::ostringstream name;
  name << what << " " << at::toString(dtype) << (channels_last ? " channels_last" : "")
       << " input [" << c.n << ", " << c.c << ", " << c.h << ", " << c.w << "] kernel "
       << str(c.kernel) << " stride " << str(c.stride) << " padding " << str(c.padding)
       << " dilation " << str(c.dilation) << (c.ceil_mode ? " ceil_mode" : "");
  return name.str();
}

void test_max_pool2d(at::ScalarType dtype, bool channels_last) {
  auto forward = op<std::tuple<Tensor, Tensor>(const Tensor&, Ints, Ints, Ints, Ints, bool)>(
      "pycnn::max_pool2d_with_indices");
  auto backward = op<Tensor(const Tensor&, const Tensor&, Ints, Ints, Ints, Ints, Ints, bool)>(
      "pycnn::max_pool2d_backward");
  for (const PoolCase& c : kPoolCases) {
    const std::string name = pool_name("max_pool2d", c, dtype, channels_last);
    const Tensor x = in_layout(at::randn({c.n, c.c, c.h, c.w}, at::TensorOptions().dtype(dtype)),
                               channels_last);
    const auto [out, idx] = forward.call(x, c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
    const auto [ref, ref_idx] =
        at::max_pool2d_with_indices(x, c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
    expect_equal(out, ref, name + ": output");
    expect_equal(idx, ref_idx, name + ": indices");
    const Tensor grad = at::randn(ref.sizes(), x.options());
    const Tensor ref_gi = at::max_pool2d_with_indices_backward(
        grad.to(at::kDouble), x.to(at::kDouble), c.kernel, c.stride, c.padding, c.dilation,
        c.ceil_mode, ref_idx);
    expect_close(backward.call(grad, idx, sizes_of(x), c.kernel, c.stride, c.padding, c.dilation,
                               c.ceil_mode),
                 ref_gi, name + ": backward");
  }
}

void test_avg_pool2d(at::ScalarType dtype, bool channels_last) {
  auto forward = op<Tensor(const Tensor&, Ints, Ints, Ints, bool, bool, std::optional<int64_t>)>(
      "pycnn::avg_pool2d");
  auto backward =
      op<Tensor(const Tensor&, Ints, Ints, Ints, Ints, bool, bool, std::optional<int64_t>)>(
          "pycnn::avg_pool2d_backward");
  for (const PoolCase& c : kPoolCases) {
    for (const bool count_include_pad : {true, false}) {
      for (const std::optional<int64_t> divisor : {std::optional<int64_t>(), std::optional<int64_t>(3)}) {
        const std::string name = pool_name("avg_pool2d", c, dtype, channels_last) +
                                 (count_include_pad ? " count_include_pad" : "") +
                                 (divisor ? " divisor_override 3" : "");
        const Tensor x = in_layout(
            at::randn({c.n, c.c, c.h, c.w}, at::TensorOptions().dtype(dtype)), channels_last);
        const Tensor x64 = x.to(at::kDouble);
        const Tensor out =
            forward.call(x, c.kernel, c.stride, c.padding, c.ceil_mode, count_include_pad, divisor);
        const Tensor ref =
            at::avg_pool2d(x64, c.kernel, c.stride, c.padding, c.ceil_mode, count_include_pad, divisor);
        expect_close(out, ref, name + ": output");
        const Tensor grad = at::randn(ref.sizes(), x.options());
        const Tensor ref_gi = at::avg_pool2d_backward(grad.to(at::kDouble), x64, c.kernel, c.stride,
                                                      c.padding, c.ceil_mode, count_include_pad,
                                                      divisor);
        expect_close(backward.call(grad, sizes_of(x), c.kernel, c.stride, c.padding, c.ceil_mode,
                                   count_include_pad, divisor),
                     ref_gi, name + ": backward");
      }
    }
  }
}

void test_adaptive_pools(at::ScalarType dtype, bool channels_last) {
  auto avg = op<Tensor(const Tensor&, Ints)>("pycnn::adaptive_avg_pool2d");
  auto avg_backward = op<Tensor(const Tensor&, Ints)>("pycnn::adaptive_avg_pool2d_backward");
  auto max = op<std::tuple<Tensor, Tensor>(const Tensor&, Ints)>("pycnn::adaptive_max_pool2d");
  auto max_backward =
      op<Tensor(const Tensor&, const Tensor&, Ints)>("pycnn::adaptive_max_pool2d_backward");
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {
      {{2, 3, 10, 10}, {1, 1}}, {{2, 3, 10, 10}, {5, 5}}, {{1, 17, 13, 11}, {4, 5}},
      {{2, 4, 5, 7}, {13, 17}}, {{1, 16, 1, 70}, {1, 9}}, {{0, 3, 6, 6}, {2, 3}},
  };
  for (const auto& [shape, size] : cases) {
    const std::string name = std::string(at::toString(dtype)) +
                             (channels_last ? " channels_last" : "") + " input " + str(shape) +
                             " output_size " + str(size);
    const Tensor x = in_layout(at::randn(shape, at::TensorOptions().dtype(dtype)), channels_last);
    const Tensor x64 = x.to(at::kDouble);

    const Tensor ref_avg = at::adaptive_avg_pool2d(x64, size);
    expect_close(avg.call(x, size), ref_avg, "adaptive_avg_pool2d " + name + ": output");
    const Tensor grad = at::randn(ref_avg.sizes(), x.options());
    if (x.numel() > 0) {  // ATen's backward refuses an empty batch
      expect_close(avg_backward.call(grad, shape),
                   at::_adaptive_avg_pool2d_backward(grad.to(at::kDouble), x64),
                   "adaptive_avg_pool2d " + name + ": backward");
    }

    const auto [out, idx] = max.call(x, size);
    const auto [ref, ref_idx] = at::adaptive_max_pool2d(x, size);
    expect_equal(out, ref, "adaptive_max_pool2d " + name + ": output");
    expect_equal(idx, ref_idx, "adaptive_max_pool2d " + name + ": indices");
    if (x.numel() > 0) {
      expect_close(max_backward.call(grad, idx, shape),
                   at::adaptive_max_pool2d_backward(grad.to(at::kDouble), x64, ref_idx),
                   "adaptive_max_pool2d " + name + ": backward");
    }
  }
}

// ----------------------------------------------------------------- dispatcher, errors

const char* const kOps[] = {
    "pycnn::conv2d",           "pycnn::conv2d_input_backward",
    "pycnn::conv2d_weight_backward", "pycnn::conv2d_bias_backward",
    "pycnn::max_pool2d_with_indices", "pycnn::max_pool2d_backward",
    "pycnn::avg_pool2d",       "pycnn::avg_pool2d_backward",
    "pycnn::adaptive_avg_pool2d", "pycnn::adaptive_avg_pool2d_backward",
    "pycnn::adaptive_max_pool2d", "pycnn::adaptive_max_pool2d_backward",
};

void test_registration() {
  for (const char* name : kOps) {
    const auto handle = c10::Dispatcher::singleton().findSchema({name, ""});
    expect(handle.has_value(), std::string(name) + ": schema registered");
    if (!handle) continue;
    expect(handle->hasKernelForDispatchKey(c10::DispatchKey::CPU),
           std::string(name) + ": CPU kernel registered");
#ifdef PYCNN_WITH_CUDA
    expect(handle->hasKernelForDispatchKey(c10::DispatchKey::CUDA),
           std::string(name) + ": CUDA kernel registered");
#endif
  }
}

// The call must throw ErrorType whose message contains every fragment.
template <typename ErrorType, typename Call>
void expect_error(Call call, const std::vector<std::string>& fragments, const std::string& what) {
  try {
    call();
    expect(false, what + ": no error");
  } catch (const ErrorType& error) {
    const std::string message = error.what_without_backtrace();
    for (const std::string& fragment : fragments) {
      expect(message.find(fragment) != std::string::npos,
             what + ": '" + fragment + "' not in the message: " + message);
    }
  } catch (const std::exception& error) {
    expect(false, what + ": wrong exception type: " + error.what());
  }
}

void test_errors() {
  auto conv = op<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, Ints, Ints,
                        Ints, int64_t)>("pycnn::conv2d");
  auto max_pool = op<std::tuple<Tensor, Tensor>(const Tensor&, Ints, Ints, Ints, Ints, bool)>(
      "pycnn::max_pool2d_with_indices");
  auto avg_pool = op<Tensor(const Tensor&, Ints, Ints, Ints, bool, bool, std::optional<int64_t>)>(
      "pycnn::avg_pool2d");
  const Tensor x = at::randn({1, 4, 8, 8});
  const Tensor w = at::randn({6, 4, 3, 3});
  expect_error<c10::ValueError>([&] { conv.call(x, w, std::nullopt, {0}, {0}, {1}, 1); },
                                {"pycnn.conv2d", "stride", "(0, 0)"}, "conv2d stride 0");
  expect_error<c10::ValueError>([&] { conv.call(x, w, std::nullopt, {1}, {-1}, {1}, 1); },
                                {"pycnn.conv2d", "padding", "(-1, -1)"}, "conv2d negative padding");
  expect_error<c10::Error>([&] { conv.call(x, at::randn({6, 3, 3, 3}), std::nullopt, {1}, {0}, {1}, 1); },
                           {"pycnn.conv2d", "[6, 3, 3, 3]"}, "conv2d channel mismatch");
  expect_error<c10::Error>([&] { conv.call(x, w.to(at::kDouble), std::nullopt, {1}, {0}, {1}, 1); },
                           {"pycnn.conv2d", "dtype"}, "conv2d dtype mismatch");
  expect_error<c10::ValueError>([&] { conv.call(x.to(at::kInt), w.to(at::kInt), std::nullopt, {1}, {0}, {1}, 1); },
                                {"pycnn.conv2d", "Int"}, "conv2d integer input");
  expect_error<c10::ValueError>([&] { max_pool.call(x, {3}, {1}, {2}, {1}, false); },
                                {"pycnn.max_pool2d", "padding", "(2, 2)"}, "max_pool2d padding");
  expect_error<c10::ValueError>([&] { max_pool.call(x, {9}, {1}, {0}, {1}, false); },
                                {"pycnn.max_pool2d", "[1, 4, 8, 8]"}, "max_pool2d kernel too large");
  expect_error<c10::ValueError>([&] { avg_pool.call(x, {2}, {2}, {0}, false, true, 0); },
                                {"pycnn.avg_pool2d", "divisor_override"}, "avg_pool2d divisor 0");
}

}  // namespace

int main() {
  pycnn::set_poison_outputs(true);  // unwritten outputs show as NaN
  at::manual_seed(0);
  test_registration();
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    for (const bool channels_last : {false, true}) {
      test_conv2d(dtype, channels_last);
      test_max_pool2d(dtype, channels_last);
      test_avg_pool2d(dtype, channels_last);
      test_adaptive_pools(dtype, channels_last);
    }
  }
  test_errors();
  std::cout << checks - failures << " of " << checks << " checks passed\n";
  return failures == 0 ? 0 : 1;
}
