// Phase II of the stage-wise algorithm (seed 002): fresh samples for the least-squares
// fit of the radial part, streamed in chunks so that the n x d sample matrix never exists.
// Pure C++17 + Eigen, no Python.
//
// Sample s (s = 0 .. n-1) is stream stream0 + s of the counter-based generator keyed by
// `seed` (deviates 0..d-1 are x, deviate d is the label noise xi), exactly as
// Teacher.sample draws it.  The kernel returns Z = X W (n x N) and y = f*(x) + sigma xi.
// Chunks of kChunk samples are the unit of work; their size does not depend on the thread
// count, so the results are bit-identical for any number of threads.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "quadfast/rng.hpp"
#include "quadfast/teacher.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace quadfast {
namespace finetune {

inline constexpr Index kChunk = 256;

// W: d x N row-major (float64); Z: n x N row-major output; y: n output.
inline void project_samples(const double* W, Index d, Index N, const TeacherView<double>& teacher, std::uint64_t seed,
                            std::uint64_t stream0, Index n, double* Z, double* y, int threads) {
  Eigen::Map<const RowMat<double>> Wm(W, d, N);
  const rng::PositionTable table(static_cast<std::size_t>(d) + 1);
  const Index n_chunks = (n + kChunk - 1) / kChunk;
  (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    RowMat<double> X(kChunk, d + 1);  // column d holds the noise deviate
    Labeler<double> label(teacher);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (Index c = 0; c < n_chunks; ++c) {
      const Index s0 = c * kChunk;
      const Index m = std::min(kChunk, n - s0);
      for (Index i = 0; i < m; ++i) {
        double* row = X.data() + i * (d + 1);
        rng::fill_normals(row, static_cast<std::size_t>(d) + 1, seed, stream0 + static_cast<std::uint64_t>(s0 + i), table);
        y[s0 + i] = label(row) + teacher.noise * row[d];
      }
      Eigen::Map<RowMat<double>> Zc(Z + s0 * N, m, N);
      Zc.noalias() = X.topLeftCorner(m, d) * Wm;
    }
  }
}

}  // namespace finetune
}  // namespace quadfast
