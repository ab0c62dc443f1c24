// Online SGD of the quadratic student f(x; W) = ||W^T x||^2 - N on the Stiefel manifold,
// with the exact polar retraction in closed form (MODEL.md §2).
//
// Pure C++17/Eigen: no Python.  The weights W (d x N, row-major) live in caller-owned
// memory and are updated in place; all workspace is allocated at construction, so the
// step loop allocates nothing (the occasional full re-orthonormalisation uses N x N
// temporaries).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>

#include "quadfast/jacobi.hpp"
#include "quadfast/rng.hpp"
#include "quadfast/rowpass.hpp"
#include "quadfast/teacher.hpp"

namespace quadfast {

// Re-orthonormalisation policy.  The closed-form retraction assumes W^T W = I, so the
// error E = W^T W - I is carried along and amplified: for batch 1,
//   W+ = W (I + cp z z^T) + ga x z^T  with  x^T W = z^T  exactly, hence
//   E+ = M E M,  M = I + cp z z^T,  ||E+|| <= ||M||^2 ||E||,  ||M|| = max(1, |1 + cp ||z||^2|);
// for batch B, W+ = W M + X^T R with M = I + Z Phi (see advance_batch) and E+ = M^T E M.
// The kernel accumulates log ||M||^2 every step (O(1) for B = 1, O(N B^2) for B > 1): a
// guaranteed bound on how much the drift can have grown since it was last estimated.
// When estimate * growth bound exceeds tol / 4, it probes the drift in O(d N) (one pass):
// ||E r|| for a fresh random unit r estimates ||E||_F / sqrt(N), so 2 sqrt(N) ||E r|| is
// the new estimate (an over-estimate, by up to ~N when E is rounding noise).  Only if
// that exceeds tol / 8 does it measure drift = max|W^T W - I| exactly (O(d N^2)), and
// only if that exceeds tol / 8 too does it apply the full polar factor
// W <- W (W^T W)^{-1/2} (N x N symmetric eigendecomposition); otherwise the exact value
// becomes the estimate.  tol <= 0 (the default) means 1e-12 for double and 1e-5 for
// float: a float kernel held to 1e-12 would correct on every step.  Everything is a function of the trajectory, so runs
// stay reproducible.  `max_interval` caps the steps between two full corrections.
struct OrthoPolicy {
  double tol = 0.0;  // <= 0: the precision's default (1e-12 double, 1e-5 float)
  std::int64_t max_interval = std::int64_t(1) << 22;
  bool enabled = true;
};

// Everything that a checkpoint needs besides W and the construction arguments.
struct KernelState {
  std::int64_t t = 0;          // SGD steps taken so far (the sample-stream counter)
  std::int64_t since = 0;      // steps since the last full re-orthonormalisation
  std::int64_t n_reortho = 0;  // full corrections so far
  std::int64_t n_probe = 0;    // O(dN) drift probes so far
  double max_drift = 0.0;      // largest max|W^T W - I| measured before a correction
  double last_drift = 0.0;
  double est = 0.0;            // current drift estimate (at the last probe or correction)
  double logbound = 0.0;       // log of the guaranteed growth factor since then
};

struct AdvanceResult {
  std::int64_t steps_done = 0;
  bool finite = true;  // false: step number `state.t` produced non-finite values; W is untouched by it
};

template <class T>
class StiefelKernel {
 public:
  using Mat = RowMat<T>;
  using MapW = Eigen::Map<Mat>;
  using Dmat = Eigen::MatrixXd;
  using Dvec = Eigen::VectorXd;

