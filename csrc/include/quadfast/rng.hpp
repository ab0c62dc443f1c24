// Counter-based Gaussian generator.
//
// Every normal deviate is a pure function of (seed, stream, index): the value at a
// given position never depends on how many values were drawn before it, in which
// chunks, or on which thread.  That is what makes runs bit-identical when repeated,
// resumed from a checkpoint, split into record chunks, or later spread over threads.
//
// Construction (see README "Random numbers"):
//   key(seed, stream) = mix(mix(seed) + (stream + 1) * GOLDEN)
//   bits(seed, stream, m) = mix(key ^ mix(m * GOLDEN + TWEAK))      m = 0, 1, 2, ...
// where `mix` is the SplitMix64 output function (Stafford's Mix13, a bijection of
// 64-bit words).  The inner mix(m * GOLDEN + TWEAK) does not depend on the stream, so a
// caller that draws many streams of the same length precomputes it once (a table of
// length n); each deviate then costs one `mix`.
// Normal deviates come in Box-Muller pairs: pair p of a stream uses bits m = 2p (radius)
// and m = 2p + 1 (angle); deviate 2p is r cos(phi), deviate 2p + 1 is r sin(phi).
// The transcendental functions are branch-free polynomials (relative error below 1e-15),
// written so that compilers vectorise the loops; an AVX2 / AVX-512 variant is chosen at
// run time, and all variants give the same bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace quadfast {
namespace rng {

inline constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
inline constexpr std::uint64_t kTweak = 0xD1B54A32D192ED03ULL;

inline std::uint64_t mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) noexcept {
  return mix(mix(seed) + (stream + 1) * kGolden);
}

inline std::uint64_t position_hash(std::uint64_t m) noexcept { return mix(m * kGolden + kTweak); }

