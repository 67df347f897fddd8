// A host model of the GPU instructions the pipelined kernels use
// (csrc/ops/cuda/mma_ops.cuh), so that their block code (IgemmBlock::run)
// runs unchanged on the CPU:
//
//   HostBlockExec   runs a block's per-thread phases thread by thread and its
//                   per-warp phases warp by warp, lane by lane;
//   cp.async        copies queue per commit group and land only when a
//                   wait_group lets them (the latest legal moment), with
//                   zero fill for invalid sources;
//   ldmatrix        per the PTX ISA: lane l supplies row l % 8 of matrix
//                   l / 8 and receives row l / 4, 16-bit elements
//                   2 (l % 4) and 2 (l % 4) + 1 (.trans: column l / 4 of
//                   rows 2 (l % 4), 2 (l % 4) + 1);
//   mma.sync        recorded per lane, then executed for the whole warp:
//                   fragments decoded to matrices with the PTX ISA's
//                   fragment figures (m16n8k16 f16/bf16, m16n8k8 tf32),
//                   D = A B + C in double, rounded to float.
//
// Checks made while running (a failure throws):
//   * every shared-memory byte read was written by a copy that landed
//     before the last barrier (RAW across threads), and no copy is issued
//     into bytes read since the last barrier (WAR);
//   * ldmatrix rows are 16-byte aligned, 32-bit loads 4-byte aligned;
//   * mma is issued by all 32 lanes the same number of times.
// Bank conflicts of every shared load are counted (not an error: reported
// for the tests to assert on).
//
// What this cannot show: timing, the hardware's real rounding inside an mma
// (it is modelled exactly), memory-model subtleties beyond barrier
// granularity, and whether the PTX ISA figures were read correctly (they
// were transcribed separately from the kernels' own maps in
// igemm_layout.cuh, so a misreading would have to be made twice, the same
// way, to go unnoticed).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <vector>

#include "ops/cuda/mma_ops.cuh"

namespace pycnn {
namespace gpu {
namespace emu {

struct Counters {
  int64_t blocks = 0;
  int64_t copies = 0;
  int64_t zero_fills = 0;
  int64_t mma = 0;
  int64_t shared_loads = 0;       // warp-level load instructions
  int64_t conflicted_loads = 0;   // of which needed more than the minimum wavefronts
  int64_t pool_vector = 0;        // elements per item of the last fast pooling kernel
  int64_t narrow_pixels = 0;      // pixels per thread of the last narrow grad_input
};

inline Counters& counters() {
  static Counters c;
  return c;
}

struct PendingCopy {
  int dst, bytes;
  const uint8_t* src;  // null: zero fill
};

class SharedMemory {
 public:
  explicit SharedMemory(int bytes)
      : data_(bytes, 0xff), landed_epoch_(bytes, -1), read_epoch_(bytes, -1), pending_(bytes, 0) {}

  uint8_t* base() { return data_.data(); }
  int size() const { return int(data_.size()); }
  int epoch() const { return epoch_; }
  void barrier() { ++epoch_; }

  void issue(const PendingCopy& c) {
    check_range(c.dst, c.bytes, "cp.async destination");
    for (int i = 0; i < c.bytes; ++i) {
      TORCH_CHECK(read_epoch_[c.dst + i] != epoch_,
                  "emulator: cp.async into shared byte ", c.dst + i,
                  " read since the last barrier (write-after-read race)");
      ++pending_[c.dst + i];
    }
  }

  void land(const PendingCopy& c) {
    if (c.src) {
      std::memcpy(&data_[c.dst], c.src, c.bytes);
    } else {
      std::memset(&data_[c.dst], 0, c.bytes);
    }
    for (int i = 0; i < c.bytes; ++i) {
      --pending_[c.dst + i];
      landed_epoch_[c.dst + i] = epoch_;
    }
  }

  // A load by another thread than the writer: the data must have landed
  // before the last barrier.
  void check_read(int offset, int bytes) {
    check_range(offset, bytes, "shared load");
    for (int i = offset; i < offset + bytes; ++i) {
      TORCH_CHECK(pending_[i] == 0, "emulator: shared byte ", i,
                  " read while a cp.async into it is in flight (missing wait_group)");
      TORCH_CHECK(landed_epoch_[i] >= 0, "emulator: shared byte ", i, " read but never written");
      TORCH_CHECK(landed_epoch_[i] < epoch_, "emulator: shared byte ", i,
                  " read without a barrier after the copy that wrote it landed");
      read_epoch_[i] = epoch_;
    }
  }

