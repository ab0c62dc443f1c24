// Bindings of the counter-based Gaussian generator.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <string>

#include "quadfast/rng.hpp"

namespace py = pybind11;
using namespace quadfast;

namespace {
// Rows up to this length use one process-wide table of position hashes (grown on demand,
// at most 1 MiB); longer rows use a table per call when there are at least
// kTableMinStreams of them, else hash the positions on the fly.  All paths give the same bits.
constexpr std::size_t kCachedTableMax = std::size_t{1} << 17;
constexpr std::size_t kTableMinStreams = 4;

// The cached table, replaced (never modified) when a longer one is needed; callers hold a
// shared_ptr, so a replacement never frees a table another thread is reading.  Called with
// the GIL held, which serialises the replacement.
std::shared_ptr<const rng::PositionTable> cached_table(std::size_t len) {
  static std::shared_ptr<const rng::PositionTable> table = std::make_shared<rng::PositionTable>(4096);
  if (table->size() < len) table = std::make_shared<rng::PositionTable>(std::max(len, 2 * table->size()));
  return table;
}

template <class T>
void fill(py::array_t<T, py::array::c_style> out, std::uint64_t seed, std::uint64_t stream0) {
  if (out.ndim() != 2) throw py::value_error("out must be 2-D (streams, length)");
  const auto n = static_cast<std::size_t>(out.shape(0));
  const auto len = static_cast<std::size_t>(out.shape(1));
  T* p = out.mutable_data();
  std::shared_ptr<const rng::PositionTable> table;
  if (len <= kCachedTableMax) table = cached_table(len);
  py::gil_scoped_release release;  // safe: no Python object is touched below
  if (!table && n < kTableMinStreams) {
    for (std::size_t s = 0; s < n; ++s) rng::fill_normals_range(p + s * len, 0, len, seed, stream0 + s);
    return;
  }
  if (!table) table = std::make_shared<rng::PositionTable>(len);
  for (std::size_t s = 0; s < n; ++s) rng::fill_normals(p + s * len, len, seed, stream0 + s, *table);
}

template <class T>
void fill_range(py::array_t<T, py::array::c_style> out, std::uint64_t seed, std::uint64_t stream, std::uint64_t start) {
  if (out.ndim() != 1) throw py::value_error("out must be 1-D (a range of one stream)");
  const auto len = static_cast<std::uint64_t>(out.shape(0));
  if (len > ~std::uint64_t{0} - start) throw py::value_error("start + len(out) overflows 2**64");
  T* p = out.mutable_data();
  py::gil_scoped_release release;
  rng::fill_normals_range(p, start, start + len, seed, stream);
}

// fill_normals_range through the loop of one named instruction-set level (tests only).
template <class T>
void fill_range_isa(py::array_t<T, py::array::c_style> out, std::uint64_t seed, std::uint64_t stream,
                    std::uint64_t start, const std::string& isa) {
  if (out.ndim() != 1) throw py::value_error("out must be 1-D (a range of one stream)");
  const auto fn = rng::detail::fill_for_isa<T>(isa.c_str());
  if (!fn) throw py::value_error("isa: '" + isa + "' is not available on this CPU/build");
  const auto len = static_cast<std::size_t>(out.shape(0));
  T* p = out.mutable_data();
  py::gil_scoped_release release;
  fn(p, len, rng::stream_key(seed, stream), nullptr, start);
}

py::array_t<double> table_copy(const double* t) {
  py::array_t<double> a(256);
  std::copy(t, t + 256, a.mutable_data());
  return a;
}
}  // namespace

void bind_rng(py::module_& m) {
  m.def("fill_normals", &fill<double>, py::arg("out").noconvert(), py::arg("seed"), py::arg("stream0"));
  m.def("fill_normals", &fill<float>, py::arg("out").noconvert(), py::arg("seed"), py::arg("stream0"));
  m.def("fill_normals_range", &fill_range<double>, py::arg("out").noconvert(), py::arg("seed"), py::arg("stream"),
        py::arg("start"));
  m.def("fill_normals_range", &fill_range<float>, py::arg("out").noconvert(), py::arg("seed"), py::arg("stream"),
        py::arg("start"));
  m.def("_fill_normals_range_isa", &fill_range_isa<double>, py::arg("out").noconvert(), py::arg("seed"),
        py::arg("stream"), py::arg("start"), py::arg("isa"));
  m.def("_fill_normals_range_isa", &fill_range_isa<float>, py::arg("out").noconvert(), py::arg("seed"),
        py::arg("stream"), py::arg("start"), py::arg("isa"));
  m.def("normal_at", &rng::normal_at, py::arg("seed"), py::arg("stream"), py::arg("index"));
  m.def("sampler_isa", &rng::sampler_isa, "Instruction-set variant of the Gaussian sampler on this CPU");
  m.def("ziggurat_tables", []() {
    py::dict d;
    d["r"] = rng::zig::kR;
    d["v"] = rng::zig::kV;
    d["W"] = table_copy(rng::zig::kW);
    d["K"] = table_copy(rng::zig::kK);
    d["F"] = table_copy(rng::zig::kF);
    d["inflection_layer"] = rng::detail::kInflect;
    return d;
  }, "The sampler's ziggurat tables (for tests)");
}
