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
#include <type_traits>
#include <utility>

#include "quadfast/jacobi.hpp"
#include "quadfast/packed_gemm.hpp"
#include "quadfast/rng.hpp"
#include "quadfast/rowgemm.hpp"
#include "quadfast/rowpass.hpp"
#include "quadfast/slabs.hpp"
#include "quadfast/teacher.hpp"

namespace quadfast {

// Re-orthonormalisation policy.  The closed-form retraction assumes W^T W = I, so the
// error E = W^T W - I is carried along and amplified: for batch 1,
//   W+ = W (I + cp z z^T) + ga x z^T  with  x^T W = z^T  exactly, hence
//   E+ = M E M,  M = I + cp z z^T,  ||E+|| <= ||M||^2 ||E||,  ||M|| = max(1, |1 + cp ||z||^2|);
// for batch B, W+ = W M + X^T R with M = I + Z Phi (see advance_batch) and E+ = M^T E M.
// The kernel accumulates log ||M||^2 every step (O(1) for B = 1, O(N B^2) for B > 1): a
// guaranteed bound on how much the drift can have grown since it was last estimated.
// When estimate * growth bound exceeds tol / 4, it probes the drift in O(d N) (one pass;
// the blocked engine waits for the end of its block unless the bound passes tol / 2):
// for 4 fresh Gaussian vectors r_k, E R estimates every row norm ||E_i|| >= max_j |E_ij|,
// and twice the largest is the new estimate (see probe_drift).  Only if that exceeds
// tol / 8 does it measure drift = max|W^T W - I| exactly (O(d N^2)), and
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

  // block > 1 selects the blocked exact engine of MODEL.md §3, for any batch: k = block
  // sequential steps (k * batch sample columns) per pass over W, carried out with
  // matrix-matrix products.  block = 1 is the sequential kernel; default_block(d, N,
  // batch) in blocking.hpp is the default of quadfast.StiefelSGD.
  StiefelKernel(Index d, Index N, Index batch, double lr, const TeacherView<T>& teacher,
                std::uint64_t seed, OrthoPolicy policy = {}, Index block = 1, Index threads = 1)
      : d_(d), N_(N), B_(batch), K_blk_(block), threads_(threads), lr_(lr), seed_(seed), policy_(policy), label_(teacher),
        table_(static_cast<std::size_t>(d)), big_eig_(N) {
    if (block < 1) throw std::invalid_argument("block must be >= 1");
    if (!(policy_.tol > 0.0)) policy_.tol = sizeof(T) == sizeof(float) ? 1e-5 : 1e-12;
    if (threads < 1) throw std::invalid_argument("threads must be >= 1");
    if (d < 1 || N < 1 || N > d) throw std::invalid_argument("width must lie in 1..d");
    if (batch < 1) throw std::invalid_argument("batch must be >= 1");
    if (!(lr > 0.0) || !std::isfinite(lr)) throw std::invalid_argument("lr must be finite and > 0");
    if (teacher.d != d) throw std::invalid_argument("teacher dimension differs from d");
    xbuf_[0].resize(B_ * d_);
    xbuf_[1].resize(B_ * d_);
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
    if (K_blk_ > 1) setup_blocked();
    blkd_.resize(kRowBlock, N_);
    blkd2_.resize(kRowBlock, N_);
    WtWd_.resize(N_, N_);
    probe_r_.resize(N_, kProbe);
    probe_acc_.resize(N_, kProbe);
    probe_mr_.resize(N_, kProbe);
    probe_v_.resize(kRowBlock, kProbe);
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
  // Threads of the blocked engine (results do not depend on it).  The sequential kernels
  // (block == 1) run on one thread.
  Index threads() const noexcept { return threads_; }
  // Whether the blocked engine keeps W in the factored form What M between its passes
  // (factor_block: 4 d N instead of 6 d N flops per step), which it does where that pays:
  // float64, widths >= 2, d >= 16 N, over stretches of at least 2 N steps of a call; in
  // the packed products (widths above 128 with AVX-512, from 32 without) only after
  // set_factored(true).  set_factored(false) turns it
  // off (the same trajectory to rounding; for tests and comparisons).  W in the caller's
  // memory is always the plain W when advance returns.
  bool factored() const noexcept { return fact_; }
  // Steps between two formations W <- What M at fixed absolute step multiples (the block
  // when the factored form is off).  A call forms W when it returns, so a run split into
  // calls that end on multiples of this period has the same bits as one call; a call
  // ending elsewhere changes the trajectory by rounding only.
  Index formation_period() const noexcept { return fact_period_; }
  // Formations W <- What M so far (a diagnostic: not part of the checkpointed state).
  std::int64_t formations() const noexcept { return n_formed_; }
  // set_factored(true) also turns the form on in the packed products (off by default).
  void set_factored(bool on) {
    fact_allowed_ = on;
    fact_packed_ = on;
    if (K_blk_ > 1) setup_factored();
  }
  void set_threads(Index n) {
    if (n < 1) throw std::invalid_argument("threads must be >= 1");
    threads_ = n;
    if (Mf_.rows() == N_) size_materialize();  // the form's buffers exist (on or off now)
  }

  // Full polar re-orthonormalisation W <- W (W^T W)^{-1/2}, in double precision whatever
  // T is (float32 rounding in a length-d sum would otherwise swamp a 1e-5 target).
  // Returns max|W^T W - I| measured before the correction.
  double reorthonormalize(T* W) {
    const double drift = measure_drift(W);
    apply_polar(W);
    return drift;
  }

  // Exact max|W^T W - I| (W^T W accumulated in double by row blocks; kept for apply_polar).
  // The lower triangle is split into column panels fixed by N alone, dealt to the threads
  // cyclically; every element is summed over the row blocks in order, so the result does
  // not depend on the thread count.  (Serial, this O(d N^2) measurement at the end of each
  // `run` had cost the 2-thread (16384, 1024) benchmark about 14%.)
  double measure_drift(const T* W) {
    Eigen::Map<const Mat> Wm(W, d_, N_);
    WtWd_.setZero();
    const Index pw = std::max<Index>(32, (N_ + 15) / 16);
    const Index n_panels = (N_ + pw - 1) / pw;
    const Index th = N_ >= 128 ? threads_ : Index(1);
    // float64 rows are used in place, 256 at a time; float32 rows are first widened into a
    // buffer of kRowBlock rows (no further workspace: peak memory stays within 1.5 W)
    const Index rows = std::is_same_v<T, double> ? kDriftRows : kRowBlock;
    for (Index i0 = 0; i0 < d_; i0 += rows) {
      const Index nb = std::min<Index>(rows, d_ - i0);
      auto accumulate = [&](const auto& Bd) {
        auto panel = [&](Index p) {
          const Index j0 = p * pw, w = std::min<Index>(pw, N_ - j0);
          WtWd_.block(j0, j0, N_ - j0, w).noalias() += Bd.rightCols(N_ - j0).transpose() * Bd.middleCols(j0, w);
        };
        slabs::for_each(n_panels, th, panel, /*cyclic=*/true);
      };
      if constexpr (std::is_same_v<T, double>) {
        accumulate(Wm.middleRows(i0, nb));
      } else {
        blkd_.topRows(nb) = Wm.middleRows(i0, nb).template cast<double>();
        accumulate(blkd_.topRows(nb));
      }
    }
    WtWd_.template triangularView<Eigen::StrictlyUpper>() = WtWd_.transpose();
    return (WtWd_ - Dmat::Identity(N_, N_)).cwiseAbs().maxCoeff();
  }

  // W <- W (W^T W)^{-1/2}, with W^T W from the preceding measure_drift.
  void apply_polar(T* W) {
    MapW Wm(W, d_, N_);
    big_eig_.compute(WtWd_);
    // (W^T W)^{-1/2} = Q diag(ev^{-1/2}) Q^T
    // (W^T W is no longer needed once decomposed: its storage holds the factor)
    WtWd_.noalias() = big_eig_.eigenvectors() * big_eig_.eigenvalues().cwiseSqrt().cwiseInverse().asDiagonal() *
                  big_eig_.eigenvectors().transpose();
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      blkd_.topRows(nb) = Wm.middleRows(i0, nb).template cast<double>();
      blkd2_.topRows(nb).noalias() = blkd_.topRows(nb) * WtWd_;
      Wm.middleRows(i0, nb) = blkd2_.topRows(nb).template cast<T>();
    }
  }

