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
// The products on row-major operands (rowgemm.hpp: AVX-512 register tiles of 6 rows x 4
// vectors and narrower, masked column tails; a scalar loop elsewhere) against a float64
// reference, and row by row against all rows at once, bit for bit.
// Prints one line per case: "<dtype> nb N c c_used identical=<0|1> close=<0|1> ok=<0|1>"
// for the packed products (ok when identical with all c columns used, or close with fewer),
// then "gemm <dtype> rows depth cols identical=<0|1>" and
// "gebp <dtype> rows depth cols identical=<0|1>" and
// "rowgemm <dtype> m n K1 K2 close=<0|1> split_identical=<0|1>" and
// "rowgram <dtype> m n close=<0|1> sub_identical=<0|1>" and
// "formation <dtype> N nb identical=<0|1> close=<0|1>"; exit status 0 iff all are ok.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "quadfast/packed_gemm.hpp"
#include "quadfast/rowgemm.hpp"

// Fills matrices and vectors with standard normals from its own generator.
template <class T>
struct Filler {
  std::mt19937_64 gen;
  std::normal_distribution<double> nd{};
  template <class M>
  void operator()(M& m) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(m.size()); ++i) m.data()[i] = static_cast<T>(nd(gen));
  }
};

template <class T>
bool check(Eigen::Index nb, Eigen::Index N, Eigen::Index c, Eigen::Index c_used, unsigned seed) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  Filler<T> fill{std::mt19937_64(seed)};
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
  Filler<T> fill{std::mt19937_64(seed)};
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

// The formation's product (StiefelKernel::materialize): D^T packed once as the lhs from
// the column-major D read as a row-major D^T (Packed::pack<RowMajor>), times W_b^T (the
// row-major row block as it lies), against Eigen's `C += D^T W_b^T`, bit for bit; and
// column r of the result against row r of W_b D in float64.
template <class T>
bool check_formation(Eigen::Index N, Eigen::Index nb, unsigned seed) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  Filler<T> fill{std::mt19937_64(seed)};
  ColMat D(N, N);
  RowMat W(nb, N);
  fill(D);
  fill(W);
  ColMat C0 = ColMat::Zero(N, nb);
  C0.noalias() += D.transpose() * W.transpose();
  quadfast::pgemm::PackedLhs<T> pd;
  pd.setup(N, N, nb);
  pd.template pack<Eigen::RowMajor>(D.data(), N, N, N);
  ColMat C1 = ColMat::Zero(N, nb);
  pd.template gemm_add<Eigen::ColMajor>(C1.data(), N, W.data(), N, nb);
  const bool same = std::memcmp(C0.data(), C1.data(), sizeof(T) * C0.size()) == 0;
  const Eigen::MatrixXd ref = W.template cast<double>() * D.template cast<double>();  // nb x N
  const double err = (C1.transpose().template cast<double>() - ref).cwiseAbs().maxCoeff() / std::sqrt(static_cast<double>(N));
  const bool close = err < (sizeof(T) == 8 ? 1e-13 : 1e-5);
  std::printf("formation %s %ld %ld identical=%d close=%d\n", sizeof(T) == 8 ? "float64" : "float32",
              static_cast<long>(N), static_cast<long>(nb), same ? 1 : 0, close ? 1 : 0);
  return same && close;
}

