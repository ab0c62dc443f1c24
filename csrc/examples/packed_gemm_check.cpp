// The products of packed_gemm.hpp against the Eigen expressions they replace in the
// blocked engines' pass over W, bit for bit, over shapes that are and are not multiples
// of the micro-kernel's panel sizes, in float64 and float32:
//   Y = W_b Bm          (W_b row-major nb x N, Bm column-major N x c; PackedRhs)
//   W_b += Y Zm^T       (as W_b^T += Zm Y^T; PackedLhs)
// Prints one line per case: "<dtype> nb N c c_used identical=<0|1> close=<0|1> ok=<0|1>";
// a case is ok when identical (all c columns used) or close (fewer); exit status 0 iff all are.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "quadfast/packed_gemm.hpp"

template <class T>
bool check(Eigen::Index nb, Eigen::Index N, Eigen::Index c, Eigen::Index c_used, unsigned seed) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  auto fill = [&](auto& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(nd(gen));
  };
  RowMat W(nb, N);
  ColMat Bm(N, c), Zm(N, c);
  fill(W);
  fill(Bm);
  fill(Zm);
  // Eigen's expressions, as the engine wrote them
  ColMat Y0 = ColMat::Zero(nb, c);
  Y0.leftCols(c_used).noalias() = W * Bm.leftCols(c_used);
  RowMat Zt = Zm.transpose();
  RowMat W0 = W;
  W0.noalias() += Y0.leftCols(c_used) * Zt.topRows(c_used);
  // packed once (set up for the full c), applied to the first c_used columns
  quadfast::pgemm::PackedRhs<T> pb;
  quadfast::pgemm::PackedLhs<T> pz;
  pb.setup(nb, N, c);
  pz.setup(N, c, nb);
  pb.pack(Bm.data(), N, c_used, N);
  pz.pack(Zm.data(), N, N, c_used);
  ColMat Y1 = ColMat::Zero(nb, c);
  pb.template gemm_add<Eigen::RowMajor>(Y1.data(), nb, W.data(), N, nb);
  RowMat W1 = W;
  pz.template gemm_add<Eigen::RowMajor>(W1.data(), N, Y1.data(), nb, nb);
  const bool same = std::memcmp(Y0.data(), Y1.data(), sizeof(T) * Y0.size()) == 0 &&
                    std::memcmp(W0.data(), W1.data(), sizeof(T) * W0.size()) == 0;
  // relative to the size of the terms: sqrt(depth) sums of products of unit normals
  const double eps = sizeof(T) == 8 ? 1e-13 : 1e-5;
  const double dy = (Y0 - Y1).cwiseAbs().maxCoeff() / std::sqrt(static_cast<double>(N));
  const double dw = (W0 - W1).cwiseAbs().maxCoeff() / (std::sqrt(static_cast<double>(c_used * N)));
  const bool close = dy < eps && dw < eps;
  // With all the packed columns used, the blocking is Eigen's own: the same bits.  With
  // fewer (a block cut short), the depth blocking of the packed Zm may differ from the one
  // Eigen would choose for the shorter depth: the same sums, grouped differently.
  const bool ok = c_used == c ? same : close;
  std::printf("%s %ld %ld %ld %ld identical=%d close=%d ok=%d\n", sizeof(T) == 8 ? "float64" : "float32",
              static_cast<long>(nb), static_cast<long>(N), static_cast<long>(c), static_cast<long>(c_used), same ? 1 : 0,
              close ? 1 : 0, ok ? 1 : 0);
  return ok;
}

int main() {
  const long shapes[][4] = {{64, 1024, 192, 192}, {64, 1024, 192, 100}, {1024, 64, 32, 32}, {50, 100, 37, 37},
                            {7, 33, 5, 5},        {128, 256, 128, 128}, {64, 2048, 96, 96},  {13, 600, 300, 257}};
  bool ok = true;
  unsigned seed = 1;
  for (const auto& s : shapes) {
    ok = check<double>(s[0], s[1], s[2], s[3], seed++) && ok;
    ok = check<float>(s[0], s[1], s[2], s[3], seed++) && ok;
  }
  return ok ? 0 : 1;
}