  // block > 1 (batch 1 only) selects the blocked exact engine of MODEL.md §3: k = block
  // sequential steps per pass over W, carried out with matrix-matrix products.
  StiefelKernel(Index d, Index N, Index batch, double lr, const TeacherView<T>& teacher,
                std::uint64_t seed, OrthoPolicy policy = {}, Index block = 1)
      : d_(d), N_(N), B_(batch), K_blk_(block), lr_(lr), seed_(seed), policy_(policy), label_(teacher),
        table_(static_cast<std::size_t>(d)) {
    if (block < 1) throw std::invalid_argument("block must be >= 1");
    if (!(policy_.tol > 0.0)) policy_.tol = sizeof(T) == sizeof(float) ? 1e-5 : 1e-12;
    if (block > 1 && batch != 1) throw std::invalid_argument("the blocked engine needs batch == 1");
    if (d < 1 || N < 1 || N > d) throw std::invalid_argument("width must lie in 1..d");
    if (batch < 1) throw std::invalid_argument("batch must be >= 1");
    if (!(lr > 0.0) || !std::isfinite(lr)) throw std::invalid_argument("lr must be finite and > 0");
    if (teacher.d != d) throw std::invalid_argument("teacher dimension differs from d");
    xbuf_[0].resize(B_ * d_);
    xbuf_[1].resize(B_ * d_);
    if (K_blk_ > 1) {
      const Index k = K_blk_;
      Xb_[0].resize(k * d_);
      Xb_[1].resize(k * d_);
      Pm_.resize(N_, k);
      Pnext_.resize(N_, k);
      Xg_.resize(k, k);
      Bm_.resize(N_, k);
      Am_.resize(k, k);
      Zm_.resize(N_, k);
      Zt_.resize(k, N_);
      AZt_.resize(k, N_);
      WB_.resize(kRowBlock, k);
      uvec_.resize(k);
      svec_.resize(k);
      zvec_.resize(N_);
      yblk_.resize(k);
    }
    if (B_ == 1) {
      z_.resize(N_);
      znext_.resize(N_);
    } else {
      Z_.resize(N_, B_);
      Znext_.resize(N_, B_);
      R_.resize(N_, 2 * B_);
      S_.resize(2 * B_, N_);
      P_.resize(kRowBlock, 2 * B_);
      UY_.resize(kRowBlock, 2 * B_);
      e_.resize(B_);
      GX_.resize(B_, B_);
      GZ_.resize(B_, B_);
      K_.resize(B_, B_);
      L_.resize(B_, B_);
      M_.resize(B_, B_);
      AQ_.resize(N_, B_);
      HT_.resize(B_, B_);
      PhiT_.resize(B_, N_);
      smallT_.resize(B_, B_);
      eT_.resize(B_);
      tmpB_.resize(B_, B_);
      hvec_.resize(B_);
      Q_.resize(B_, B_);
      Dw_.resize(B_);
    }
    Rpolar_.resize(N_, N_);
    blkd_.resize(kRowBlock, N_);
    blkd2_.resize(kRowBlock, N_);
    big_eig_ = Eigen::SelfAdjointEigenSolver<Dmat>(N_);
    WtWd_.resize(N_, N_);
    probe_r_.resize(N_);
    probe_acc_.resize(N_);
    state_.est = floor_drift();
  }

  Index d() const noexcept { return d_; }
  Index width() const noexcept { return N_; }
  Index batch() const noexcept { return B_; }
  double lr() const noexcept { return lr_; }
  std::uint64_t seed() const noexcept { return seed_; }
  const OrthoPolicy& policy() const noexcept { return policy_; }
  KernelState& state() noexcept { return state_; }
  const KernelState& state() const noexcept { return state_; }

  // Draws the samples of step `t` (rows t*B .. t*B+B-1 of the sample stream) into out
  // (B x d, row-major).  Sample s is stream s of the counter-based generator; its noise
  // deviate is index d of the same stream.
  void draw_samples(std::int64_t t, T* out) const {
    for (Index b = 0; b < B_; ++b)
      rng::fill_normals(out + b * d_, static_cast<std::size_t>(d_), seed_,
                        static_cast<std::uint64_t>(t * B_ + b), table_);
  }
  double noise_of(std::int64_t sample) const {
    return rng::normal_at(seed_, static_cast<std::uint64_t>(sample), static_cast<std::uint64_t>(d_));
  }
  // Teacher label of sample `sample` with content x: f*(x) + sigma xi.
  double teacher_label(const T* x, std::int64_t sample) {
    double y = label_(x);
    if (label_.view().noise != 0.0) y += label_.view().noise * noise_of(sample);
    return y;
  }

