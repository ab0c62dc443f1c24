// Counts heap allocations made while the kernels step (after a warm-up call), by
// interposing malloc/calloc/realloc/posix_memalign/aligned_alloc (glibc).
// Prints one line per kernel configuration (StiefelKernel, then EuclidKernel: "euclid_*",
// whose allocations are -1 if a run diverged):
//   "<name> steps=<n> allocations=<count> corrections=<full re-orthonormalisations>".
// The step loop must allocate nothing; a full re-orthonormalisation (rare: N x N
// eigendecomposition) may use up to 16 temporary allocations.  Exit status 0 iff both hold.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "quadfast/quadfast.hpp"

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}
static std::atomic<long> g_count{0};
static std::atomic<bool> g_on{false};
extern "C" void* malloc(std::size_t n) {
  if (g_on.load(std::memory_order_relaxed)) ++g_count;
  return __libc_malloc(n);
}
extern "C" void* calloc(std::size_t a, std::size_t b) {
  if (g_on.load(std::memory_order_relaxed)) ++g_count;
  return __libc_calloc(a, b);
}
extern "C" void* realloc(void* p, std::size_t n) {
  if (g_on.load(std::memory_order_relaxed)) ++g_count;
  return __libc_realloc(p, n);
}
extern "C" int posix_memalign(void** p, std::size_t a, std::size_t n) {
  if (g_on.load(std::memory_order_relaxed)) ++g_count;
  *p = __libc_memalign(a, n);
  return *p ? 0 : 12;
}
extern "C" void* aligned_alloc(std::size_t a, std::size_t n) {
  if (g_on.load(std::memory_order_relaxed)) ++g_count;
  return __libc_memalign(a, n);
}

using namespace quadfast;

struct Count { long allocations; long corrections; };

template <class T>
Count count_allocs(Index d, Index N, Index batch, Index block, std::int64_t steps, bool explicit_frame, Index threads,
                   bool euclid, bool factor_all = false) {
  const Index r = N;
  std::vector<T> coef(r, T(1) / std::sqrt(T(r)));
  RowMat<T> theta = RowMat<T>::Zero(d, r);
  for (Index j = 0; j < r; ++j) theta(j, j) = 1;
  TeacherView<T> tv{d, r, coef.data(), explicit_frame ? theta.data() : nullptr, 0.1};
  RowMat<T> W = RowMat<T>::Zero(d, N);
  for (Index j = 0; j < N; ++j) W(2 * j + 1, j) = 1;
  if (euclid) {  // the unconstrained student: no corrections
    EuclidKernel<T> k(d, N, batch, 1e-3 / static_cast<double>(d), tv, 7, block, threads);
    k.advance(W.data(), 3 * (block > 1 ? block : 1));  // warm-up
    g_count = 0;
    g_on = true;
    const EuclidAdvance r = k.advance(W.data(), steps);
    g_on = false;
    return Count{r.steps_done == steps ? g_count.load() : -1, 0};
  }
  StiefelKernel<T> k(d, N, batch, 1e-3 / static_cast<double>(d), tv, 7, OrthoPolicy{}, block, threads);  // default tol per precision
  if (factor_all) k.set_factored(true);  // the factored form in the packed products too
  k.advance(W.data(), 3 * (block > 1 ? block : 1));  // warm-up: lazily initialised statics
  k.reorthonormalize(W.data());
  const long before = static_cast<long>(k.state().n_reortho);
  g_count = 0;
  g_on = true;
  k.advance(W.data(), steps);
  g_on = false;
  return Count{g_count.load(), static_cast<long>(k.state().n_reortho) - before};
}

int main(int argc, char** argv) {
  const int only = argc > 1 ? std::atoi(argv[1]) : -1;  // run one case (for debugging)
  struct Case { const char* name; Index d, N, batch, block; bool expl; bool f32; Index threads; bool euclid = false; bool factor_all = false; };
  const Case cases[] = {
      {"sequential", 512, 32, 1, 1, false, false, 1},       {"sequential_explicit", 512, 32, 1, 1, true, false, 1},
      {"batch4", 512, 32, 4, 1, false, false, 1},           {"blocked_k32", 512, 32, 1, 32, false, false, 1},
      {"blocked_k64_N256", 2048, 256, 1, 64, false, false, 1}, {"blocked_k32_f32", 512, 32, 1, 32, false, true, 1},
      {"blocked_batch4_k8_explicit", 1024, 32, 4, 8, true, false, 1},
      {"blocked_k32_threads2", 2048, 64, 1, 32, false, false, 2},
      {"blocked_k32_N160_factored_packed_threads2", 2560, 160, 1, 32, false, false, 2, false, true},
      {"euclid_sequential", 512, 32, 1, 1, false, false, 1, true},
      {"euclid_batch4", 512, 32, 4, 1, true, false, 1, true},
      {"euclid_blocked_k32", 2048, 64, 1, 32, false, false, 1, true},
      {"euclid_blocked_k32_threads2", 2048, 64, 1, 32, false, false, 2, true},
      {"euclid_blocked_k16_explicit_f32_threads2", 1024, 32, 1, 16, true, true, 2, true},
  };
  bool ok = true;
  int idx = -1;
  for (const auto& c : cases) {
    if (++idx, only >= 0 && idx != only) continue;
    const std::int64_t steps = 500;
    const Count n = c.f32 ? count_allocs<float>(c.d, c.N, c.batch, c.block, steps, c.expl, c.threads, c.euclid)
                          : count_allocs<double>(c.d, c.N, c.batch, c.block, steps, c.expl, c.threads, c.euclid, c.factor_all);
    std::printf("%s steps=%lld allocations=%ld corrections=%ld\n", c.name, static_cast<long long>(steps),
                n.allocations, n.corrections);
    ok = ok && n.allocations >= 0 && n.allocations <= 16 * n.corrections;
  }
  return ok ? 0 : 1;
}
