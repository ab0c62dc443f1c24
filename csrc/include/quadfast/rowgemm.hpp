// Products on row-major operands without packing, for the blocked engine's pass over W
// at small widths (AVX-512 builds).
//
// The pass multiplies every row block W_b (nb x N, row-major) by N x c coefficient
// matrices (MODEL.md §3).  At N = 64, c = 32 a row block holds 4096 entries of W and each
// entry takes part in 2 c = 64 multiply-adds per product, so packing W_b into a GEMM
// micro-kernel's panel layout (twice: once per role) cost about a quarter of a step (perf,
// (4096, 64), one core of the 2-core Ice Lake VM of the README).  Here the row operand is
// read where it lies: each multiply-add broadcasts one entry A(i, k) and multiplies it
// into a contiguous row k of B, so B must be row-major (the N x c matrices, transposed
// once per block where needed, and W_b itself), and A may have any strides (W_b, or a
// block of the column-major samples X).  Register tiles are 6 rows x 4 vectors (32
// doubles or 64 floats wide): each row of B loaded is used by 6 rows of C.  A first
// version with 3 rows x 8 vectors re-read B from L2 at every k and was slower than the
// packed products; with 6 x 4 the (4096, 64) step went from 61 to 42 us (C++ harness).
//
// C (m x n, row-major, leading dimension ldc) = or += sum over segments s of A_s B_s,
//   A_s(i, k) = a_s[i * ars_s + k * acs_s]  (k < K_s),  B_s row-major (leading dim. ldb_s).
// Every entry of C is summed in a fixed order (segments in order, k increasing, one FMA
// per term, from zero), then added to C when accumulating: the same bits for any split
// of C into row blocks, any thread count and any call sequence.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "quadfast/simd512.hpp"

namespace quadfast {
namespace rowgemm {

using Index = Eigen::Index;

// Widths up to which the blocked engines' pass uses these products in AVX-512 builds
// (StiefelKernel, EuclidKernel); above, the packed products of packed_gemm.hpp are faster
// (measured, README "How the kernel works").
inline constexpr Index kMaxDirectWidth = 128;

template <class T>
struct Seg {
  const T* a = nullptr;
  Index ars = 0, acs = 0;
  const T* B = nullptr;
  Index ldb = 0;
  Index K = 0;
};

#if defined(__AVX512F__)
inline constexpr bool kAvailable = true;

template <class T>
using V = simd512::V<T>;

#if defined(__GNUC__)
#define QUADFAST_ROWGEMM_INLINE __attribute__((always_inline)) inline
#define QUADFAST_ROWGEMM_LAMBDA_INLINE __attribute__((always_inline))
#else
#define QUADFAST_ROWGEMM_INLINE inline
#define QUADFAST_ROWGEMM_LAMBDA_INLINE
#endif

// One segment's terms into the MR x NV accumulators (the last vector masked to `last`).
template <class T, int MR, int NV>
QUADFAST_ROWGEMM_INLINE void accumulate(typename V<T>::R (&c)[MR][NV], const Seg<T>& g, Index row0, Index col0,
                                        typename V<T>::M last) {
  using Vt = V<T>;
  const T* a = g.a + row0 * g.ars;
  const T* B = g.B + col0;
  const Index ars = g.ars, acs = g.acs, ldb = g.ldb;
  for (Index k = 0; k < g.K; ++k) {
    typename Vt::R av[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) av[r] = Vt::set1(a[r * ars + k * acs]);
    const T* Bk = B + k * ldb;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const typename Vt::R b = v + 1 < NV ? Vt::loadu(Bk + v * Vt::L) : Vt::load(Bk + v * Vt::L, last);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) c[r][v] = Vt::fmadd(av[r], b, c[r][v]);
    }
  }
}

