// The Python module pycnn._C.  Loading it runs the static initialisers that
// register every pycnn operator with the dispatcher; the module itself only
// reports how the library was built, so that `import pycnn` can refuse a
// build that does not match the installed torch.
#include <Python.h>
#include <torch/version.h>

#include <cstring>
#include <string>

#include "bench/fma_peak.h"
#include "ops/common.h"
#include "ops/large_blocks.h"
#include "ops/cpu/cpu_features.h"
#include "ops/settings.h"
#include "python/pool_calls.h"

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

// None: follow torch's cuDNN setting; True / False: pycnn's own.
PyObject* set_tf32(PyObject*, PyObject* arg) {
  if (arg == Py_None) {
    pycnn::set_tf32_mode(pycnn::kTf32FollowTorch);
    Py_RETURN_NONE;
  }
  if (!PyBool_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "set_tf32: enabled must be None, True or False, got %R", arg);
    return nullptr;
  }
  pycnn::set_tf32_mode(arg == Py_True ? pycnn::kTf32On : pycnn::kTf32Off);
  Py_RETURN_NONE;
}

PyObject* tf32_mode(PyObject*, PyObject*) {
  switch (pycnn::tf32_mode()) {
    case pycnn::kTf32On:
      Py_RETURN_TRUE;
    case pycnn::kTf32Off:
      Py_RETURN_FALSE;
    default:
      Py_RETURN_NONE;
  }
}

PyObject* tf32_enabled(PyObject*, PyObject*) {
  if (pycnn::tf32_enabled()) Py_RETURN_TRUE;
  Py_RETURN_FALSE;
}

// A setting chosen by name from `names`: calls setter(index), or raises
// ValueError naming the op, the parameter and every choice.
template <size_t N>
PyObject* set_by_name(PyObject* arg, const char* const (&names)[N], const char* op,
                      const char* param, void (*setter)(int)) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  for (size_t i = 0; i < N; ++i) {
    if (std::strcmp(name, names[i]) == 0) {
      setter(static_cast<int>(i));
      Py_RETURN_NONE;
    }
  }
  std::string choices;
  for (size_t i = 0; i < N; ++i) {
    if (i > 0) choices += i + 1 == N ? " or " : ", ";
    choices += std::string("'") + names[i] + "'";
  }
  PyErr_Format(PyExc_ValueError, "%s: %s must be %s, got '%s'", op, param, choices.c_str(), name);
  return nullptr;
}

const char* const kKernels[] = {"auto", "reference", "gemm"};
const char* const kConvTiles[] = {"auto", "128x128", "128x64", "64x64"};
const char* const kCpuKernels[] = {"auto", "gemm"};

PyObject* set_cuda_kernels(PyObject*, PyObject* arg) {
  return set_by_name(arg, kKernels, "set_cuda_kernels", "kernels", pycnn::set_cuda_kernels);
}

PyObject* cuda_kernels(PyObject*, PyObject*) {
  return PyUnicode_FromString(kKernels[pycnn::cuda_kernels()]);
}

PyObject* set_cpu_conv_kernels(PyObject*, PyObject* arg) {
  return set_by_name(arg, kCpuKernels, "set_cpu_conv_kernels", "kernels",
                     pycnn::set_cpu_conv_kernels);
}

PyObject* cpu_conv_kernels(PyObject*, PyObject*) {
  return PyUnicode_FromString(kCpuKernels[pycnn::cpu_conv_kernels()]);
}

PyObject* set_cuda_conv_tile(PyObject*, PyObject* arg) {
  return set_by_name(arg, kConvTiles, "set_cuda_conv_tile", "tile", pycnn::set_cuda_conv_tile);
}

PyObject* cuda_conv_tile(PyObject*, PyObject*) {
  return PyUnicode_FromString(kConvTiles[pycnn::cuda_conv_tile()]);
}

PyObject* fma_peak_gflops(PyObject*, PyObject* args) {
  int threads = 0;
  double seconds = 0;
  if (!PyArg_ParseTuple(args, "id:fma_peak_gflops", &threads, &seconds)) return nullptr;
  if (threads < 1) {
    PyErr_Format(PyExc_ValueError, "fma_peak_gflops: threads must be at least 1, got threads=%d", threads);
    return nullptr;
  }
  if (!(seconds > 0 && seconds <= 60)) {
    PyErr_Format(PyExc_ValueError, "fma_peak_gflops: seconds must be in (0, 60], got seconds=%g", seconds);
    return nullptr;
  }
  pycnn::bench::FmaPeak peak;
  Py_BEGIN_ALLOW_THREADS
  peak = pycnn::bench::measure_fma_peak(threads, seconds);
  Py_END_ALLOW_THREADS
  return Py_BuildValue("(di)", peak.gflops, peak.threads);
}

