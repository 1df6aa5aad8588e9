// Fixed-point helpers shared by every npukit core: rounding shifts and saturation.
// Plain C++ so that Peano (aie2) and the host compiler build the same code.
#ifndef NPUKIT_FIXED_H
#define NPUKIT_FIXED_H

#include <stdint.h>

// x / 2^shift rounded to nearest, ties away from zero (shift >= 1).
static inline int64_t npk_round_shift_s64(int64_t x, int shift) {
  const int64_t half = (int64_t)1 << (shift - 1);
  return x >= 0 ? (x + half) >> shift : -((-x + half) >> shift);
}

static inline int8_t npk_sat_i8(int64_t x) {
  return (int8_t)(x > 127 ? 127 : (x < -128 ? -128 : x));
}

#endif
