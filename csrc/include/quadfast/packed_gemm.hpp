// Matrix products with one operand packed once and reused over many row blocks.
//
// The blocked engine's pass over W (MODEL.md §3) multiplies every row block W_b by the
// same N x c coefficient matrices: Y = W_b Bm, then W_b += Y Zm^T.  Eigen's product packs
// both operands into its micro-kernel's panel layout on every call, so Bm and Zm were
// re-packed for every row block of 64 rows: N c elements copied per 2 * 64 N c flops,
// about 12% of a step at d = 16384, N = 1024 (perf on one core).  Here they are packed
// once per block of steps, and each row block packs only its own rows.
//
// The packing routines are Eigen's own (gemm_pack_lhs, gemm_pack_rhs in
// Eigen/src/Core/products/GeneralBlockPanelKernel.h), and so is the micro-kernel
// (gebp_kernel) except in AVX-512 builds, which run the register tiles of micro::gebp
// below on the same panels with the same sums.  They are driven with the cache blocking
// (kc, mc, nc) that Eigen's general_matrix_matrix_product computes for the same shapes
// and with its loop order, so the sums are formed in the same order and the results are
// the same bits as those of the plain Eigen expression.  These are Eigen
// internals (stable across Eigen 3.3 and 3.4); tests/test_blocked.py checks the products
// against the sequential kernel, and the engine's results against 1 and 2 threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "quadfast/simd512.hpp"

