// Fixed-point helpers shared by every npukit core: rounding shifts, saturation, isqrt.
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

// floor(sqrt(v)), bit by bit: exact, no floating point, the same on every target.
static inline uint64_t npk_isqrt_u64(uint64_t v) {
  uint64_t root = 0, bit = (uint64_t)1 << 62;
  while (bit > v) bit >>= 2;
  while (bit) {
    if (v >= root + bit) {
      v -= root + bit;
      root = (root >> 1) + bit;
    } else {
      root >>= 1;
    }
    bit >>= 2;
  }
  return root;
}

// floor(log2(v)) for v > 0.
static inline int npk_log2_u64(uint64_t v) { return 63 - __builtin_clzll(v); }

// log2(v) in Q24 for v > 0: the integer part from the leading one, the fraction from `table`
// (257 entries, round(log2(1 + i/256) * 2^24)) interpolated linearly on the next 16 bits.
static inline int64_t npk_log2_q24_u64(uint64_t v, const int32_t *table) {
  const int b = npk_log2_u64(v);
  const uint64_t frac = (v << (63 - b)) << 1;  // the bits below the leading one, left-aligned
  const int i = (int)(frac >> 56);
  const int64_t r = (int64_t)((frac >> 40) & 0xFFFF);
  const int64_t step = (int64_t)table[i + 1] - table[i];
  return ((int64_t)b << 24) + table[i] + npk_round_shift_s64(step * r, 16);
}

#endif
