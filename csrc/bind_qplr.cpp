// Bindings of the quadratically parameterised linear regression kernel (quadfast/qplr.hpp).
// They convert and check shapes; validation, defaults and the threading policy live in
// Python (quadfast/qplr.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "quadfast/qplr.hpp"

namespace py = pybind11;
using namespace quadfast;

namespace {

using CArr = py::array_t<double, py::array::c_style>;
using IArr = py::array_t<std::int64_t, py::array::c_style>;

void need(bool ok, const char* what) {
  if (!ok) throw py::value_error(what);
}

void run(CArr sqrt_lam, CArr lam, CArr theta, double tail_sd, double noise, std::int64_t steps, std::int64_t phase1,
         std::int64_t stages, double lr, double lr_linear, std::uint64_t seed, std::int64_t replica0, IArr record,
         CArr v, std::optional<CArr> w, CArr risk, std::optional<CArr> risk_linear, IArr diverged,
         std::optional<IArr> diverged_linear, int threads) {
  const std::int64_t M = sqrt_lam.shape(0);
  need(lam.ndim() == 1 && lam.shape(0) == M && theta.ndim() == 1 && theta.shape(0) == M, "lam, theta: length M");
  need(v.ndim() == 2 && v.shape(1) == M, "v: shape (replicas, M)");
  const std::int64_t R = v.shape(0);
  const std::int64_t K = record.shape(0);
  need(risk.ndim() == 2 && risk.shape(0) == K && risk.shape(1) == R, "risk: shape (n_record, replicas)");
  need(diverged.ndim() == 1 && diverged.shape(0) == R, "diverged: shape (replicas,)");
  need(steps > 0 && phase1 >= 0 && phase1 <= steps && stages >= 1 && stages < 1000, "schedule");
  need(steps < (std::int64_t(1) << qplr::kStepBits) && replica0 >= 0 && replica0 + R < (std::int64_t(1) << 23),
       "steps < 2^40 and replicas < 2^23");
  qplr::Problem p;
  p.M = M;
  p.sqrt_lam = sqrt_lam.data();
  p.lam = lam.data();
  p.theta = theta.data();
  p.tail_sd = tail_sd;
  p.noise = noise;
  qplr::Schedule s;
  s.steps = steps;
  s.phase1 = phase1;
  s.stages = stages;
  s.lr = lr;
  s.lr_linear = lr_linear;
  qplr::Outputs o;
  o.v = v.mutable_data();
  o.risk = risk.mutable_data();
  o.diverged = diverged.mutable_data();
  if (w) {
    need(w->ndim() == 2 && w->shape(0) == R && w->shape(1) == M, "w: shape (replicas, M)");
    need(risk_linear && risk_linear->ndim() == 2 && risk_linear->shape(0) == K && risk_linear->shape(1) == R,
         "risk_linear: shape (n_record, replicas)");
    need(diverged_linear && diverged_linear->ndim() == 1 && diverged_linear->shape(0) == R,
         "diverged_linear: shape (replicas,)");
    o.w = w->mutable_data();
    o.risk_linear = risk_linear->mutable_data();
    o.diverged_linear = diverged_linear->mutable_data();
  }
  const std::int64_t* rec = record.data();
  py::gil_scoped_release release;  // safe: no Python object is touched by the kernel
  qplr::run(p, s, seed, R, replica0, rec, K, o, threads);
}

}  // namespace

void bind_qplr(py::module_& m) {
  m.def("qplr_run", &run, py::arg("sqrt_lam").noconvert(), py::arg("lam").noconvert(), py::arg("theta").noconvert(),
        py::arg("tail_sd"), py::arg("noise"), py::arg("steps"), py::arg("phase1"), py::arg("stages"), py::arg("lr"),
        py::arg("lr_linear"), py::arg("seed"), py::arg("replica0"), py::arg("record").noconvert(),
        py::arg("v").noconvert(), py::arg("w").noconvert(), py::arg("risk").noconvert(),
        py::arg("risk_linear").noconvert(), py::arg("diverged").noconvert(), py::arg("diverged_linear").noconvert(),
        py::arg("threads"));
  m.def("qplr_decay_factor", [](std::int64_t t, std::int64_t steps, std::int64_t phase1, std::int64_t stages) {
    qplr::Schedule s;
    s.steps = steps;
    s.phase1 = phase1;
    s.stages = stages;
    return qplr::decay_factor(t, s);
  }, py::arg("t"), py::arg("steps"), py::arg("phase1"), py::arg("stages"));
}
