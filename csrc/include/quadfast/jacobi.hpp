// Cyclic Jacobi eigendecomposition of a small symmetric matrix, in place and without
// allocation: A = V diag(w) V^T.  Used for the B x B matrices of the mini-batch step,
// where B is small and the step loop must not allocate.  Deterministic (fixed sweep
// order); converges quadratically; stops when the off-diagonal mass is below
// eps^2 times the matrix's squared Frobenius norm (or after 50 sweeps).
#pragma once

#include <Eigen/Dense>
#include <cmath>

namespace quadfast {

// A: n x n symmetric (overwritten: its diagonal ends as the eigenvalues), V: n x n
// (output eigenvectors as columns), w: n (output eigenvalues, unsorted).
template <class MatA, class MatV, class VecW>
inline void jacobi_eigh(MatA& A, MatV& V, VecW& w) noexcept {
  const Eigen::Index n = A.rows();
  V.setIdentity();
  const double eps = 2.220446049250313e-16;
  const double total = A.squaredNorm();
  for (int sweep = 0; sweep < 50; ++sweep) {
    double off = 0.0;
    for (Eigen::Index p = 0; p < n; ++p)
      for (Eigen::Index q = p + 1; q < n; ++q) off += 2.0 * A(p, q) * A(p, q);
    if (!(off > eps * eps * total)) break;
    for (Eigen::Index p = 0; p < n - 1; ++p) {
      for (Eigen::Index q = p + 1; q < n; ++q) {
        const double apq = A(p, q);
        if (apq == 0.0) continue;
        // rotation that zeroes A(p, q) (Golub & Van Loan, Algorithm 8.5.1)
        const double tau = (A(q, q) - A(p, p)) / (2.0 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::abs(tau) + std::sqrt(1.0 + tau * tau));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = t * c;
        for (Eigen::Index k = 0; k < n; ++k) {  // A <- A J
          const double akp = A(k, p), akq = A(k, q);
          A(k, p) = c * akp - s * akq;
          A(k, q) = s * akp + c * akq;
        }
        for (Eigen::Index k = 0; k < n; ++k) {  // A <- J^T A
          const double apk = A(p, k), aqk = A(q, k);
          A(p, k) = c * apk - s * aqk;
          A(q, k) = s * apk + c * aqk;
        }
        for (Eigen::Index k = 0; k < n; ++k) {  // V <- V J
          const double vkp = V(k, p), vkq = V(k, q);
          V(k, p) = c * vkp - s * vkq;
          V(k, q) = s * vkp + c * vkq;
        }
      }
    }
  }
  for (Eigen::Index i = 0; i < n; ++i) w[i] = A(i, i);
}

}  // namespace quadfast
