// Direct Python entry points to the pooling operators (see pool_calls.cpp),
// registered in pycnn._C's method table (csrc/module.cpp).
#pragma once

#include <Python.h>

namespace pycnn::python {

PyObject* max_pool2d_with_indices(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* max_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* avg_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* adaptive_avg_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* adaptive_max_pool2d(PyObject*, PyObject* const* args, Py_ssize_t nargs);

}  // namespace pycnn::python
