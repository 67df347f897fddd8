// pycnn's allocator for large CPU outputs: blocks of 4 MiB or more that
// outlive their tensors in a bounded cache, so that the next output of the
// same size reuses memory that is already mapped.
#pragma once

#include <c10/core/Allocator.h>

#include <cstddef>

namespace pycnn {

// Bytes from which CPU outputs come from the block cache.
constexpr size_t kLargeBlockMinBytes = size_t{4} << 20;

// The allocator, or nullptr when the cache is turned off (PYCNN_OUTPUT_CACHE_MB=0).
c10::Allocator* large_block_allocator();

// Bytes held by freed blocks now, and the most the cache keeps.
size_t large_block_cached_bytes();
size_t large_block_cache_limit();

// Frees every cached block (their memory goes back to the system).
void release_large_blocks();

}  // namespace pycnn
