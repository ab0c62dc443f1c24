// Matrix products with one operand packed once and reused over many row blocks.
//
// The blocked engine's pass over W (MODEL.md §3) multiplies every row block W_b by the
// same N x c coefficient matrices: Y = W_b Bm, then W_b += Y Zm^T.  Eigen's product packs
// both operands into its micro-kernel's panel layout on every call, so Bm and Zm were
// re-packed for every row block of 64 rows: N c elements copied per 2 * 64 N c flops,
// about 12% of a step at d = 16384, N = 1024 (perf on one core).  Here they are packed
// once per block of steps, and each row block packs only its own rows.
//
// The packing routines and the micro-kernel are Eigen's own (gemm_pack_lhs, gemm_pack_rhs,
// gebp_kernel in Eigen/src/Core/products/GeneralBlockPanelKernel.h), driven with the cache
// blocking (kc, mc, nc) that Eigen's general_matrix_matrix_product computes for the same
// shapes and with its loop order, so the sums are formed in the same order and the
// results are the same bits as those of the plain Eigen expression.  These are Eigen
// internals (stable across Eigen 3.3 and 3.4); tests/test_blocked.py checks the products
// against the sequential kernel, and the engine's results against 1 and 2 threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>

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

// Eigen's cache blocking for a column-major product C (rows x cols) += A (rows x depth) B.
struct Blocking {
  Index kc = 0, mc = 0, nc = 0;
};
// Packed panels start on 64-byte boundaries (the micro-kernel uses aligned loads).
inline Index padded(Index n) { return (n + 7) / 8 * 8; }
// Elements of the packed panels of a (outer x depth) operand cut in (outer_blk x kc) panels.
inline Index packed_size(Index outer, Index outer_blk, Index depth, Index kc) {
  Index n = 0;
  for (Index i = 0; i < outer; i += outer_blk)
    for (Index k = 0; k < depth; k += kc) n += padded((std::min(i + outer_blk, outer) - i) * (std::min(k + kc, depth) - k));
  return n;
}
template <class T>
inline Blocking blocking(Index rows, Index cols, Index depth) {
  Index kc = depth, mc = rows, nc = cols;
  ei::computeProductBlockingSizes<T, T, 1>(kc, mc, nc, Index(1));
  return {kc, std::min(rows, mc), std::min(cols, nc)};
}

// B (depth x cols, column-major, leading dimension ldb) packed once, for products
//   C (m x cols, column-major) += A (m x depth) B
// with m <= rows and A in storage order `OrderA` (Eigen::RowMajor for a row block of W).
// setup() fixes the blocking for the largest shape (rows, depth, cols) and allocates;
// pack() then accepts any depth and cols up to those and allocates nothing.
template <class T>
class PackedRhs {
 public:
  void setup(Index rows, Index depth, Index cols) {
    blk_ = blocking<T>(rows, cols, depth);
    buf_.resize(packed_size(cols, blk_.nc, depth, blk_.kc));
  }
  void pack(const T* B, Index ldb, Index depth, Index cols) {
    depth_ = depth;
    cols_ = cols;
    eigen_assert(packed_size(cols, blk_.nc, depth, blk_.kc) <= buf_.size());
    const ConstMapper<T, Eigen::ColMajor> rhs(B, ldb);
    PackRhs<T, Eigen::ColMajor> pack_rhs;
    T* out = buf_.data();
    for (Index k2 = 0; k2 < depth; k2 += blk_.kc) {
      const Index kc = std::min(k2 + blk_.kc, depth) - k2;
      for (Index j2 = 0; j2 < cols; j2 += blk_.nc) {
        const Index nc = std::min(j2 + blk_.nc, cols) - j2;
        pack_rhs(out, rhs.getSubMapper(k2, j2), kc, nc);
        out += padded(kc * nc);
      }
    }
  }
  // C += A B for A (m x depth) with leading dimension lda, m <= rows.
  template <int OrderA>
  void gemm_add(T* C, Index ldc, const T* A, Index lda, Index m) const {
    const ConstMapper<T, OrderA> lhs(A, lda);
    const ResMapper<T> res(C, ldc);
    PackLhs<T, OrderA> pack_lhs;
    Gebp<T> gebp;
    const Index mcap = std::min(m, blk_.mc);
    ei_declare_aligned_stack_constructed_variable(T, blockA, static_cast<std::size_t>(mcap * blk_.kc), 0);
    for (Index i2 = 0; i2 < m; i2 += blk_.mc) {
      const Index mc = std::min(i2 + blk_.mc, m) - i2;
      const T* packed = buf_.data();
      for (Index k2 = 0; k2 < depth_; k2 += blk_.kc) {
        const Index kc = std::min(k2 + blk_.kc, depth_) - k2;
        pack_lhs(blockA, lhs.getSubMapper(i2, k2), kc, mc);
        for (Index j2 = 0; j2 < cols_; j2 += blk_.nc) {
          const Index nc = std::min(j2 + blk_.nc, cols_) - j2;
          gebp(res.getSubMapper(i2, j2), blockA, packed, mc, kc, nc, T(1));
          packed += padded(kc * nc);
        }
      }
    }
  }
  Index cols() const noexcept { return cols_; }

