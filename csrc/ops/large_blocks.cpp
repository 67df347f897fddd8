// A large CPU output is, with glibc, fresh memory on every call: past the
// allocator's mmap threshold (at most 32 MiB) each block is mapped anew and
// unmapped when its tensor dies, and writing fresh memory costs a page fault
// per 4 KiB page, about 1.5 us each on this virtual machine.  That is 16 of
// the 17 ms a VGG-16 pool2 max-pool backward took (51 MB of grad_input; the
// scatter itself is 5 ms), and ResNet-18's training step spent about 5 % of
// its time in page faults.  torch's own CPU allocator has the same cost;
// allocators such as jemalloc avoid it by keeping freed memory mapped.
//
// pycnn keeps freed output blocks of 4 MiB or more in a cache bounded by
// PYCNN_OUTPUT_CACHE_MB (default 1024; 0 turns it off) and hands a block of
// the same rounded size to the next output that asks.  Blocks are 2 MiB
// aligned and, unless PYCNN_HUGE_PAGES=0, advised to use transparent huge
// pages: with reuse, the slow first backing of huge pages on a VM happens
// once per block instead of on every call.  The least recently freed blocks
// go first when the cache is full.
#include "large_blocks.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pycnn {
namespace {

constexpr size_t kBlockAlign = size_t{2} << 20;

size_t env_megabytes(const char* name, size_t fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long parsed = std::strtoull(value, &end, 10);
  return end != nullptr && *end == '\0' ? static_cast<size_t>(parsed) << 20 : fallback;
}

bool huge_pages_enabled() {
  const char* value = std::getenv("PYCNN_HUGE_PAGES");
  return value == nullptr || std::string(value) != "0";
}

struct Block {
  void* data;
  size_t bytes;
};

class LargeBlockCache final : public c10::Allocator {
 public:
  LargeBlockCache() : limit_(env_megabytes("PYCNN_OUTPUT_CACHE_MB", size_t{1} << 30)),
                      huge_pages_(huge_pages_enabled()) {}

  size_t limit() const { return limit_; }

  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = (std::max<size_t>(n, 1) + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
    Block* block = take(bytes);
    if (block == nullptr) {
      void* data = std::aligned_alloc(kBlockAlign, bytes);
      TORCH_CHECK(data != nullptr, "pycnn: out of memory allocating ", bytes, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (huge_pages_) madvise(data, bytes, MADV_HUGEPAGE);
#endif
      block = new Block{data, bytes};
    }
    return {block->data, block, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  void release() {
    std::list<Block*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (Block* block : blocks) destroy(block);
  }

 private:
  static void destroy(Block* block) {
    std::free(block->data);
    delete block;
  }

  // The most recently freed block of exactly `bytes`, out of the cache.
  Block* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if ((*it)->bytes == bytes) {
        Block* block = *it;
        free_.erase(std::next(it).base());
        cached_ -= bytes;
        return block;
      }
    }
    return nullptr;
  }

  static void give_back(void* ctx);

  void keep(Block* block) {
    std::list<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (block->bytes > limit_) {
        evicted.push_back(block);
      } else {
        while (cached_ + block->bytes > limit_) {
          evicted.push_back(free_.front());
          cached_ -= free_.front()->bytes;
          free_.pop_front();
        }
        free_.push_back(block);
        cached_ += block->bytes;
      }
    }
    for (Block* b : evicted) destroy(b);
  }

  const size_t limit_;
  const bool huge_pages_;
  std::mutex mutex_;
  std::list<Block*> free_;  // least recently freed first
  size_t cached_ = 0;
};

// Never destroyed: tensors may die after static destructors have run.
LargeBlockCache& cache() {
  static LargeBlockCache* instance = new LargeBlockCache();
  return *instance;
}

void LargeBlockCache::give_back(void* ctx) { cache().keep(static_cast<Block*>(ctx)); }

}  // namespace

c10::Allocator* large_block_allocator() {
  LargeBlockCache& c = cache();
  return c.limit() == 0 ? nullptr : &c;
}

size_t large_block_cached_bytes() { return cache().cached_bytes(); }
size_t large_block_cache_limit() { return cache().limit(); }
void release_large_blocks() { cache().release(); }

}  // namespace pycnn