// The micro-kernel against Eigen's gebp on the same packed panels (one panel each).
template <class T>
bool check_gebp(Eigen::Index rows, Eigen::Index depth, Eigen::Index cols, unsigned seed) {
  namespace pg = quadfast::pgemm;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  Filler<T> fill{std::mt19937_64(seed)};
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

// C (m x n, row-major, ldc = n + 3) += A1 B1 + A2 B2 with A1 row-major (m x K1), A2
// column-major with a leading dimension larger than m (as a block of the samples X), B1
// and B2 row-major with padded rows (K2 = 0: one segment); then C = A1 B1 (no
// accumulation), and C = A1 B1 + A2 B2.  Close: within 1e-13 (float64) or 2e-6 (float32) of a float64
// reference, relative to sqrt(K1 + K2).  Split: rows computed one call per row give the
// same bits as one call for all rows.
template <class T>
bool check_rowgemm(Eigen::Index m, Eigen::Index n, Eigen::Index K1, Eigen::Index K2, unsigned seed) {
  namespace rg = quadfast::rowgemm;
  using Index = Eigen::Index;
  Filler<T> fill{std::mt19937_64(seed)};
  const Index ldc = n + 3, lda2 = m + 11, ldb = n + 5;
  std::vector<T> A1(m * K1), A2(lda2 * std::max<Index>(K2, 1)), B1(K1 * ldb), B2(std::max<Index>(K2, 1) * ldb),
      C0(m * ldc);
  for (auto* v : {&A1, &A2, &B1, &B2, &C0}) fill(*v);
  const rg::Seg<T> seg[2] = {{A1.data(), K1, 1, B1.data(), ldb, K1}, {A2.data(), 1, lda2, B2.data(), ldb, K2}};
  const int nseg = K2 > 0 ? 2 : 1;
  std::vector<T> C1 = C0, C2 = C0, C3 = C0;
  rg::gemm<T>(C1.data(), ldc, m, n, seg, nseg, true);
  for (Index i = 0; i < m; ++i) {  // row by row
    rg::Seg<T> one[2] = {seg[0], seg[1]};
    one[0].a = A1.data() + i * K1;
    one[1].a = A2.data() + i;
    rg::gemm<T>(C2.data() + i * ldc, ldc, 1, n, one, nseg, true);
  }
  rg::gemm<T>(C3.data(), ldc, m, n, seg, 1, false);
  std::vector<T> C4 = C0;  // both segments, no accumulation
  rg::gemm<T>(C4.data(), ldc, m, n, seg, nseg, false);
  double err = 0.0, err3 = 0.0, err4 = 0.0;
  bool untouched = true;  // the padding of C's rows is left alone
  for (Index i = 0; i < m; ++i) {
    for (Index j = 0; j < n; ++j) {
      double ref = 0.0, ref3 = 0.0;
      for (Index k = 0; k < K1; ++k) ref3 += static_cast<double>(A1[i * K1 + k]) * static_cast<double>(B1[k * ldb + j]);
      ref = ref3;
      for (Index k = 0; k < K2; ++k) ref += static_cast<double>(A2[i + k * lda2]) * static_cast<double>(B2[k * ldb + j]);
      err = std::max(err, std::abs(static_cast<double>(C1[i * ldc + j]) - (static_cast<double>(C0[i * ldc + j]) + ref)));
      err3 = std::max(err3, std::abs(static_cast<double>(C3[i * ldc + j]) - ref3));
      err4 = std::max(err4, std::abs(static_cast<double>(C4[i * ldc + j]) - ref));
    }
    for (Index j = n; j < ldc; ++j)
      untouched = untouched && C1[i * ldc + j] == C0[i * ldc + j] && C3[i * ldc + j] == C0[i * ldc + j] &&
                  C4[i * ldc + j] == C0[i * ldc + j];
  }
  const double tol = (sizeof(T) == 8 ? 1e-13 : 2e-6) * std::sqrt(static_cast<double>(K1 + K2) + 1.0);
  const bool close = err < tol && err3 < tol && err4 < tol && untouched;
  const bool split = std::memcmp(C1.data(), C2.data(), sizeof(T) * C1.size()) == 0;
  std::printf("rowgemm %s %ld %ld %ld %ld close=%d split_identical=%d\n", sizeof(T) == 8 ? "float64" : "float32",
              static_cast<long>(m), static_cast<long>(n), static_cast<long>(K1), static_cast<long>(K2), close ? 1 : 0,
              split ? 1 : 0);
  return close && split;
}

// The lower triangle of G += X^T X (rowgemm::gram_lower_add, X column-major m x n with
// leading dimension m + 3) against a float64 reference, relative to the sum of the
// terms' sizes; G's strict upper triangle and its
// padding rows are left alone; and the columns [3, n) alone (other tiles, other tile
// sizes) give the same bits for their pairs as all n columns.
template <class T>
bool check_gram(Eigen::Index m, Eigen::Index n, unsigned seed) {
  namespace rg = quadfast::rowgemm;
  using Index = Eigen::Index;
  Filler<T> fill{std::mt19937_64(seed)};
  const Index ldx = m + 3, ldg = n + 2;
  std::vector<T> X(ldx * n), G0(ldg * n);
  fill(X);
  fill(G0);
  std::vector<T> G1 = G0, G2 = G0;
  rg::gram_lower_add<T>(G1.data(), ldg, X.data(), ldx, m, n);
  const Index o = std::min<Index>(3, n);
  rg::gram_lower_add<T>(G2.data() + o * ldg + o, ldg, X.data() + o * ldx, ldx, m, n - o);
  double err = 0.0;
  bool untouched = true, sub = true;
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < ldg; ++i) {
      const T g = G1[j * ldg + i];
      if (i >= j && i < n) {
        double ref = static_cast<double>(G0[j * ldg + i]), size = std::abs(ref);
        for (Index k = 0; k < m; ++k) {
          const double t = static_cast<double>(X[i * ldx + k]) * static_cast<double>(X[j * ldx + k]);
          ref += t;
          size += std::abs(t);
        }
        err = std::max(err, std::abs(static_cast<double>(g) - ref) / size);
        if (j >= o) sub = sub && std::memcmp(&g, &G2[j * ldg + i], sizeof(T)) == 0;
      } else {
        untouched = untouched && g == G0[j * ldg + i] && G2[j * ldg + i] == G0[j * ldg + i];
      }
    }
  // relative to the sum of the terms' sizes: 4 eps sqrt(m) (rounding errors of random sign)
  const double tol = 4.0 * static_cast<double>(std::numeric_limits<T>::epsilon()) * std::sqrt(static_cast<double>(m) + 1.0);
  const bool close = err < tol && untouched;
  std::printf("rowgram %s %ld %ld close=%d sub_identical=%d\n", sizeof(T) == 8 ? "float64" : "float32",
              static_cast<long>(m), static_cast<long>(n), close ? 1 : 0, sub ? 1 : 0);
  return close && sub;
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
  // rows that leave every tile height, widths that leave every panel and masked tail
  // (masked tails of 1 to 4 vectors: n = 30, 20 in float64 and 60, 40 in float32 leave 4
  // and 3 vectors, n = 3, 47, 100, 130 fewer)
  const long rshapes[][4] = {{64, 64, 64, 32}, {64, 32, 64, 0}, {13, 100, 9, 5}, {7, 3, 17, 0},
                             {50, 200, 33, 0}, {1, 130, 8, 8}, {29, 47, 1, 2}, {64, 128, 32, 0},
                             {13, 30, 9, 5},   {9, 20, 7, 0},   {11, 60, 8, 3}, {7, 40, 5, 2}};
  for (const auto& r : rshapes) {
    ok = check_rowgemm<double>(r[0], r[1], r[2], r[3], seed++) && ok;
    ok = check_rowgemm<float>(r[0], r[1], r[2], r[3], seed++) && ok;
  }
  // Gram sums: row counts with and without a masked tail (L = 8 and 16), column counts
  // leaving every tile size (4 k + 0..3) and the engines' block widths
  const long gram[][2] = {{512, 32}, {1024, 16}, {37, 5}, {200, 23}, {8, 1}, {1000, 96}, {16, 2}, {333, 7}};
  for (const auto& g : gram) {
    ok = check_gram<double>(g[0], g[1], seed++) && ok;
    ok = check_gram<float>(g[0], g[1], seed++) && ok;
  }
  // the formation's shapes: N = 64 in 128-row pieces, N = 1024 in 64-row pieces, remainders
  const long fshapes[][2] = {{64, 128}, {64, 37}, {1024, 64}, {160, 128}, {33, 5}};
  for (const auto& f : fshapes) {
    ok = check_formation<double>(f[0], f[1], seed++) && ok;
    ok = check_formation<float>(f[0], f[1], seed++) && ok;
  }
  return ok ? 0 : 1;
}
