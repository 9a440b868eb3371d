/* A small, fast, seeded random generator (xoshiro256**).  Each thread owns
   its own state, so runs are reproducible and nothing is shared. */
#ifndef MOONFM_RNG_H
#define MOONFM_RNG_H

#include <stdint.h>

typedef struct mfm_rng {
  uint64_t s[4];
} mfm_rng;

/* Seeds the state from one 64-bit value (through splitmix64). */
void mfm_rng_seed(mfm_rng *r, uint64_t seed);

static inline uint64_t mfm_rng_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t mfm_rng_next(mfm_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = mfm_rng_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = mfm_rng_rotl(s[3], 45);
  return result;
}

/* Uniform integer in [0, n), n > 0, without division (Lemire's method,
   with the rare rejection step skipped: the bias is below 2^-32 for the
   n < 2^31 we use). */
static inline uint32_t mfm_rng_below(mfm_rng *r, uint32_t n) {
  uint64_t x = mfm_rng_next(r) >> 32;
  return (uint32_t)((x * (uint64_t)n) >> 32);
}

/* Uniform float in [0, 1). */
static inline float mfm_rng_float(mfm_rng *r) {
  return (float)(mfm_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform double in [0, 1). */
static inline double mfm_rng_double(mfm_rng *r) {
  return (double)(mfm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal draw (Box-Muller; one value per call). */
double mfm_rng_normal(mfm_rng *r);

#endif
