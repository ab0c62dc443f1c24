// The products of packed_gemm.hpp against the Eigen expressions they replace in the
// blocked engines' pass over W, bit for bit, over shapes that are and are not multiples
// of the micro-kernel's panel sizes, in float64 and float32:
//   Y = W_b Bm          (W_b row-major nb x N, Bm column-major N x c; PackedRhs)
//   W_b += Y Zm^T       (as W_b^T += Zm Y^T; PackedLhs)
//   P += W_b^T X_b      (pgemm::gemm_add, Eigen's product loop around the micro-kernel)
// and the micro-kernel (pgemm::micro::gebp: AVX-512 register tiles where the build has
// AVX-512, else Eigen's gebp) against Eigen's gebp on the same packed panels, over row
// counts that leave every kind of lhs panel (3, 2, 1 packets, half, quarter, scalar rows)
// and column counts that leave 8-, 4- and 1-column rhs panels.
// Prints one line per case: "<dtype> nb N c c_used identical=<0|1> close=<0|1> ok=<0|1>"
// for the packed products (ok when identical with all c columns used, or close with fewer),
// then "gemm <dtype> rows depth cols identical=<0|1>" and
// "gebp <dtype> rows depth cols identical=<0|1>"; exit status 0 iff all are ok.
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

// C += A B through pgemm::gemm_add against the Eigen expression, A = W_b^T (the transpose
// of a row-major block, i.e. column-major) and B a column-major block with a larger
// leading dimension, as in the engines' P += W_b^T X_b.
template <class T>
bool check_gemm(Eigen::Index rows, Eigen::Index depth, Eigen::Index cols, unsigned seed) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  auto fill = [&](auto& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(nd(gen));
  };
  RowMat Wb(depth, rows);
  ColMat X(depth + 5, cols), C0(rows, cols);
  fill(Wb);
  fill(X);
  fill(C0);
  ColMat C1 = C0;
  C0.noalias() += Wb.transpose() * X.topRows(depth);
  quadfast::pgemm::gemm_add<T, Eigen::ColMajor, Eigen::ColMajor>(C1.data(), rows, Wb.data(), rows, X.data(),
                                                                  depth + 5, rows, depth, cols);
  const bool same = std::memcmp(C0.data(), C1.data(), sizeof(T) * C0.size()) == 0;
  std::printf("gemm %s %ld %ld %ld identical=%d\n", sizeof(T) == 8 ? "float64" : "float32", static_cast<long>(rows),
              static_cast<long>(depth), static_cast<long>(cols), same ? 1 : 0);
  return same;
}

// The micro-kernel against Eigen's gebp on the same packed panels (one panel each).
template <class T>
bool check_gebp(Eigen::Index rows, Eigen::Index depth, Eigen::Index cols, unsigned seed) {
  namespace pg = quadfast::pgemm;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  auto fill = [&](auto& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(nd(gen));
  };
  ColMat A(rows, depth), B(depth, cols), C0(rows, cols);
  fill(A);
  fill(B);
  fill(C0);
  ColMat C1 = C0;
  Eigen::Matrix<T, Eigen::Dynamic, 1> pa(pg::padded(rows * depth) + 16), pb(pg::padded(depth * cols) + 16);
  pg::PackLhs<T, Eigen::ColMajor>()(pa.data(), pg::ConstMapper<T, Eigen::ColMajor>(A.data(), rows), depth, rows);
  pg::PackRhs<T, Eigen::ColMajor>()(pb.data(), pg::ConstMapper<T, Eigen::ColMajor>(B.data(), depth), depth, cols);
  pg::Gebp<T>()(pg::ResMapper<T>(C0.data(), rows), pa.data(), pb.data(), rows, depth, cols, T(1));
  pg::micro::gebp<T>(pg::ResMapper<T>(C1.data(), rows), pa.data(), pb.data(), rows, depth, cols);
  const bool same = std::memcmp(C0.data(), C1.data(), sizeof(T) * C0.size()) == 0;
  std::printf("gebp %s %ld %ld %ld identical=%d\n", sizeof(T) == 8 ? "float64" : "float32", static_cast<long>(rows),
              static_cast<long>(depth), static_cast<long>(cols), same ? 1 : 0);
  return same;
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
  // P-like products: the engines' shapes, remainders, and shapes Eigen sends elsewhere
  // (matrix-vector, coefficient-based)
  const long gshapes[][3] = {{1024, 64, 192}, {64, 64, 32}, {1000, 37, 45}, {33, 7, 3}, {5, 4, 3}, {100, 64, 1}};
  for (const auto& g : gshapes) {
    ok = check_gemm<double>(g[0], g[1], g[2], seed++) && ok;
    ok = check_gemm<float>(g[0], g[1], g[2], seed++) && ok;
  }
  // every kind of lhs panel (rows 24 k + 0, 8, 16, 4, 1, ... in float64; 48 k + ... in
  // float32) and rhs panel (cols 8 k, 8 k + 4, + 1, + 5, + 7), depths below and above
  // the 8-step peeling of Eigen's loops
  const long bshapes[][3] = {{72, 64, 16}, {64, 33, 12}, {56, 7, 13}, {93, 100, 21}, {48, 256, 192},
                             {112, 5, 9}, {21, 40, 8},  {3, 9, 4},    {1024, 192, 64}, {200, 17, 23}};
  for (const auto& b : bshapes) {
    ok = check_gebp<double>(b[0], b[1], b[2], seed++) && ok;
    ok = check_gebp<float>(b[0], b[1], b[2], seed++) && ok;
  }
  return ok ? 0 : 1;
}
