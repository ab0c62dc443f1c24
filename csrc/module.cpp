// The private extension module quadfast._core: it only calls the per-area binders.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_rng(py::module_& m);
void bind_stiefel(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "quadfast C++ kernels (private; use the quadfast package)";
  bind_rng(m);
  bind_stiefel(m);
}