PyObject* output_cache_info(PyObject*, PyObject*) {
  return Py_BuildValue("(nn)", static_cast<Py_ssize_t>(pycnn::large_block_cached_bytes()),
                       static_cast<Py_ssize_t>(pycnn::large_block_cache_limit()));
}

PyObject* max_pool_reference_fallbacks(PyObject*, PyObject*) {
  return PyLong_FromLongLong(pycnn::max_pool_reference_fallbacks());
}

PyObject* pointwise_conv_passes(PyObject*, PyObject*) {
  return PyLong_FromLongLong(pycnn::pointwise_conv_passes());
}

PyObject* release_output_cache(PyObject*, PyObject*) {
  pycnn::release_large_blocks();
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"set_poison_outputs", set_poison_outputs, METH_O,
     "Test mode: fill every output with NaN (indices with -1) before the kernel writes it."},
    {"set_cpu_isa", set_cpu_isa, METH_O,
     "Caps the CPU kernels at an instruction set: 'generic', 'avx2' or 'avx512'."},
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The instruction set the CPU convolution kernels run with on this machine."},
    {"set_tf32", set_tf32, METH_O,
     "TF32 for float32 CUDA convolutions: None follows torch.backends.cudnn.allow_tf32, True/False override it."},
    {"tf32_mode", tf32_mode, METH_NOARGS, "The TF32 setting: None (follow torch), True or False."},
    {"tf32_enabled", tf32_enabled, METH_NOARGS,
     "Whether float32 CUDA convolutions use TF32 now (the setting, or torch's)."},
    {"set_cuda_kernels", set_cuda_kernels, METH_O,
     "Test hook: 'auto' (the fast CUDA kernels where they apply) or 'reference' (the simple ones)."},
    {"cuda_kernels", cuda_kernels, METH_NOARGS, "The CUDA kernel choice."},
    {"set_cpu_conv_kernels", set_cpu_conv_kernels, METH_O,
     "Test hook: 'auto' (Winograd where it applies) or 'gemm' (the GEMM there)."},
    {"cpu_conv_kernels", cpu_conv_kernels, METH_NOARGS, "The CPU convolution kernel choice."},
    {"set_cuda_conv_tile", set_cuda_conv_tile, METH_O,
     "Test hook: the fast kernels' tile, 'auto', '128x128', '128x64' or '64x64'."},
    {"cuda_conv_tile", cuda_conv_tile, METH_NOARGS, "The fast kernels' tile setting."},
    {"fma_peak_gflops", fma_peak_gflops, METH_VARARGS,
     "fma_peak_gflops(threads, seconds) -> (gflops, threads_run): the fp32 multiply-add rate this "
     "CPU sustains with the active instruction set, measured over about `seconds` on `threads` "
     "threads at once (torch's thread count caps them)."},
    {"max_pool2d_with_indices", reinterpret_cast<PyCFunction>(pycnn::python::max_pool2d_with_indices),
     METH_FASTCALL, "pycnn::max_pool2d_with_indices through the dispatcher, for pycnn.functional."},
    {"max_pool2d", reinterpret_cast<PyCFunction>(pycnn::python::max_pool2d), METH_FASTCALL,
     "pycnn::max_pool2d through the dispatcher, for pycnn.functional."},
    {"avg_pool2d", reinterpret_cast<PyCFunction>(pycnn::python::avg_pool2d), METH_FASTCALL,
     "pycnn::avg_pool2d through the dispatcher, for pycnn.functional."},
    {"adaptive_avg_pool2d", reinterpret_cast<PyCFunction>(pycnn::python::adaptive_avg_pool2d),
     METH_FASTCALL, "pycnn::adaptive_avg_pool2d through the dispatcher, for pycnn.functional."},
    {"adaptive_max_pool2d", reinterpret_cast<PyCFunction>(pycnn::python::adaptive_max_pool2d),
     METH_FASTCALL, "pycnn::adaptive_max_pool2d through the dispatcher, for pycnn.functional."},
    {"output_cache_info", output_cache_info, METH_NOARGS,
     "(bytes held by freed large CPU outputs, the most the cache keeps)."},
    {"release_output_cache", release_output_cache, METH_NOARGS,
     "Frees the cached blocks of large CPU outputs."},
    {"max_pool_reference_fallbacks", max_pool_reference_fallbacks, METH_NOARGS,
     "Test hook: how many dense CPU max-pool gradients fell back to the reference loops."},
    {"pointwise_conv_passes", pointwise_conv_passes, METH_NOARGS,
     "Test hook: how many CPU conv2d passes ran the NCHW 1x1 product."},
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