// MR rows x NV vectors of C from one or two segments: MR NV accumulators, MR broadcasts
// and one row of B per k (MR NV + MR + 1 <= 32 registers).
template <class T, int MR, int NV, int NSEG>
inline void tile(T* C, Index ldc, const Seg<T>* seg, Index row0, Index col0, bool acc, typename V<T>::M last) {
  using Vt = V<T>;
  typename Vt::R c[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) c[r][v] = Vt::zero();
  accumulate<T, MR, NV>(c, seg[0], row0, col0, last);
  if constexpr (NSEG > 1) accumulate<T, MR, NV>(c, seg[1], row0, col0, last);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    T* p = C + (row0 + r) * ldc + col0;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const bool full = v + 1 < NV;
      typename Vt::R x = c[r][v];
      if (acc) x = Vt::add(full ? Vt::loadu(p + v * Vt::L) : Vt::load(p + v * Vt::L, last), x);
      if (full)
        Vt::storeu(p + v * Vt::L, x);
      else
        Vt::store(p + v * Vt::L, x, last);
    }
  }
}

// Rows [0, m) for the columns [col0, col0 + NV L) (the last vector masked): tiles of MR
// rows, then the rest one row at a time.
template <class T, int MR, int NV, int NSEG>
inline void rows(T* C, Index ldc, const Seg<T>* seg, Index m, Index col0, bool acc, typename V<T>::M last) {
  Index i = 0;
  for (; i + MR <= m; i += MR) tile<T, MR, NV, NSEG>(C, ldc, seg, i, col0, acc, last);
  for (; i < m; ++i) tile<T, 1, NV, NSEG>(C, ldc, seg, i, col0, acc, last);
}

template <class T, int NSEG>
inline void gemm_n(T* C, Index ldc, Index m, Index n, const Seg<T>* seg, bool acc) {
  constexpr Index L = V<T>::L;
  Index j = 0;
  // column panels of 4 vectors (6-row tiles), then one narrower panel for the rest
  for (; j + 4 * L <= n; j += 4 * L) rows<T, 6, 4, NSEG>(C, ldc, seg, m, j, acc, V<T>::mask(L));
  const Index rest = n - j;
  if (rest <= 0) return;
  const Index nv = (rest + L - 1) / L;
  const typename V<T>::M last = V<T>::mask(rest - (nv - 1) * L);
  switch (nv) {  // rest < 4 L
    case 1: rows<T, 8, 1, NSEG>(C, ldc, seg, m, j, acc, last); break;
    case 2: rows<T, 8, 2, NSEG>(C, ldc, seg, m, j, acc, last); break;
    case 3: rows<T, 6, 3, NSEG>(C, ldc, seg, m, j, acc, last); break;
    default: rows<T, 6, 4, NSEG>(C, ldc, seg, m, j, acc, last); break;
  }
}

template <class T>
inline void gemm(T* C, Index ldc, Index m, Index n, const Seg<T>* seg, int nseg, bool acc) {
  if (nseg == 1)
    gemm_n<T, 1>(C, ldc, m, n, seg, acc);
  else
    gemm_n<T, 2>(C, ldc, m, n, seg, acc);
}
// The lower triangle of G += X^T X (G column-major, leading dimension ldg; X column-major
// m x n, leading dimension ldx): G(i, j) += sum_k X(k, i) X(k, j) for i >= j.  This is
// the pass's Gram matrix of a row block of samples, which Eigen's rankUpdate packed twice
// per row block (a quarter of the (16384, 4) step, perf on the 2-core AMD EPYC VM of the
// README).  Dot-product form on the columns as they lie: a tile of RI x RJ column pairs
// keeps RI RJ vector accumulators, row k in lane k mod L (the last rows masked), and each
// vector of RI + RJ column entries loaded feeds RI RJ multiply-adds.  Every entry is
// summed in a fixed order (lanes from zero over k, then _mm512_reduce_add, then added to
// G), so the bits depend on m and the data only.  Tiles of 4 x 4 pairs on and below the
// diagonal; diagonal tiles compute their upper pairs too and do not store them.
template <class T, int RI, int RJ>
inline void gram_tile(T* G, Index ldg, const T* X, Index ldx, Index m, Index i0, Index j0) {
  using Vt = V<T>;
  constexpr Index L = Vt::L;
  typename Vt::R acc[RI][RJ];
#pragma GCC unroll 16
  for (int a = 0; a < RI; ++a)
#pragma GCC unroll 16
    for (int b = 0; b < RJ; ++b) acc[a][b] = Vt::zero();
  const T* xi = X + i0 * ldx;
  const T* xj = X + j0 * ldx;
  auto step = [&](Index k, typename Vt::M mk, bool full) QUADFAST_ROWGEMM_LAMBDA_INLINE {
    typename Vt::R vi[RI], vj[RJ];
#pragma GCC unroll 16
    for (int a = 0; a < RI; ++a) vi[a] = full ? Vt::loadu(xi + a * ldx + k) : Vt::load(xi + a * ldx + k, mk);
#pragma GCC unroll 16
    for (int b = 0; b < RJ; ++b) vj[b] = full ? Vt::loadu(xj + b * ldx + k) : Vt::load(xj + b * ldx + k, mk);
#pragma GCC unroll 16
    for (int a = 0; a < RI; ++a)
#pragma GCC unroll 16
      for (int b = 0; b < RJ; ++b) acc[a][b] = Vt::fmadd(vi[a], vj[b], acc[a][b]);
  };
  Index k = 0;
  for (; k + L <= m; k += L) step(k, Vt::mask(L), true);
  if (k < m) step(k, Vt::mask(m - k), false);
#pragma GCC unroll 16
  for (int a = 0; a < RI; ++a)
#pragma GCC unroll 16
    for (int b = 0; b < RJ; ++b)
      if (i0 + a >= j0 + b) G[(j0 + b) * ldg + i0 + a] += Vt::reduce(acc[a][b]);
}

