// Bindings of the counter-based Gaussian generator.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "quadfast/rng.hpp"

namespace py = pybind11;
using namespace quadfast;

namespace {
template <class T>
void fill(py::array_t<T, py::array::c_style> out, std::uint64_t seed, std::uint64_t stream0) {
  if (out.ndim() != 2) throw py::value_error("out must be 2-D (streams, length)");
  const auto n = static_cast<std::size_t>(out.shape(0));
  const auto len = static_cast<std::size_t>(out.shape(1));
  T* p = out.mutable_data();
  py::gil_scoped_release release;  // safe: no Python object is touched below
  rng::PositionTable table(len);
  for (std::size_t s = 0; s < n; ++s) rng::fill_normals(p + s * len, len, seed, stream0 + s, table);
}
}  // namespace

void bind_rng(py::module_& m) {
  m.def("fill_normals", &fill<double>, py::arg("out").noconvert(), py::arg("seed"), py::arg("stream0"));
  m.def("fill_normals", &fill<float>, py::arg("out").noconvert(), py::arg("seed"), py::arg("stream0"));
  m.def("normal_at", &rng::normal_at, py::arg("seed"), py::arg("stream"), py::arg("index"));
  m.def("sampler_isa", &rng::sampler_isa, "Instruction-set variant of the Gaussian sampler on this CPU");
}
