// The private extension module quadfast._core: it only calls the per-area binders.
#include <pybind11/pybind11.h>

#include "quadfast/blocking.hpp"

namespace py = pybind11;

void bind_rng(py::module_& m);
void bind_stiefel(py::module_& m);
void bind_euclid(py::module_& m);
void bind_finetune(py::module_& m);
void bind_qplr(py::module_& m);

#ifndef QUADFAST_MODULE
#define QUADFAST_MODULE _core
#endif
#define QUADFAST_STR2(x) #x
#define QUADFAST_STR(x) QUADFAST_STR2(x)

PYBIND11_MODULE(QUADFAST_MODULE, m) {
  m.doc() = "quadfast C++ kernels (private; use the quadfast package)";
  m.attr("variant") = QUADFAST_STR(QUADFAST_MODULE);
  m.def("default_block", &quadfast::default_block, py::arg("d"), py::arg("N"), py::arg("batch"),
        py::arg("elem_bytes") = 8, py::arg("cache_bytes") = -1, "quadfast::default_block (blocking.hpp)");
  m.def("euclid_default_block", &quadfast::euclid_default_block, py::arg("d"), py::arg("N"), py::arg("batch"),
        py::arg("elem_bytes") = 8, py::arg("cache_bytes") = -1, "quadfast::euclid_default_block (blocking.hpp)");
  m.def("last_level_cache_bytes", &quadfast::last_level_cache_bytes,
        "quadfast::last_level_cache_bytes (blocking.hpp): the cache size the default blocks use");
  bind_rng(m);
  bind_stiefel(m);
  bind_euclid(m);
  bind_finetune(m);
  bind_qplr(m);
}
