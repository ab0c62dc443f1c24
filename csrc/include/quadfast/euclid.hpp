// Online SGD of the 2-homogeneous Euclidean student (MODEL.md §1)
//   f(x; W) = sum_i ||w_i||^2 He2(<w_i, x> / ||w_i||) = ||W^T x||^2 - ||W||_F^2,
// W (d x N) unconstrained, loss e^2 / 2 with e = f - y.  The gradient of e^2 / 2 is
// e (2 x x^T W - 2 W) = 2 e (x z^T - W) with z = W^T x, so one step with step size lr is
//   W+ = a W + g x z^T,   a = 1 + 2 lr e,   g = -2 lr e,
// and a batch of B samples (rows of X) averages the gradients:
//   W+ = a W + X^T diag(g_b) Z^T,  a = 1 + (2 lr / B) sum_b e_b,  g_b = -(2 lr / B) e_b.
// The norm F = ||W||_F^2 enters e; it is tracked exactly (recomputed in every pass over W)
// and, between passes, by the closed form
//   ||a W + X^T G Z^T||_F^2 = a^2 F + 2 a sum_b g_b ||z_b||^2 + sum_bc g_b g_c (x_b.x_c)(z_b.z_c).
//
// Pure C++17/Eigen: no Python.  W (row-major d x N) lives in caller-owned memory and is
// updated in place; all workspace is allocated at construction.  Every pass over W is a
// function of a row range [i0, i1) that writes its reductions (next z or P, and the norm)
// into caller-supplied accumulators, so that threads can later take fixed slabs of rows.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "quadfast/packed_gemm.hpp"
#include "quadfast/rowgemm.hpp"
#include "quadfast/rng.hpp"
#include "quadfast/rowpass.hpp"
#include "quadfast/slabs.hpp"
#include "quadfast/teacher.hpp"

