// runtime_params=1: the per-column requantisation records of one output tile, decoded from the
// record tile (B's last k-tile, codegen/kernels/matmul.py), which arrives blocked like any B
// tile, [MM_TK/MM_S][MM_TN/MM_T][MM_S][MM_T]. Record of tile column j: rows 0-3 the multiplier,
// int32 little-endian bytes; rows 4-7 the bias, likewise; row 8 the shift (1..62).
// epilogue=gelu: the layer's 256-entry GELU table at byte MM_REC_TABLE of the blocked tile.
#ifndef MATMUL_RECORDS_H
#define MATMUL_RECORDS_H

#include <stdint.h>

#include "matmul_params.h"

#define MM_REC_MULT 0
#define MM_REC_BIAS 4
#define MM_REC_SHIFT 8

// The byte at row k, column j of the blocked record tile.
static inline uint32_t mm_rec_byte(const int8_t *rec, int k, int j) {
  const int block = (k / MM_S) * (MM_TN / MM_T) + j / MM_T;
  return (uint8_t)rec[block * MM_S * MM_T + (k % MM_S) * MM_T + j % MM_T];
}

// The little-endian int32 in rows k0..k0+3 of column j.
static inline int32_t mm_rec_word(const int8_t *rec, int k0, int j) {
  return (int32_t)(mm_rec_byte(rec, k0, j) | mm_rec_byte(rec, k0 + 1, j) << 8 |
                   mm_rec_byte(rec, k0 + 2, j) << 16 | mm_rec_byte(rec, k0 + 3, j) << 24);
}

// The requantisation of one column of the tile: c = sat(round((acc + bias) * mult >> shift)).
struct MmColumn {
  int32_t mult, bias, shift;
};

static inline MmColumn mm_rec_column(const int8_t *rec, int j) {
  return MmColumn{mm_rec_word(rec, MM_REC_MULT, j), mm_rec_word(rec, MM_REC_BIAS, j),
                  (int32_t)mm_rec_byte(rec, MM_REC_SHIFT, j)};
}

#ifndef MM_EPILOGUE_GELU
#define MM_EPILOGUE_GELU 0
#endif

// The output step after the requantisation: epilogue=gelu maps the int8 pre-activation v
// through the record tile's table, T[v + 128]; otherwise v as it is.
static inline int8_t mm_epilogue(const int8_t *rec, int8_t v) {
#if MM_EPILOGUE_GELU
  return rec[MM_REC_TABLE + (int)v + 128];
#else
  (void)rec;
  return v;
#endif
}

#endif
