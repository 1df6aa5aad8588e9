// Tiled int8 matmul with requantisation, the scheme of codegen/kernels/matmul.py.
// The accumulator is a tile buffer of the design (aie.buffer), not core-static state.
#include <stdint.h>

#include "matmul_params.h"
#include "npukit_fixed.h"

// acc (+)= a * b for one tm x tk by tk x tn tile pair; k_index 0 starts a new sum.
extern "C" void matmul_acc_i8(const int8_t *a, const int8_t *b, int32_t *acc, int32_t k_index) {
  if (k_index == 0)
    for (int i = 0; i < MM_TM * MM_TN; ++i) acc[i] = 0;
  for (int i = 0; i < MM_TM; ++i) {
    int32_t *row = acc + i * MM_TN;
    for (int k = 0; k < MM_TK; ++k) {
      const int32_t aik = a[i * MM_TK + k];
      const int8_t *bk = b + k * MM_TN;
      for (int j = 0; j < MM_TN; ++j) row[j] += aik * (int32_t)bk[j];
    }
  }
}

// c = sat(round((acc + bias) * mult >> shift)) for the tile in column-of-tiles n_index.
extern "C" void matmul_out_i8(const int32_t *acc, int8_t *c, int32_t n_index) {
  for (int i = 0; i < MM_TM; ++i) {
    for (int j = 0; j < MM_TN; ++j) {
      const int col = n_index * MM_TN + j;
      const int q = MM_PER_COLUMN ? col : 0;
      int64_t v = acc[i * MM_TN + j];
#if MM_HAS_BIAS
      v += mm_bias[col];
#endif
      c[i * MM_TN + j] = npk_sat_i8(npk_round_shift_s64(v * mm_mult[q], mm_shift[q]));
    }
  }
}