template <class T, int RJ>
inline void gram_row(T* G, Index ldg, const T* X, Index ldx, Index m, Index i0, int ri, Index j0) {
  switch (ri) {
    case 1: gram_tile<T, 1, RJ>(G, ldg, X, ldx, m, i0, j0); break;
    case 2: gram_tile<T, 2, RJ>(G, ldg, X, ldx, m, i0, j0); break;
    case 3: gram_tile<T, 3, RJ>(G, ldg, X, ldx, m, i0, j0); break;
    default: gram_tile<T, 4, RJ>(G, ldg, X, ldx, m, i0, j0); break;
  }
}

template <class T>
inline void gram_lower_add(T* G, Index ldg, const T* X, Index ldx, Index m, Index n) {
  for (Index j0 = 0; j0 < n; j0 += 4) {
    const int rj = static_cast<int>(std::min<Index>(4, n - j0));
    for (Index i0 = j0; i0 < n; i0 += 4) {  // tiles on and below the diagonal
      const int ri = static_cast<int>(std::min<Index>(4, n - i0));
      switch (rj) {
        case 1: gram_row<T, 1>(G, ldg, X, ldx, m, i0, ri, j0); break;
        case 2: gram_row<T, 2>(G, ldg, X, ldx, m, i0, ri, j0); break;
        case 3: gram_row<T, 3>(G, ldg, X, ldx, m, i0, ri, j0); break;
        default: gram_row<T, 4>(G, ldg, X, ldx, m, i0, ri, j0); break;
      }
    }
  }
}
#else
inline constexpr bool kAvailable = false;

// Without AVX-512 the engines do not call this; the loop is the same sums in the same
// order, for completeness.
template <class T>
inline void gemm(T* C, Index ldc, Index m, Index n, const Seg<T>* seg, int nseg, bool acc) {
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) {
      T x = T(0);
      for (int s = 0; s < nseg; ++s)
        for (Index k = 0; k < seg[s].K; ++k) x = std::fma(seg[s].a[i * seg[s].ars + k * seg[s].acs], seg[s].B[k * seg[s].ldb + j], x);
      C[i * ldc + j] = acc ? C[i * ldc + j] + x : x;
    }
}

// The same Gram sums in a plain loop, k in order (not the AVX-512 build's bits; the engines
// call it only there).
template <class T>
inline void gram_lower_add(T* G, Index ldg, const T* X, Index ldx, Index m, Index n) {
  for (Index j = 0; j < n; ++j)
    for (Index i = j; i < n; ++i) {
      T x = T(0);
      for (Index k = 0; k < m; ++k) x = std::fma(X[i * ldx + k], X[j * ldx + k], x);
      G[j * ldg + i] += x;
    }
}
#endif

// Whether a blocked engine of width N runs its pass on these products (AVX-512 builds,
// 2 <= N <= kMaxDirectWidth; width 1 has its own column operations).
inline constexpr bool use_direct(Index N) { return kAvailable && N >= 2 && N <= kMaxDirectWidth; }

}  // namespace rowgemm
}  // namespace quadfast
