// The streaming row pass of the rank-one Stiefel step (MODEL.md §2), written as plain
// loops with a fixed lane structure so that the result does not depend on the vector
// instruction set:
//   * dot products accumulate into L = 64 / sizeof(T) partial sums (lane l takes the
//     elements j = l mod L) that are combined in a fixed tree order;
//   * every other operation is element-wise.
// Compiled without FMA contraction, the baseline, AVX2 and AVX-512 variants (chosen at
// run time) therefore produce identical bits.
#pragma once

#include <cstddef>

namespace quadfast {
namespace rowpass {

template <class T>
inline constexpr int kLanes = static_cast<int>(64 / sizeof(T));

// Reduction of L partial sums in a fixed tree order.
template <class T>
inline T reduce_lanes(T* acc) noexcept {
  constexpr int L = kLanes<T>;
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] = acc[l] + acc[l + w];
  return acc[0];
}

// Dot products of R consecutive rows with z, each with the fixed lane structure; the R
// chains are independent, which hides the add latency.
template <class T, int R>
inline void dot_rows(const T* __restrict w, std::ptrdiff_t N, const T* __restrict z, T* out) noexcept {
  constexpr int L = kLanes<T>;
  T acc[R][L];
  for (int k = 0; k < R; ++k)
    for (int l = 0; l < L; ++l) acc[k][l] = T(0);
  std::ptrdiff_t j = 0;
  for (; j + L <= N; j += L)
    for (int k = 0; k < R; ++k)
      for (int l = 0; l < L; ++l) acc[k][l] += w[k * N + j + l] * z[j + l];
  for (int k = 0; k < R; ++k)
    for (int l = 0; j + l < N; ++l) acc[k][l] += w[k * N + j + l] * z[j + l];
  for (int k = 0; k < R; ++k) out[k] = reduce_lanes<T>(acc[k]);
}

// For rows i of W (row-major d x N):  p = W_i . z;  v = ga x_i + cp p;  W_i += v z;
// and, if xn != nullptr, zn += xn_i W_i (the next step's z, accumulated from the new row,
// rows in order).  Rows go in groups of 4 (then singly), which changes no operation.
template <class T>
inline void fused_rows(T* __restrict W, std::ptrdiff_t d, std::ptrdiff_t N, const T* __restrict z,
                       const T* __restrict x, T ga, T cp, const T* __restrict xn, T* __restrict zn) noexcept {
  constexpr int R = 4;
  std::ptrdiff_t i = 0;
  T p[R];
  for (; i + R <= d; i += R) {
    T* __restrict w = W + i * N;
    dot_rows<T, R>(w, N, z, p);
    T v[R];
    for (int k = 0; k < R; ++k) v[k] = ga * x[i + k] + cp * p[k];
    for (int k = 0; k < R; ++k)
      for (std::ptrdiff_t j = 0; j < N; ++j) w[k * N + j] = w[k * N + j] + v[k] * z[j];
    if (xn != nullptr) {
      for (std::ptrdiff_t j = 0; j < N; ++j) {
        T acc = zn[j];
        for (int k = 0; k < R; ++k) acc = acc + xn[i + k] * w[k * N + j];
        zn[j] = acc;
      }
    }
  }
  for (; i < d; ++i) {
    T* __restrict w = W + i * N;
    dot_rows<T, 1>(w, N, z, p);
    const T v = ga * x[i] + cp * p[0];
    for (std::ptrdiff_t j = 0; j < N; ++j) w[j] = w[j] + v * z[j];
    if (xn != nullptr)
      for (std::ptrdiff_t j = 0; j < N; ++j) zn[j] = zn[j] + xn[i] * w[j];
  }
}

// z = sum_i x_i W_i over rows in order (same element-wise operations as in fused_rows).
template <class T>
inline void accumulate(const T* __restrict W, std::ptrdiff_t d, std::ptrdiff_t N, const T* __restrict x,
                       T* __restrict z) noexcept {
  for (std::ptrdiff_t j = 0; j < N; ++j) z[j] = T(0);
  for (std::ptrdiff_t i = 0; i < d; ++i) {
    const T* __restrict w = W + i * N;
    const T xi = x[i];
    for (std::ptrdiff_t j = 0; j < N; ++j) z[j] += xi * w[j];
  }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(QUADFAST_NO_DISPATCH)
#define QUADFAST_ROWPASS_DISPATCH 1
#define QUADFAST_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl")))
#define QUADFAST_AVX2 __attribute__((target("avx2")))
template <class T>
QUADFAST_AVX512 inline void fused_rows_avx512(T* W, std::ptrdiff_t d, std::ptrdiff_t N, const T* z, const T* x, T ga,
                                              T cp, const T* xn, T* zn) noexcept {
  fused_rows(W, d, N, z, x, ga, cp, xn, zn);
}
template <class T>
QUADFAST_AVX2 inline void fused_rows_avx2(T* W, std::ptrdiff_t d, std::ptrdiff_t N, const T* z, const T* x, T ga,
                                          T cp, const T* xn, T* zn) noexcept {
  fused_rows(W, d, N, z, x, ga, cp, xn, zn);
}
template <class T>
QUADFAST_AVX512 inline void accumulate_avx512(const T* W, std::ptrdiff_t d, std::ptrdiff_t N, const T* x,
                                              T* z) noexcept {
  accumulate(W, d, N, x, z);
}
template <class T>
QUADFAST_AVX2 inline void accumulate_avx2(const T* W, std::ptrdiff_t d, std::ptrdiff_t N, const T* x, T* z) noexcept {
  accumulate(W, d, N, x, z);
}
#endif

enum class Isa { baseline, avx2, avx512 };

inline Isa detect_isa() noexcept {
#ifdef QUADFAST_ROWPASS_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2")) return Isa::avx2;
#endif
  return Isa::baseline;
}

template <class T>
inline void fused_rows_dispatch(T* W, std::ptrdiff_t d, std::ptrdiff_t N, const T* z, const T* x, T ga, T cp,
                                const T* xn, T* zn) noexcept {
  static const Isa isa = detect_isa();
#ifdef QUADFAST_ROWPASS_DISPATCH
  if (isa == Isa::avx512) return fused_rows_avx512(W, d, N, z, x, ga, cp, xn, zn);
  if (isa == Isa::avx2) return fused_rows_avx2(W, d, N, z, x, ga, cp, xn, zn);
#endif
  (void)isa;
  fused_rows(W, d, N, z, x, ga, cp, xn, zn);
}

template <class T>
inline void accumulate_dispatch(const T* W, std::ptrdiff_t d, std::ptrdiff_t N, const T* x, T* z) noexcept {
  static const Isa isa = detect_isa();
#ifdef QUADFAST_ROWPASS_DISPATCH
  if (isa == Isa::avx512) return accumulate_avx512(W, d, N, x, z);
  if (isa == Isa::avx2) return accumulate_avx2(W, d, N, x, z);
#endif
  (void)isa;
  accumulate(W, d, N, x, z);
}

}  // namespace rowpass
}  // namespace quadfast