namespace quadfast {
namespace pgemm {

using Index = Eigen::Index;
namespace ei = Eigen::internal;
namespace internal = Eigen::internal;  // for ei_declare_aligned_stack_constructed_variable

template <class T>
using Traits = ei::gebp_traits<T, T>;
template <class T, int Order>
using ConstMapper = ei::const_blas_data_mapper<T, Index, Order>;
template <class T>
using ResMapper = ei::blas_data_mapper<T, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
template <class T, int Order>
using PackLhs = ei::gemm_pack_lhs<T, Index, ConstMapper<T, Order>, Traits<T>::mr, Traits<T>::LhsProgress,
                                  typename Traits<T>::LhsPacket4Packing, Order>;
template <class T, int Order>
using PackRhs = ei::gemm_pack_rhs<T, Index, ConstMapper<T, Order>, Traits<T>::nr, Order>;
template <class T>
using Gebp = ei::gebp_kernel<T, T, Index, ResMapper<T>, Traits<T>::mr, Traits<T>::nr, false, false>;

// The blocked engines pack their N x c coefficient matrices from this width N on; below,
// they use Eigen's products (and the Stiefel engine, at N = 1, vector operations).
inline constexpr Index kMinWidth = 32;

// Eigen's cache blocking for a column-major product C (rows x cols) += A (rows x depth) B.
struct Blocking {
  Index kc = 0, mc = 0, nc = 0;
};
template <class T>
inline Blocking blocking(Index rows, Index cols, Index depth) {
  Index kc = depth, mc = rows, nc = cols;
  ei::computeProductBlockingSizes<T, T, 1>(kc, mc, nc, Index(1));
  return {kc, std::min(rows, mc), std::min(cols, nc)};
}

// Packed panels start on 64-byte boundaries (the micro-kernels use aligned loads):
// sizes rounded up to 16 elements, 64 bytes of float and 128 of double.
inline Index padded(Index n) { return (n + 15) / 16 * 16; }

// The (a_n x b_n) grid cut in (a_blk x b_blk) panels, a outer: f(a, am, b, bm, offset)
// with the offsets of the panels stored one after another in that order.  Returns the
// total storage.
template <class F>
inline Index for_panels(Index a_n, Index a_blk, Index b_n, Index b_blk, F&& f) {
  Index off = 0;
  for (Index a = 0; a < a_n; a += a_blk) {
    const Index am = std::min(a + a_blk, a_n) - a;
    for (Index b = 0; b < b_n; b += b_blk) {
      const Index bm = std::min(b + b_blk, b_n) - b;
      f(a, am, b, bm, off);
      off += padded(am * bm);
    }
  }
  return off;
}
inline Index packed_size(Index a_n, Index a_blk, Index b_n, Index b_blk) {
  return for_panels(a_n, a_blk, b_n, b_blk, [](Index, Index, Index, Index, Index) {});
}
inline Index panel_offset(Index a_n, Index a_blk, Index b_n, Index b_blk, Index a0, Index b0) {
  Index at = 0;
  for_panels(a_n, a_blk, b_n, b_blk, [&](Index a, Index, Index b, Index, Index off) {
    if (a == a0 && b == b0) at = off;
  });
  return at;
}

// The micro-kernel.  Eigen 3.4's gebp on AVX-512 works on register tiles of 3 packets x 4
// columns (24 x 4 doubles, 12 of the 32 vector registers as accumulators) and reaches about
// half of one core's FMA peak on the pass's products.  With AVX-512, full tiles here are
// 3 (or 2) packets x 8 columns instead: 24 accumulators, 3 loads and 8 broadcasts per
// 24 FMAs, read straight from Eigen's packed layout (lhs panels of 3, then 2 packets, with
// the k-th packet column contiguous; rhs panels of 4 columns, two of which make a tile).
// Each entry of C is summed exactly as in Eigen's 3pX4 and 2pX4 loops: one accumulator per
// entry, one FMA per k in increasing k, then C <- acc * 1 + C (one FMA).  The results are
// therefore Eigen's bits (csrc/examples/packed_gemm_check.cpp checks it).  Rows of the
// 1-packet panels (8 doubles or 16 floats), whose Eigen loop splits even and odd k over
// two accumulators, smaller panels and single rhs columns are left to Eigen's gebp itself.
namespace micro {
#if defined(__AVX512F__)
template <class T>
using Vec = simd512::V<T>;

// C (MA packets x NB columns, column-major, leading dimension ldc) += A B over kc terms;
// A: MA packets per k, contiguous; B: NB columns as one or two 4-column panels (B0, B1).
template <class T, int MA, int NB>
inline void tile(const T* __restrict A, const T* __restrict B0, const T* __restrict B1, Index kc, T* C, Index ldc) {
  using V = Vec<T>;
  typename V::R acc[MA][NB];
  for (int a = 0; a < MA; ++a)
    for (int b = 0; b < NB; ++b) acc[a][b] = V::zero();
  for (Index k = 0; k < kc; ++k) {
    typename V::R av[MA];
    for (int a = 0; a < MA; ++a) av[a] = V::load(A + (k * MA + a) * V::L);
    for (int b = 0; b < NB; ++b) {
      const typename V::R bv = V::set1(b < 4 ? B0[k * 4 + b] : B1[k * 4 + (b - 4)]);
      for (int a = 0; a < MA; ++a) acc[a][b] = V::fmadd(av[a], bv, acc[a][b]);
    }
  }
  const typename V::R one = V::set1(T(1));
  for (int b = 0; b < NB; ++b)
    for (int a = 0; a < MA; ++a) {
      T* p = C + b * ldc + a * V::L;
      V::storeu(p, V::fmadd(acc[a][b], one, V::loadu(p)));
    }
}

// Rows [i0, i1) of the packed lhs (whole 3- and 2-packet panels only) against one rhs
// tile of NB columns.
template <class T, int NB>
inline void tile_rows(T* C, Index ldc, const T* blockA, Index depth, Index i0, Index i1, Index m3, const T* B0,
                      const T* B1) {
  constexpr Index P3 = 3 * Vec<T>::L, P2 = 2 * Vec<T>::L;
  Index i = i0;
  for (; i < std::min(i1, m3); i += P3) tile<T, 3, NB>(blockA + i * depth, B0, B1, depth, C + i, ldc);
  for (; i < i1; i += P2) tile<T, 2, NB>(blockA + i * depth, B0, B1, depth, C + i, ldc);
}
#endif

// C (rows x cols) += A B from Eigen-packed panels (blockA: rows x depth, blockB: depth x
// cols, the layouts of gemm_pack_lhs / gemm_pack_rhs without stride or offset).
template <class T>
inline void gebp(const ResMapper<T>& res, const T* blockA, const T* blockB, Index rows, Index depth, Index cols) {
  if (rows <= 0 || cols <= 0 || depth <= 0) return;
#if defined(__AVX512F__)
  if constexpr (Traits<T>::mr == 3 * Vec<T>::L && Traits<T>::nr == 4) {
    constexpr Index L = Vec<T>::L;
    const Index m3 = rows / (3 * L) * (3 * L);
    const Index m2 = m3 + (rows - m3) / (2 * L) * (2 * L);
    const Index n4 = cols / 4 * 4, n8 = cols / 8 * 8;
    T* C = &res(0, 0);
    const Index ldc = res.stride();
    // Panels of lhs rows that stay in the L2 cache while the rhs tiles go past them.
    const Index chunk = std::max<Index>(1, (Index(256) << 10) / (depth * Index(sizeof(T)) * 3 * L)) * (3 * L);
    for (Index i0 = 0; i0 < m2; i0 += chunk) {
      const Index i1 = std::min(m2, i0 + chunk);
      for (Index j = 0; j < n8; j += 8)
        tile_rows<T, 8>(C + j * ldc, ldc, blockA, depth, i0, i1, m3, blockB + j * depth, blockB + (j + 4) * depth);
      if (n8 < n4) tile_rows<T, 4>(C + n8 * ldc, ldc, blockA, depth, i0, i1, m3, blockB + n8 * depth, nullptr);
    }
    Gebp<T> eigen;
    if (m2 < rows) eigen(res.getSubMapper(m2, 0), blockA + m2 * depth, blockB, rows - m2, depth, cols, T(1));
    if (n4 < cols && m2 > 0) eigen(res.getSubMapper(0, n4), blockA, blockB + n4 * depth, m2, depth, cols - n4, T(1));
    return;
  }
#endif
  Gebp<T>()(res, blockA, blockB, rows, depth, cols, T(1));
}
}  // namespace micro

// Eigen's sequential GEMM loop (general_matrix_matrix_product::run): C (rows x cols) += A B
// over (mc x kc) panels of A and (kc x nc) panels of B, i2 outer, then k2, then j2, with
// the packed panels from lhs_panel(i2, mc, k2, kc) (once per (i2, k2)) and
// rhs_panel(k2, kc, j2, nc).
template <class T, class LhsPanel, class RhsPanel>
inline void drive(const ResMapper<T>& res, Index rows, Index depth, Index cols, const Blocking& blk,
                  LhsPanel&& lhs_panel, RhsPanel&& rhs_panel) {
  for_panels(rows, blk.mc, depth, blk.kc, [&](Index i2, Index mc, Index k2, Index kc, Index) {
    const T* A = lhs_panel(i2, mc, k2, kc);
    for (Index j2 = 0; j2 < cols; j2 += blk.nc) {
      const Index nc = std::min(j2 + blk.nc, cols) - j2;
      micro::gebp<T>(res.getSubMapper(i2, j2), A, rhs_panel(k2, kc, j2, nc), mc, kc, nc);
    }
  });
}

// C (rows x cols, column-major, leading dimension ldc) += A B with A (rows x depth) and
// B (depth x cols) in storage orders OA and OB: Eigen's own product loop
// (general_matrix_matrix_product::run, one thread: its blocking, both operands packed
// panel by panel) around the micro-kernel above, hence the bits of `C.noalias() += A * B`.
// Shapes for which Eigen takes another path (a matrix-vector product, or the
// coefficient-based one below EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) are Eigen's own
// expression.  The packing buffers are on the stack up to EIGEN_STACK_ALLOCATION_LIMIT,
// as in Eigen's product.
template <class T, int OA, int OB>
inline void gemm_add(T* C, Index ldc, const T* A, Index lda, const T* B, Index ldb, Index rows, Index depth,
                     Index cols) {
  if (rows == 0 || cols == 0 || depth == 0) return;
  if (rows == 1 || cols == 1 || depth + rows + cols < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) {
    using MA = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, OA>;
    using MB = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, OB>;
    using MC = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
    Eigen::Map<const MA, 0, Eigen::OuterStride<>> a(A, rows, depth, Eigen::OuterStride<>(lda));
    Eigen::Map<const MB, 0, Eigen::OuterStride<>> b(B, depth, cols, Eigen::OuterStride<>(ldb));
    Eigen::Map<MC, 0, Eigen::OuterStride<>> c(C, rows, cols, Eigen::OuterStride<>(ldc));
    c.noalias() += a * b;
    return;
  }
  const Blocking blk = blocking<T>(rows, cols, depth);
  const ConstMapper<T, OA> lhs(A, lda);
  const ConstMapper<T, OB> rhs(B, ldb);
  PackLhs<T, OA> pack_lhs;
  PackRhs<T, OB> pack_rhs;
  ei_declare_aligned_stack_constructed_variable(T, blockA, static_cast<std::size_t>(blk.mc * blk.kc), 0);
  ei_declare_aligned_stack_constructed_variable(T, blockB, static_cast<std::size_t>(blk.kc * blk.nc), 0);
  drive<T>(
      ResMapper<T>(C, ldc), rows, depth, cols, blk,
      [&](Index i2, Index mc, Index k2, Index kc) {
        pack_lhs(blockA, lhs.getSubMapper(i2, k2), kc, mc);
        return static_cast<const T*>(blockA);
      },
      [&](Index k2, Index kc, Index j2, Index nc) {
        pack_rhs(blockB, rhs.getSubMapper(k2, j2), kc, nc);
        return static_cast<const T*>(blockB);
      });
}

// One operand of C += A B packed once, for many products with the other operand:
//   Side::Rhs: B (depth x cols), for C (m x cols) += A (m x depth) B with m <= rows
//              (A a row block of W, in storage order Eigen::RowMajor);
//   Side::Lhs: A (rows x depth), for C (rows x m) += A B (depth x m) with m <= cols
//              (B the transpose of a column-major row-block product: Eigen::RowMajor).
// The packed operand is stored in order `SrcOrder` (column-major unless told) with leading
// dimension ld.  setup() fixes the blocking for the largest shape (rows, depth, cols) and
// allocates; pack() then accepts any smaller depth and outer size (cols for Rhs, rows for
// Lhs) and allocates nothing.
enum class Side { Lhs, Rhs };

template <class T, Side S>
class Packed {
 public:
  void setup(Index rows, Index depth, Index cols) {
    blk_ = blocking<T>(rows, cols, depth);
    buf_.resize(S == Side::Rhs ? packed_size(depth, blk_.kc, cols, blk_.nc) : packed_size(rows, blk_.mc, depth, blk_.kc));
  }
  template <int SrcOrder = Eigen::ColMajor>
  void pack(const T* M, Index ld, Index outer, Index depth) {
    outer_ = outer;
    depth_ = depth;
    const ConstMapper<T, SrcOrder> src(M, ld);
    if constexpr (S == Side::Rhs) {
      PackRhs<T, SrcOrder> pack_rhs;
      eigen_assert(packed_size(depth, blk_.kc, outer, blk_.nc) <= buf_.size());
      for_panels(depth, blk_.kc, outer, blk_.nc, [&](Index k2, Index kc, Index j2, Index nc, Index off) {
        pack_rhs(buf_.data() + off, src.getSubMapper(k2, j2), kc, nc);
      });
    } else {
      PackLhs<T, SrcOrder> pack_lhs;
      eigen_assert(packed_size(outer, blk_.mc, depth, blk_.kc) <= buf_.size());
      for_panels(outer, blk_.mc, depth, blk_.kc, [&](Index i2, Index mc, Index k2, Index kc, Index off) {
        pack_lhs(buf_.data() + off, src.getSubMapper(i2, k2), kc, mc);
      });
    }
  }
  // C += A B with the other operand X (m x depth for Rhs, depth x m for Lhs) in storage
  // order `Order`, leading dimension ldx; C column-major with leading dimension ldc.
  template <int Order>
  void gemm_add(T* C, Index ldc, const T* X, Index ldx, Index m) const {
    const ConstMapper<T, Order> other(X, ldx);
    const ResMapper<T> res(C, ldc);
    const T* mine = buf_.data();
    if constexpr (S == Side::Rhs) {
      // the row block's panels of A are packed as they are needed (Eigen's order)
      PackLhs<T, Order> pack_lhs;
      ei_declare_aligned_stack_constructed_variable(T, blockA, static_cast<std::size_t>(std::min(m, blk_.mc) * blk_.kc), 0);
      drive<T>(
          res, m, depth_, outer_, blk_,
          [&](Index i2, Index mc, Index k2, Index kc) {
            pack_lhs(blockA, other.getSubMapper(i2, k2), kc, mc);
            return static_cast<const T*>(blockA);
          },
          [&](Index k2, Index, Index j2, Index) {
            return mine + panel_offset(depth_, blk_.kc, outer_, blk_.nc, k2, j2);
          });
    } else {
      // B is packed whole first (on the stack, as Eigen's own product does for its panels)
      PackRhs<T, Order> pack_rhs;
      ei_declare_aligned_stack_constructed_variable(T, blockB, static_cast<std::size_t>(packed_size(depth_, blk_.kc, m, blk_.nc)), 0);
      for_panels(depth_, blk_.kc, m, blk_.nc, [&](Index k2, Index kc, Index j2, Index nc, Index off) {
        pack_rhs(blockB + off, other.getSubMapper(k2, j2), kc, nc);
      });
      drive<T>(
          res, outer_, depth_, m, blk_,
          [&](Index i2, Index, Index k2, Index) {
            return mine + panel_offset(outer_, blk_.mc, depth_, blk_.kc, i2, k2);
          },
          [&](Index k2, Index, Index j2, Index) {
            return static_cast<const T*>(blockB) + panel_offset(depth_, blk_.kc, m, blk_.nc, k2, j2);
          });
    }
  }

 private:
  Blocking blk_;
  Index outer_ = 0, depth_ = 0;
  Eigen::Matrix<T, Eigen::Dynamic, 1> buf_;
};
template <class T>
using PackedRhs = Packed<T, Side::Rhs>;
template <class T>
using PackedLhs = Packed<T, Side::Lhs>;

}  // namespace pgemm
}  // namespace quadfast
