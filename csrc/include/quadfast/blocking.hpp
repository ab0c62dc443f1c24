// The default block size of the blocked engines (MODEL.md §3), from d, the width N, the
// batch and the last-level cache size.  Pure C++17/Eigen: a C++ simulator gets the same default as quadfast.default_block.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>

namespace quadfast {

// Below this d * N the sequential kernels are faster than any block (both engines).
inline constexpr Eigen::Index kMinBlockedSize = 64;

// The size in bytes of the last-level cache: on Linux the highest level that holds data in
// /sys/devices/system/cpu/cpu0/cache/index*/{level,type,size} (the kernel's reading of
// the CPU's cache descriptors); elsewhere, or if that fails, Eigen's cpuid query
// (l3CacheSize(), else l2CacheSize()).  The two can disagree: on the 2-core AMD EPYC VM of
// the README sysfs says 32 MiB and cpuid's legacy leaf, which Eigen and glibc read, 384
// MiB.  Read once.
inline std::int64_t query_last_level_cache_bytes() {
  std::int64_t best_level = 0, best_bytes = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream fl(dir + "level"), ft(dir + "type"), fs(dir + "size");
    std::int64_t level = 0;
    std::string type, size;
    if (!(fl >> level) || !(ft >> type) || !(fs >> size) || type == "Instruction") continue;
    std::size_t pos = 0;
    std::int64_t bytes = 0;
    try {
      bytes = std::stoll(size, &pos);
    } catch (...) {
      continue;
    }
    const char unit = pos < size.size() ? size[pos] : ' ';
    bytes *= unit == 'K' ? 1024 : unit == 'M' ? 1024 * 1024 : unit == 'G' ? 1024 * 1024 * 1024 : 1;
    if (level > best_level && bytes > 0) {
      best_level = level;
      best_bytes = bytes;
    }
  }
  if (best_bytes > 0) return best_bytes;
  const std::int64_t l3 = static_cast<std::int64_t>(Eigen::l3CacheSize());
  return l3 > 0 ? l3 : static_cast<std::int64_t>(Eigen::l2CacheSize());
}
inline std::int64_t last_level_cache_bytes() {
  static const std::int64_t bytes = query_last_level_cache_bytes();
  return bytes;
}

// Steps per block: a block holds c = k * batch sample columns.
//   d N < 64:        1 (the sequential kernels are faster on such tiny problems)
//   N = 1:           c = 4 (the column operations of width 1; 8 and 16 columns were
//                    10% and 42-47% slower at d = 4096 and 16384)
//   2 <= N < 32:     c = max(16, N): below width 16 a block's fixed costs (the small
//                    per-block matrices, the pass's set-up) outweigh its O(d c) terms,
//                    X Am and X^T X; 4 columns were 45-55% slower than 16 at widths
//                    2 and 4, and 16 the fastest or within 6% from width 2 to 12
//   32 <= N <= 128:  from the cache size.  W and a block of samples, d (N + 32) elements,
//                    in half the last-level cache: c = 16 below width 64 and 24 from
//                    there (fewer of a block's 3 d c extra flops per step).  Otherwise
//                    c = 32: a pass over W from memory costs more than from the cache
//                    (about 50 ns per row of W at width 64), once per block, so short
//                    blocks pay it more often (on the 2-core AMD EPYC VM, 32 MiB L3,
//                    (65536, 64): 16 / 24 / 32 columns 552 / 553 / 426 us per step,
//                    against (4096, 64): 21.3 / 19.6 / 20.6; quadfast.default_block's
//                    docstring has the sweeps)
//   N > 128:         c = 96: a block costs about 3 d c flops per step on top of 6 d N,
//                    and streams W once per c steps; 96 columns were the fastest or within
//                    1% of it from N = 192 to 2048 in all sweeps but one, with W in and
//                    beyond the last-level cache
// and k = max(1, c / batch).  `elem_bytes` is the size of W's elements (8 for float64, 4
// for float32) and `cache_bytes` the last-level cache size (negative: the machine's,
// last_level_cache_bytes(); 0: unknown, which takes the out-of-cache choice).  The default
// block of widths 32 to 128 therefore depends on the machine: pass a block, or these
// sizes, to reproduce a run bit for bit elsewhere.  (The cache sizes also shape the packed
// products inside a block, above width 128 in AVX-512 builds: their panels (kc, mc, nc)
// are Eigen's blocking for the caches it queries, packed_gemm.hpp.)
inline Eigen::Index default_block(Eigen::Index d, Eigen::Index N, Eigen::Index batch, Eigen::Index elem_bytes = 8,
                                  std::int64_t cache_bytes = -1) {
  using Index = Eigen::Index;
  if (d * N < kMinBlockedSize) return 1;
  Index cols;
  if (N == 1) {
    cols = 4;
  } else if (N < 32) {
    cols = std::max<Index>(16, N);
  } else if (N <= 128) {
    if (cache_bytes < 0) cache_bytes = last_level_cache_bytes();
    const bool in_cache = 2 * static_cast<std::int64_t>(d) * (N + 32) * elem_bytes <= cache_bytes;
    cols = !in_cache ? 32 : (N < 64 ? 16 : 24);
  } else {
    cols = 96;
  }
  return std::max<Index>(1, cols / std::max<Index>(1, batch));
}

// The Euclidean engine (euclid.hpp, batch 1 only): 1 for batch > 1, and otherwise as
// above except at width 1, where its blocks are 8 columns (4 columns were 10-15% slower
// at d = 1024 and 16384), and above width 128, where its blocks are 128 columns below N = 512 and 192
// from there.  Its step has no retraction and 4 d N GEMM flops instead of 6 d N, so the
// O(d c) terms of a block weigh more lightly: at (16384, 1024) 96 / 128 / 192 columns gave 1464 /
// 1493 / 1396 us per step, and at (16384, 256) 64 / 96 / 128 / 192: 453 / 424 / 426 / 431
// (quadfast.euclid.default_block's docstring).
inline Eigen::Index euclid_default_block(Eigen::Index d, Eigen::Index N, Eigen::Index batch,
                                         Eigen::Index elem_bytes = 8, std::int64_t cache_bytes = -1) {
  using Index = Eigen::Index;
  if (batch > 1 || d * N < kMinBlockedSize) return 1;
  if (N == 1) return 8;
  if (N <= 128) return default_block(d, N, 1, elem_bytes, cache_bytes);
  return N < 512 ? Index(128) : Index(192);
}

}  // namespace quadfast