namespace quadfast {
namespace euclid_rows {

// Lanes of the norm accumulator: lane l sums the squares of the elements j = l mod L of
// every row, rows in order, in double precision whatever T is.
template <class T>
inline constexpr int kLanes = static_cast<int>(64 / sizeof(T));
// Rows per group: the fused pass updates 4 rows per sweep of the columns (one load of the
// next-step accumulator per 4 rows).  The norm is summed per group with the same code in
// every path, so the sequential pass, the blocked pass and a standalone norm give the same
// bits (group boundaries fall on multiples of 4 from the start of every 64-row block).
inline constexpr int kGroup = 4;

template <class T>
inline double reduce_lanes(const double* acc) noexcept {
  constexpr int L = kLanes<T>;
  double t[L];
  for (int l = 0; l < L; ++l) t[l] = acc[l];
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) t[l] = t[l] + t[l + w];
  return t[0];
}

// acc += squares of R consecutive rows (column chunks outer, rows inner).
template <class T, int R>
inline void group_sumsq(const T* __restrict w, std::ptrdiff_t N, double* __restrict acc) noexcept {
  constexpr int L = kLanes<T>;
  std::ptrdiff_t j = 0;
  for (; j + L <= N; j += L)
    for (int k = 0; k < R; ++k)
      for (int l = 0; l < L; ++l) {
        const double v = static_cast<double>(w[k * N + j + l]);
        acc[l] = acc[l] + v * v;
      }
  for (int k = 0; k < R; ++k)
    for (int l = 0; j + l < N; ++l) {
      const double v = static_cast<double>(w[k * N + j + l]);
      acc[l] = acc[l] + v * v;
    }
}

// Norm accumulation of rows [i0, i1) in groups of kGroup (then singly).
template <class T>
inline void sumsq_rows(const T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N, double* acc) noexcept {
  std::ptrdiff_t i = i0;
  for (; i + kGroup <= i1; i += kGroup) group_sumsq<T, kGroup>(W + i * N, N, acc);
  for (; i < i1; ++i) group_sumsq<T, 1>(W + i * N, N, acc);
}

// The sequential pass of batch 1 on rows [i0, i1): W_i <- a W_i + (g x_i) z; then, if
// xn != nullptr, zn += xn_i W_i (the next step's z from the new rows, rows in order; the
// same element-wise sums as rowpass::accumulate); and acc += squares of the new rows.
template <class T>
inline void seq_rows(T* __restrict W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N,
                     const T* __restrict z, const T* __restrict x, T a, T g, const T* __restrict xn,
                     T* __restrict zn, double* __restrict acc) noexcept {
  constexpr int R = kGroup;
  std::ptrdiff_t i = i0;
  for (; i + R <= i1; i += R) {
    T* __restrict w = W + i * N;
    T gx[R];
    for (int k = 0; k < R; ++k) gx[k] = g * x[i + k];
    if (xn != nullptr) {
      for (std::ptrdiff_t j = 0; j < N; ++j) {
        T s = zn[j];
        for (int k = 0; k < R; ++k) {
          const T v = a * w[k * N + j] + gx[k] * z[j];
          w[k * N + j] = v;
          s = s + xn[i + k] * v;
        }
        zn[j] = s;
      }
    } else {
      for (int k = 0; k < R; ++k)
        for (std::ptrdiff_t j = 0; j < N; ++j) w[k * N + j] = a * w[k * N + j] + gx[k] * z[j];
    }
    group_sumsq<T, R>(w, N, acc);  // the 4 rows are still in L1
  }
  for (; i < i1; ++i) {
    T* __restrict w = W + i * N;
    const T gx = g * x[i];
    for (std::ptrdiff_t j = 0; j < N; ++j) w[j] = a * w[j] + gx * z[j];
    if (xn != nullptr)
      for (std::ptrdiff_t j = 0; j < N; ++j) zn[j] = zn[j] + xn[i] * w[j];
    group_sumsq<T, 1>(w, N, acc);
  }
}

#ifdef QUADFAST_ROWPASS_DISPATCH
template <class T>
QUADFAST_AVX512 inline void seq_rows_avx512(T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N, const T* z,
                                            const T* x, T a, T g, const T* xn, T* zn, double* acc) noexcept {
  seq_rows(W, i0, i1, N, z, x, a, g, xn, zn, acc);
}
template <class T>
QUADFAST_AVX2 inline void seq_rows_avx2(T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N, const T* z,
                                        const T* x, T a, T g, const T* xn, T* zn, double* acc) noexcept {
  seq_rows(W, i0, i1, N, z, x, a, g, xn, zn, acc);
}
template <class T>
QUADFAST_AVX512 inline void sumsq_rows_avx512(const T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N,
                                              double* acc) noexcept {
  sumsq_rows(W, i0, i1, N, acc);
}
template <class T>
QUADFAST_AVX2 inline void sumsq_rows_avx2(const T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N,
                                          double* acc) noexcept {
  sumsq_rows(W, i0, i1, N, acc);
}
#endif

// Run-time choice of the instruction set for the baseline build (no FMA contraction, so
// every variant gives the same bits), as in rowpass.hpp.
template <class T>
inline void seq_rows_dispatch(T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N, const T* z, const T* x,
                              T a, T g, const T* xn, T* zn, double* acc) noexcept {
  static const rowpass::Isa isa = rowpass::detect_isa();
#ifdef QUADFAST_ROWPASS_DISPATCH
  if (isa == rowpass::Isa::avx512) return seq_rows_avx512(W, i0, i1, N, z, x, a, g, xn, zn, acc);
  if (isa == rowpass::Isa::avx2) return seq_rows_avx2(W, i0, i1, N, z, x, a, g, xn, zn, acc);
#endif
  (void)isa;
  seq_rows(W, i0, i1, N, z, x, a, g, xn, zn, acc);
}

template <class T>
inline void sumsq_rows_dispatch(const T* W, std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t N,
                                double* acc) noexcept {
  static const rowpass::Isa isa = rowpass::detect_isa();
#ifdef QUADFAST_ROWPASS_DISPATCH
  if (isa == rowpass::Isa::avx512) return sumsq_rows_avx512(W, i0, i1, N, acc);
  if (isa == rowpass::Isa::avx2) return sumsq_rows_avx2(W, i0, i1, N, acc);
#endif
  (void)isa;
  sumsq_rows(W, i0, i1, N, acc);
}

}  // namespace euclid_rows

