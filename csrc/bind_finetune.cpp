// Bindings of the phase-II sample stream (quadfast/finetune.hpp).  They convert and check
// shapes; the least-squares solve and all validation live in Python (quadfast/radial.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "quadfast/finetune.hpp"

namespace py = pybind11;
using namespace quadfast;

namespace {

using CArr = py::array_t<double, py::array::c_style>;

void project(CArr W, CArr coef, std::optional<CArr> directions, double noise, std::uint64_t seed,
             std::uint64_t stream0, CArr Z, CArr y, int threads) {
  if (W.ndim() != 2) throw py::value_error("W: shape (d, N)");
  const Index d = W.shape(0), N = W.shape(1);
  if (Z.ndim() != 2 || Z.shape(1) != N) throw py::value_error("Z: shape (n, N)");
  const Index n = Z.shape(0);
  if (y.ndim() != 1 || y.shape(0) != n) throw py::value_error("y: shape (n,)");
  TeacherView<double> tv;
  tv.d = d;
  tv.r = coef.shape(0);
  tv.coef = coef.data();
  tv.noise = noise;
  if (directions) {
    if (directions->ndim() != 2 || directions->shape(0) != d || directions->shape(1) != tv.r)
      throw py::value_error("directions: shape (d, r)");
    tv.directions = directions->data();
  }
  const double* w = W.data();
  double* z = Z.mutable_data();
  double* yy = y.mutable_data();
  py::gil_scoped_release release;  // safe: no Python object is touched by the kernel
  finetune::project_samples(w, d, N, tv, seed, stream0, n, z, yy, threads);
}

}  // namespace

void bind_finetune(py::module_& m) {
  m.def("finetune_project", &project, py::arg("W").noconvert(), py::arg("coef").noconvert(),
        py::arg("directions").noconvert(), py::arg("noise"), py::arg("seed"), py::arg("stream0"),
        py::arg("Z").noconvert(), py::arg("y").noconvert(), py::arg("threads"));
}
