// Scratch memory of the CPU convolutions that outlives the call.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace pycnn {
namespace cpu {

// One buffer per thread and Purpose (an enumerator of the caller's), which
// grows on demand and never shrinks: a fresh weight-sized buffer (9 MB for
// a 512x512 3x3 layer) costs a page fault per 4 KiB on every call, 3-4 ms at
// this machine's fault rate, more than the work it holds.  Each thread keeps
// the largest size it has needed (bounded by the largest layer's).
//
// The pointer is 64-byte aligned: the micro-kernels load and store whole
// cache lines of it, and a large vector's data starts 16 bytes into a page,
// which split every 64-byte access across two lines (ResNet layer1's
// Winograd forward 6.9 -> 12.4 ms).
template <auto Purpose, typename T>
T* thread_scratch(int64_t count) {
  constexpr size_t kAlign = 64;
  static thread_local std::vector<T> storage;
  const size_t bytes = static_cast<size_t>(count) * sizeof(T);
  const size_t needed = static_cast<size_t>(count) + kAlign / sizeof(T);
  if (storage.size() < needed) storage.resize(needed);
  void* data = storage.data();
  size_t space = storage.size() * sizeof(T);
  return static_cast<T*>(std::align(kAlign, bytes, data, space));
}

}  // namespace cpu
}  // namespace pycnn