// Result of EuclidKernel::advance (as StiefelKernel's AdvanceResult).
struct EuclidAdvance {
  std::int64_t steps_done = 0;
  bool finite = true;  // false: step number t + 1 would overflow or produce non-finite values; W is untouched by it
};

template <class T>
class EuclidKernel {
 public:
  using Mat = RowMat<T>;
  using MapW = Eigen::Map<Mat>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  static constexpr int L = euclid_rows::kLanes<T>;
  // Rows per block of the blocked pass (a multiple of euclid_rows::kGroup).
  static constexpr Index kRowBlock = 64;
  // A step is refused (divergence) when it would make ||W||_F^2 exceed this: W stays finite
  // and so do the sums formed from it (z = W^T x in T, ||z||^2 in double).
  static constexpr double kMaxNorm2 = sizeof(T) == sizeof(float) ? 1e60 : 1e280;

  // block > 1 (batch 1 only) selects the blocked exact engine (k = block steps per pass),
  // whose passes over W run on `threads` threads (the results do not depend on it).
  EuclidKernel(Index d, Index N, Index batch, double lr, const TeacherView<T>& teacher, std::uint64_t seed,
               Index block = 1, Index threads = 1)
      : d_(d), N_(N), B_(batch), K_(block), threads_(threads), lr_(lr), seed_(seed), label_(teacher),
        table_(static_cast<std::size_t>(d)) {
    if (d < 1 || N < 1) throw std::invalid_argument("d and width must be >= 1");
    if (batch < 1) throw std::invalid_argument("batch must be >= 1");
    if (block < 1) throw std::invalid_argument("block must be >= 1");
    if (threads < 1) throw std::invalid_argument("threads must be >= 1");
    if (block > 1 && batch != 1) throw std::invalid_argument("the blocked engine needs batch == 1");
    if (!(lr > 0.0) || !std::isfinite(lr)) throw std::invalid_argument("lr must be finite and > 0");
    if (teacher.d != d) throw std::invalid_argument("teacher dimension differs from d");
    xbuf_[0].resize(B_ * d_);
    xbuf_[1].resize(B_ * d_);
    if (K_ > 1) {
      const slabs::Layout lay = slabs::layout(d_, N_, K_, kRowBlock);
      rb_ = lay.rb;
      slab_rows_ = lay.slab_rows;
      n_slabs_ = lay.n_slabs;
      Xbuf_.resize(static_cast<std::size_t>(K_ * d_));
      Pm_.resize(N_, K_);
      Xg_.resize(K_, K_);
      Ppart_.resize(N_, n_slabs_ * K_);
      Gpart_.resize(K_, n_slabs_ * K_);
      accpart_.assign(static_cast<std::size_t>(n_slabs_ * L), 0.0);
      if (label_.view().directions != nullptr) {
        TX_.resize(label_.view().r, K_);
        TXpart_.resize(label_.view().r, n_slabs_ * K_);
      }
      Zm_.resize(N_, K_);
      CZt_.resize(K_, N_);
      // small widths with AVX-512: products on the row-major operands as they lie
      // (rowgemm.hpp); otherwise CZ^T packed once per block (packed_gemm.hpp)
      direct_ = rowgemm::use_direct(N_);
      packed_ = !direct_ && N_ >= pgemm::kMinWidth;
      if (packed_) packCZ_.setup(N_, K_, rb_);
      cvec_.resize(K_);
      uvec_.resize(K_);
      zvec_.resize(N_);
      yblk_.resize(K_);
    }
    if (B_ == 1) {
      z_.resize(N_);
      znext_.resize(N_);
    } else {
      Z_.resize(N_, B_);
      Znext_.resize(N_, B_);
      GZt_.resize(B_, N_);
      smallT_.resize(B_, B_);
      GX_.resize(B_, B_);
      GZ_.resize(B_, B_);
      e_.resize(B_);
      gv_.resize(B_);
    }
  }

