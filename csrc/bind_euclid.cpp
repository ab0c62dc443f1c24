// Bindings of the Euclidean (2-homogeneous) online-SGD kernel.  They convert and keep the
// teacher's arrays alive; validation and defaults live in Python (quadfast/euclid.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "quadfast/euclid.hpp"

namespace py = pybind11;
using namespace quadfast;

namespace {

template <class T>
using CArr = py::array_t<T, py::array::c_style>;

template <class T>
class PyEuclid {
 public:
  PyEuclid(Index d, Index N, Index batch, double lr, CArr<T> coef, std::optional<CArr<T>> directions, double noise,
           std::uint64_t seed, Index block, Index threads)
      : coef_(std::move(coef)) {
    TeacherView<T> tv;
    tv.d = d;
    tv.r = coef_.shape(0);
    tv.coef = coef_.data();
    tv.noise = noise;
    if (directions) {
      dirs_ = *directions;
      if (dirs_.ndim() != 2 || dirs_.shape(0) != d || dirs_.shape(1) != tv.r)
        throw py::value_error("directions must have shape (d, r)");
      tv.directions = dirs_.data();
    }
    k_ = std::make_unique<EuclidKernel<T>>(d, N, batch, lr, tv, seed, block, threads);
  }

  void check_w(const CArr<T>& W) const {
    if (W.ndim() != 2 || W.shape(0) != k_->d() || W.shape(1) != k_->width())
      throw py::value_error("W must be a C-contiguous (d, width) array of the kernel's dtype");
  }

  py::tuple advance(CArr<T> W, std::int64_t steps, std::optional<CArr<T>> X, std::optional<CArr<T>> y) {
    check_w(W);
    const T* xp = nullptr;
    const T* yp = nullptr;
    if (X) {
      if (X->ndim() != 2 || X->shape(1) != k_->d() || X->shape(0) < steps * k_->batch())
        throw py::value_error("X must hold steps*batch rows of length d");
      xp = X->data();
    }
    if (y) {
      if (y->ndim() != 1 || y->shape(0) < steps * k_->batch()) throw py::value_error("y must hold steps*batch labels");
      yp = y->data();
    }
    T* w = W.mutable_data();
    EuclidAdvance r;
    {
      py::gil_scoped_release release;  // safe: no Python object is touched by the kernel
      r = k_->advance(w, steps, xp, yp);
    }
    return py::make_tuple(r.steps_done, r.finite);
  }

  double norm2(CArr<T> W) const {
    check_w(W);
    const T* w = W.data();
    py::gil_scoped_release release;
    return k_->norm2(w);
  }

  std::int64_t get_steps() const { return k_->steps(); }
  void set_steps(std::int64_t t) { k_->set_steps(t); }
  void set_threads(Index n) { k_->set_threads(n); }
  Index threads() const { return k_->threads(); }

 private:
  CArr<T> coef_;
  CArr<T> dirs_;
  std::unique_ptr<EuclidKernel<T>> k_;
};

template <class T>
void bind_one(py::module_& m, const char* name) {
  py::class_<PyEuclid<T>>(m, name)
      .def(py::init<Index, Index, Index, double, CArr<T>, std::optional<CArr<T>>, double, std::uint64_t, Index, Index>(),
           py::arg("d"), py::arg("width"), py::arg("batch"), py::arg("lr"), py::arg("coef").noconvert(),
           py::arg("directions").noconvert(), py::arg("noise"), py::arg("seed"), py::arg("block") = 1, py::arg("threads") = 1)
      .def("advance", &PyEuclid<T>::advance, py::arg("W").noconvert(), py::arg("steps"),
           py::arg("X").noconvert() = py::none(), py::arg("y").noconvert() = py::none())
      .def("norm2", &PyEuclid<T>::norm2, py::arg("W").noconvert())
      .def("set_threads", &PyEuclid<T>::set_threads, py::arg("n"))
      .def_property_readonly("threads", &PyEuclid<T>::threads)
      .def_property("steps", &PyEuclid<T>::get_steps, &PyEuclid<T>::set_steps);
}

}  // namespace

void bind_euclid(py::module_& m) {
  bind_one<double>(m, "EuclidKernel64");
  bind_one<float>(m, "EuclidKernel32");
}
