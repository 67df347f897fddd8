// Direct calls from pycnn.functional into the pooling operators.  They make
// the same dispatcher call that torch.ops.pycnn.<op> makes (autograd, then
// the CPU or CUDA kernel), minus the per-call schema matching and argument
// boxing of torch.ops, which cost about 3 us: more than a small pooling
// kernel (a 2x16x8x8 max pool takes 8.7 us through torch.ops, torch's own
// 5.4 us).  pycnn.functional uses them only for plain tensors outside
// torch.compile and torch-function modes; everything else goes through
// torch.ops.  Each returns NotImplemented when an argument is not a plain
// Python int, so that the caller falls back to torch.ops.
#include "pool_calls.h"

#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <array>
#include <optional>

#include "../ops/ops.h"

namespace pycnn::python {

namespace {

// A tuple or list of two Python ints.
bool parse_pair(PyObject* obj, std::array<int64_t, 2>* out) {
  if (!PyTuple_Check(obj) && !PyList_Check(obj)) return false;
  if (PySequence_Fast_GET_SIZE(obj) != 2) return false;
  for (Py_ssize_t i = 0; i < 2; ++i) {
    PyObject* item = PySequence_Fast_GET_ITEM(obj, i);
    if (!PyLong_CheckExact(item)) return false;
    int overflow = 0;
    (*out)[i] = PyLong_AsLongLongAndOverflow(item, &overflow);
    if (overflow != 0) return false;
  }
  return true;
}

bool parse_tensor(PyObject* obj, at::Tensor* out) {
  if (!THPVariable_CheckExact(obj)) return false;
  *out = THPVariable_Unpack(obj);
  return true;
}

// (input, output_size) of the adaptive pools.
bool parse_adaptive(PyObject* const* args, Py_ssize_t nargs, at::Tensor* input,
                    std::array<int64_t, 2>* size) {
  return nargs == 2 && parse_tensor(args[0], input) && parse_pair(args[1], size);
}

PyObject* wrap_pair(std::tuple<at::Tensor, at::Tensor> result) {
  PyObject* first = THPVariable_Wrap(std::move(std::get<0>(result)));
  if (first == nullptr) return nullptr;
  PyObject* second = THPVariable_Wrap(std::move(std::get<1>(result)));
  if (second == nullptr) {
    Py_DECREF(first);
    return nullptr;
  }
  PyObject* pair = PyTuple_New(2);
  if (pair == nullptr) {
    Py_DECREF(first);
    Py_DECREF(second);
    return nullptr;
  }
  PyTuple_SET_ITEM(pair, 0, first);  // steals the references
  PyTuple_SET_ITEM(pair, 1, second);
  return pair;
}

// (input, kernel_size, stride, padding, dilation, ceil_mode) of the max pools.
struct MaxPoolArgs {
  at::Tensor input;
  std::array<int64_t, 2> kernel{}, stride{}, padding{}, dilation{};
  bool ceil_mode = false;
};

bool parse_max_pool(PyObject* const* args, Py_ssize_t nargs, MaxPoolArgs* a) {
  if (nargs != 6 || !parse_tensor(args[0], &a->input) || !parse_pair(args[1], &a->kernel) ||
      !parse_pair(args[2], &a->stride) || !parse_pair(args[3], &a->padding) ||
      !parse_pair(args[4], &a->dilation) || !PyBool_Check(args[5])) {
    return false;
  }
  a->ceil_mode = args[5] == Py_True;
  return true;
}

}  // namespace

// max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)
PyObject* max_pool2d_with_indices(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  MaxPoolArgs a;
  if (!parse_max_pool(args, nargs, &a)) Py_RETURN_NOTIMPLEMENTED;
  std::tuple<at::Tensor, at::Tensor> result;
  {
    pybind11::gil_scoped_release no_gil;
    result = ops::max_pool2d_with_indices(a.input, a.kernel, a.stride, a.padding, a.dilation,
                                          a.ceil_mode);
  }
  return wrap_pair(std::move(result));
  END_HANDLE_TH_ERRORS
}

// max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode): the values alone
PyObject* max_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  MaxPoolArgs a;
  if (!parse_max_pool(args, nargs, &a)) Py_RETURN_NOTIMPLEMENTED;
  at::Tensor result;
  {
    pybind11::gil_scoped_release no_gil;
    result = ops::max_pool2d(a.input, a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode);
  }
  return THPVariable_Wrap(std::move(result));
  END_HANDLE_TH_ERRORS
}

// avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
PyObject* avg_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  at::Tensor input;
  std::array<int64_t, 2> kernel{}, stride{}, padding{};
  if (nargs != 7 || !parse_tensor(args[0], &input) || !parse_pair(args[1], &kernel) ||
      !parse_pair(args[2], &stride) || !parse_pair(args[3], &padding) || !PyBool_Check(args[4]) ||
      !PyBool_Check(args[5]) || (args[6] != Py_None && !PyLong_CheckExact(args[6]))) {
    Py_RETURN_NOTIMPLEMENTED;
  }
  std::optional<int64_t> divisor;
  if (args[6] != Py_None) {
    int overflow = 0;
    divisor = PyLong_AsLongLongAndOverflow(args[6], &overflow);
    if (overflow != 0) Py_RETURN_NOTIMPLEMENTED;
  }
  const bool ceil_mode = args[4] == Py_True, count_include_pad = args[5] == Py_True;
  at::Tensor result;
  {
    pybind11::gil_scoped_release no_gil;
    result = ops::avg_pool2d(input, kernel, stride, padding, ceil_mode, count_include_pad, divisor);
  }
  return THPVariable_Wrap(std::move(result));
  END_HANDLE_TH_ERRORS
}

// adaptive_avg_pool2d(input, output_size)
PyObject* adaptive_avg_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  at::Tensor input;
  std::array<int64_t, 2> size{};
  if (!parse_adaptive(args, nargs, &input, &size)) Py_RETURN_NOTIMPLEMENTED;
  at::Tensor result;
  {
    pybind11::gil_scoped_release no_gil;
    result = ops::adaptive_avg_pool2d(input, size);
  }
  return THPVariable_Wrap(std::move(result));
  END_HANDLE_TH_ERRORS
}

// adaptive_max_pool2d(input, output_size)
PyObject* adaptive_max_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  at::Tensor input;
  std::array<int64_t, 2> size{};
  if (!parse_adaptive(args, nargs, &input, &size)) Py_RETURN_NOTIMPLEMENTED;
  std::tuple<at::Tensor, at::Tensor> result;
  {
    pybind11::gil_scoped_release no_gil;
    result = ops::adaptive_max_pool2d(input, size);
  }
  return wrap_pair(std::move(result));
  END_HANDLE_TH_ERRORS
}

}  // namespace pycnn::python
