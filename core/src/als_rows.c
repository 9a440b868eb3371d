/* The ALS row solvers for this CPU: the kernels of als_rows.h built for
   AVX-512, AVX2+FMA and the baseline, each with its own vector width,
   and the widest the CPU runs picked once. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "als_impl.h"
#include "moonfm/stop.h"

/* ISO C mode turns FMA contraction off; the kernels want it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

typedef float mfm_v8 __attribute__((vector_size(32)));
typedef float mfm_v4 __attribute__((vector_size(16)));

#define ALS_VW 4
#define ALS_SFX base
#define ALS_TARGET
#include "als_rows.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define MFM_X86_DISPATCH 1
#define ALS_VW 8
#define ALS_SFX avx2
#define ALS_TARGET __attribute__((target("avx2,fma")))
#include "als_rows.h"

#define ALS_VW 16
#define ALS_SFX avx512
#define ALS_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#include "als_rows.h"
#endif

static mfm_als_kernels widest(void) {
#ifdef MFM_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
    return (mfm_als_kernels){solve_rows_avx512, loss_rows_avx512, "avx512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return (mfm_als_kernels){solve_rows_avx2, loss_rows_avx2, "avx2"};
#endif
  return (mfm_als_kernels){solve_rows_base, loss_rows_base, "base"};
}

static mfm_als_kernels forced;

mfm_als_kernels mfm_als_kernels_pick(void) {
  return forced.solve ? forced : widest();
}

int mfm_als_kernels_force(const char *isa) {
  mfm_als_kernels none = {0}, base = {solve_rows_base, loss_rows_base, "base"};
  if (!isa) {
    forced = none;
    return 1;
  }
  if (strcmp(isa, "base") == 0) {
    forced = base;
    return 1;
  }
#ifdef MFM_X86_DISPATCH
  __builtin_cpu_init();
  if (strcmp(isa, "avx2") == 0 && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    forced = (mfm_als_kernels){solve_rows_avx2, loss_rows_avx2, "avx2"};
    return 1;
  }
  if (strcmp(isa, "avx512") == 0 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512vl")) {
    forced = (mfm_als_kernels){solve_rows_avx512, loss_rows_avx512, "avx512"};
    return 1;
  }
#endif
  return 0;
}