  // One-pass estimate of max|W^T W - I| = max|E|.  |E_ij| <= ||E_i|| (row norm), and for
  // kProbe Gaussian vectors r_k, sum_k (E_i . r_k)^2 / kProbe estimates ||E_i||^2.  The
  // estimate is 2 max_i sqrt(that): O(d N kProbe) in float64 GEMMs over row blocks.  A
  // Frobenius-based estimate (||E r|| for one unit r, times sqrt(N)) would be pessimistic by
  // up to ~N for rounding-like E and, in float32 at N = 1024, above tol/8 after every
  // correction, forcing an O(d N^2) measurement each time.  Streams n_probe of a generator
  // keyed apart from the samples.
  double probe_drift(const T* W) {
    Eigen::Map<const Mat> Wm(W, d_, N_);
    for (Index k = 0; k < kProbe; ++k)
      for (Index j = 0; j < N_; ++j)
        probe_r_(j, k) = rng::normal_at(seed_ ^ 0xA5A5F00DULL, static_cast<std::uint64_t>(state_.n_probe),
                                        static_cast<std::uint64_t>(k * N_ + j));
    probe_acc_.setZero();
    // In the factored form (W = What M, What in W's storage) W^T W R = M^T What^T What (M R):
    // the probe reads What and does not form W
    const bool fm = fact_live_;
    if (fm) {  // (in two statements: a product inside a sum would be a temporary)
      probe_mr_ = probe_r_;
      probe_mr_.noalias() += Mf_.template cast<double>() * probe_r_;
    }
    const Dmat& R = fm ? probe_mr_ : probe_r_;
    for (Index i0 = 0; i0 < d_; i0 += kRowBlock) {
      const Index nb = std::min<Index>(kRowBlock, d_ - i0);
      blkd_.topRows(nb) = Wm.middleRows(i0, nb).template cast<double>();
      probe_v_.topRows(nb).noalias() = blkd_.topRows(nb) * R;
      probe_acc_.noalias() += blkd_.topRows(nb).transpose() * probe_v_.topRows(nb);
    }
    if (fm) {
      probe_mr_ = probe_acc_;
      probe_mr_.noalias() += Mf_.transpose().template cast<double>() * probe_acc_;
      probe_acc_ = probe_mr_;
    }
    probe_acc_ -= probe_r_;  // E R
    const double row2 = probe_acc_.rowwise().squaredNorm().maxCoeff() / static_cast<double>(kProbe);
    return 2.0 * std::sqrt(row2);
  }
  static constexpr Index kProbe = 4;