  Index d() const noexcept { return d_; }
  Index width() const noexcept { return N_; }
  Index batch() const noexcept { return B_; }
  Index block() const noexcept { return K_; }
  double lr() const noexcept { return lr_; }
  std::uint64_t seed() const noexcept { return seed_; }
  // SGD steps taken so far (the sample-stream counter); a checkpoint needs only this and W.
  std::int64_t steps() const noexcept { return t_; }
  void set_steps(std::int64_t t) noexcept { t_ = t; }

  // Samples of step t (rows t*B .. t*B+B-1 of the sample stream) into out (B x d), exactly
  // as StiefelKernel draws them: sample s is stream s; its noise deviate is index d.
  void draw_samples(std::int64_t t, T* out) const {
    for (Index b = 0; b < B_; ++b)
      rng::fill_normals(out + b * d_, static_cast<std::size_t>(d_), seed_, static_cast<std::uint64_t>(t * B_ + b),
                        table_);
  }
  double teacher_label(const T* x, std::int64_t sample) {
    double y = label_(x);
    if (label_.view().noise != 0.0)
      y += label_.view().noise *
           rng::normal_at(seed_, static_cast<std::uint64_t>(sample), static_cast<std::uint64_t>(d_));
    return y;
  }

  Index threads() const noexcept { return threads_; }
  void set_threads(Index n) {
    if (n < 1) throw std::invalid_argument("threads must be >= 1");
    threads_ = n;
  }

  // ||W||_F^2, summed exactly as the passes sum it (same bits): the sequential kernels sum
  // all rows in order into one lane accumulator; the blocked engine sums each slab into
  // its own and adds the slabs' lanes in slab order.
  double norm2(const T* W) const {
    if (K_ == 1) {
      double acc[L] = {};
      euclid_rows::sumsq_rows_dispatch<T>(W, 0, d_, N_, acc);
      return euclid_rows::reduce_lanes<T>(acc);
    }
    double acc[L] = {};
    for (Index s = 0; s < n_slabs_; ++s) {
      double part[L] = {};
      const Index r0 = s * slab_rows_, r1 = std::min<Index>(d_, r0 + slab_rows_);
      for (Index i0 = r0; i0 < r1; i0 += rb_)
        euclid_rows::sumsq_rows_dispatch<T>(W, i0, std::min<Index>(r1, i0 + rb_), N_, part);
      for (int l = 0; l < L; ++l) acc[l] += part[l];
    }
    return euclid_rows::reduce_lanes<T>(acc);
  }

  // Runs `steps` SGD steps on W (d x N, row-major, in place).  X == nullptr: samples drawn
  // in the kernel from (seed, step); otherwise steps * batch rows of length d.  y == nullptr:
  // labels from the teacher; otherwise the caller's.  Stops early, with W holding the last
  // finite weights, before a step that would overflow (||W||_F^2 > kMaxNorm2) or produce
  // non-finite values.
  EuclidAdvance advance(T* W, std::int64_t steps, const T* X = nullptr, const T* y = nullptr) {
    if (steps <= 0) return {};
    if (K_ > 1) return advance_blocked(W, steps, X, y);  // its first pass measures ||W||^2
    F_ = norm2(W);  // W may have been changed by the caller since the last call
    return B_ == 1 ? advance_rank1(W, steps, X, y) : advance_batch(W, steps, X, y);
  }

 private:
  const T* sample_ptr(const T* X, std::int64_t k, std::int64_t t_abs, int buf) {
    if (X != nullptr) return X + k * B_ * d_;
    draw_samples(t_abs, xbuf_[buf].data());
    return xbuf_[buf].data();
  }

  static bool acceptable(double e, double Fn) noexcept {
    return std::isfinite(e) && std::isfinite(Fn) && Fn <= kMaxNorm2;
  }