 private:
  Blocking blk_;
  Index depth_ = 0, cols_ = 0;
  Eigen::Matrix<T, Eigen::Dynamic, 1> buf_;
};

// A (rows x depth, column-major, leading dimension lda) packed once, for products
//   C (rows x n, column-major) += A B
// with n <= cols and B in storage order `OrderB` (Eigen::RowMajor for the transpose of a
// column-major row-block product).  setup() and pack() as for PackedRhs.
template <class T>
class PackedLhs {
 public:
  void setup(Index rows, Index depth, Index cols) {
    blk_ = blocking<T>(rows, cols, depth);
    buf_.resize(packed_size(rows, blk_.mc, depth, blk_.kc));
  }
  void pack(const T* A, Index lda, Index rows, Index depth) {
    rows_ = rows;
    depth_ = depth;
    eigen_assert(packed_size(rows, blk_.mc, depth, blk_.kc) <= buf_.size());
    const ConstMapper<T, Eigen::ColMajor> lhs(A, lda);
    PackLhs<T, Eigen::ColMajor> pack_lhs;
    T* out = buf_.data();
    for (Index i2 = 0; i2 < rows; i2 += blk_.mc) {
      const Index mc = std::min(i2 + blk_.mc, rows) - i2;
      for (Index k2 = 0; k2 < depth; k2 += blk_.kc) {
        const Index kc = std::min(k2 + blk_.kc, depth) - k2;
        pack_lhs(out, lhs.getSubMapper(i2, k2), kc, mc);
        out += padded(mc * kc);
      }
    }
  }
  // C += A B for B (depth x n) with leading dimension ldb, n <= cols.  B is packed whole
  // (depth x n elements on the stack, as Eigen's own product does for its panels).
  template <int OrderB>
  void gemm_add(T* C, Index ldc, const T* B, Index ldb, Index n) const {
    const ConstMapper<T, OrderB> rhs(B, ldb);
    const ResMapper<T> res(C, ldc);
    PackRhs<T, OrderB> pack_rhs;
    Gebp<T> gebp;
    ei_declare_aligned_stack_constructed_variable(T, blockB, static_cast<std::size_t>(packed_size(n, blk_.nc, depth_, blk_.kc)), 0);
    {
      T* out = blockB;
      for (Index k2 = 0; k2 < depth_; k2 += blk_.kc) {
        const Index kc = std::min(k2 + blk_.kc, depth_) - k2;
        for (Index j2 = 0; j2 < n; j2 += blk_.nc) {
          const Index nc = std::min(j2 + blk_.nc, n) - j2;
          pack_rhs(out, rhs.getSubMapper(k2, j2), kc, nc);
          out += padded(kc * nc);
        }
      }
    }
    const T* packedA = buf_.data();
    for (Index i2 = 0; i2 < rows_; i2 += blk_.mc) {
      const Index mc = std::min(i2 + blk_.mc, rows_) - i2;
      const T* packedB = blockB;
      for (Index k2 = 0; k2 < depth_; k2 += blk_.kc) {
        const Index kc = std::min(k2 + blk_.kc, depth_) - k2;
        for (Index j2 = 0; j2 < n; j2 += blk_.nc) {
          const Index nc = std::min(j2 + blk_.nc, n) - j2;
          gebp(res.getSubMapper(i2, j2), packedA, packedB, mc, kc, nc, T(1));
          packedB += padded(kc * nc);
        }
        packedA += padded(mc * kc);
      }
    }
  }
  Index rows() const noexcept { return rows_; }

 private:
  Blocking blk_;
  Index rows_ = 0, depth_ = 0;
  Eigen::Matrix<T, Eigen::Dynamic, 1> buf_;
};

}  // namespace pgemm
}  // namespace quadfast