  // Runs `steps` SGD steps on W (d x N, row-major, in place).
  //   X == nullptr: samples drawn in the kernel from (seed, step);
  //   otherwise X holds steps * batch samples as rows of length d.
  //   y == nullptr: labels from the teacher (noise drawn from (seed, sample));
  //   otherwise the caller's labels, one per sample.
  // Stops early, with W holding the last finite weights, if a step would produce
  // non-finite values.
  AdvanceResult advance(T* W, std::int64_t steps, const T* X = nullptr, const T* y = nullptr) {
    if (K_blk_ > 1) return advance_blocked(W, steps, X, y);
    return B_ == 1 ? advance_rank1(W, steps, X, y) : advance_batch(W, steps, X, y);
  }

  Index block() const noexcept { return K_blk_; }

  // Full polar re-orthonormalisation W <- W (W^T W)^{-1/2}, in double precision whatever
  // T is (float32 rounding in a length-d sum would otherwise swamp a 1e-5 target).
  // Returns max|W^T W - I| measured before the correction.
  double reorthonormalize(T* W) {
    const double drift = measure_drift(W);
    apply_polar(W);
    return drift;
  }

  // Exact max|W^T W - I| (W^T W accumulated in double by row blocks; kept for apply_polar).
  double measure_drift(const T* W) {
    Eigen::Map<const Mat> Wm(W, d_, N_);
    WtWd_.setZero();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      blkd_.topRows(nb) = Wm.middleRows(i0, nb).template cast<double>();
      WtWd_.template selfadjointView<Eigen::Lower>().rankUpdate(blkd_.topRows(nb).transpose());
    }
    WtWd_.template triangularView<Eigen::StrictlyUpper>() = WtWd_.transpose();
    return (WtWd_ - Dmat::Identity(N_, N_)).cwiseAbs().maxCoeff();
  }