  // ---------------------------------------------------------------- batch = 1, sequential
  EuclidAdvance advance_rank1(T* W, std::int64_t steps, const T* X, const T* y) {
    EuclidAdvance res;
    int cur = 0;
    const T* x = sample_ptr(X, 0, t_, cur);
    rowpass::accumulate_dispatch<T>(W, d_, N_, x, z_.data());
    for (std::int64_t k = 0; k < steps; ++k) {
      Eigen::Map<const Vec<T>> xv(x, d_);
      const double xx = xv.template cast<double>().squaredNorm();
      const double zz = z_.template cast<double>().squaredNorm();
      const double yk = (y != nullptr) ? static_cast<double>(y[k]) : teacher_label(x, t_);
      const double e = zz - F_ - yk;
      const double a = 1.0 + 2.0 * lr_ * e, g = -2.0 * lr_ * e;
      const double Fn = a * a * F_ + 2.0 * a * g * zz + g * g * xx * zz;  // predicted ||W+||^2
      if (!acceptable(e, Fn)) {
        res.finite = false;
        return res;
      }
      const bool has_next = k + 1 < steps;
      const T* xn = has_next ? sample_ptr(X, k + 1, t_ + 1, cur ^ 1) : nullptr;
      if (has_next) znext_.setZero();
      double acc[L] = {};
      // One streaming pass: the update of this step fused with z = W^T x of the next.
      euclid_rows::seq_rows_dispatch<T>(W, 0, d_, N_, z_.data(), x, static_cast<T>(a), static_cast<T>(g), xn,
                                        znext_.data(), acc);
      F_ = euclid_rows::reduce_lanes<T>(acc);
      ++t_;
      ++res.steps_done;
      if (has_next) {
        std::swap(z_, znext_);
        x = xn;
        cur ^= 1;
      }
    }
    return res;
  }

