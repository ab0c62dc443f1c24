// Fixed row slabs for the threaded passes over W of the blocked engines (MODEL.md §3).
//
// A pass over the d rows of W is split into slabs of whole row blocks; each slab writes
// its own partial sums, which the caller then adds in slab order.  The layout is a
// function of (d, N, columns) alone, never of the thread count, so every thread count
// gives the same bits.  Pure C++17/Eigen: no Python.
#pragma once

#include <Eigen/Core>
#include <algorithm>

namespace quadfast {
namespace slabs {

using Index = Eigen::Index;

struct Layout {
  Index rb = 0;         // rows per row block (a multiple of `base`)
  Index slab_rows = 0;  // rows per slab (whole row blocks)
  Index n_slabs = 0;
};

// Row blocks of about 64K elements of W (64 rows at N = 1024, 1024 rows at N = 64), so
// that the GEMMs of a row block are large enough to run at speed while the block stays in
// cache across its products.  Slabs: at most 32, whole row blocks, and partial sums
// (N x cols per slab) no larger than W / 16 together (peak memory stays within 1.5 W plus a
// sample block).  Their number is rounded down to a multiple of 4 (or to 2), so that 2 and
// 4 threads get equal shares: 5 slabs on 2 threads capped the speed-up at 5/3.  `base` is
// the kernel's smallest row block.
inline Index balanced_count(Index n) {
  if (n >= 4) return n / 4 * 4;
  return n >= 2 ? 2 : 1;
}
inline Layout layout(Index d, Index N, Index cols, Index base) {
  Layout L;
  L.rb = std::max<Index>(base, std::min<Index>(1024, (65536 / N) / base * base));
  L.rb = std::max<Index>(base, std::min<Index>(L.rb, d / 8 / base * base));  // >= 8 slabs if d allows
  const Index target = balanced_count(std::max<Index>(1, std::min<Index>(32, d / std::max<Index>(1, 16 * cols))));
  L.slab_rows = ((d + target - 1) / target + L.rb - 1) / L.rb * L.rb;
  L.n_slabs = (d + L.slab_rows - 1) / L.slab_rows;
  return L;
}

// f(s) for every slab s in [0, n_slabs), on up to `threads` OpenMP threads; serially
// without OpenMP or with one thread.  By default each thread takes one contiguous run of
// slabs (static schedule); `cyclic` deals them out one at a time (s, s + threads, ...),
// for work items of unequal size such as the panels of a triangle.
template <class F>
inline void for_each(Index n_slabs, Index threads, F& f, bool cyclic = false) {
#ifdef _OPENMP
  if (threads > 1 && n_slabs > 1) {
    const int chunk = cyclic ? 1 : static_cast<int>((n_slabs + threads - 1) / threads);
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(static, chunk)
    for (Index s = 0; s < n_slabs; ++s) f(s);
    return;
  }
#else
  (void)threads;
  (void)cyclic;
#endif
  for (Index s = 0; s < n_slabs; ++s) f(s);
}

// The end of a pass that accumulated, per slab s, partial P (N x cn), G = X^T X (lower
// triangle of cn x cn) and, when `tx`, Theta^T X (r x cn) in the columns [s stride,
// s stride + cn) of the *part matrices: their sums in slab order (so that the result does
// not depend on the thread count), with G made symmetric.
template <class M>
inline void reduce_partials(M& P, M& G, M& TX, const M& Ppart, const M& Gpart, const M& TXpart, Index n_slabs,
                            Index stride, Index cn, bool tx) {
  P.leftCols(cn) = Ppart.leftCols(cn);
  G.topLeftCorner(cn, cn) = Gpart.topLeftCorner(cn, cn);
  if (tx) TX.leftCols(cn) = TXpart.leftCols(cn);
  for (Index s = 1; s < n_slabs; ++s) {
    P.leftCols(cn) += Ppart.middleCols(s * stride, cn);
    G.topLeftCorner(cn, cn) += Gpart.block(0, s * stride, cn, cn);
    if (tx) TX.leftCols(cn) += TXpart.middleCols(s * stride, cn);
  }
  G.topLeftCorner(cn, cn).template triangularView<Eigen::StrictlyUpper>() = G.topLeftCorner(cn, cn).transpose();
}

}  // namespace slabs
}  // namespace quadfast