  // W <- W (W^T W)^{-1/2}, with W^T W from the preceding measure_drift.
  void apply_polar(T* W) {
    MapW Wm(W, d_, N_);
    big_eig_.compute(WtWd_);
    // (W^T W)^{-1/2} = Q diag(ev^{-1/2}) Q^T
    Rpolar_.noalias() = big_eig_.eigenvectors() * big_eig_.eigenvalues().cwiseSqrt().cwiseInverse().asDiagonal() *
                        big_eig_.eigenvectors().transpose();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      blkd_.topRows(nb) = Wm.middleRows(i0, nb).template cast<double>();
      blkd2_.topRows(nb).noalias() = blkd_.topRows(nb) * Rpolar_;
      Wm.middleRows(i0, nb) = blkd2_.topRows(nb).template cast<T>();
    }
  }

  // One-pass estimate of max|W^T W - I|: 2 sqrt(N) ||(W^T W - I) r|| for a fresh random
  // unit vector r (stream n_probe of a generator keyed apart from the samples).
  double probe_drift(const T* W) {
    for (Index j = 0; j < N_; ++j)
      probe_r_[j] = rng::normal_at(seed_ ^ 0xA5A5F00DULL, static_cast<std::uint64_t>(state_.n_probe), j);
    probe_r_ /= probe_r_.norm();
    probe_acc_.setZero();
    for (Index i = 0; i < d_; ++i) {
      const T* w = W + i * N_;
      double s = 0.0;
      for (Index j = 0; j < N_; ++j) s += static_cast<double>(w[j]) * probe_r_[j];
      for (Index j = 0; j < N_; ++j) probe_acc_[j] += s * static_cast<double>(w[j]);
    }
    return 2.0 * std::sqrt(static_cast<double>(N_)) * (probe_acc_ - probe_r_).norm();
  }

  // Rows per block in the blocked passes over W (reductions over rows, such as Z = W^T X^T,
  // always run over these blocks in the same order, so every code path sums identically).
  static constexpr Index kRowBlock = 64;

 private:
  // Samples of the k-th step of this call, which is SGD step t_abs of the run.
  const T* sample_ptr(const T* X, std::int64_t k, std::int64_t t_abs, int buf) {
    if (X != nullptr) return X + k * B_ * d_;
    draw_samples(t_abs, xbuf_[buf].data());
    return xbuf_[buf].data();
  }

  void after_step() {
    ++state_.t;
    ++state_.since;
  }

  // Rounding floor of max|W^T W - I| right after a correction.
  static double floor_drift() noexcept { return 8.0 * std::numeric_limits<T>::epsilon(); }

  // Called after every step with log ||M||^2 of that step.  Returns true if W was
  // re-orthonormalised (the caller must then recompute z / Z).
  bool ortho_control(T* W, double log_growth) {
    if (!policy_.enabled) return false;
    state_.logbound += log_growth;
    return ortho_act(W);
  }
  // Whether the growth bound (already accumulated) asks for a probe or a correction now.
  bool ortho_wanted() const noexcept {
    return policy_.enabled && (state_.since >= policy_.max_interval ||
                               state_.est * std::exp(state_.logbound) > policy_.tol / 4);
  }
  bool ortho_act(T* W) {
    const bool due = state_.since >= policy_.max_interval;
    if (!due) {
      if (state_.est * std::exp(state_.logbound) <= policy_.tol / 4) return false;
      state_.est = std::max(probe_drift(W), floor_drift());
      state_.logbound = 0.0;
      ++state_.n_probe;
      if (state_.est <= policy_.tol / 8) return false;
    }
    // The probe's Frobenius-based estimate is pessimistic (by up to ~N for rounding-like
    // E): measure max|W^T W - I| exactly (O(d N^2)) and correct only if it is large.
    const double drift = measure_drift(W);
    if (!due && drift <= policy_.tol / 8) {
      state_.est = std::max(drift, floor_drift());
      state_.logbound = 0.0;
      return false;
    }
    apply_polar(W);
    state_.since = 0;
    ++state_.n_reortho;
    state_.last_drift = drift;
    state_.max_drift = std::max(state_.max_drift, drift);
    state_.est = floor_drift();
    state_.logbound = 0.0;
    return true;
  }


  // ---------------------------------------------------------------- blocked, batch = 1
  // MODEL.md §3.  Within a block of k steps, W_j = W + (W B + X A) Z^T over the columns
  // < j, with B (N x k), A (k x k, upper triangular) and Z (N x k, the z of each step):
  //   z_j = P_j + Z (B^T P_j + A^T (X^T x_j)),   P = W^T X,
  //   p_j = W (z_j + B s) + X (A s),   s = Z^T z_j,
  //   v_j = ga x_j + cp p_j  ->  B_:j = cp (z_j + B s),  A_:j = cp A s + ga e_j,  Z_:j = z_j,
  // and at the end W <- W + (W B) Z^T + X (A Z^T): O(N k + k^2) per step plus GEMMs.
  // Blocks are aligned to absolute step multiples of k, so the way a run is split into
  // calls changes nothing unless a call ends inside a block.
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

  // P = W^T X for the k samples of a block (X as k rows of length d), over row blocks in order.
  void accumulate_P(const MapW& Wm, const T* X, Index k, ColMat& P) const {
    Eigen::Map<const ColMat> Xt(X, d_, k);
    P.leftCols(k).setZero();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      P.leftCols(k).noalias() += Wm.middleRows(i0, nb).transpose() * Xt.middleRows(i0, nb);
    }
  }

  // Applies the first m steps of the block to W; if Xn != nullptr also accumulates the next
  // block's P = W^T Xn (kn samples) from the updated rows.
  void apply_block(MapW& Wm, const T* X, Index m, const T* Xn, Index kn) {
    Eigen::Map<const ColMat> Xt(X, d_, m);
    Zt_.topRows(m) = Zm_.leftCols(m).transpose();
    AZt_.topRows(m).noalias() = Am_.topLeftCorner(m, m) * Zt_.topRows(m);
    if (Xn != nullptr) Pnext_.leftCols(kn).setZero();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      auto Wb = Wm.middleRows(i0, nb);
      auto WB = WB_.topLeftCorner(nb, m);
      WB.noalias() = Wb * Bm_.leftCols(m);
      Wb.noalias() += WB * Zt_.topRows(m);
      Wb.noalias() += Xt.middleRows(i0, nb) * AZt_.topRows(m);
      if (Xn != nullptr) {
        Eigen::Map<const ColMat> Xtn(Xn, d_, kn);
        Pnext_.leftCols(kn).noalias() += Wb.transpose() * Xtn.middleRows(i0, nb);
      }
    }
  }

  AdvanceResult advance_blocked(T* W, std::int64_t steps, const T* X, const T* y) {
    AdvanceResult res;
    if (steps <= 0) return res;
    MapW Wm(W, d_, N_);
    const double Nd = static_cast<double>(N_);
    const std::int64_t K = K_blk_;
    auto block_len = [&](std::int64_t t_abs, std::int64_t left) {
      return static_cast<Index>(std::min<std::int64_t>(K - (t_abs % K), left));
    };
    auto load = [&](std::int64_t k_off, std::int64_t t_abs, Index k, int buf) -> const T* {
      if (X != nullptr) return X + k_off * d_;
      for (Index j = 0; j < k; ++j) draw_samples(t_abs + j, Xb_[buf].data() + j * d_);
      return Xb_[buf].data();
    };
    std::int64_t done = 0;
    int cur = 0;
    Index k = block_len(state_.t, steps);
    const T* Xc = load(0, state_.t, k, cur);
    accumulate_P(Wm, Xc, k, Pm_);
    while (done < steps) {
      Eigen::Map<const ColMat> Xt(Xc, d_, k);
      Xg_.topLeftCorner(k, k).noalias() = Xt.transpose() * Xt;
      for (Index j = 0; j < k; ++j)
        yblk_[j] = (y != nullptr) ? static_cast<double>(y[done + j])
                                  : teacher_label(Xc + j * d_, state_.t + j);
      Index m = 0;  // steps of this block carried out
      bool failed = false, probe = false;
      for (Index j = 0; j < k; ++j) {
        if (j == 0) {
          zvec_ = Pm_.col(0);
        } else {
          uvec_.head(j).noalias() = Bm_.leftCols(j).transpose() * Pm_.col(j);
          uvec_.head(j).noalias() += Am_.topLeftCorner(j, j).transpose() * Xg_.col(j).head(j);
          zvec_ = Pm_.col(j);
          zvec_.noalias() += Zm_.leftCols(j) * uvec_.head(j);
        }
        const double zz = zvec_.template cast<double>().squaredNorm();
        const double xx = static_cast<double>(Xg_(j, j));
        const double e = zz - Nd - yblk_[j];
        const double g = -2.0 * lr_ * e;
        const double u2 = g * g * std::max(xx - zz, 0.0);
        const double sc = u2 * zz;
        if (!std::isfinite(e) || !std::isfinite(sc)) {
          failed = true;
          break;
        }
        const double lg = -0.5 * std::log1p(sc);
        const double a = std::exp(lg);
        const double c = zz > 0.0 ? std::expm1(lg) / zz : 0.0;
        const T ga = static_cast<T>(g * a), cp = static_cast<T>(c - g * a);
        if (j > 0) {
          svec_.head(j).noalias() = Zm_.leftCols(j).transpose() * zvec_;
          Bm_.col(j) = zvec_;
          Bm_.col(j).noalias() += Bm_.leftCols(j) * svec_.head(j);
          Bm_.col(j) *= cp;
          Am_.col(j).head(j).noalias() = Am_.topLeftCorner(j, j) * svec_.head(j);
          Am_.col(j).head(j) *= cp;
        } else {
          Bm_.col(0) = cp * zvec_;
        }
        Am_.col(j).segment(j, k - j).setZero();  // rows j..k-1 (the column is K long)
        Am_(j, j) = ga;
        Zm_.col(j) = zvec_;
        m = j + 1;
        ++state_.t;
        ++state_.since;
        if (policy_.enabled) {
          state_.logbound += 2.0 * std::log(std::max(1.0, std::abs(1.0 + (c - g * a) * zz)));
          if (ortho_wanted()) {
            probe = true;
            break;
          }
        }
      }
      done += m;
      res.steps_done += m;
      // Next block: prefetch its samples and fuse its P into the update pass, unless this
      // block was cut short (then the rest of its samples are re-read from the new W).
      const bool full = (m == k) && !failed && !probe;
      const bool more = done < steps && !failed;
      Index kn = more ? block_len(state_.t, steps - done) : 0;
      const T* Xn = nullptr;
      if (more && full) Xn = load(done, state_.t, kn, cur ^ 1);
      if (m > 0) apply_block(Wm, Xc, m, Xn, kn);
      if (failed) {
        res.finite = false;
        return res;
      }
      bool recompute = !full && more;
      if (probe && ortho_act(W)) recompute = more;
      if (!more) break;
      if (recompute) {
        Xn = load(done, state_.t, kn, cur ^ 1);
        accumulate_P(Wm, Xn, kn, Pnext_);
      }
      std::swap(Pm_, Pnext_);
      Xc = Xn;
      cur ^= 1;
      k = kn;
    }
    return res;
  }

  // ---------------------------------------------------------------- batch = 1
  // z = W^T x, accumulated over rows in order (the same loop as in the fused pass).
  void accumulate_z(const MapW& Wm, const T* x, Vec<T>& z) const {
    rowpass::accumulate_dispatch<T>(Wm.data(), d_, N_, x, z.data());
  }

  AdvanceResult advance_rank1(T* W, std::int64_t steps, const T* X, const T* y) {
    AdvanceResult res;
    if (steps <= 0) return res;
    MapW Wm(W, d_, N_);
    int cur = 0;
    const T* x = sample_ptr(X, 0, state_.t, cur);
    accumulate_z(Wm, x, z_);
    const double Nd = static_cast<double>(N_);
    for (std::int64_t k = 0; k < steps; ++k) {
      const std::int64_t t = state_.t;
      Eigen::Map<const Vec<T>> xv(x, d_);
      const double xx = xv.template cast<double>().squaredNorm();
      const double zz = z_.template cast<double>().squaredNorm();
      const double yk = (y != nullptr) ? static_cast<double>(y[k]) : teacher_label(x, t);
      const double e = zz - Nd - yk;
      // ||u||^2 = 4 eta^2 e^2 (||x||^2 - ||z||^2)  (MODEL.md §2); s = ||u||^2 ||z||^2
      const double g = -2.0 * lr_ * e;
      const double u2 = g * g * std::max(xx - zz, 0.0);
      const double s = u2 * zz;
      if (!std::isfinite(e) || !std::isfinite(s)) {
        res.finite = false;
        return res;
      }
      // a = (1 + s)^{-1/2} = 1 + c ||z||^2,  c = ((1+s)^{-1/2} - 1) / ||z||^2
      const double lg = -0.5 * std::log1p(s);
      const double a = std::exp(lg);
      const double c = zz > 0.0 ? std::expm1(lg) / zz : 0.0;
      // v_i = u_i (1 + c ||z||^2) + c p_i = g a x_i + (c - g a) p_i
      const T ga = static_cast<T>(g * a);
      const T cp = static_cast<T>(c - g * a);
      const bool has_next = k + 1 < steps;
      const T* xn = has_next ? sample_ptr(X, k + 1, t + 1, cur ^ 1) : nullptr;
      if (has_next) znext_.setZero();
      // One streaming pass: pass 2 of this step fused with pass 1 of the next.
      rowpass::fused_rows_dispatch<T>(W, d_, N_, z_.data(), x, ga, cp, xn, znext_.data());
      after_step();
      ++res.steps_done;
      // E+ = M E M with M = I + cp z z^T: ||M||^2 = max(1, |1 + cp ||z||^2|)^2
      const double mnorm = std::max(1.0, std::abs(1.0 + (c - g * a) * zz));
      if (ortho_control(W, 2.0 * std::log(mnorm)) && has_next) accumulate_z(Wm, xn, znext_);
      if (has_next) {
        std::swap(z_, znext_);
        x = xn;
        cur ^= 1;
      }
    }
    return res;
  }

  // ---------------------------------------------------------------- batch = B > 1
  // Z = W^T X^T (N x B), accumulated over blocks of rows in order.
  void accumulate_Z(const MapW& Wm, const T* X, Mat& Z) const {
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>> Xt(X, d_, B_);
    Z.setZero();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      Z.noalias() += Wm.middleRows(i0, nb).transpose() * Xt.middleRows(i0, nb);
    }
  }

  AdvanceResult advance_batch(T* W, std::int64_t steps, const T* X, const T* y) {
    AdvanceResult res;
    if (steps <= 0) return res;
    using ColMatC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>>;
    MapW Wm(W, d_, N_);
    int cur = 0;
    const T* Xc = sample_ptr(X, 0, state_.t, cur);
    accumulate_Z(Wm, Xc, Z_);
    const double Nd = static_cast<double>(N_);
    const double g = -2.0 * lr_ / static_cast<double>(B_);
    for (std::int64_t k = 0; k < steps; ++k) {
      const std::int64_t t = state_.t;
      ColMatC Xt(Xc, d_, B_);  // d x B: the samples as columns
      // Small B x B matrices in double precision.
      smallT_.noalias() = Z_.transpose() * Z_;
      GZ_ = smallT_.template cast<double>();
      smallT_.noalias() = Xt.transpose() * Xt;
      GX_ = smallT_.template cast<double>();
      bool ok = true;
      for (Index b = 0; b < B_; ++b) {
        const double yb = (y != nullptr) ? static_cast<double>(y[k * B_ + b])
                                         : teacher_label(Xc + b * d_, t * B_ + b);
        e_[b] = GZ_(b, b) - Nd - yb;
        ok = ok && std::isfinite(e_[b]);
      }
      // K = U^T U = g^2 diag(e) (X X^T - Z^T Z) diag(e), since W^T W = I.
      for (Index i = 0; i < B_; ++i)
        for (Index j = 0; j < B_; ++j) K_(i, j) = (g * g) * e_[i] * e_[j] * (GX_(i, j) - GZ_(i, j));
      ok = ok && K_.allFinite();
      if (!ok) {
        res.finite = false;
        return res;
      }
      // L = K^{1/2};  M = L Z^T Z L = Q D Q^T;  A = Z L,  AQ = A Q.
      // small symmetric eigendecompositions: cyclic Jacobi (no allocation, deterministic)
      jacobi_eigh(K_, Q_, Dw_);
      hvec_ = Dw_.cwiseMax(0.0).cwiseSqrt();
      tmpB_.noalias() = Q_ * hvec_.asDiagonal();
      L_.noalias() = tmpB_ * Q_.transpose();
      tmpB_.noalias() = GZ_ * L_;
      M_.noalias() = L_ * tmpB_;
      jacobi_eigh(M_, Q_, Dw_);
      const Dvec& D = Dw_;
      if (!D.allFinite()) {
        res.finite = false;
        return res;
      }
      // (I + A A^T)^{-1/2} = I + AQ h(D) (AQ)^T,  h(D) = ((1 + D)^{-1/2} - 1) / D  (-> -1/2 at 0).
      for (Index b = 0; b < B_; ++b) {
        const double Db = std::max(D[b], 0.0);
        hvec_[b] = Db > 0.0 ? std::expm1(-0.5 * std::log1p(Db)) / Db : -0.5;
      }
      tmpB_.noalias() = L_ * Q_;  // L Q
      smallT_ = tmpB_.template cast<T>();
      AQ_.noalias() = Z_ * smallT_;                       // N x B
      HT_.noalias() = Z_.transpose() * AQ_;
      // W+ = W + U Z^T + (W AQ + U H) C,   C = h(D) AQ^T,   U = g (X^T - W Z) diag(e).
      R_.leftCols(B_) = Z_;
      R_.rightCols(B_) = AQ_;
      S_.topRows(B_) = Z_.transpose();
      S_.bottomRows(B_).noalias() = hvec_.template cast<T>().asDiagonal() * AQ_.transpose();
      eT_ = e_.template cast<T>();
      const bool has_next = k + 1 < steps;
      const T* Xn = has_next ? sample_ptr(X, k + 1, t + 1, cur ^ 1) : nullptr;
      if (has_next) Znext_.setZero();
      for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
        const Index nb = std::min<Index>(kRowBlock, d_ - i0);
        auto Wb = Wm.middleRows(i0, nb);
        auto P = P_.topRows(nb);
        auto UY = UY_.topRows(nb);
        P.noalias() = Wb * R_;                                       // [W Z, W AQ]
        UY.leftCols(B_) = (T(g) * (Xt.middleRows(i0, nb) - P.leftCols(B_))) * eT_.asDiagonal();
        UY.rightCols(B_) = P.rightCols(B_);
        UY.rightCols(B_).noalias() += UY.leftCols(B_) * HT_;
        Wb.noalias() += UY * S_;
        if (has_next) {
          ColMatC Xtn(Xn, d_, B_);
          Znext_.noalias() += Wb.transpose() * Xtn.middleRows(i0, nb);
        }
      }
      after_step();
      ++res.steps_done;
      // W+ = W (I + Z Phi) + X^T R with Phi = -g diag(e) (Z^T + H C) + (L Q) C, and X W = Z^T,
      // so E+ = M^T E M with M = I + Z Phi; ||M|| <= 1 + ||Z||_F ||Phi||_F.
      double log_growth = 0.0;
      if (policy_.enabled) {
        PhiT_ = S_.topRows(B_);
        PhiT_.noalias() += HT_ * S_.bottomRows(B_);
        PhiT_ = (T(-g) * eT_).asDiagonal() * PhiT_;
        smallT_ = tmpB_.template cast<T>();  // L Q
        PhiT_.noalias() += smallT_ * S_.bottomRows(B_);
        log_growth = 2.0 * std::log1p(static_cast<double>(Z_.norm()) * static_cast<double>(PhiT_.norm()));
      }
      if (ortho_control(W, log_growth) && has_next) accumulate_Z(Wm, Xn, Znext_);
      if (has_next) {
        std::swap(Z_, Znext_);
        Xc = Xn;
        cur ^= 1;
      }
    }
    return res;
  }

  Index d_, N_, B_, K_blk_;
  double lr_;
  std::uint64_t seed_;
  OrthoPolicy policy_;
  KernelState state_;
  Labeler<T> label_;
  rng::PositionTable table_;
  Vec<T> xbuf_[2];
  // blocked engine
  std::vector<T> Xb_[2];
  ColMat Pm_, Pnext_, Xg_, Bm_, Am_, Zm_;
  Mat Zt_, AZt_, WB_;
  Vec<T> uvec_, svec_, zvec_;
  Eigen::VectorXd yblk_;
  // batch 1
  Vec<T> z_, znext_;
  // batch B
  Mat Z_, Znext_, R_, S_, P_, UY_, AQ_;
  Dvec e_, hvec_;
  Mat HT_, smallT_, PhiT_;
  Vec<T> eT_;
  Dmat GX_, GZ_, K_, L_, M_, tmpB_;
  Dmat Q_;
  Dvec Dw_;
  // re-orthonormalisation
  Dmat WtWd_, Rpolar_, blkd_, blkd2_;
  Dvec probe_r_, probe_acc_;
  Eigen::SelfAdjointEigenSolver<Dmat> big_eig_;
};

}  // namespace quadfast
