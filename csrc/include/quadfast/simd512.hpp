// The AVX-512 operations of quadfast's own micro-kernels (packed_gemm.hpp, rowgemm.hpp),
// one set for float64 and one for float32: V<T>::R is the register type, L its lanes and
// M its lane mask.  Only defined when the translation unit is compiled with AVX-512.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

namespace quadfast {
namespace simd512 {

template <class T>
struct V;
template <>
struct V<double> {
  using R = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R set1(double v) { return _mm512_set1_pd(v); }
  static R load(const double* p) { return _mm512_load_pd(p); }  // 64-byte aligned
  static R loadu(const double* p) { return _mm512_loadu_pd(p); }
  static R load(const double* p, M m) { return _mm512_maskz_loadu_pd(m, p); }
  static void storeu(double* p, R v) { _mm512_storeu_pd(p, v); }
  static void store(double* p, R v, M m) { _mm512_mask_storeu_pd(p, m, v); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  // the sum of the lanes in a fixed tree: lanes l and l + 4, then l and l + 2, then 0 and 1
  static double reduce(R a) {
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
  }
  static M mask(std::int64_t n) { return static_cast<M>(n >= L ? 0xFF : (1u << n) - 1u); }
};
template <>
struct V<float> {
  using R = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float v) { return _mm512_set1_ps(v); }
  static R load(const float* p) { return _mm512_load_ps(p); }  // 64-byte aligned
  static R loadu(const float* p) { return _mm512_loadu_ps(p); }
  static R load(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu(float* p, R v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, R v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  // the sum of the lanes in a fixed tree: lanes l and l + 8, l and l + 4, l and l + 2, 0 and 1
  static float reduce(R a) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
  }
  static M mask(std::int64_t n) { return static_cast<M>(n >= L ? 0xFFFF : (1u << n) - 1u); }
};

}  // namespace simd512
}  // namespace quadfast
#endif