 private:
  void check_range(int offset, int bytes, const char* what) const {
    TORCH_CHECK(offset >= 0 && offset + bytes <= size(), "emulator: ", what, " at ", offset, "+",
                bytes, " outside the ", size(), "-byte shared memory");
  }

  std::vector<uint8_t> data_;
  std::vector<int> landed_epoch_, read_epoch_, pending_;
  int epoch_ = 0;
};

struct HostCopier {
  SharedMemory* smem;
  std::deque<std::vector<PendingCopy>>* groups;  // back(): the open group

  template <int kBytes>
  void copy(int /*thread*/, uint8_t* dst, const void* src, bool valid) const {
    const int offset = int(dst - smem->base());
    TORCH_CHECK(offset % kBytes == 0, "emulator: cp.async destination not ", kBytes, "-byte aligned");
    if (valid) {
      TORCH_CHECK(reinterpret_cast<uintptr_t>(src) % kBytes == 0, "emulator: cp.async source not ",
                  kBytes, "-byte aligned");
    }
    PendingCopy c{offset, kBytes, valid ? static_cast<const uint8_t*>(src) : nullptr};
    smem->issue(c);
    groups->back().push_back(c);
    ++counters().copies;
    if (!valid) ++counters().zero_fills;
  }
};

// ---------------------------------------------------------------- the PTX ISA's fragment figures

struct FragmentCoord {
  int row, col;
};

// mma.m16n8k16 .f16/.bf16, A (16 x 16): element i (0..7) of a lane, held in
// register i / 2 (low half for even i).
inline FragmentCoord a_f16(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
  const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
  return {row, col};
}
// B (16 x 8): element i (0..3), register i / 2.  row = k, col = n.
inline FragmentCoord b_f16(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {t * 2 + (i & 1) + (i >= 2 ? 8 : 0), g};
}
// mma.m16n8k8 .tf32, A (16 x 8): register i (0..3).
inline FragmentCoord a_tf32(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {(i == 0 || i == 2) ? g : g + 8, (i < 2) ? t : t + 4};
}
// B (8 x 8): register i (0..1).
inline FragmentCoord b_tf32(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {i == 0 ? t : t + 4, g};
}
// C/D (16 x 8, float): register i (0..3).
inline FragmentCoord c_f32(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {i < 2 ? g : g + 8, t * 2 + (i & 1)};
}

inline double half_bits(uint16_t bits, MmaKind kind) {
  if (kind == MmaKind::kF16) return double(static_cast<float>(c10::Half(bits, c10::Half::from_bits())));
  return double(static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits())));
}

inline double tf32_bits(uint32_t bits) {
  bits &= 0xffffe000u;  // the tensor cores read 19 bits: sign, exponent, 10 of mantissa
  float f;
  std::memcpy(&f, &bits, 4);
  return double(f);
}

struct MmaCall {
  float* d;
  uint32_t a[4], b[2];
};

// D = A B + C for a whole warp, from each lane's recorded registers.
inline void execute_mma(MmaKind kind, const std::vector<const MmaCall*>& lanes) {
  const int k_size = kind == MmaKind::kTF32 ? 8 : 16;
  double A[16][16] = {}, B[16][8] = {}, C[16][8] = {};
  for (int l = 0; l < 32; ++l) {
    const MmaCall& c = *lanes[l];
    if (kind == MmaKind::kTF32) {
      for (int i = 0; i < 4; ++i) A[a_tf32(l, i).row][a_tf32(l, i).col] = tf32_bits(c.a[i]);
      for (int i = 0; i < 2; ++i) B[b_tf32(l, i).row][b_tf32(l, i).col] = tf32_bits(c.b[i]);
    } else {
      for (int i = 0; i < 8; ++i) {
        const uint16_t bits = uint16_t(c.a[i / 2] >> (16 * (i & 1)));
        A[a_f16(l, i).row][a_f16(l, i).col] = half_bits(bits, kind);
      }
      for (int i = 0; i < 4; ++i) {
        const uint16_t bits = uint16_t(c.b[i / 2] >> (16 * (i & 1)));
        B[b_f16(l, i).row][b_f16(l, i).col] = half_bits(bits, kind);
      }
    }
    for (int i = 0; i < 4; ++i) C[c_f32(l, i).row][c_f32(l, i).col] = c.d[i];
  }
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < 4; ++i) {
      const FragmentCoord rc = c_f32(l, i);
      double sum = C[rc.row][rc.col];
      for (int k = 0; k < k_size; ++k) sum += A[rc.row][k] * B[k][rc.col];
      lanes[l]->d[i] = float(sum);
    }
  }
  ++counters().mma;
}

