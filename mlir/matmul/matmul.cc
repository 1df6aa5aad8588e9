// Tiled int8 matmul with requantisation, the scheme of codegen/kernels/matmul.py.
// Tiles arrive blocked as the MAC loop reads them (the mem tiles' dimensionsToStream): A as
// [TM/R][TK/S][R][S], B as [TK/S][TN/T][S][T]; the accumulator and C are [TM/R][TN/T][R][T],
// each R x S, S x T, R x T block contiguous and row-major. The accumulator is a tile buffer of
// the design (aie.buffer), not core-static state.
#include <stdint.h>

#include "matmul_params.h"
#include "npukit_fixed.h"

#ifndef MM_RUNTIME_PARAMS
#define MM_RUNTIME_PARAMS 0
#endif
#if MM_RUNTIME_PARAMS
#include "matmul_records.h"
#endif

#if defined(NPUKIT_VECTOR) && NPUKIT_VECTOR
#include "matmul_mac_vector.h"
#endif

#define MM_RB (MM_TM / MM_R)  // row blocks of A and C
#define MM_KB (MM_TK / MM_S)  // depth blocks of A and B
#define MM_NB (MM_TN / MM_T)  // column blocks of B and C

// acc += a * b over one tile pair, block by block: the scalar reference of the vector MAC.
static void mac_tile_scalar(const int8_t *a, const int8_t *b, int32_t *acc) {
  for (int ib = 0; ib < MM_RB; ++ib) {
    for (int jb = 0; jb < MM_NB; ++jb) {
      int32_t *c = acc + (ib * MM_NB + jb) * MM_R * MM_T;
      for (int kb = 0; kb < MM_KB; ++kb) {
        const int8_t *ab = a + (ib * MM_KB + kb) * MM_R * MM_S;
        const int8_t *bb = b + (kb * MM_NB + jb) * MM_S * MM_T;
        for (int i = 0; i < MM_R; ++i) {
          for (int k = 0; k < MM_S; ++k) {
            const int32_t aik = ab[i * MM_S + k];
            for (int j = 0; j < MM_T; ++j) c[i * MM_T + j] += aik * (int32_t)bb[k * MM_T + j];
          }
        }
      }
    }
  }
}

// acc (+)= a * b for one tm x tk by tk x tn tile pair; k_index 0 starts a new sum.
extern "C" void matmul_acc_i8(const int8_t *a, const int8_t *b, int32_t *acc, int32_t k_index) {
  if (k_index == 0)
    for (int i = 0; i < MM_TM * MM_TN; ++i) acc[i] = 0;
#if defined(NPUKIT_VECTOR) && NPUKIT_VECTOR
  npukit_mac_tile_vector(a, b, acc);
#else
  mac_tile_scalar(a, b, acc);
#endif
}

#if MM_RUNTIME_PARAMS
// c = sat(round((acc + bias) * mult >> shift)) for one tile, each column's values decoded once
// from the tile's record tile `rec`; with epilogue=gelu, c then goes through the tile's table.
static void requant_tile_records(const int32_t *acc, int8_t *c, const int8_t *rec) {
  for (int jb = 0; jb < MM_NB; ++jb) {
    for (int j = 0; j < MM_T; ++j) {
      const MmColumn q = mm_rec_column(rec, jb * MM_T + j);
      for (int ib = 0; ib < MM_RB; ++ib) {
        const int base = (ib * MM_NB + jb) * MM_R * MM_T + j;
        for (int i = 0; i < MM_R; ++i) {
          const int64_t v = (int64_t)acc[base + i * MM_T] + q.bias;
          c[base + i * MM_T] =
              mm_epilogue(rec, npk_sat_i8(npk_round_shift_s64(v * q.mult, q.shift)));
        }
      }
    }
  }
}

extern "C" void matmul_out_i8(const int32_t *acc, int8_t *c, const int8_t *rec) {
#if defined(NPUKIT_VECTOR) && NPUKIT_VECTOR
  npukit_requant_tile_vector_records(acc, c, rec);
#else
  requant_tile_records(acc, c, rec);
#endif
}
#else
// c = sat(round((acc + bias) * mult >> shift)) for the tile in column-of-tiles n_index.
static void requant_tile_scalar(const int32_t *acc, int8_t *c, int32_t n_index) {
  for (int ib = 0; ib < MM_RB; ++ib) {
    for (int jb = 0; jb < MM_NB; ++jb) {
      const int base = (ib * MM_NB + jb) * MM_R * MM_T;
      for (int i = 0; i < MM_R; ++i) {
        for (int j = 0; j < MM_T; ++j) {
          const int col = n_index * MM_TN + jb * MM_T + j;
          const int q = MM_PER_COLUMN ? col : 0;
          int64_t v = acc[base + i * MM_T + j];
#if MM_HAS_BIAS
          v += mm_bias[col];
#endif
          c[base + i * MM_T + j] = npk_sat_i8(npk_round_shift_s64(v * mm_mult[q], mm_shift[q]));
        }
      }
    }
  }
}

extern "C" void matmul_out_i8(const int32_t *acc, int8_t *c, int32_t n_index) {
#if defined(NPUKIT_VECTOR) && NPUKIT_VECTOR
  npukit_requant_tile_vector(acc, c, n_index);
#else
  requant_tile_scalar(acc, c, n_index);
#endif
}
#endif
