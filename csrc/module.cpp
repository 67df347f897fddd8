// The Python module pycnn._C.  Loading it runs the static initialisers that
// register every pycnn operator with the dispatcher; the module itself only
// reports how the library was built, so that `import pycnn` can refuse a
// build that does not match the installed torch.
#include <Python.h>
#include <torch/version.h>

#include "ops/common.h"
#include "ops/cpu/cpu_features.h"

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(pycnn::cpu_isa_name(pycnn::active_cpu_isa()));
}

PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  pycnn::CpuIsa isa;
  if (!pycnn::parse_cpu_isa(name, &isa)) {
    PyErr_Format(PyExc_ValueError, "set_cpu_isa: isa must be 'generic', 'avx2' or 'avx512', got '%s'", name);
    return nullptr;
  }
  if (!pycnn::set_cpu_isa(isa)) {
    PyErr_Format(PyExc_ValueError, "set_cpu_isa: this CPU does not support isa='%s' (it supports up to '%s')",
                 name, pycnn::cpu_isa_name(pycnn::detected_cpu_isa()));
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* set_poison_outputs(PyObject*, PyObject* arg) {
  const int enabled = PyObject_IsTrue(arg);
  if (enabled < 0) return nullptr;
  pycnn::set_poison_outputs(enabled != 0);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"set_poison_outputs", set_poison_outputs, METH_O,
     "Test mode: fill every output with NaN (indices with -1) before the kernel writes it."},
    {"set_cpu_isa", set_cpu_isa, METH_O,
     "Caps the CPU kernels at an instruction set: 'generic', 'avx2' or 'avx512'."},
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The instruction set the CPU convolution kernels run with on this machine."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "pycnn's compiled operators.", -1,
                          methods};

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyModule_AddStringConstant(module, "torch_version", TORCH_VERSION);
#ifdef PYCNN_WITH_CUDA
  PyModule_AddObject(module, "cuda_compiled", Py_NewRef(Py_True));
#else
  PyModule_AddObject(module, "cuda_compiled", Py_NewRef(Py_False));
#endif
  return module;
}
