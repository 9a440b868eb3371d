/* A tiny test harness: CHECK(cond) counts, DONE(area) prints the closing
   line "<area>: N passed, N failed" and gives the exit status. */
#ifndef MOONFM_TEST_CHECK_H
#define MOONFM_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (cond) {                                                          \
      check_passed++;                                                    \
    } else {                                                             \
      check_failed++;                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                    \
    }                                                                    \
  } while (0)

/* |a - b| <= tol * max(1, |a|, |b|) */
#define CHECK_NEAR(a, b, tol)                                            \
  do {                                                                   \
    double a_ = (a), b_ = (b), m_ = fabs(a_) > fabs(b_) ? fabs(a_) : fabs(b_); \
    if (m_ < 1) m_ = 1;                                                  \
    if (fabs(a_ - b_) <= (tol) * m_) {                                   \
      check_passed++;                                                    \
    } else {                                                             \
      check_failed++;                                                    \
      fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g\n", \
              __FILE__, __LINE__, #a, a_, #b, b_);                       \
    }                                                                    \
  } while (0)

#define DONE(area)                                                       \
  do {                                                                   \
    printf("%s: %d passed, %d failed\n", area, check_passed, check_failed); \
    return check_failed ? 1 : 0;                                         \
  } while (0)

#endif
