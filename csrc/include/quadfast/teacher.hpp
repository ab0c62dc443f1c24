// The power-law quadratic teacher f*(x) = sum_j lambda_j He2(<theta_j, x>)   (MODEL.md §1).
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <vector>

namespace quadfast {

using Index = Eigen::Index;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// Non-owning description of a teacher.  `directions` is a row-major d x r array with
// orthonormal columns, or nullptr for the canonical frame theta_j = e_j, in which a label
// costs O(r) instead of O(d r).  The arrays must outlive every kernel built from it.
template <class T>
struct TeacherView {
  Index d = 0;
  Index r = 0;
  const T* coef = nullptr;        // lambda_1..lambda_r
  const T* directions = nullptr;  // Theta (d x r, row-major) or nullptr
  double noise = 0.0;             // sigma: y = f*(x) + sigma * xi
};

// Computes noiseless labels; owns the O(r) workspace needed for an explicit frame.
template <class T>
class Labeler {
 public:
  Labeler() = default;
  explicit Labeler(const TeacherView<T>& t) : t_(t), coef_(t.coef, t.coef + t.r), proj_(t.r) {}

  const TeacherView<T>& view() const noexcept { return t_; }

  // f*(x) for one sample x (length d).
  double operator()(const T* x) {
    const Index r = t_.r;
    double acc = 0.0;
    if (t_.directions == nullptr) {
      for (Index j = 0; j < r; ++j) acc += static_cast<double>(coef_[j]) * (static_cast<double>(x[j]) * x[j] - 1.0);
      return acc;
    }
    Eigen::Map<const RowVec<T>> xv(x, t_.d);
    Eigen::Map<const RowMat<T>> theta(t_.directions, t_.d, r);
    proj_.noalias() = xv * theta;  // Theta^T x, O(d r)
    for (Index j = 0; j < r; ++j) acc += static_cast<double>(coef_[j]) * (static_cast<double>(proj_[j]) * proj_[j] - 1.0);
    return acc;
  }

 private:
  TeacherView<T> t_{};
  std::vector<T> coef_;
  RowVec<T> proj_;
};

}  // namespace quadfast
