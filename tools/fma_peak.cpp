// Peak float64 FMA throughput of one core: 12 independent accumulator chains, so latency
// never limits.  Prints GFlop/s (2 flops per lane per FMA) for 256-bit FMAs (AVX2, 4
// doubles) and, when compiled with AVX-512, for 512-bit FMAs (8 doubles).
// Build: g++ -O2 -mavx2 -mfma tools/fma_peak.cpp -o fma_peak          (AVX2 only)
//        g++ -O2 -mavx512f -mfma tools/fma_peak.cpp -o fma_peak       (both)
// Used to state what the issue-4 targets ask of a machine (README, Benchmarks).
#include <immintrin.h>

#include <chrono>
#include <cstdio>

template <class R, class Set, class Fma, class First>
static double peak(int lanes, Set set, Fma fma, First first, double& sink) {
  const long iters = 200000000;
  R acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = set(1.0 + 1e-9 * i);
  const R a = set(0.999999999), b = set(1e-10);
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    R a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7],
      a8 = acc[8], a9 = acc[9], a10 = acc[10], a11 = acc[11];
    for (long k = 0; k < iters / 12; ++k) {  // 12 independent chains, held in registers
      a0 = fma(a0, a, b); a1 = fma(a1, a, b); a2 = fma(a2, a, b); a3 = fma(a3, a, b);
      a4 = fma(a4, a, b); a5 = fma(a5, a, b); a6 = fma(a6, a, b); a7 = fma(a7, a, b);
      a8 = fma(a8, a, b); a9 = fma(a9, a, b); a10 = fma(a10, a, b); a11 = fma(a11, a, b);
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5;
    acc[6] = a6; acc[7] = a7; acc[8] = a8; acc[9] = a9; acc[10] = a10; acc[11] = a11;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double gf = (iters / 12) * 12.0 * lanes * 2 / s / 1e9;
    best = gf > best ? gf : best;
  }
  for (int i = 0; i < 12; ++i) sink += first(acc[i]);
  return best;
}

int main() {
  double sink = 0;
  const double p256 = peak<__m256d>(
      4, [](double v) { return _mm256_set1_pd(v); }, [](__m256d x, __m256d y, __m256d z) { return _mm256_fmadd_pd(x, y, z); },
      [](__m256d x) { return _mm256_cvtsd_f64(x); }, sink);
  std::printf("peak float64 FMA rate, one core, 256-bit: %.1f GFlop/s\n", p256);
#if defined(__AVX512F__)
  const double p512 = peak<__m512d>(
      8, [](double v) { return _mm512_set1_pd(v); }, [](__m512d x, __m512d y, __m512d z) { return _mm512_fmadd_pd(x, y, z); },
      [](__m512d x) { return _mm512_cvtsd_f64(x); }, sink);
  std::printf("peak float64 FMA rate, one core, 512-bit: %.1f GFlop/s\n", p512);
#endif
  std::printf("(checksum %.3f)\n", sink);
  return 0;
}