  // ---------------------------------------------------------------- batch = B > 1
  // Z (N x B) = W^T X^T, 64-row blocks in order.
  void accumulate_Z(const T* W, const T* X, Mat& Z) const {
    Eigen::Map<const Mat> Wm(W, d_, N_);
    Eigen::Map<const ColMat> Xt(X, d_, B_);
    Z.setZero();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      Z.noalias() += Wm.middleRows(i0, nb).transpose() * Xt.middleRows(i0, nb);
    }
  }

  // Rows [i0, i1) (i0 a multiple of kRowBlock): W_i <- a W_i + X_i^T GZt; Zn += W_i^T Xn_i;
  // acc += squares.
  void batch_rows(T* W, Index i0, Index i1, const T* X, T a, const T* Xn, Mat* Zn, double* acc) {
    MapW Wm(W, d_, N_);
    Eigen::Map<const ColMat> Xt(X, d_, B_);
    for (Index b0 = i0; b0 < i1; b0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, i1 - b0);
      auto Wb = Wm.middleRows(b0, nb);
      Wb *= a;
      Wb.noalias() += Xt.middleRows(b0, nb) * GZt_;
      if (Xn != nullptr) {
        Eigen::Map<const ColMat> Xtn(Xn, d_, B_);
        Zn->noalias() += Wb.transpose() * Xtn.middleRows(b0, nb);
      }
      euclid_rows::sumsq_rows_dispatch<T>(W, b0, b0 + nb, N_, acc);
    }
  }

  EuclidAdvance advance_batch(T* W, std::int64_t steps, const T* X, const T* y) {
    EuclidAdvance res;
    int cur = 0;
    const T* Xc = sample_ptr(X, 0, t_, cur);
    accumulate_Z(W, Xc, Z_);
    const double scale = 2.0 * lr_ / static_cast<double>(B_);
    for (std::int64_t k = 0; k < steps; ++k) {
      Eigen::Map<const ColMat> Xt(Xc, d_, B_);
      smallT_.noalias() = Z_.transpose() * Z_;
      GZ_ = smallT_.template cast<double>();
      smallT_.noalias() = Xt.transpose() * Xt;
      GX_ = smallT_.template cast<double>();
      double esum = 0.0;
      for (Index b = 0; b < B_; ++b) {
        const double yb = (y != nullptr) ? static_cast<double>(y[k * B_ + b]) : teacher_label(Xc + b * d_, t_ * B_ + b);
        e_[b] = GZ_(b, b) - F_ - yb;
        esum += e_[b];
      }
      const double a = 1.0 + scale * esum;
      gv_ = -scale * e_;
      // ||a W + X^T G Z^T||^2 = a^2 F + 2 a sum_b g_b ||z_b||^2 + sum_bc g_b g_c (x_b.x_c)(z_b.z_c)
      double Fn = a * a * F_ + 2.0 * a * gv_.dot(GZ_.diagonal());
      for (Index b = 0; b < B_; ++b) {  // a loop: the matrix-vector product would allocate its operand
        double row = 0.0;
        for (Index c = 0; c < B_; ++c) row += GX_(b, c) * GZ_(b, c) * gv_[c];
        Fn += gv_[b] * row;
      }
      if (!acceptable(esum, Fn) || !e_.allFinite()) {
        res.finite = false;
        return res;
      }
      GZt_.noalias() = gv_.template cast<T>().asDiagonal() * Z_.transpose();
      const bool has_next = k + 1 < steps;
      const T* Xn = has_next ? sample_ptr(X, k + 1, t_ + 1, cur ^ 1) : nullptr;
      if (has_next) Znext_.setZero();
      double acc[L] = {};
      batch_rows(W, 0, d_, Xc, static_cast<T>(a), Xn, &Znext_, acc);
      F_ = euclid_rows::reduce_lanes<T>(acc);
      ++t_;
      ++res.steps_done;
      if (has_next) {
        std::swap(Z_, Znext_);
        Xc = Xn;
        cur ^= 1;
      }
    }
    return res;
  }

  // ---------------------------------------------------------------- blocked, batch = 1
  // MODEL.md §3 for this student.  Within a block of k steps
  //   W_j = s_j W + X diag(c) Z^T   over the columns < j,
  // with a scalar s_j (the product of the factors a), c (the g of each step, multiplied
  // by the a of every later step) and Z (N x k, the z of each step).  The Euclidean step
  // has no W z term, so the W B part of the Stiefel engine is zero here.  Then, with
  // P = W^T X and Xg = X^T X (from the block start),
  //   z_j = s_j P_j + Z (c o Xg_:j),      O(N k) per step,
  //   then c <- a c, c_j = g, s <- a s, Z_:j = z_j, and F by the closed form above.
  // No division by a: a factor a = 1 + 2 lr e = 0 (or tiny) is carried exactly (s and c
  // become 0 or tiny, as the sequential products do).  The block ends with one pass,
  //   W <- s W + X (diag(c) Z^T),   2 d N k flops,
  // in which, row block by row block, the next block's samples are drawn into the rows of
  // X just consumed and its P = W^T X, Xg = X^T X (and Theta^T X for an explicit-frame
  // teacher) accumulate from the updated rows, with ||W||^2 recomputed exactly: 4 d N + 2 d k
  // flops per step in GEMMs.  Rows are split into slabs fixed by (d, N, k) alone
  // (slabs.hpp); each slab accumulates partial P, Xg, Theta^T X and norm lanes, summed in
  // slab order, so results are bit-identical for any number of threads.  Blocks are
  // aligned to absolute step multiples of k, as in StiefelKernel.
  using StridedX = Eigen::Map<const ColMat, 0, Eigen::OuterStride<>>;

  // One pass over W, slab-parallel.  If Xa != nullptr: W <- s W + Xa CZt (the first `ma`
  // steps of the current block).  If Xn != nullptr: then accumulates P, Xg (and Theta^T X)
  // of the `kn` samples of the next block, whose first step is `tn`, drawing them first
  // into Xbuf_ when `draw`.  Always: F_ = ||W||^2 of the new W (same bits as norm2).
  void pass(T* W, const T* Xa, Index ma, T s, const T* Xn, Index kn, std::int64_t tn, bool draw, bool need_tx) {
    MapW Wm(W, d_, N_);
    const T* theta = label_.view().directions;
    const Index r = label_.view().r;
    if (Xa != nullptr && packed_) packCZ_.pack(CZt_.data(), N_, N_, ma);  // CZt_^T: N x ma, column-major
    auto slab = [&](Index sl) {
      const Index r0 = sl * slab_rows_, r1 = std::min<Index>(d_, r0 + slab_rows_);
      auto Pp = Ppart_.middleCols(sl * K_, kn);
      auto Gp = Gpart_.block(0, sl * K_, kn, kn);
      if (Xn != nullptr) {
        Pp.setZero();
        Gp.setZero();
        if (need_tx) TXpart_.middleCols(sl * K_, kn).setZero();
      }
      double acc[L] = {};
      for (Index i0 = r0; i0 < r1; i0 += rb_) {
        const Index nb = std::min<Index>(rb_, r1 - i0);
        auto Wb = Wm.middleRows(i0, nb);
        if (Xa != nullptr) {
          if (s != T(1)) Wb *= s;
          StridedX Xab(Xa + i0, nb, ma, Eigen::OuterStride<>(d_));
          if (direct_) {  // W_b += X_b CZ^T (CZ^T row-major)
            const rowgemm::Seg<T> ws{Xa + i0, 1, d_, CZt_.data(), N_, ma};
            rowgemm::gemm<T>(Wb.data(), N_, nb, N_, &ws, 1, true);
          } else if (packed_) {  // W_b^T += (CZ^T)^T X_b^T with CZ^T packed once for all row blocks
            packCZ_.template gemm_add<Eigen::RowMajor>(Wb.data(), N_, Xa + i0, d_, nb);
          } else {
            Wb.noalias() += Xab * CZt_.topRows(ma);
          }
        }
        if (Xn != nullptr) {
          if (draw)  // the rows just consumed now hold the next block's samples
            for (Index j = 0; j < kn; ++j)
              rng::fill_normals_range(Xbuf_.data() + j * d_ + i0, static_cast<std::size_t>(i0),
                                      static_cast<std::size_t>(i0 + nb), seed_, static_cast<std::uint64_t>(tn + j),
                                      table_);
          StridedX Xnb(Xn + i0, nb, kn, Eigen::OuterStride<>(d_));
          if (direct_) {  // P^T (kn x N, row-major: P is column-major) += X_b^T W_b
            const rowgemm::Seg<T> ps{Xn + i0, d_, 1, Wb.data(), N_, nb};
            rowgemm::gemm<T>(Pp.data(), N_, kn, N_, &ps, 1, true);
          } else {  // Pp += W_b^T X_b: Eigen's product with the micro-kernel of packed_gemm.hpp (its bits)
            pgemm::gemm_add<T, Eigen::ColMajor, Eigen::ColMajor>(Pp.data(), N_, Wb.data(), N_, Xn + i0, d_, N_, nb, kn);
          }
          if (direct_)  // the lower triangle of G += X_b^T X_b (rowgemm.hpp)
            rowgemm::gram_lower_add<T>(Gp.data(), Gpart_.outerStride(), Xn + i0, d_, nb, kn);
          else
            Gp.template selfadjointView<Eigen::Lower>().rankUpdate(Xnb.transpose());
          if (need_tx) {
            Eigen::Map<const Mat> th(theta + i0 * r, nb, r);
            TXpart_.middleCols(sl * K_, kn).noalias() += th.transpose() * Xnb;
          }
        }
        euclid_rows::sumsq_rows_dispatch<T>(W, i0, i0 + nb, N_, acc);
      }
      std::copy(acc, acc + L, accpart_.begin() + sl * L);
    };
    slabs::for_each(n_slabs_, threads_, slab);
    // partial sums in slab order: independent of the thread count
    double acc[L] = {};
    for (Index sl = 0; sl < n_slabs_; ++sl)
      for (int l = 0; l < L; ++l) acc[l] += accpart_[sl * L + l];
    F_ = euclid_rows::reduce_lanes<T>(acc);
    if (Xn == nullptr) return;
    slabs::reduce_partials(Pm_, Xg_, TX_, Ppart_, Gpart_, TXpart_, n_slabs_, K_, kn, need_tx);
  }

  // Teacher label of column `col` of the current block (sample number `sample`): from
  // Theta^T X of the pass for an explicit frame, else from the sample's first r entries.
  double column_label(const T* Xc, Index col, std::int64_t sample, bool need_tx) {
    double yv;
    if (need_tx) {
      const T* coef = label_.view().coef;
      yv = 0.0;
      for (Index j = 0; j < label_.view().r; ++j) {
        const double p = static_cast<double>(TX_(j, col));
        yv += static_cast<double>(coef[j]) * (p * p - 1.0);
      }
    } else {
      yv = label_(Xc + col * d_);
    }
    if (label_.view().noise != 0.0)
      yv += label_.view().noise *
            rng::normal_at(seed_, static_cast<std::uint64_t>(sample), static_cast<std::uint64_t>(d_));
    return yv;
  }

  EuclidAdvance advance_blocked(T* W, std::int64_t steps, const T* X, const T* y) {
    EuclidAdvance res;
    const std::int64_t K = K_;
    const bool draw = (X == nullptr);
    const bool need_tx = (y == nullptr) && label_.view().directions != nullptr;
    auto block_len = [&](std::int64_t t_abs, std::int64_t left) {
      return static_cast<Index>(std::min<std::int64_t>(K - (t_abs % K), left));
    };
    auto xptr = [&](std::int64_t off) -> const T* { return draw ? Xbuf_.data() : X + off * d_; };
    std::int64_t done = 0;
    Index k = block_len(t_, steps);
    const T* Xc = xptr(0);
    pass(W, nullptr, 0, T(1), Xc, k, t_, draw, need_tx);  // also F_ = ||W||^2
    while (done < steps) {
      for (Index j = 0; j < k; ++j)
        yblk_[j] = (y != nullptr) ? static_cast<double>(y[done + j]) : column_label(Xc, j, t_ + j, need_tx);
      double s = 1.0, F = F_;
      Index m = 0;
      bool failed = false;
      for (Index j = 0; j < k; ++j) {
        zvec_ = static_cast<T>(s) * Pm_.col(j);
        if (j > 0) {
          uvec_.head(j) = cvec_.head(j).cwiseProduct(Xg_.col(j).head(j));
          zvec_.noalias() += Zm_.leftCols(j) * uvec_.head(j);
        }
        const double zz = zvec_.template cast<double>().squaredNorm();
        const double xx = static_cast<double>(Xg_(j, j));
        const double e = zz - F - yblk_[j];
        const double a = 1.0 + 2.0 * lr_ * e, g = -2.0 * lr_ * e;
        const double Fn = a * a * F + 2.0 * a * g * zz + g * g * xx * zz;
        if (!acceptable(e, Fn)) {
          failed = true;
          break;
        }
        cvec_.head(j) *= static_cast<T>(a);
        cvec_[j] = static_cast<T>(g);
        s *= a;
        Zm_.col(j) = zvec_;
        F = Fn;
        m = j + 1;
        ++t_;
      }
      done += m;
      res.steps_done += m;
      const bool more = done < steps && !failed;
      const Index kn = more ? block_len(t_, steps - done) : 0;
      const T* Xn = more ? xptr(done) : nullptr;
      if (m > 0) {
        CZt_.topRows(m).noalias() = cvec_.head(m).asDiagonal() * Zm_.leftCols(m).transpose();
        pass(W, Xc, m, static_cast<T>(s), Xn, kn, t_, draw, need_tx);
      }
      if (failed) {
        res.finite = false;
        return res;
      }
      if (!more) break;
      Xc = Xn;
      k = kn;
    }
    return res;
  }

  Index d_, N_, B_, K_, threads_;
  double lr_;
  std::uint64_t seed_;
  std::int64_t t_ = 0;
  double F_ = 0.0;  // ||W||_F^2
  Labeler<T> label_;
  rng::PositionTable table_;
  Vec<T> xbuf_[2];
  // batch 1
  Vec<T> z_, znext_;
  // batch B
  Mat Z_, Znext_, GZt_, smallT_;
  Eigen::MatrixXd GX_, GZ_;
  Eigen::VectorXd e_, gv_;
  // blocked
  Index rb_ = 0, slab_rows_ = 0, n_slabs_ = 0;
  std::vector<T> Xbuf_;
  std::vector<double> accpart_;
  ColMat Pm_, Xg_, Zm_, Ppart_, Gpart_, TX_, TXpart_;
  Mat CZt_;
  bool direct_ = false;
  pgemm::PackedLhs<T> packCZ_;  // CZt_^T (N x ma) in the micro-kernel's layout
  bool packed_ = false;
  Vec<T> cvec_, uvec_, zvec_;
  Eigen::VectorXd yblk_;
};

}  // namespace quadfast