  // Rows per block in the blocked passes over W (reductions over rows, such as Z = W^T X^T,
  // always run over these blocks in the same order, so every code path sums identically).
  static constexpr Index kRowBlock = 64;
  // Rows per block of the exact drift measurement (deeper GEMMs than kRowBlock).
  static constexpr Index kDriftRows = 256;

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
  // Within a block of the blocked engine, a probe that is due waits for the end of the
  // block (breaking a block costs an extra pass over W), unless the growth bound could
  // then pass tol / 2: the drift stays below tol / 2 by the bound either way.
  bool ortho_urgent() const noexcept {
    return policy_.enabled && state_.est * std::exp(state_.logbound) > policy_.tol / 2;
  }
  // force: probe even if the growth bound does not ask for it (after a formation of the
  // factored form, whose rounding the bound does not cover).
  bool ortho_act(T* W, bool force = false) {
    const bool due = state_.since >= policy_.max_interval;
    if (!due) {
      if (!force && state_.est * std::exp(state_.logbound) <= policy_.tol / 4) return false;
      state_.est = std::max(probe_drift(W), static_cast<double>(std::numeric_limits<T>::epsilon()));
      state_.logbound = 0.0;
      ++state_.n_probe;
      if (state_.est <= policy_.tol / 8) return false;
    }
    // The probe's Frobenius-based estimate is pessimistic (by up to ~N for rounding-like
    // E): measure max|W^T W - I| exactly (O(d N^2)) and correct only if it is large.
    materialize(W);  // the factored form (if live) is formed: W is measured and corrected
    const double drift = measure_drift(W);
    if (!due && drift <= policy_.tol / 8) {
      // an exact measurement: no rounding floor needed (the floor is for the unmeasured
      // state right after a correction)
      state_.est = std::max(drift, static_cast<double>(std::numeric_limits<T>::epsilon()) * std::numeric_limits<T>::epsilon());
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


  // ---------------------------------------------------------------- blocked engine
  // MODEL.md §3, for any batch B.  A block of k steps holds c = k B sample columns
  // X (d x c, one sample per column, column stride d).  Within the block
  //   W_j = W + (W Bm + X Am) Zm^T        (the columns of the steps before j),
  // with Bm (N x c), Am (c x c, block upper triangular) and Zm (N x c).  Step j, with
  // columns J = [jB, jB + B):
  //   Z_J = W_j^T X_J = P_J + Zm (Bm^T P_J + Am^T G_J),   P = W^T X,  G = X^T X,
  // and the polar step (MODEL.md §2) is W_{j+1} = W_j + (X_J Cx + W_j Z_J Cw) Z_J^T with
  // B x B coefficients Cx, Cw (step_coefficients).  As
  //   W_j Z_J Cw = W (Z_J Cw + Bm S) + X (Am S),   S = Zm^T Z_J Cw,
  // the step appends the columns Bm_J = Z_J Cw + Bm S, Am_J = [Am S; Cx; 0], Zm_J = Z_J:
  // O(N c B + c^2 B) per step on small matrices.  The block ends with one pass over W:
  // per row block, Y = W_b Bm + X_b Am, then W_b += Y Zm^T (6 d N + 3 d c flops per step
  // together with P and G).  In the same pass the next block's samples are drawn into the
  // rows of X just consumed, and its P = W^T X and G = X^T X accumulate from the updated
  // rows.  Rows are split into slabs fixed by (d, c) alone; each slab accumulates partial
  // P and G, which are summed in slab order, so results are bit-identical for any number
  // of threads.  Blocks are aligned to absolute step multiples of k, so the way a run is
  // split into calls changes nothing unless a call ends inside a block (in the factored
  // form below: off a multiple of formation_period()).  At widths >= 2 with d >= 16 N
  // (float64) the pass takes the factored form (factor_block).
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using StridedX = Eigen::Map<const ColMat, 0, Eigen::OuterStride<>>;

  void setup_blocked() {
    const Index cap = K_blk_ * B_;
    cap_ = cap;
    // Row blocks and slabs (slabs.hpp): all fixed by (d, N, columns) alone.
    const slabs::Layout lay = slabs::layout(d_, N_, cap, kRowBlock);
    rb_ = lay.rb;
    slab_rows_ = lay.slab_rows;
    n_slabs_ = lay.n_slabs;
    Xbuf_.resize(static_cast<std::size_t>(cap * d_));
    Pm_.resize(N_, cap);
    Xg_.resize(cap, cap);
    Ppart_.resize(N_, n_slabs_ * cap);
    Gpart_.resize(cap, n_slabs_ * cap);
    Ywork_.resize(rb_, n_slabs_ * cap);
    if (label_.view().directions != nullptr) {
      TX_.resize(label_.view().r, cap);
      TXpart_.resize(label_.view().r, n_slabs_ * cap);
    }
    Bm_.resize(N_, cap);
    Am_.resize(cap, cap);
    Zm_.resize(N_, cap);
    narrow_v_.resize(cap);
    // Small widths with AVX-512: products on the row-major operands as they lie
    // (rowgemm.hpp), with Bm and Am transposed once per block; otherwise Bm, Zm packed
    // once per block for Eigen-layout GEMMs (packed_gemm.hpp)
    direct_ = rowgemm::use_direct(N_);
    packed_ = !direct_ && N_ >= pgemm::kMinWidth;
    if (direct_) {
      BmR_.resize(N_, cap);
      AmR_.resize(cap, cap);
    } else if (packed_) {
      packBm_.setup(rb_, N_, cap);
      packZm_.setup(N_, cap, rb_);
    } else if (N_ > 1) {
      Zt_.resize(cap, N_);
    }
    setup_factored();
    Tmp_.resize(cap, B_);
    Sx_.resize(cap, B_);
    GZ_.resize(B_, B_);
    // Row parts of the per-step work on the N x c matrices (fixed by N alone)
    part_rows_ = small_part_rows(N_);
    n_parts_ = (N_ + part_rows_ - 1) / part_rows_;
    small_threads_ok_ = N_ * cap >= kSmallParallel;
    Qpart_.resize(cap, n_parts_ * B_);
    Tpart_.resize(cap, n_parts_ * B_);
    GZpart_.resize(B_, n_parts_ * B_);
    Cx_.resize(B_, B_);
    Cw_.resize(B_, B_);
    yblk_.resize(cap);
  }

  template <class F>
  void for_slabs(F&& f) {
    slabs::for_each(n_slabs_, threads_, f);
  }

  // One pass over W, slab-parallel.  If Xa != nullptr: applies the first `ma` columns of
  // the current block (W += (W Bm + Xa Am) Zm^T).  If Xn != nullptr: then accumulates P,
  // G (and Theta^T X for an explicit-frame teacher) of the `cn` columns of the next
  // block, whose first step is `tn`, drawing them first into Xbuf_ when `draw`.
  void pass(MapW& Wm, const T* Xa, Index ma, const T* Xn, Index cn, std::int64_t tn, bool draw, bool need_tx) {
    if (Xa != nullptr && fact_ && packed_) {
      packZm_.pack(Rt_.data(), N_, N_, ma);  // Rt = (Am H)^T: N x ma, in Zm's packed slot
    } else if (Xa != nullptr && !fact_) {
      if (direct_) {  // row-major Bm and Am (Zm, column-major, is Zm^T row-major)
        BmR_.topLeftCorner(N_, ma) = Bm_.leftCols(ma);
        AmR_.topLeftCorner(ma, ma) = Am_.topLeftCorner(ma, ma);
      } else if (packed_) {  // Bm and Zm packed once for all row blocks (packed_gemm.hpp)
        packBm_.pack(Bm_.data(), N_, ma, N_);  // Bm: N x ma
        packZm_.pack(Zm_.data(), N_, N_, ma);  // Zm: N x ma
      } else if (N_ == 1) {
        narrow_coefficients(ma);
      } else {
        Zt_.topRows(ma) = Zm_.leftCols(ma).transpose();
      }
    }
    const T* theta = label_.view().directions;
    const Index r = label_.view().r;
    for_slabs([&](Index s) {
      const Index r0 = s * slab_rows_, r1 = std::min<Index>(d_, r0 + slab_rows_);
      auto Pp = Ppart_.middleCols(s * cap_, cn);
      auto Gp = Gpart_.block(0, s * cap_, cn, cn);
      if (Xn != nullptr) {
        Pp.setZero();
        Gp.setZero();
        if (need_tx) TXpart_.middleCols(s * cap_, cn).setZero();
      }
      for (Index i0 = r0; i0 < r1; i0 += rb_) {
        const Index nb = std::min<Index>(rb_, r1 - i0);
        auto Wb = Wm.middleRows(i0, nb);
        if (Xa != nullptr) {
          StridedX Xab(Xa + i0, nb, ma, Eigen::OuterStride<>(d_));
          auto Y = Ywork_.block(0, s * cap_, nb, ma);
          if (fact_) {
            // factored form: the stored rows take W_b += X_b R (R = Rt_^T, ma x N), one
            // product instead of two (factor_block)
            if (direct_) {
              const rowgemm::Seg<T> ws{Xa + i0, 1, d_, Rt_.data(), N_, ma};
              rowgemm::gemm<T>(Wb.data(), N_, nb, N_, &ws, 1, true);
            } else if (packed_) {  // W_b^T += Rt X_b^T, Rt packed once per block
              packZm_.template gemm_add<Eigen::RowMajor>(Wb.data(), N_, Xa + i0, d_, nb);
            } else {
              Wb.noalias() += Xab * Rt_.leftCols(ma).transpose();
            }
          } else if (N_ == 1) {
            narrow_update(Wb.data(), Xab, Y, ma);
          } else if (direct_) {
            // Y = W_b Bm + X_b Am (row-major nb x ma in this slab's Y storage), then
            // W_b += Y Zm^T, with the operands as they lie (rowgemm.hpp)
            T* Yd = Ywork_.data() + s * cap_ * rb_;
            const rowgemm::Seg<T> ys[2] = {{Wb.data(), N_, 1, BmR_.data(), cap_, N_},
                                           {Xa + i0, 1, d_, AmR_.data(), cap_, ma}};
            rowgemm::gemm<T>(Yd, cap_, nb, ma, ys, 2, false);
            const rowgemm::Seg<T> ws{Yd, cap_, 1, Zm_.data(), N_, ma};
            rowgemm::gemm<T>(Wb.data(), N_, nb, N_, &ws, 1, true);
          } else if (packed_) {
            // the same products and bits as the expressions below, without re-packing
            // Bm and Zm for every row block: Y = W_b Bm, and W_b^T += Zm Y^T
            Y.setZero();
            packBm_.template gemm_add<Eigen::RowMajor>(Y.data(), rb_, Wb.data(), N_, nb);
            Y.noalias() += Xab * Am_.topLeftCorner(ma, ma);
            packZm_.template gemm_add<Eigen::RowMajor>(Wb.data(), N_, Y.data(), rb_, nb);
          } else {
            Y.noalias() = Wb * Bm_.leftCols(ma);
            Y.noalias() += Xab * Am_.topLeftCorner(ma, ma);
            Wb.noalias() += Y * Zt_.topRows(ma);
          }
        }
        if (Xn != nullptr) {
          if (draw)  // the rows just consumed now hold the next block's samples
            for (Index j = 0; j < cn; ++j)
              rng::fill_normals_range(Xbuf_.data() + j * d_ + i0, static_cast<std::size_t>(i0),
                                      static_cast<std::size_t>(i0 + nb), seed_,
                                      static_cast<std::uint64_t>(tn * B_ + j), table_);
          StridedX Xnb(Xn + i0, nb, cn, Eigen::OuterStride<>(d_));
          if (N_ == 1) {
            narrow_accumulate(Wb.data(), Xnb, Pp, Gp);
          } else if (direct_) {
            // P^T (cn x N, row-major: P is column-major) += X_b^T W_b
            const rowgemm::Seg<T> ps{Xn + i0, d_, 1, Wb.data(), N_, nb};
            rowgemm::gemm<T>(Pp.data(), N_, cn, N_, &ps, 1, true);
            rowgemm::gram_lower_add<T>(Gp.data(), Gpart_.outerStride(), Xn + i0, d_, nb, cn);
          } else {
            // Pp += W_b^T X_b: Eigen's product with the micro-kernel of packed_gemm.hpp (its bits)
            pgemm::gemm_add<T, Eigen::ColMajor, Eigen::ColMajor>(Pp.data(), N_, Wb.data(), N_, Xn + i0, d_, N_, nb, cn);
            Gp.template selfadjointView<Eigen::Lower>().rankUpdate(Xnb.transpose());
          }
          if (need_tx) {
            Eigen::Map<const Mat> th(theta + i0 * r, nb, r);
            TXpart_.middleCols(s * cap_, cn).noalias() += th.transpose() * Xnb;
          }
        }
      }
    });
    if (Xn == nullptr) return;
    // partial sums in slab order: independent of the thread count
    slabs::reduce_partials(Pm_, Xg_, TX_, Ppart_, Gpart_, TXpart_, n_slabs_, cap_, cn, need_tx);
    if (fact_live_) {  // W^T X = M^T (What^T X) = What^T X + D^T (What^T X)
      for_parts([&](Index p) {  // rows of the results, as in small_step_b
        const Index n0 = p * part_rows_, nb = std::min<Index>(part_rows_, N_ - n0);
        auto pt = Pt_.block(n0, 0, nb, cn);
        pt.setZero();
        pgemm::gemm_add<T, Eigen::RowMajor, Eigen::ColMajor>(pt.data(), N_, Mf_.data() + n0 * N_, N_, Pm_.data(), N_, nb, N_, cn);
      });
      Pm_.leftCols(cn) += Pt_.leftCols(cn);
    }
  }

  // ------------------------------------------------------------ factored form
  // The update W <- W (I + Bm Zm^T) + X Am Zm^T of a block costs three products with W
  // per step (P = W^T X, Y = W Bm, W += Y Zm^T: 6 d N flops).  At widths N << d the
  // engine instead keeps W = What M, M = I + D, between the passes of one call: the
  // caller's memory holds What (d x N), and D and E = M^{-1} - I (N x N) are kept here.
  // A block sets
  //   M' = M (I + Bm Zm^T),   What' = What + X (Am H),   H = Zm^T M'^{-1}  (c x N),
  // so that What' M' = What M (I + Bm Zm^T) + X Am Zm^T: the same W.  By the Woodbury
  // identity, with S = Zm^T Bm (c x c),
  //   H = (I + S)^{-1} Zm^T M^{-1},   M'^{-1} = M^{-1} - Bm H,
  // so D' = D + M Bm Zm^T and E' = E - Bm H.  The pass does What_b += X_b (Am H), and the
  // next block's P = W^T X is M'^T (What'^T X): 4 d N flops per step with W, plus about
  // 10 N^2 c per block on N x N matrices, all in GEMMs (in the row parts of for_parts).  In the
  // direct products (widths <= 128 with AVX-512) the pass adds X_b R to the row-major rows
  // as they lie; in the packed products R is packed once per block in Zm's place.  D and
  // E are stored rather than M
  // and M^{-1}: rounding of M's unit diagonal would enter W^T W - I at about eps per
  // block, sqrt(d) times the rounding of W's own entries.  det(I + S) = det M' / det M is
  // the product of the steps' factors along z (for batch 1, a (1 + 2 lr e ||z||^2)),
  // which vanishes only if a step overshoots.  W is formed, W <- What + What D, D, E <- 0
  // (materialize, 2 d N^2 flops), at the end of every call (the caller sees W), at
  // absolute multiples of formation_period() (16 N steps rounded up to whole blocks),
  // before an exact measurement or a correction of W^T W - I (a probe, O(d N) with four
  // vectors, reads What and applies M: W^T W R = M^T What^T What M R), when the bound
  // (1 + ||D||_F)(1 + ||E||_F) on the condition number of M (by which rounding in What
  // is amplified in W) passes kFactMaxCond, and when eps max|D| summed over the blocks
  // since the last formation passes tol / 64; if one of these two is already reached after
  // one block, the blocks up to the next multiple of the period run unfactored (at lr d of
  // order 1 a step's W part rescales W by factors far from 1), and if that recurs, up to
  // the next multiple of 2, 4, ..., 64 periods.  After each formation mid-call W is
  // probed (ortho_act with force): the rounding the factored form carries is not in the
  // growth bound of the drift control.  If I + S is singular to kFactMinPivot, W
  // is formed from the old D and the block is applied unfactored.  Rows are multiplied
  // independently, so the bits do not depend on the thread count.  A stretch of a call up
  // to its end or the next period multiple is started factored only if it spans at least
  // kFactMinSegment N steps: the 2 d N - 10 N^2 flops saved per step must repay the
  // formation's 2 d N^2 (break-even near 1.5 N steps at d = 16 N).
  static constexpr Index kFactMinRatio = 16;
  static constexpr Index kFactPeriodWidths = 16;
  static constexpr double kFactMaxCond = 2.0;
  static constexpr double kFactMinPivot = 1e-10;
  static constexpr Index kFactMinSegment = 2;

  void reset_power() {
    fact_vd_.setConstant(static_cast<T>(1.0 / std::sqrt(static_cast<double>(N_))));
    fact_ve_ = fact_vd_;
  }

  void setup_factored() {
    // float64 only: in float32 the rounding of D (eps max|D| per block, eps = 6e-8) and of
    // What drove max|W^T W - I| to 1e-4 within 30000 steps at lr d = 2 (d = 512, N = 16;
    // 1e-7 unfactored), past the 1e-5 tolerance
    // In the packed products (widths above 128, from 32 without AVX-512) only on request
    // (set_factored(true)): there D, E and packed D (3 N^2, 0.19 W at d = 16 N) take the
    // peak memory past 1.5 W plus a block of samples, and float32 stays unfactored
    fact_ = std::is_same_v<T, double> && fact_allowed_ && N_ > 1 && d_ >= kFactMinRatio * N_ &&
            (!packed_ || fact_packed_);
    fact_live_ = false;
    // formation period: a multiple of the block, at least kFactPeriodWidths N steps
    fact_period_ = fact_ ? K_blk_ * ((kFactPeriodWidths * N_ + K_blk_ - 1) / K_blk_) : K_blk_;
    if (!fact_) return;
    if (Mf_.rows() == N_) {  // allocated before: the thread count may have changed since
      size_materialize();
      return;
    }
    const Index cap = cap_;
    // rows per piece of a formation, set first (materialize relies on it)
    form_rows_ = std::max<Index>(1, std::min<Index>({rb_, kFormRows, kFormStackBytes / (N_ * Index(sizeof(T)))}));
    // D and E are zeroed where a factored stretch starts (factor_block): untouched, they
    // take no resident memory in runs that never use the form (4 MiB at N = 512)
    Mf_.resize(N_, N_);
    Ei_.resize(N_, N_);
    fact_vd_.resize(N_);
    fact_ve_.resize(N_);
    fact_u_.resize(N_);
    reset_power();
    MB_.resize(N_, cap);
    Hq_.resize(N_, cap);
    Hd_.resize(N_, cap);
    Rt_.resize(N_, cap);
    Pt_.resize(N_, cap);
    Sf_.resize(cap, cap);
    Sd_.resize(cap, cap);
    packD_.setup(N_, N_, form_rows_);  // D^T as the lhs of (W_b D)^T = D^T W_b^T
    size_materialize();
  }


  // Sets M' (into Mf_) and Rt_ = (Am H)^T for the first `ma` columns of the block, and
  // fact_ill_.  Returns false, leaving M as it was, if M' is singular to working precision.
  bool factor_block(Index ma) {
    const auto Bv = Bm_.leftCols(ma);
    const auto Zv = Zm_.leftCols(ma);
    const bool live = fact_live_;  // otherwise D = E = 0
    if (!live) {
      Mf_.setZero();
      Ei_.setZero();
    }
    auto Ht = Hd_.leftCols(ma);
    // Hq = Zm^T M^{-1} = Zm^T + Zm^T E (c x N, kept as its transpose N x c) into Ht (in
    // double), MB = M Bm = Bm + D Bm; by rows of the results
    for_parts([&](Index p) {  // rows of the results, as in small_step_b
      const Index n0 = p * part_rows_, nb = std::min<Index>(part_rows_, N_ - n0);
      auto hq = Hq_.block(n0, 0, nb, ma);
      auto mb = MB_.block(n0, 0, nb, ma);
      hq = Zv.middleRows(n0, nb);
      mb = Bv.middleRows(n0, nb);
      if (live) {
        pgemm::gemm_add<T, Eigen::RowMajor, Eigen::ColMajor>(hq.data(), N_, Ei_.data() + n0 * N_, N_, Zm_.data(), N_, nb, N_, ma);
        pgemm::gemm_add<T, Eigen::ColMajor, Eigen::ColMajor>(mb.data(), N_, Mf_.data() + n0, N_, Bm_.data(), N_, nb, N_, ma);
      }
      Ht.middleRows(n0, nb) = hq.template cast<double>();
    });
    // H = (I + S)^{-1} Zm^T M^{-1} with S = Zm^T Bm (c x c): solved in double
    Sf_.topLeftCorner(ma, ma).noalias() = Zv.transpose() * Bv;
    auto Sd = Sd_.topLeftCorner(ma, ma);
    Sd = Sf_.topLeftCorner(ma, ma).template cast<double>();
    Sd.diagonal().array() += 1.0;
    if (!solve_small(ma)) return false;
    Hq_.leftCols(ma) = Ht.template cast<T>();
    // D' = D + (M Bm) Zm^T, E' = E - Bm H, Rt = (Am H)^T = H^T Am^T; by rows
    for_parts([&](Index p) {  // rows of the results, as in small_step_b
      const Index n0 = p * part_rows_, nb = std::min<Index>(part_rows_, N_ - n0);
      pgemm::gemm_add<T, Eigen::ColMajor, Eigen::RowMajor>(Mf_.data() + n0, N_, MB_.data() + n0, N_, Zm_.data(), N_, nb, ma, N_);
      Ei_.middleRows(n0, nb).noalias() -= Bv.middleRows(n0, nb) * Hq_.leftCols(ma).transpose();
      Rt_.block(n0, 0, nb, ma).noalias() = Hq_.block(n0, 0, nb, ma) * Am_.topLeftCorner(ma, ma).transpose();
    });
    fact_live_ = true;
    ++fact_blocks_;
    // rounding of D enters W^T W - I at about eps max|D| per block (rounding of W itself
    // enters at about eps / sqrt(d)): W is formed before the sum reaches tol / 64
    fact_err_ += static_cast<double>(std::numeric_limits<T>::epsilon()) * static_cast<double>(Mf_.cwiseAbs().maxCoeff());
    // cond(M) <= (1 + ||D||_2) (1 + ||E||_2) <= (1 + ||D||_F) (1 + ||E||_F).  The Frobenius
    // norms overstate the spectral ones by up to sqrt(N) / 2 for D spread over all its
    // entries (at (16384, 1024): ||D||_F = 0.41 with max|D| = 0.002, which formed W every
    // 5000 steps); past kFactMaxCond the spectral norms are estimated instead (spectral_est)
    double cond = (1.0 + static_cast<double>(Mf_.norm())) * (1.0 + static_cast<double>(Ei_.norm()));
    if (!(cond <= kFactMaxCond))
      cond = (1.0 + kFactPowerSafety * spectral_est(Mf_, fact_vd_)) * (1.0 + kFactPowerSafety * spectral_est(Ei_, fact_ve_));
    fact_ill_ = !(cond <= kFactMaxCond) || fact_err_ > policy_.tol / 64;
    return true;
  }

  // ||A||_2 from below by kFactPowerIts power iterations v <- A^T A v / ||A^T A v||,
  // warm-started from the last block's v (reset to the unit diagonal vector at each
  // formation, so the estimates are a function of the trajectory).  Not a bound: the
  // estimate only decides when W is formed; the drift probes, which read W = What M, check
  // what the form's rounding does to W^T W - I.
  static constexpr int kFactPowerIts = 2;
  static constexpr double kFactPowerSafety = 1.5;
  double spectral_est(const ColMat& A, Vec<T>& v) {
    double s2 = 0.0;
    for (int it = 0; it < kFactPowerIts; ++it) {
      fact_u_.noalias() = A * v;
      v.noalias() = A.transpose() * fact_u_;
      s2 = static_cast<double>(v.norm());
      if (!(s2 > 0.0) || !std::isfinite(s2)) {
        const double est = s2 == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
        reset_power();  // v is no longer a usable start
        return est;
      }
      v /= static_cast<T>(s2);
    }
    return std::sqrt(s2);
  }

  // Solves A H = Q for H (ma x N) with A = Sd_ (ma x ma, overwritten) and Q given
  // transposed in the leading ma columns of Hd_, which then hold H^T: Gaussian
  // elimination with partial pivoting in double, in place, no allocation.  False if a
  // pivot is below kFactMinPivot of the largest entry (or not finite).
  bool solve_small(Index ma) {
    auto A = Sd_.topLeftCorner(ma, ma);
    auto Y = Hd_.leftCols(ma);  // column k is row k of Q (then of H)
    const double scale = A.cwiseAbs().maxCoeff();
    if (!(scale > 0.0) || !std::isfinite(scale)) return false;
    for (Index k = 0; k < ma; ++k) {
      Index p;
      const double piv = A.col(k).tail(ma - k).cwiseAbs().maxCoeff(&p);
      p += k;
      if (!(piv > kFactMinPivot * scale)) return false;
      if (p != k) {
        A.row(k).swap(A.row(p));
        Y.col(k).swap(Y.col(p));
      }
      for (Index i = k + 1; i < ma; ++i) {
        const double f = A(i, k) / A(k, k);
        if (f == 0.0) continue;
        A.row(i).tail(ma - k) -= f * A.row(k).tail(ma - k);
        Y.col(i) -= f * Y.col(k);
      }
    }
    for (Index k = ma - 1; k >= 0; --k) {
      for (Index i = k + 1; i < ma; ++i) Y.col(k) -= A(k, i) * Y.col(i);
      Y.col(k) /= A(k, k);
    }
    return Y.allFinite();
  }

  // W <- What M = What + What D, D <- 0: row blocks in slabs, each row on its own (thread-count-free bits).
  // One N x form_rows_ buffer per thread of materialize (per slab it would be up to 32 of
  // them: 8 MiB at N = 512, a sixth of W at d = 16 N).  The formation runs in pieces of at
  // most kFormRows rows of a row block: each row of W is formed on its own, so the pieces
  // change no sum, and the buffer and the product's packed W_b^T (on the stack) are 64 KiB
  // each at N = 64 rather than 256 KiB (rb = 512 there).  The packed W_b^T (N x rows) is
  // also kept within kFormStackBytes, under EIGEN_STACK_ALLOCATION_LIMIT (1 MiB), so that
  // it never moves to the heap: 64 rows at N = 1024, 32 at 2048.
  static constexpr Index kFormRows = 128;
  static constexpr Index kFormStackBytes = Index(1) << 19;
  void size_materialize() {
    const Index buffers = std::max<Index>(1, std::min(threads_, n_slabs_));
    if (Wmat_.rows() != N_ || Wmat_.cols() < buffers * form_rows_) Wmat_.resize(N_, buffers * form_rows_);
  }

  void materialize(T* W) {
    if (!fact_live_) return;
    MapW Wm(W, d_, N_);
    packD_.template pack<Eigen::RowMajor>(Mf_.data(), N_, N_, N_);  // D^T packed once for all row blocks
    const Index buffers = std::max<Index>(1, std::min(threads_, n_slabs_));
    const Index per = (n_slabs_ + buffers - 1) / buffers;
    for_slabs([&](Index s) {
      const Index r0 = s * slab_rows_, r1 = std::min<Index>(d_, r0 + slab_rows_);
      // slabs::for_each hands each thread one run of `per` consecutive slabs
      // that run's N x form_rows_, column-major: (W_b D)^T = D^T W_b^T, so that its columns are the
      // rows of W_b D and the sum below runs in W's own row-major order (with an rb x N
      // column-major buffer, the sum read it with stride rb: 3.8% of the (4096, 64) step,
      // perf on the 2-core Zen 5 VM)
      T* buf = Wmat_.data() + (s / per) * form_rows_ * N_;
      for (Index i0 = r0; i0 < r1; i0 += form_rows_) {
        const Index nb = std::min<Index>(form_rows_, r1 - i0);
        Eigen::Map<Vec<T>>(buf, nb * N_).setZero();
        packD_.template gemm_add<Eigen::ColMajor>(buf, N_, Wm.data() + i0 * N_, N_, nb);  // D^T W_b^T
        Eigen::Map<Vec<T>>(Wm.data() + i0 * N_, nb * N_) += Eigen::Map<const Vec<T>>(buf, nb * N_);
      }
    });
    reset_power();  // D and E are zeroed where the next factored stretch starts
    fact_live_ = false;
    fact_err_ = 0.0;
    fact_blocks_ = 0;
    ++n_formed_;
  }

  // Width 1: a row block of W is one contiguous column w, and the pass's products are
  // column operations.  As W += (W Bm + X Am) Zm^T = W (Bm Zm^T) + X (Am Zm^T), at N = 1
  // the update is w += a w + X v with the scalar a = Bm Zm^T and the c-vector
  // v = Am Zm^T (narrow_coefficients, once per block): one GEMV and one vector pass
  // instead of Eigen's GEMMs on 1- to c-column matrices, whose packing and set-up cost
  // more than the arithmetic at this width (perf: 43% of a width-1 step).  Fixed order
  // per row block: the results do not depend on the thread count.
  void narrow_coefficients(Index ma) {
    narrow_a_ = Bm_.row(0).head(ma).dot(Zm_.row(0).head(ma));
    narrow_v_.head(ma).noalias() = Am_.topLeftCorner(ma, ma) * Zm_.row(0).head(ma).transpose();
  }
  template <class Y_t>
  void narrow_update(T* wdata, const StridedX& Xab, Y_t& Y, Index ma) const {
    Eigen::Map<Vec<T>> w(wdata, Xab.rows());
    auto y = Y.col(0);
    y.noalias() = Xab * narrow_v_.head(ma);
    w += narrow_a_ * w + y;
  }
  // Width 1: P += w^T X_b and the lower triangle of G += X_b^T X_b as dot products over
  // chunks of 256 rows (the chunk's columns stay in L1 across the (c + 1)(c + 2) / 2 - 1 dots).
  template <class P_t, class G_t>
  static void narrow_accumulate(const T* wdata, const StridedX& Xnb, P_t& Pp, G_t& Gp) {
    constexpr Index kChunkRows = 256;
    const Index nb = Xnb.rows(), c = Xnb.cols();
    Eigen::Map<const Vec<T>> w(wdata, nb);
    for (Index c0 = 0; c0 < nb; c0 += kChunkRows) {
      const Index m = std::min<Index>(kChunkRows, nb - c0);
      for (Index j = 0; j < c; ++j) {
        const auto xj = Xnb.col(j).segment(c0, m);
        Pp(0, j) += w.segment(c0, m).dot(xj);
        for (Index l = j; l < c; ++l) Gp(l, j) += Xnb.col(l).segment(c0, m).dot(xj);
      }
    }
  }

  // Teacher label of column `col` of the current block (sample number `sample`).
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
    if (label_.view().noise != 0.0) yv += label_.view().noise * noise_of(sample);
    return yv;
  }

  // The B x B factors of the rank-B polar step, shared by the rank-B kernel and the
  // blocked engine.  From K_ (= U^T U) and GZ_ (= Z^T Z): L_ = K^{1/2}, and Q_, Dw_ with
  // L Z^T Z L = Q diag(D) Q^T, and hvec_ = h(D) = ((1 + D)^{-1/2} - 1) / D (-> -1/2 at 0),
  // so that (I + A A^T)^{-1/2} = I + A Q h(D) Q^T A^T with A = Z L.  Small symmetric
  // eigendecompositions by cyclic Jacobi (no allocation, deterministic).  K_ and M_ are
  // overwritten.  False if D is not finite.
  bool polar_factors() {
    jacobi_eigh(K_, Q_, Dw_);
    hvec_ = Dw_.cwiseMax(0.0).cwiseSqrt();
    tmpB_.noalias() = Q_ * hvec_.asDiagonal();
    L_.noalias() = tmpB_ * Q_.transpose();
    tmpB_.noalias() = GZ_ * L_;
    M_.noalias() = L_ * tmpB_;
    jacobi_eigh(M_, Q_, Dw_);
    if (!Dw_.allFinite()) return false;
    for (Index b = 0; b < B_; ++b) {
      const double Db = std::max(Dw_[b], 0.0);
      hvec_[b] = Db > 0.0 ? std::expm1(-0.5 * std::log1p(Db)) / Db : -0.5;
    }
    return true;
  }

  // Cx, Cw of the step whose columns start at c0, from GZ_ = Z_J^T Z_J (double; labels in
  // yblk_, Grams of the samples in Xg_); log_growth = log of the bound on ||M||^2 with
  // M = I + Z_J Cw Z_J^T (E+ = M^T E M, as X_J^T W_j = Z_J^T).  False: non-finite.
  bool step_coefficients(Index c0, double& log_growth) {
    const double Nd = static_cast<double>(N_);
    if (B_ == 1) {
      // MODEL.md §2: v = g a x + (c - g a) p with a = (1 + s)^{-1/2}
      const double zz = GZ_(0, 0);
      const double xx = static_cast<double>(Xg_(c0, c0));
      const double e = zz - Nd - yblk_[c0];
      const double g = -2.0 * lr_ * e;
      const double u2 = g * g * std::max(xx - zz, 0.0);
      const double sc = u2 * zz;
      if (!std::isfinite(e) || !std::isfinite(sc)) return false;
      const double lg = -0.5 * std::log1p(sc);
      const double a = std::exp(lg);
      const double c = zz > 0.0 ? std::expm1(lg) / zz : 0.0;
      Cx_(0, 0) = static_cast<T>(g * a);
      Cw_(0, 0) = static_cast<T>(c - g * a);
      log_growth = 2.0 * std::log(std::max(1.0, std::abs(1.0 + (c - g * a) * zz)));
      return true;
    }
    // Rank-B step (see advance_batch): U = g (X_J - W_j Z_J) diag(e), g = -2 lr / B,
    // K = U^T U = g^2 diag(e) (X_J^T X_J - Z^T Z) diag(e), L = K^{1/2},
    // L Z^T Z L = Q D Q^T, h(D) = ((1 + D)^{-1/2} - 1) / D, and
    // W+ = W + U Z^T + (W Z L Q + U H) h(D) (L Q)^T Z^T,  H = Z^T Z L Q, which is
    //   Cx = g diag(e) (I + H h(D) (LQ)^T),   Cw = LQ h(D) (LQ)^T - Cx.
    GX_ = Xg_.block(c0, c0, B_, B_).template cast<double>();
    const double g = -2.0 * lr_ / static_cast<double>(B_);
    bool ok = true;
    for (Index b = 0; b < B_; ++b) {
      e_[b] = GZ_(b, b) - Nd - yblk_[c0 + b];
      ok = ok && std::isfinite(e_[b]);
    }
    if (!ok) return false;
    for (Index i = 0; i < B_; ++i)
      for (Index j = 0; j < B_; ++j) K_(i, j) = (g * g) * e_[i] * e_[j] * (GX_(i, j) - GZ_(i, j));
    if (!K_.allFinite() || !polar_factors()) return false;
    tmpB_.noalias() = L_ * Q_;          // LQ
    M_.noalias() = GZ_ * tmpB_;         // H
    L_.noalias() = tmpB_ * hvec_.asDiagonal();  // LQ h
    K_.noalias() = M_ * hvec_.asDiagonal();     // H h
    M_.noalias() = K_ * tmpB_.transpose();      // H h (LQ)^T
    M_.diagonal().array() += 1.0;
    for (Index i = 0; i < B_; ++i) M_.row(i) *= g * e_[i];  // Cx
    K_.noalias() = L_ * tmpB_.transpose();      // LQ h (LQ)^T
    K_ -= M_;                                   // Cw
    Cx_ = M_.template cast<T>();
    Cw_ = K_.template cast<T>();
    // ||Z Cw Z^T|| <= ||Z||_F ||Cw Z^T||_F,  ||Cw Z^T||_F^2 = tr(Cw GZ Cw^T)
    tmpB_.noalias() = K_ * GZ_;
    const double phi2 = std::max(0.0, (tmpB_.cwiseProduct(K_)).sum());
    log_growth = 2.0 * std::log1p(std::sqrt(std::max(0.0, GZ_.trace()) * phi2));
    return std::isfinite(log_growth);
  }

  // ------------------------------------------------------------ per-step small work
  // The O(N c) part of a step of the blocked engine, in two passes over row parts of the
  // N x c matrices (c0 = columns before step j, J = its B columns):
  //   z pass:  Z_J = P_J + Zm Tmp,  GZ = Z_J^T Z_J,  Q = Zm^T Z_J   (one read of Zm)
  //   b pass:  Bm_J = Z_J Cw + Bm Sx,  Tmp' = Bm^T P_{J+1}          (one read of Bm)
  // with Sx = Zm^T Z_J Cw = Q Cw and Tmp' completed by Am^T G (c x c).  Each part writes
  // its own partial GZ, Q and Tmp', summed in part order, so that the result does not
  // depend on the thread count.  The parts are fixed by N alone.
  static constexpr Index kSmallParallel = Index(1) << 16;  // N * cap above which parts run threaded
  static Index small_part_rows(Index N) {
    const Index target = (N + 31) / 32;  // at most 32 parts
    return std::max<Index>(64, (target + 7) / 8 * 8);
  }
  template <class F>
  void for_parts(F&& f) {
    slabs::for_each(n_parts_, small_threads_ok_ ? threads_ : Index(1), f);
  }

  void small_step_z(Index c0) {
    for_parts([&](Index p) {
      const Index n0 = p * part_rows_, nb = std::min<Index>(part_rows_, N_ - n0);
      auto zj = Zm_.block(n0, c0, nb, B_);
      zj = Pm_.block(n0, c0, nb, B_);
      if (c0 > 0) {
        auto Zp = Zm_.block(n0, 0, nb, c0);
        zj.noalias() += Zp * Tmp_.topRows(c0);
        Qpart_.block(0, p * B_, c0, B_).noalias() = Zp.transpose() * zj;
      }
      auto gz = GZpart_.middleCols(p * B_, B_);
      if constexpr (std::is_same_v<T, double>) {
        gz.noalias() = zj.transpose() * zj;
      } else {
        for (Index a = 0; a < B_; ++a)
          for (Index b = 0; b <= a; ++b) {
            double acc = 0.0;
            for (Index i = 0; i < nb; ++i) acc += static_cast<double>(zj(i, a)) * static_cast<double>(zj(i, b));
            gz(a, b) = gz(b, a) = acc;
          }
      }
    });
    GZ_ = GZpart_.leftCols(B_);
    for (Index p = 1; p < n_parts_; ++p) GZ_ += GZpart_.middleCols(p * B_, B_);
    if (c0 > 0) {
      auto Q = Sx_.topRows(c0);  // holds Q until small_step_b turns it into Sx
      Q = Qpart_.leftCols(B_).topRows(c0);
      for (Index p = 1; p < n_parts_; ++p) Q += Qpart_.block(0, p * B_, c0, B_);
    }
  }

  void small_step_b(Index c0, bool next) {
    if (c0 > 0) {
      Tmp_.topRows(c0).noalias() = Sx_.topRows(c0) * Cw_;  // Sx = Q Cw
      Sx_.topRows(c0) = Tmp_.topRows(c0);
      Am_.block(0, c0, c0, B_).noalias() = Am_.topLeftCorner(c0, c0) * Sx_.topRows(c0);
    }
    Am_.block(c0, c0, B_, B_) = Cx_;
    Am_.block(c0 + B_, c0, cap_ - c0 - B_, B_).setZero();
    const Index c1 = c0 + B_;
    for_parts([&](Index p) {
      const Index n0 = p * part_rows_, nb = std::min<Index>(part_rows_, N_ - n0);
      auto bj = Bm_.block(n0, c0, nb, B_);
      bj.noalias() = Zm_.block(n0, c0, nb, B_) * Cw_;
      if (c0 > 0) bj.noalias() += Bm_.block(n0, 0, nb, c0) * Sx_.topRows(c0);
      if (next) Tpart_.block(0, p * B_, c1, B_).noalias() = Bm_.block(n0, 0, nb, c1).transpose() * Pm_.block(n0, c1, nb, B_);
    });
    if (!next) return;
    auto Tm = Tmp_.topRows(c1);
    Tm = Tpart_.leftCols(B_).topRows(c1);
    for (Index p = 1; p < n_parts_; ++p) Tm += Tpart_.block(0, p * B_, c1, B_);
    Tm.noalias() += Am_.topLeftCorner(c1, c1).transpose() * Xg_.block(0, c1, c1, B_);
  }

  AdvanceResult advance_blocked(T* W, std::int64_t steps, const T* X, const T* y) {
    AdvanceResult res;
    if (steps <= 0) return res;
    MapW Wm(W, d_, N_);
    const std::int64_t K = K_blk_;
    const bool draw = (X == nullptr);
    const bool need_tx = (y == nullptr) && label_.view().directions != nullptr;
    auto block_len = [&](std::int64_t t_abs, std::int64_t left) {
      return static_cast<Index>(std::min<std::int64_t>(K - (t_abs % K), left));
    };
    // samples of the step `off` steps into this call
    auto xptr = [&](std::int64_t off) -> const T* { return draw ? Xbuf_.data() : X + off * B_ * d_; };
    std::int64_t done = 0;
    Index k = block_len(state_.t, steps);
    const T* Xc = xptr(0);
    pass(Wm, nullptr, 0, Xc, k * B_, state_.t, draw, need_tx);
    while (done < steps) {
      const Index c = k * B_;
      for (Index col = 0; col < c; ++col)
        yblk_[col] = (y != nullptr) ? static_cast<double>(y[done * B_ + col])
                                    : column_label(Xc, col, state_.t * B_ + col, need_tx);
      Index m = 0;  // steps of this block carried out
      bool failed = false, probe = false;
      for (Index j = 0; j < k; ++j) {
        const Index c0 = j * B_;
        small_step_z(c0);  // Z_J into Zm_, GZ_ = Z_J^T Z_J, Q = Zm^T Z_J
        double log_growth = 0.0;
        if (!step_coefficients(c0, log_growth)) {
          failed = true;
          break;
        }
        small_step_b(c0, j + 1 < k);  // Bm_J, Am_J; Tmp for the next step
        m = j + 1;
        ++state_.t;
        ++state_.since;
        if (policy_.enabled) {
          state_.logbound += log_growth;
          if (ortho_urgent()) {  // otherwise a due probe waits for the end of the block
            probe = true;
            break;
          }
        }
      }
      done += m;
      res.steps_done += m;
      // Next block: draw its samples and fuse its P into the update pass, unless this
      // block was cut short (then they are drawn and P is formed from the new W).
      const bool full = (m == k) && !failed && !probe;
      const bool more = done < steps && !failed;
      const Index kn = more ? block_len(state_.t, steps - done) : 0;
      // Factored form: at absolute multiples of the formation period W is formed as a call
      // boundary forms it, and the next block's P then comes from W, not fused into this
      // pass: so calls ending on these multiples keep the bits of one call
      // A segment (up to the call's end or the next period multiple) is started in the
      // factored form only if it spans at least kFactMinSegment N steps: its formation
      // (2 d N^2 flops) must be paid back by the 2 d N - 10 N^2 saved per step.  The
      // segments, and so the bits, are those of one call for calls split at multiples.
      const std::int64_t t0 = state_.t - m;
      const std::int64_t seg = std::min<std::int64_t>(steps - (done - m), fact_period_ - t0 % fact_period_);
      const bool use = fact_ && !fact_skip_ && (fact_live_ || seg >= kFactMinSegment * N_);
      const bool sched = use && m > 0 && state_.t % fact_period_ == 0;
      const T* Xn = (more && full && !sched) ? xptr(done) : nullptr;
      // this block in the factored form, unless skipping or I + S is unusable: then W is
      // formed first and the block applied unfactored
      const bool factor = use && m > 0 && factor_block(m * B_);
      if (fact_ && !factor) materialize(W);
      const bool eligible = fact_;
      fact_ = factor;  // selects the pass's update
      if (m > 0 || Xn != nullptr) pass(Wm, m > 0 ? Xc : nullptr, m * B_, Xn, kn * B_, state_.t, draw, need_tx);
      fact_ = eligible;
      const bool form = factor && (fact_ill_ || sched);  // W must be formed after this pass
      // M left the bounds within one block (large steps, where the W part of a step
      // rescales W strongly): unfactored until the next multiple of the period, and
      // again, each time twice as long (up to 64 periods), while it recurs
      if (form && fact_ill_ && fact_blocks_ == 1) {
        fact_skip_ = true;
        fact_skip_span_ = fact_period_ << fact_streak_;
        fact_streak_ = std::min<Index>(fact_streak_ + 1, 6);
      } else if (form && !fact_ill_) {
        fact_streak_ = 0;
      }
      if (fact_skip_ && state_.t % fact_skip_span_ == 0) fact_skip_ = false;
      if (failed || !more) materialize(W);
      if (failed) {
        res.finite = false;
        return res;
      }
      if (form) materialize(W);  // P of the next block stays valid: W^T X = M^T What^T X
      bool recompute = (!full || sched) && more;
      // A probe leaves W as it is (the next block's P stays valid); a correction does not.
      // After a formation (at a period multiple, or when M left its bounds) W is probed:
      // the rounding carried by the factored form is not in the growth bound.
      if (policy_.enabled && (ortho_wanted() || form)) {
        if (ortho_act(W, form)) recompute = more;  // forms W if it measures or corrects
      }
      if (!more) break;
      if (recompute) {
        Xn = xptr(done);
        pass(Wm, nullptr, 0, Xn, kn * B_, state_.t, draw, need_tx);
      }
      Xc = Xn;
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
      // L = K^{1/2};  M = L Z^T Z L = Q D Q^T;  A = Z L,  AQ = A Q;
      // (I + A A^T)^{-1/2} = I + AQ h(D) (AQ)^T  (polar_factors)
      if (!polar_factors()) {
        res.finite = false;
        return res;
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

  Index d_, N_, B_, K_blk_, threads_;
  double lr_;
  std::uint64_t seed_;
  OrthoPolicy policy_;
  KernelState state_;
  Labeler<T> label_;
  rng::PositionTable table_;
  Vec<T> xbuf_[2];
  // blocked engine
  Index cap_ = 0, rb_ = 0, slab_rows_ = 0, n_slabs_ = 0;
  std::vector<T> Xbuf_;
  ColMat Pm_, Xg_, TX_, Ppart_, Gpart_, TXpart_, Ywork_, Bm_, Am_, Zm_, Tmp_, Sx_, Cx_, Cw_, Qpart_, Tpart_;
  Dmat GZpart_;
  Index part_rows_ = 0, n_parts_ = 1;
  bool small_threads_ok_ = false;
  Mat Zt_;
  bool direct_ = false;
  Mat BmR_, AmR_;  // row-major copies of Bm, Am for the direct products
  pgemm::PackedRhs<T> packBm_;
  pgemm::PackedLhs<T> packZm_;
  bool packed_ = false;
  // factored form (factor_block)
  bool fact_allowed_ = true, fact_packed_ = false, fact_ = false, fact_live_ = false, fact_ill_ = false;
  Index fact_period_ = 1;
  double fact_err_ = 0.0;
  Index fact_blocks_ = 0;     // blocks since W was formed
  bool fact_skip_ = false;    // unfactored until the next multiple of fact_skip_span_
  Index fact_skip_span_ = 1, fact_streak_ = 0;
  std::int64_t n_formed_ = 0;  // bound on the rounding of D carried into W^T W - I since W was formed
  ColMat Mf_, Ei_, MB_, Hq_, Rt_, Pt_, Sf_;  // D = M - I, E = M^{-1} - I
  Vec<T> fact_vd_, fact_ve_, fact_u_;       // power iterations for ||D||_2, ||E||_2
  Dmat Hd_, Sd_;
  ColMat Wmat_;
  Index form_rows_ = 0;  // rows per piece of a formation (materialize)
  pgemm::PackedLhs<T> packD_;
  Vec<T> narrow_v_;  // width 1: Am Zm^T
  T narrow_a_ = T(0);  // width 1: Bm Zm^T
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
  Dmat WtWd_, blkd_, blkd2_;
  Dmat probe_r_, probe_acc_, probe_v_, probe_mr_;
  Eigen::SelfAdjointEigenSolver<Dmat> big_eig_;
};

}  // namespace quadfast
