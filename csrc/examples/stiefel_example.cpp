// A simulator that uses quadfast's C++ core with no Python: Stiefel online SGD on the
// power-law teacher in the canonical frame, printing the risk
//   R = 1 - tr((G Lambda)^2) / tr(Lambda^2),  G = U U^T,  U = first r rows of W.
// Usage: stiefel_example [d] [width] [steps] [lr*d] [seed] [threads] [block] [factored] [steps per call]
// block 0 (the default) runs the blocked exact engine with quadfast's default block
// (blocking.hpp), as quadfast.StiefelSGD does; block 1 is the kernel's own default, the
// sequential one-pass kernel (at d = 16384, width 1024 about 6x slower per step).
// factored 0 turns off the factored form W = What (I + D) of the blocked engine
// (StiefelKernel::set_factored; factored 1, the default here, calls set_factored(true),
// which turns it on wherever it applies, the packed products above width 128 included:
// float64, widths >= 2, d >= 16 N, stretches of at least 2 N steps up to the call's end
// or the next multiple of formation_period()).  steps per call (default a tenth of the run)
// sets the length of each advance() call.  Prints the risk after each call, the final
// max|W^T W - I| with the counts of drift probes and corrections, and the time per step
// spent in advance().
#include <chrono>
#include <Eigen/Dense>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "quadfast/quadfast.hpp"

int main(int argc, char** argv) {
  using namespace quadfast;
  const Index d = argc > 1 ? std::atol(argv[1]) : 256;
  const Index N = argc > 2 ? std::atol(argv[2]) : 8;
  const std::int64_t steps = argc > 3 ? std::atoll(argv[3]) : 200000;
  const double lr = (argc > 4 ? std::atof(argv[4]) : 0.002) / static_cast<double>(d);
  const std::uint64_t seed = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 1;
  const Index threads = argc > 6 ? std::atol(argv[6]) : 1;
  const Index block_arg = argc > 7 ? std::atol(argv[7]) : 0;
  const bool factored = argc > 8 ? std::atol(argv[8]) != 0 : true;
  // steps per advance call (a risk line after each): default a tenth of the run
  const std::int64_t chunk_arg = argc > 9 ? std::atoll(argv[9]) : 0;
  if (d < 1 || N < 1 || N > d || steps < 0 || !(lr > 0.0) || threads < 1 || block_arg < 0 || chunk_arg < 0) {
    std::fprintf(stderr, "usage: stiefel_example [d] [width <= d] [steps] [lr*d > 0] [seed] [threads >= 1] [block >= 0] [factored 0/1] [steps per call >= 0]\n");
    return 2;
  }
  const Index block = block_arg > 0 ? block_arg : default_block(d, N, /*batch=*/1);
  const Index r = N;

  std::vector<double> coef(r);  // lambda_j ~ j^-1, ||lambda|| = 1
  double nrm = 0;
  for (Index j = 0; j < r; ++j) nrm += std::pow(j + 1.0, -2.0);
  for (Index j = 0; j < r; ++j) coef[j] = std::pow(j + 1.0, -1.0) / std::sqrt(nrm);
  TeacherView<double> teacher{d, r, coef.data(), nullptr, 0.0};

  // Haar start: Q of the QR decomposition of a Gaussian matrix (signs fixed by diag R).
  RowMat<double> G(d, N);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < N; ++j) G(i, j) = rng::normal_at(seed, 1u << 30, static_cast<std::uint64_t>(i * N + j));
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(G);
  Eigen::MatrixXd Q = qr.householderQ() * Eigen::MatrixXd::Identity(d, N);
  for (Index j = 0; j < N; ++j)
    if (qr.matrixQR()(j, j) < 0) Q.col(j) *= -1.0;
  RowMat<double> W = Q;  // row-major weights, updated in place by the kernel

  StiefelKernel<double> sgd(d, N, /*batch=*/1, lr, teacher, seed, OrthoPolicy{}, block, threads);
  sgd.set_factored(factored);
  std::printf("d %ld width %ld block %ld threads %ld factored %d\n", static_cast<long>(d), static_cast<long>(N),
              static_cast<long>(block), static_cast<long>(threads), static_cast<int>(sgd.factored()));
  auto risk = [&]() {
    Eigen::Map<const Eigen::VectorXd> lam(coef.data(), r);
    Eigen::MatrixXd U = W.topRows(r);
    Eigen::MatrixXd S = U.transpose() * lam.asDiagonal() * U;
    return 1.0 - S.squaredNorm() / lam.squaredNorm();
  };
  std::printf("step 0 risk %.6f\n", risk());
  const std::int64_t chunk = chunk_arg > 0 ? chunk_arg : (steps / 10 > 0 ? steps / 10 : 1);
  double seconds = 0.0;
  for (std::int64_t done = 0; done < steps; done += chunk) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto res = sgd.advance(W.data(), std::min(chunk, steps - done));
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!res.finite) {
      std::printf("non-finite values at step %lld\n", static_cast<long long>(sgd.state().t + 1));
      return 1;
    }
    std::printf("step %lld risk %.6f\n", static_cast<long long>(sgd.state().t), risk());
  }
  const double orth = (W.transpose() * W - Eigen::MatrixXd::Identity(N, N)).cwiseAbs().maxCoeff();
  std::printf("orth_error %.3e probes %lld corrections %lld\n", orth, static_cast<long long>(sgd.state().n_probe), static_cast<long long>(sgd.state().n_reortho));
  if (sgd.factored()) std::printf("formations %lld\n", static_cast<long long>(sgd.formations()));
  std::printf("%.2f us per step (advance only)\n", 1e6 * seconds / static_cast<double>(steps > 0 ? steps : 1));
  return 0;
}
