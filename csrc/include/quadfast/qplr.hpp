// Quadratically parameterised linear regression (MODEL.md §5, last bullet; seed 003):
// online SGD of f(x) = <x, v (.) v> and of the linear baseline f(x) = <x, w>, many
// independent replicas per call.  Pure C++17, no Python.
//
// Model (README of the feature, docs/readme_ftqplr.md):
//   x_i = sqrt(lambda_i) g_i, i = 1..M, with g_i standard normal;
//   y = sum_{i<=M} theta_i x_i + tail_sd * g_tail + noise * xi,
// where tail_sd^2 = sum_{i>M} lambda_i theta_i^2 is the exact variance of the unmodelled
// coordinates' contribution (a Gaussian independent of x_1..x_M, so one deviate samples it).
// Loss e^2 / 2 with e = f(x) - y.  One step at step size eta_t:
//   quadratic: v_i <- v_i - eta_t * 2 e x_i v_i,      e = sum_i x_i v_i^2 - y
//   linear:    w_i <- w_i - eta_lin_t * e_lin x_i,    e_lin = sum_i x_i w_i - y
// Step-size schedule (two phases): eta_t = eta for t < phase1; afterwards the remaining
// steps - phase1 steps are split into `stages` equal stages and stage l = 1..stages uses
// eta * 2^-l, that is l(t) = 1 + floor((t - phase1) * stages / (steps - phase1)).
// Samples: step t (0-based) of replica r uses deviates 0..M+1 of stream (r << 40) + t of
// the counter-based generator keyed by `seed`: 0..M-1 are g, M is g_tail, M+1 is xi.  A
// replica is one thread's sequential work, so results are bit-identical for every
// thread count, and replica r is the same whichever other replicas run beside it.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "quadfast/rng.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace quadfast {
namespace qplr {

inline constexpr int kStepBits = 40;  // stream = (replica << kStepBits) + step

struct Problem {
  std::int64_t M = 0;
  const double* sqrt_lam = nullptr;  // sqrt(lambda_i), length M
  const double* lam = nullptr;       // lambda_i, length M
  const double* theta = nullptr;     // theta*_i, length M
  double tail_sd = 0.0;              // sqrt(sum_{i>M} lambda_i theta_i^2)
  double noise = 0.0;                // sigma
};

struct Schedule {
  std::int64_t steps = 0;   // T
  std::int64_t phase1 = 0;  // steps at the constant step size
  std::int64_t stages = 1;  // geometric stages of phase II
  double lr = 0.0;          // eta of the quadratic model
  double lr_linear = 0.0;   // eta of the linear baseline
};

// 2^-l(t): 1 in phase I, then halved at the start of each of the `stages` stages.
inline double decay_factor(std::int64_t t, const Schedule& s) noexcept {
  if (t < s.phase1) return 1.0;
  const std::int64_t l = 1 + (t - s.phase1) * s.stages / (s.steps - s.phase1);
  return std::ldexp(1.0, -static_cast<int>(l));
}

// Exact excess risk E[(f(x) - f*(x))^2] of the quadratic model:
// sum_{i<=M} lambda_i (v_i^2 - theta_i)^2 + tail_sd^2.
inline double risk_quadratic(const Problem& p, const double* v) noexcept {
  double acc = 0.0;
  for (std::int64_t i = 0; i < p.M; ++i) {
    const double d = v[i] * v[i] - p.theta[i];
    acc += p.lam[i] * d * d;
  }
  return acc + p.tail_sd * p.tail_sd;
}

// Same for the linear model: sum_{i<=M} lambda_i (w_i - theta_i)^2 + tail_sd^2.
inline double risk_linear(const Problem& p, const double* w) noexcept {
  double acc = 0.0;
  for (std::int64_t i = 0; i < p.M; ++i) {
    const double d = w[i] - p.theta[i];
    acc += p.lam[i] * d * d;
  }
  return acc + p.tail_sd * p.tail_sd;
}

struct Outputs {
  double* v = nullptr;              // replicas x M, start values in, final values out
  double* w = nullptr;              // replicas x M or nullptr (no linear baseline)
  double* risk = nullptr;           // n_record x replicas
  double* risk_linear = nullptr;    // n_record x replicas (when w != nullptr)
  std::int64_t* diverged = nullptr;         // replicas: step of divergence, 0 if none
  std::int64_t* diverged_linear = nullptr;  // replicas (when w != nullptr)
};

// Pass 1 of a step: x_i = sqrt(lambda_i) g_i written over g, and the sums
// yq = sum theta_i x_i, fq = sum x_i v_i^2, fl = sum x_i w_i (if Lin).  Eight partial sums
// per quantity, combined in a fixed order: the loop vectorises (a single accumulator
// would be one latency-bound chain) and the result does not depend on the thread count.
template <bool Lin>
inline void pass1(const Problem& p, double* g, const double* v, const double* w, double& yq, double& fq,
                  double& fl) noexcept {
  constexpr int L = 8;
  double ay[L] = {}, aq[L] = {}, al[L] = {};
  const std::int64_t M = p.M;
  std::int64_t i = 0;
#if defined(__AVX2__)
  // The same operations lane by lane, the eight partial sums in two registers (GCC had
  // vectorised the loop below with shuffles and scalar adds; perf: half the kernel's time).
  {
    __m256d ay_lo = _mm256_setzero_pd(), ay_hi = ay_lo, aq_lo = ay_lo, aq_hi = ay_lo, al_lo = ay_lo, al_hi = ay_lo;
    auto half = [&](std::int64_t j, __m256d& ayh, __m256d& aqh, __m256d& alh) {
      const __m256d x = _mm256_mul_pd(_mm256_loadu_pd(p.sqrt_lam + j), _mm256_loadu_pd(g + j));
      _mm256_storeu_pd(g + j, x);
      ayh = _mm256_add_pd(ayh, _mm256_mul_pd(_mm256_loadu_pd(p.theta + j), x));
      const __m256d vj = _mm256_loadu_pd(v + j);
      aqh = _mm256_add_pd(aqh, _mm256_mul_pd(x, _mm256_mul_pd(vj, vj)));
      if (Lin) alh = _mm256_add_pd(alh, _mm256_mul_pd(x, _mm256_loadu_pd(w + j)));
    };
    for (; i + L <= M; i += L) {
      half(i, ay_lo, aq_lo, al_lo);
      half(i + 4, ay_hi, aq_hi, al_hi);
    }
    _mm256_storeu_pd(ay, ay_lo);
    _mm256_storeu_pd(ay + 4, ay_hi);
    _mm256_storeu_pd(aq, aq_lo);
    _mm256_storeu_pd(aq + 4, aq_hi);
    _mm256_storeu_pd(al, al_lo);
    _mm256_storeu_pd(al + 4, al_hi);
  }
#endif
  for (; i + L <= M; i += L) {
    for (int k = 0; k < L; ++k) {
      const double x = p.sqrt_lam[i + k] * g[i + k];
      g[i + k] = x;
      ay[k] += p.theta[i + k] * x;
      aq[k] += x * (v[i + k] * v[i + k]);
      if (Lin) al[k] += x * w[i + k];
    }
  }
  for (int k = 0; i < M; ++i, ++k) {
    const double x = p.sqrt_lam[i] * g[i];
    g[i] = x;
    ay[k] += p.theta[i] * x;
    aq[k] += x * (v[i] * v[i]);
    if (Lin) al[k] += x * w[i];
  }
  yq = ((ay[0] + ay[1]) + (ay[2] + ay[3])) + ((ay[4] + ay[5]) + (ay[6] + ay[7]));
  fq = ((aq[0] + aq[1]) + (aq[2] + aq[3])) + ((aq[4] + aq[5]) + (aq[6] + aq[7]));
  if (Lin) fl = ((al[0] + al[1]) + (al[2] + al[3])) + ((al[4] + al[5]) + (al[6] + al[7]));
}

// Runs replicas [0, replicas) of the schedule from the start values in `out.v`, `out.w`.
// `record` holds n_record strictly increasing step counts in [0, steps]; risks are stored
// after that many steps.  A replica whose error turns non-finite stops at that step
// (diverged = step number, 1-based); its later records are NaN.  `replica0` offsets the
// replica index used for the streams (to split one experiment over several calls).
inline void run(const Problem& p, const Schedule& s, std::uint64_t seed, std::int64_t replicas, std::int64_t replica0,
                const std::int64_t* record, std::int64_t n_record, const Outputs& out, int threads) {
  const std::int64_t M = p.M;
  const std::size_t n_dev = static_cast<std::size_t>(M) + 2;
  const rng::PositionTable table(n_dev);  // read-only, shared by the threads
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const bool linear = out.w != nullptr;
  (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    std::vector<double> g(n_dev + 1);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (std::int64_t r = 0; r < replicas; ++r) {
      double* v = out.v + r * M;
      double* w = linear ? out.w + r * M : nullptr;
      const std::uint64_t stream_base = static_cast<std::uint64_t>(replica0 + r) << kStepBits;
      bool alive_q = true, alive_l = linear;
      std::int64_t div_q = 0, div_l = 0;
      std::int64_t k = 0;
      auto store = [&](std::int64_t kk) {
        out.risk[kk * replicas + r] = alive_q ? risk_quadratic(p, v) : nan;
        if (linear) out.risk_linear[kk * replicas + r] = alive_l ? risk_linear(p, w) : nan;
      };
      for (std::int64_t t = 0; t < s.steps; ++t) {
        while (k < n_record && record[k] == t) store(k++);
        if (!alive_q && !alive_l) continue;  // records after divergence stay NaN
        rng::fill_normals(g.data(), n_dev, seed, stream_base + static_cast<std::uint64_t>(t), table);
        // pass 1: x_i = sqrt(lambda_i) g_i (kept in g), predictions and the label
        double yq, fq, fl = 0.0;
        if (alive_l)
          pass1<true>(p, g.data(), v, w, yq, fq, fl);
        else
          pass1<false>(p, g.data(), v, w, yq, fq, fl);
        const double y = yq + p.tail_sd * g[M] + p.noise * g[M + 1];
        const double f = decay_factor(t, s);
        double cq = 0.0, cl = 0.0;
        if (alive_q) {
          const double e = fq - y;
          if (!std::isfinite(e)) {
            alive_q = false;
            div_q = t + 1;
          } else {
            cq = 2.0 * s.lr * f * e;  // v_i -= eta_t 2 e x_i v_i
          }
        }
        if (alive_l) {
          const double e = fl - y;
          if (!std::isfinite(e)) {
            alive_l = false;
            div_l = t + 1;
          } else {
            cl = s.lr_linear * f * e;  // w_i -= eta_lin_t e x_i
          }
        }
        // pass 2 (element-wise, vectorised)
        const double* x = g.data();
        if (alive_q && alive_l) {
          for (std::int64_t i = 0; i < M; ++i) {
            v[i] -= cq * x[i] * v[i];
            w[i] -= cl * x[i];
          }
        } else if (alive_q) {
          for (std::int64_t i = 0; i < M; ++i) v[i] -= cq * x[i] * v[i];
        } else if (alive_l) {
          for (std::int64_t i = 0; i < M; ++i) w[i] -= cl * x[i];
        }
      }
      while (k < n_record && record[k] == s.steps) store(k++);
      out.diverged[r] = div_q;
      if (linear) out.diverged_linear[r] = div_l;
    }
  }
}

}  // namespace qplr
}  // namespace quadfast
