// The default block size of the blocked engines (MODEL.md §3), from d, the width N and the
// batch.  Pure C++17/Eigen: a C++ simulator gets the same default as quadfast.default_block.
#pragma once

#include <Eigen/Core>
#include <algorithm>

namespace quadfast {

// Below this d * N the sequential kernels are faster than any block (both engines).
inline constexpr Eigen::Index kMinBlockedSize = 64;

// Steps per block: a block holds c = k * batch sample columns.
//   d N < 64:        1 (the sequential kernels are faster on such tiny problems)
//   N = 1:           c = 4 (the column operations of width 1; 8 and 16 columns were
//                    10% and 42-47% slower at d = 4096 and 16384)
//   2 <= N < 32:     c = max(16, N): below width 16 a block's fixed costs (the small
//                    per-block matrices, the pass's set-up) outweigh its O(d c) terms,
//                    X Am and X^T X; 4 columns were 45-55% slower than 16 at widths
//                    2 and 4, and 16 the fastest or within 6% from width 2 to 12
//   32 <= N <= 128:  c = 32 (the direct products of rowgemm.hpp prefer short blocks)
//   N > 128:         c = 96: a block costs about 3 d c flops per step on top of 6 d N,
//                    and streams W once per c steps; 96 columns were the fastest or within
//                    1% of it from N = 192 to 2048 in all sweeps but one
//                    (quadfast.default_block's docstring has them)
// and k = max(1, c / batch).  The cache sizes are not used: from width 32 on, the operands
// a block's pass streams have an arithmetic intensity above the machine balance even from
// memory (see the docstring), the optima were the same on two machines whose L2 and L3
// differ (1.25 and 2 MiB, 48 and 300 MiB), and no cache-dependent choice was measured to
// help.  (The cache sizes do shape the packed products inside a block, above width 128
// in AVX-512 builds: their panels (kc, mc, nc) are Eigen's blocking for the caches it
// queries, packed_gemm.hpp.)
inline Eigen::Index default_block(Eigen::Index d, Eigen::Index N, Eigen::Index batch) {
  using Index = Eigen::Index;
  if (d * N < kMinBlockedSize) return 1;
  const Index cols = N == 1 ? 4 : (N < 32 ? std::max<Index>(16, N) : (N <= 128 ? 32 : 96));
  return std::max<Index>(1, cols / std::max<Index>(1, batch));
}

// The Euclidean engine (euclid.hpp, batch 1 only): 1 for batch > 1, and otherwise as
// above except at width 1, where its blocks are 8 columns (4 columns were 10-15% slower
// at d = 1024 and 16384), and above width 128, where its blocks are 128 columns below N = 512 and 192
// from there.  Its step has no retraction and 4 d N GEMM flops instead of 6 d N, so the
// O(d c) terms of a block weigh more lightly: at (16384, 1024) 96 / 128 / 192 columns gave 1464 /
// 1493 / 1396 us per step, and at (16384, 256) 64 / 96 / 128 / 192: 453 / 424 / 426 / 431
// (quadfast.euclid.default_block's docstring).
inline Eigen::Index euclid_default_block(Eigen::Index d, Eigen::Index N, Eigen::Index batch) {
  using Index = Eigen::Index;
  if (batch > 1 || d * N < kMinBlockedSize) return 1;
  if (N == 1) return 8;
  if (N <= 128) return default_block(d, N, 1);
  return N < 512 ? Index(128) : Index(192);
}

}  // namespace quadfast