inline double bits_to_double(std::uint64_t b) noexcept {
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
inline std::uint64_t double_to_bits(double x) noexcept {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// -log(u) * 2 for u in (0, 1], as sqrt argument of Box-Muller.  u = 2^e * m with
// m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f), f = (m - 1) / (m + 1), |f| <= 0.1716,
// odd series to f^23 (truncation < 1e-19).
inline double minus_two_log(double u) noexcept {
  const std::uint64_t b = double_to_bits(u);
  // exponent as a double without an int64->double conversion (vectorises on SSE2):
  // 2^52 + field, minus 2^52, minus the bias.
  double de = bits_to_double(((b >> 52) & 0x7FF) | 0x4330000000000000ULL) - 4503599627370496.0 - 1023.0;
  double m = bits_to_double((b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? 0.5 * m : m;
  de = big ? de + 1.0 : de;
  const double f = (m - 1.0) / (m + 1.0);
  const double f2 = f * f;
  double p = 1.0 / 23;
  p = p * f2 + 1.0 / 21;
  p = p * f2 + 1.0 / 19;
  p = p * f2 + 1.0 / 17;
  p = p * f2 + 1.0 / 15;
  p = p * f2 + 1.0 / 13;
  p = p * f2 + 1.0 / 11;
  p = p * f2 + 1.0 / 9;
  p = p * f2 + 1.0 / 7;
  p = p * f2 + 1.0 / 5;
  p = p * f2 + 1.0 / 3;
  p = p * f2 + 1.0;
  const double logm = 2.0 * f * p;
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  return -2.0 * (de * ln2_hi + (logm + de * ln2_lo));
}

// sin and cos of 2*pi*v for v in [0, 1).  Shift to w in [-1/2, 1/2), quadrant
// k = round(4 w), phi = 2 pi (w - k/4) in [-pi/4, pi/4]; Taylor series to phi^17/phi^18.
// Branch-free (selects only) so that loops calling it vectorise.
inline void sincos_2pi(double v, double& s, double& c) noexcept {
  const double w = v >= 0.5 ? v - 1.0 : v;
  // round(4 w) by truncating a positive number (SSE2 has a vector truncation)
  const double kq = static_cast<double>(static_cast<int>(4.0 * w + 2.5)) - 2.0;  // -2..2
  const double phi = 6.283185307179586 * (w - 0.25 * kq);
  const double p2 = phi * phi;
  double sp = -1.0 / 355687428096000.0;        // -1/17!
  sp = sp * p2 + 1.0 / 1307674368000.0;        //  1/15!
  sp = sp * p2 - 1.0 / 6227020800.0;           // -1/13!
  sp = sp * p2 + 1.0 / 39916800.0;             //  1/11!
  sp = sp * p2 - 1.0 / 362880.0;               // -1/9!
  sp = sp * p2 + 1.0 / 5040.0;                 //  1/7!
  sp = sp * p2 - 1.0 / 120.0;                  // -1/5!
  sp = sp * p2 + 1.0 / 6.0;                    //  1/3!
  const double sinp = phi - phi * p2 * sp;     // sin(phi) = phi - phi^3 (1/3! - phi^2/5! + ...)
  double cp = 1.0 / 6402373705728000.0;        //  1/18!
  cp = cp * p2 - 1.0 / 20922789888000.0;       // -1/16!
  cp = cp * p2 + 1.0 / 87178291200.0;          //  1/14!
  cp = cp * p2 - 1.0 / 479001600.0;            // -1/12!
  cp = cp * p2 + 1.0 / 3628800.0;              //  1/10!
  cp = cp * p2 - 1.0 / 40320.0;                // -1/8!
  cp = cp * p2 + 1.0 / 720.0;                  //  1/6!
  cp = cp * p2 - 1.0 / 24.0;                   // -1/4!
  cp = cp * p2 + 0.5;                          //  1/2!
  const double cosp = 1.0 - p2 * cp;           // cos(phi) = 1 - phi^2 (1/2! - ...)
  // rotate by k pi/2, k = kq mod 4 in {0, 1, 2, 3}
  const double k = kq < 0.0 ? kq + 4.0 : kq;
  const bool odd = (k == 1.0) || (k == 3.0);
  const double ssign = (k >= 2.0) ? -1.0 : 1.0;
  const double csign = (k == 1.0 || k == 2.0) ? -1.0 : 1.0;
  s = ssign * (odd ? cosp : sinp);
  c = csign * (odd ? sinp : cosp);
}

// Uniform on (0, 1] from the top 52 bits (never 0: log is finite; the Box-Muller tail is
// cut at sqrt(-2 log 2^-52) ~ 8.5 sigma).  Pure bit operations, so loops vectorise.
inline double uniform_open0(std::uint64_t bits) noexcept {
  return 2.0 - bits_to_double((bits >> 12) | 0x3FF0000000000000ULL);
}
// Uniform on [0, 1) from the top 52 bits.
inline double uniform_closed0(std::uint64_t bits) noexcept {
  return bits_to_double((bits >> 12) | 0x3FF0000000000000ULL) - 1.0;
}

// Table of position hashes for indices 0 .. n-1 (two per Box-Muller pair).
class PositionTable {
 public:
  PositionTable() = default;
  explicit PositionTable(std::size_t n_deviates) { resize(n_deviates); }
  void resize(std::size_t n_deviates) {
    const std::size_t n_bits = 2 * ((n_deviates + 1) / 2);
    if (n_bits <= table_.size()) return;
    const std::size_t old = table_.size();
    table_.resize(n_bits);
    for (std::size_t m = old; m < n_bits; ++m) table_[m] = position_hash(m);
  }
  const std::uint64_t* data() const noexcept { return table_.data(); }
  std::size_t size() const noexcept { return table_.size(); }

 private:
  std::vector<std::uint64_t> table_;
};

inline void box_muller(std::uint64_t key, std::uint64_t ha, std::uint64_t hb, double& a, double& b) noexcept {
  const double rad = std::sqrt(minus_two_log(uniform_open0(mix(key ^ ha))));
  double s, c;
  sincos_2pi(uniform_closed0(mix(key ^ hb)), s, c);
  a = rad * c;
  b = rad * s;
}

// Deviate `index` of (seed, stream), computed on its own (no table).
inline double normal_at(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) noexcept {
  const std::uint64_t p = index / 2;
  double a, b;
  box_muller(stream_key(seed, stream), position_hash(2 * p), position_hash(2 * p + 1), a, b);
  return (index & 1) ? b : a;
}

namespace detail {
// The pair loop: element-wise IEEE operations only (no reductions, no FMA contraction
// under -ffp-contract=off), so every instruction-set variant below produces the same bits.
template <class T>
inline void pairs_loop(T* out, std::size_t pairs, std::uint64_t key, const std::uint64_t* h) noexcept {
  for (std::size_t p = 0; p < pairs; ++p) {
    double a, b;
    box_muller(key, h[2 * p], h[2 * p + 1], a, b);
    out[2 * p] = static_cast<T>(a);
    out[2 * p + 1] = static_cast<T>(b);
  }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(QUADFAST_NO_DISPATCH)
#define QUADFAST_RNG_DISPATCH 1
template <class T>
__attribute__((target("avx512f,avx512dq,avx512vl"))) inline void pairs_avx512(T* out, std::size_t pairs, std::uint64_t key,
                                                                            const std::uint64_t* h) noexcept {
  pairs_loop(out, pairs, key, h);
}
template <class T>
__attribute__((target("avx2"))) inline void pairs_avx2(T* out, std::size_t pairs, std::uint64_t key,
                                                      const std::uint64_t* h) noexcept {
  pairs_loop(out, pairs, key, h);
}
#endif

template <class T>
using PairsFn = void (*)(T*, std::size_t, std::uint64_t, const std::uint64_t*) noexcept;

template <class T>
inline PairsFn<T> select_pairs() noexcept {
#ifdef QUADFAST_RNG_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return &pairs_avx512<T>;
  if (__builtin_cpu_supports("avx2")) return &pairs_avx2<T>;
#endif
  return &pairs_loop<T>;
}
}  // namespace detail

// Name of the instruction-set variant the sampler uses on this CPU.
inline const char* sampler_isa() noexcept {
#ifdef QUADFAST_RNG_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "avx512";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "baseline";
}

// Deviates 0 .. n-1 of (seed, stream) into out[0..n-1], with n <= table size.
template <class T>
inline void fill_normals(T* out, std::size_t n, std::uint64_t seed, std::uint64_t stream,
                         const PositionTable& table) noexcept {
  static const detail::PairsFn<T> pairs_fn = detail::select_pairs<T>();
  const std::uint64_t key = stream_key(seed, stream);
  const std::uint64_t* h = table.data();
  const std::size_t pairs = n / 2;
  pairs_fn(out, pairs, key, h);
  if (n & 1) {
    double a, b;
    box_muller(key, h[2 * pairs], h[2 * pairs + 1], a, b);
    out[2 * pairs] = static_cast<T>(a);
  }
}

// Deviates i0 .. i1-1 of (seed, stream) into out[0 .. i1-i0), with i0 even and
// i1 <= table size: a sub-range of what fill_normals writes, bit for bit, so threads can
// draw disjoint parts of the same stream.
template <class T>
inline void fill_normals_range(T* out, std::size_t i0, std::size_t i1, std::uint64_t seed, std::uint64_t stream,
                               const PositionTable& table) noexcept {
  static const detail::PairsFn<T> pairs_fn = detail::select_pairs<T>();
  const std::uint64_t key = stream_key(seed, stream);
  const std::uint64_t* h = table.data() + i0;
  const std::size_t n = i1 - i0, pairs = n / 2;
  pairs_fn(out, pairs, key, h);
  if (n & 1) {
    double a, b;
    box_muller(key, h[2 * pairs], h[2 * pairs + 1], a, b);
    out[2 * pairs] = static_cast<T>(a);
  }
}

}  // namespace rng
}  // namespace quadfast