// ---------------------------------------------------------------- warp ops

struct LoadRecord {
  int kind;  // 0: ldmatrix (8-row phases), 1: 32-bit, 2: 128-bit
  std::vector<int> offsets;  // ldmatrix: the lane's row address; else the lane's address
};

struct LaneRecord {
  std::vector<std::pair<MmaKind, MmaCall>> mma;
  std::vector<LoadRecord> loads;
};

struct HostWarpOps {
  SharedMemory* smem;
  LaneRecord* record;

  template <bool kTrans, class RowOffset>
  void ldmatrix_x4(uint32_t (&r)[4], const uint8_t* base, int lane, RowOffset row_offset) const {
    const int base_off = int(base - smem->base());
    int rows[32];
    for (int l = 0; l < 32; ++l) {
      rows[l] = base_off + row_offset(l);
      TORCH_CHECK(rows[l] % 16 == 0, "emulator: ldmatrix row address not 16-byte aligned");
      smem->check_read(rows[l], 16);
    }
    const uint8_t* s = smem->base();
    for (int j = 0; j < 4; ++j) {
      if (!kTrans) {
        std::memcpy(&r[j], s + rows[8 * j + lane / 4] + (lane % 4) * 4, 4);
      } else {
        uint16_t lo, hi;
        std::memcpy(&lo, s + rows[8 * j + 2 * (lane % 4)] + (lane / 4) * 2, 2);
        std::memcpy(&hi, s + rows[8 * j + 2 * (lane % 4) + 1] + (lane / 4) * 2, 2);
        r[j] = uint32_t(lo) | (uint32_t(hi) << 16);
      }
    }
    record->loads.push_back({0, {rows[lane]}});
  }

  uint32_t load_shared_u32(const uint8_t* base, int offset, int /*lane*/) const {
    const int at = int(base - smem->base()) + offset;
    TORCH_CHECK(at % 4 == 0, "emulator: 32-bit shared load not aligned");
    smem->check_read(at, 4);
    uint32_t v;
    std::memcpy(&v, smem->base() + at, 4);
    record->loads.push_back({1, {at}});
    return v;
  }

  void load_shared_f4(float* v, const uint8_t* base, int offset, int /*lane*/) const {
    const int at = int(base - smem->base()) + offset;
    TORCH_CHECK(at % 16 == 0, "emulator: 128-bit shared load not aligned");
    smem->check_read(at, 16);
    std::memcpy(v, smem->base() + at, 16);
    record->loads.push_back({2, {at}});
  }

  template <MmaKind kKind>
  void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
    MmaCall c;
    c.d = d;
    std::memcpy(c.a, a, sizeof(c.a));
    std::memcpy(c.b, b, sizeof(c.b));
    record->mma.push_back({kKind, c});
  }
};

