// Bindings of the Stiefel online-SGD kernel.  They convert and keep the teacher's
// arrays alive; validation and defaults live in Python (quadfast/stiefel.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "quadfast/stiefel.hpp"

namespace py = pybind11;
using namespace quadfast;

namespace {

template <class T>
using CArr = py::array_t<T, py::array::c_style>;

template <class T>
class PyStiefel {
 public:
  PyStiefel(Index d, Index N, Index batch, double lr, CArr<T> coef, std::optional<CArr<T>> directions,
            double noise, std::uint64_t seed, double tol, std::int64_t max_interval, bool reortho, Index block,
            Index threads)
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
    OrthoPolicy pol{tol, max_interval, reortho};
    k_ = std::make_unique<StiefelKernel<T>>(d, N, batch, lr, tv, seed, pol, block, threads);
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
      if (y->ndim() != 1 || y->shape(0) < steps * k_->batch())
        throw py::value_error("y must hold steps*batch labels");
      yp = y->data();
    }
    T* w = W.mutable_data();
    AdvanceResult r;
    {
      py::gil_scoped_release release;  // safe: no Python object is touched by the kernel
      r = k_->advance(w, steps, xp, yp);
    }
    return py::make_tuple(r.steps_done, r.finite);
  }

  double measure_drift(CArr<T> W) {
    check_w(W);
    const T* w = W.data();
    py::gil_scoped_release release;
    return k_->measure_drift(w);
  }

  double reorthonormalize(CArr<T> W) {
    check_w(W);
    T* w = W.mutable_data();
    py::gil_scoped_release release;
    return k_->reorthonormalize(w);
  }

  void draw_samples(std::int64_t t, CArr<T> out) {
    if (out.ndim() != 2 || out.shape(0) != k_->batch() || out.shape(1) != k_->d())
      throw py::value_error("out must have shape (batch, d)");
    T* p = out.mutable_data();
    py::gil_scoped_release release;
    k_->draw_samples(t, p);
  }

  void set_threads(Index n) { k_->set_threads(n); }
  Index threads() const { return k_->threads(); }
  bool factored() const { return k_->factored(); }
  Index formation_period() const { return k_->formation_period(); }
  std::int64_t formations() const { return k_->formations(); }
  void set_factored(bool on) { k_->set_factored(on); }

  py::tuple get_state() const {
    const auto& s = k_->state();
    return py::make_tuple(s.t, s.since, s.n_reortho, s.n_probe, s.max_drift, s.last_drift, s.est, s.logbound);
  }
  void set_state(py::tuple st) {
    auto& s = k_->state();
    s.t = st[0].cast<std::int64_t>();
    s.since = st[1].cast<std::int64_t>();
    s.n_reortho = st[2].cast<std::int64_t>();
    s.n_probe = st[3].cast<std::int64_t>();
    s.max_drift = st[4].cast<double>();
    s.last_drift = st[5].cast<double>();
    s.est = st[6].cast<double>();
    s.logbound = st[7].cast<double>();
  }

 private:
  CArr<T> coef_;
  CArr<T> dirs_;
  std::unique_ptr<StiefelKernel<T>> k_;
};

template <class T>
void bind_one(py::module_& m, const char* name) {
  py::class_<PyStiefel<T>>(m, name)
      .def(py::init<Index, Index, Index, double, CArr<T>, std::optional<CArr<T>>, double, std::uint64_t, double,
                    std::int64_t, bool, Index, Index>(),
           py::arg("d"), py::arg("width"), py::arg("batch"), py::arg("lr"), py::arg("coef").noconvert(),
           py::arg("directions").noconvert(), py::arg("noise"), py::arg("seed"), py::arg("tol"), py::arg("max_interval"),
           py::arg("reortho"), py::arg("block") = 1, py::arg("threads") = 1)
      .def("advance", &PyStiefel<T>::advance, py::arg("W").noconvert(), py::arg("steps"),
           py::arg("X").noconvert() = py::none(), py::arg("y").noconvert() = py::none())
      .def("reorthonormalize", &PyStiefel<T>::reorthonormalize, py::arg("W").noconvert())
      .def("measure_drift", &PyStiefel<T>::measure_drift, py::arg("W").noconvert())
      .def("draw_samples", &PyStiefel<T>::draw_samples, py::arg("t"), py::arg("out").noconvert())
      .def("set_threads", &PyStiefel<T>::set_threads, py::arg("n"))
      .def_property_readonly("threads", &PyStiefel<T>::threads)
      .def_property_readonly("formation_period", &PyStiefel<T>::formation_period,
                             "Steps between the formations W <- What M at absolute step multiples; "
                             "calls ending on its multiples keep the bits of one call")
      .def_property_readonly("formations", &PyStiefel<T>::formations,
                             "Formations W <- What M so far (a diagnostic, not checkpointed)")
      .def_property("factored", &PyStiefel<T>::factored, &PyStiefel<T>::set_factored,
                    "Whether the blocked engine keeps W = What M between its passes (4 d N "
                    "instead of 6 d N flops per step; float64, widths >= 2 with d >= 16 N, for "
                    "stretches of at least 2 N steps; in the packed products, widths above 128, "
                    "only once set True). Setting False turns it off: the same trajectory to "
                    "rounding.")
      .def("get_state", &PyStiefel<T>::get_state)
      .def("set_state", &PyStiefel<T>::set_state);
}

}  // namespace

void bind_stiefel(py::module_& m) {
  bind_one<double>(m, "StiefelKernel64");
  bind_one<float>(m, "StiefelKernel32");
}
