// Peak float64 FMA throughput of one core (AVX2: 4 doubles per FMA): 12 independent
// accumulator chains, so latency never limits.  Prints GFlop/s (2 flops per lane per FMA).
// Build: g++ -O2 -mavx2 -mfma tools/fma_peak.cpp -o fma_peak
// Used to state what the issue-4 targets ask of a machine (README, Benchmarks).
#include <immintrin.h>

#include <chrono>
#include <cstdio>

int main() {
  const long iters = 200000000;
  __m256d acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_pd(1.0 + 1e-9 * i);
  const __m256d a = _mm256_set1_pd(0.999999999), b = _mm256_set1_pd(1e-10);
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    __m256d a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6],
            a7 = acc[7], a8 = acc[8], a9 = acc[9], a10 = acc[10], a11 = acc[11];
    for (long k = 0; k < iters / 12; ++k) {  // 12 independent chains, held in registers
      a0 = _mm256_fmadd_pd(a0, a, b); a1 = _mm256_fmadd_pd(a1, a, b); a2 = _mm256_fmadd_pd(a2, a, b);
      a3 = _mm256_fmadd_pd(a3, a, b); a4 = _mm256_fmadd_pd(a4, a, b); a5 = _mm256_fmadd_pd(a5, a, b);
      a6 = _mm256_fmadd_pd(a6, a, b); a7 = _mm256_fmadd_pd(a7, a, b); a8 = _mm256_fmadd_pd(a8, a, b);
      a9 = _mm256_fmadd_pd(a9, a, b); a10 = _mm256_fmadd_pd(a10, a, b); a11 = _mm256_fmadd_pd(a11, a, b);
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5;
    acc[6] = a6; acc[7] = a7; acc[8] = a8; acc[9] = a9; acc[10] = a10; acc[11] = a11;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double gf = (iters / 12) * 12.0 * 4 * 2 / s / 1e9;
    best = gf > best ? gf : best;
  }
  double sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm256_cvtsd_f64(acc[i]);
  std::printf("peak float64 FMA rate, one core: %.1f GFlop/s (checksum %.3f)\n", best, sink);
  return 0;
}