// Wavefronts a warp-wide shared load needs beyond the minimum: distinct
// 4-byte words of one bank in one phase cost one each.
inline bool conflicted(const std::vector<const LoadRecord*>& lanes) {
  const int kind = lanes[0]->kind;
  if (kind == 0) {  // ldmatrix: each matrix's 8 rows (16 bytes each) are one phase
    for (int j = 0; j < 4; ++j) {
      bool used[8] = {};
      for (int r = 0; r < 8; ++r) {
        const int group = (lanes[8 * j + r]->offsets[0] / 16) % 8;
        if (used[group]) return true;
        used[group] = true;
      }
    }
    return false;
  }
  // 32-bit: one phase of 32 lanes; 128-bit: four phases of 8 lanes.
  const int lanes_per_phase = kind == 1 ? 32 : 8;
  const int width = kind == 1 ? 4 : 16;
  for (int phase = 0; phase < 32 / lanes_per_phase; ++phase) {
    std::vector<int> word_of_bank(32, -1);
    for (int l = phase * lanes_per_phase; l < (phase + 1) * lanes_per_phase; ++l) {
      for (int w = 0; w < width / 4; ++w) {
        const int word = lanes[l]->offsets[0] / 4 + w;
        const int bank = word % 32;
        if (word_of_bank[bank] >= 0 && word_of_bank[bank] != word) return true;
        word_of_bank[bank] = word;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------- the block

template <class ThreadState>
class HostBlockExec {
 public:
  HostBlockExec(int threads, SharedMemory* smem) : states_(threads), smem_(smem) { groups_.emplace_back(); }

  template <class F>
  void threads(F&& f) {
    HostCopier copier{smem_, &groups_};
    for (int t = 0; t < int(states_.size()); ++t) f(t, states_[t], copier);
  }

  template <class F>
  void warps(F&& f) {
    const int warps = int(states_.size()) / 32;
    for (int w = 0; w < warps; ++w) {
      std::vector<LaneRecord> records(32);
      for (int lane = 0; lane < 32; ++lane) {
        HostWarpOps ops{smem_, &records[lane]};
        f(w, lane, states_[w * 32 + lane], ops);
      }
      finish_warp(records);
    }
  }

  void commit() { groups_.emplace_back(); }

  template <int kPending>
  void wait() {
    // groups_.back() is the open (uncommitted) group; the committed ones
    // before it complete oldest first, all but the newest kPending.
    while (int(groups_.size()) - 1 > kPending) {
      for (const PendingCopy& c : groups_.front()) smem_->land(c);
      groups_.pop_front();
    }
  }

  void sync() { smem_->barrier(); }

 private:
  static void finish_warp(const std::vector<LaneRecord>& records) {
    const size_t calls = records[0].mma.size();
    for (const LaneRecord& r : records) {
      TORCH_CHECK(r.mma.size() == calls, "emulator: lanes of a warp issued different numbers of mma");
      TORCH_CHECK(r.loads.size() == records[0].loads.size(),
                  "emulator: lanes of a warp issued different numbers of shared loads");
    }
    for (size_t j = 0; j < calls; ++j) {
      std::vector<const MmaCall*> lanes(32);
      for (int l = 0; l < 32; ++l) {
        TORCH_CHECK(records[l].mma[j].first == records[0].mma[j].first, "emulator: mixed mma kinds");
        lanes[l] = &records[l].mma[j].second;
      }
      execute_mma(records[0].mma[j].first, lanes);
    }
    for (size_t j = 0; j < records[0].loads.size(); ++j) {
      std::vector<const LoadRecord*> lanes(32);
      for (int l = 0; l < 32; ++l) lanes[l] = &records[l].loads[j];
      ++counters().shared_loads;
      if (conflicted(lanes)) ++counters().conflicted_loads;
    }
  }

  std::vector<ThreadState> states_;
  SharedMemory* smem_;
  std::deque<std::vector<PendingCopy>> groups_;
};

// conv2d_fast.cuh's Launcher on the CPU: scratch tensors poisoned with NaN,
// elementwise functors in a loop, every block of a kernel through the host
// model above.
struct HostLauncher {
  int sm_count() const { return 132; }

  at::Tensor empty(at::IntArrayRef sizes, at::ScalarType dtype) const {
    return at::full(sizes, std::nan(""), at::TensorOptions().dtype(dtype));
  }

  template <class Op>
  void elementwise(const Op& op, int64_t count) const {
    for (int64_t i = 0; i < count; ++i) op(i);
  }

  template <class Block>
  void igemm(const typename Block::Params& p, dim3 grid) const {
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          SharedMemory smem(Block::kSmemBytes);
          HostBlockExec<typename Block::ThreadState> ex(Block::kThreads, &smem);
          Block::run(ex, p, smem.base(), int(x), int(y), int(z));
          ++counters().blocks;
        }
      }
    }
  }
};

}  // namespace emu
}  // namespace gpu
}  // namespace pycnn
