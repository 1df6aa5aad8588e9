// The vector path of the matmul core (NPUKIT_VECTOR=1): AIE API mmul over the blocked tiles of
// the whole-array layout, and the requantisation of a blocked C tile with vector conversions. A tile [MM_TM/MM_R][MM_TK/MM_S][MM_R][MM_S], B tile
// [MM_TK/MM_S][MM_TN/MM_T][MM_S][MM_T], int32 accumulator and int8 C tile
// [MM_TM/MM_R][MM_TN/MM_T][MM_R][MM_T]: each block is one mmul operand, row-major, so a block is
// one aligned vector load. (MM_R, MM_S, MM_T) = (4, 8, 8) on aie2, (8, 8, 8) on aie2p: the
// native int8 modes of AIE API's "Supported Matrix Multiplication Modes" table.
// Peano builds include mlir-aie's aie_api; host builds npukit's host subset of it.
#ifndef MATMUL_MAC_VECTOR_H
#define MATMUL_MAC_VECTOR_H

#include <stdint.h>

#include <aie_api/aie.hpp>

#include "matmul_params.h"
#include "npukit_fixed.h"

#ifndef MM_RUNTIME_PARAMS
#define MM_RUNTIME_PARAMS 0
#endif
#if MM_RUNTIME_PARAMS
#include "matmul_records.h"
#endif

namespace npukit_mm {

using Mmul = aie::mmul<MM_R, MM_S, MM_T, int8, int8, acc32>;
constexpr unsigned kMB = MM_TM / MM_R, kKB = MM_TK / MM_S, kNB = MM_TN / MM_T;
static_assert(MM_TM % MM_R == 0 && MM_TK % MM_S == 0 && MM_TN % MM_T == 0,
              "tile sizes must be multiples of the mmul block");

// One block of C: acc block (mi, ni) += sum over ki of A(mi, ki) . B(ki, ni).
inline void mac_block(const int8_t *a, const int8_t *b, int32_t *acc, unsigned mi, unsigned ni) {
  int32_t *pc = acc + (mi * kNB + ni) * Mmul::size_C;
  const int8_t *pa = a + mi * kKB * Mmul::size_A;
  const int8_t *pb = b + ni * Mmul::size_B;
  Mmul c(aie::load_v<Mmul::size_C>(pc));
  for (unsigned ki = 0; ki < kKB; ++ki) {
    c.mac(aie::load_v<Mmul::size_A>(pa), aie::load_v<Mmul::size_B>(pb));
    pa += Mmul::size_A;
    pb += kNB * Mmul::size_B;
  }
  aie::store_v(pc, c.template to_vector<int32>());
}

// Four blocks of C at once, (mi, ni) .. (mi+1, ni+1): each A and B block loaded once feeds two
// mmuls, so the loop is bound by the multiplier rather than the loads. Four live accumulators
// fit the register file (more spill, as peers measured on the stock int8 kernel).
inline void mac_quad(const int8_t *a, const int8_t *b, int32_t *acc, unsigned mi, unsigned ni) {
  int32_t *pc00 = acc + (mi * kNB + ni) * Mmul::size_C;
  int32_t *pc01 = pc00 + Mmul::size_C;
  int32_t *pc10 = pc00 + kNB * Mmul::size_C;
  int32_t *pc11 = pc10 + Mmul::size_C;
  const int8_t *pa0 = a + mi * kKB * Mmul::size_A;
  const int8_t *pa1 = pa0 + kKB * Mmul::size_A;
  const int8_t *pb0 = b + ni * Mmul::size_B;
  const int8_t *pb1 = pb0 + Mmul::size_B;
  Mmul c00(aie::load_v<Mmul::size_C>(pc00)), c01(aie::load_v<Mmul::size_C>(pc01));
  Mmul c10(aie::load_v<Mmul::size_C>(pc10)), c11(aie::load_v<Mmul::size_C>(pc11));
  for (unsigned ki = 0; ki < kKB; ++ki) {
    const auto a0 = aie::load_v<Mmul::size_A>(pa0);
    const auto a1 = aie::load_v<Mmul::size_A>(pa1);
    const auto b0 = aie::load_v<Mmul::size_B>(pb0);
    const auto b1 = aie::load_v<Mmul::size_B>(pb1);
    c00.mac(a0, b0);
    c01.mac(a0, b1);
    c10.mac(a1, b0);
    c11.mac(a1, b1);
    pa0 += Mmul::size_A;
    pa1 += Mmul::size_A;
    pb0 += kNB * Mmul::size_B;
    pb1 += kNB * Mmul::size_B;
  }
  aie::store_v(pc00, c00.template to_vector<int32>());
  aie::store_v(pc01, c01.template to_vector<int32>());
  aie::store_v(pc10, c10.template to_vector<int32>());
  aie::store_v(pc11, c11.template to_vector<int32>());
}

// The requantisation of one C block column (all mi for block column ni) when its columns share
// one shift, two block rows (2 x MM_T lanes) at a time: (acc + bias) * mult in acc64 (int32 x
// int32 accumulates in acc64: AIE API "Arithmetic", default accumulator table), then
// to_vector<int8>(shift) rounds half away from zero (rounding_mode::symmetric_inf) and saturates
// (saturation_mode::saturate): exactly npk_sat_i8(npk_round_shift_s64(v * mult, shift)) of the
// scalar path.
constexpr unsigned kLanes = 2 * MM_T;
static_assert(MM_R % 2 == 0, "the requantisation takes two block rows at a time");

#if MM_RUNTIME_PARAMS
// runtime_params=1: the same requantisation with every column's mult, bias and shift decoded
// from the tile's record tile `rec` (matmul_records.h), once per column.
inline void requant_block_column_records(const int32_t *acc, int8_t *c, const int8_t *rec,
                                         unsigned ni, int shift) {
  aie::vector<int32, kLanes> mult, bias;
  for (unsigned j = 0; j < MM_T; ++j) {
    const MmColumn q = mm_rec_column(rec, (int)(ni * MM_T + j));
    mult.set(q.mult, j);
    mult.set(q.mult, j + MM_T);
    bias.set(q.bias, j);
    bias.set(q.bias, j + MM_T);
  }
  for (unsigned mi = 0; mi < kMB; ++mi) {
    const unsigned block = (mi * kNB + ni) * Mmul::size_C;
    for (unsigned at = block; at < block + Mmul::size_C; at += kLanes) {
      const auto prod = aie::mac(aie::mul(aie::load_v<kLanes>(acc + at), mult), bias, mult);
      aie::store_v(c + at, prod.template to_vector<int8>(shift));
    }
  }
}

// The same block column element by element, for columns whose shifts differ.
inline void requant_block_column_records_scalar(const int32_t *acc, int8_t *c,
                                                const int8_t *rec, unsigned ni) {
  for (unsigned j = 0; j < MM_T; ++j) {
    const MmColumn q = mm_rec_column(rec, (int)(ni * MM_T + j));
    for (unsigned mi = 0; mi < kMB; ++mi) {
      const unsigned at = (mi * kNB + ni) * Mmul::size_C + j;
      for (unsigned i = 0; i < MM_R; ++i) {
        const int64_t v = (int64_t)acc[at + i * MM_T] + q.bias;
        c[at + i * MM_T] = npk_sat_i8(npk_round_shift_s64(v * q.mult, q.shift));
      }
    }
  }
}
#else

inline void requant_block_column(const int32_t *acc, int8_t *c, int col0, unsigned ni, int shift) {
  aie::vector<int32, kLanes> mult;
#if MM_HAS_BIAS
  aie::vector<int32, kLanes> bias;
#endif
  for (unsigned l = 0; l < kLanes; ++l) {
    mult.set(mm_mult[MM_PER_COLUMN ? col0 + (int)(l % MM_T) : 0], l);
#if MM_HAS_BIAS
    bias.set(mm_bias[col0 + l % MM_T], l);
#endif
  }
  for (unsigned mi = 0; mi < kMB; ++mi) {
    const unsigned block = (mi * kNB + ni) * Mmul::size_C;
    for (unsigned at = block; at < block + Mmul::size_C; at += kLanes) {
#if MM_HAS_BIAS
      const auto prod = aie::mac(aie::mul(aie::load_v<kLanes>(acc + at), mult), bias, mult);
#else
      const auto prod = aie::mul(aie::load_v<kLanes>(acc + at), mult);
#endif
      aie::store_v(c + at, prod.template to_vector<int8>(shift));
    }
  }
}

// The same block column element by element, for columns whose shifts differ.
inline void requant_block_column_scalar(const int32_t *acc, int8_t *c, int col0, unsigned ni) {
  for (unsigned mi = 0; mi < kMB; ++mi) {
    const unsigned at = (mi * kNB + ni) * Mmul::size_C;
    for (unsigned i = 0; i < MM_R; ++i)
      for (unsigned j = 0; j < MM_T; ++j) {
        const int q = MM_PER_COLUMN ? col0 + (int)j : 0;
        int64_t v = acc[at + i * MM_T + j];
#if MM_HAS_BIAS
        v += mm_bias[col0 + j];
#endif
        c[at + i * MM_T + j] = npk_sat_i8(npk_round_shift_s64(v * mm_mult[q], mm_shift[q]));
      }
  }
}

#endif

}  // namespace npukit_mm

#if MM_RUNTIME_PARAMS
// c = sat(round((acc + bias) * mult >> shift)) for one blocked C tile, its columns' values in the
// record tile `rec`; with epilogue=gelu, then T[c + 128] from the same tile.
static inline void npukit_requant_tile_vector_records(const int32_t *__restrict acc,
                                                      int8_t *__restrict c,
                                                      const int8_t *__restrict rec) {
  using namespace npukit_mm;
  aie::set_rounding(aie::rounding_mode::symmetric_inf);
  aie::set_saturation(aie::saturation_mode::saturate);
  for (unsigned ni = 0; ni < kNB; ++ni) {
    const int shift = (int)mm_rec_byte(rec, MM_REC_SHIFT, (int)(ni * MM_T));
    bool uniform = true;
    for (unsigned j = 1; j < MM_T; ++j)
      uniform &= (int)mm_rec_byte(rec, MM_REC_SHIFT, (int)(ni * MM_T + j)) == shift;
    if (uniform)
      requant_block_column_records(acc, c, rec, ni, shift);
    else
      requant_block_column_records_scalar(acc, c, rec, ni);
  }
#if MM_EPILOGUE_GELU
  // epilogue=gelu: one pass over the requantised tile through the record tile's table (AIE API
  // has no int8 table gather, so element by element).
  for (unsigned i = 0; i < MM_TM * MM_TN; ++i) c[i] = mm_epilogue(rec, c[i]);
#endif
}
#else
// c = sat(round((acc + bias) * mult >> shift)) for one blocked C tile in column-of-tiles n_index.
static inline void npukit_requant_tile_vector(const int32_t *__restrict acc,
                                              int8_t *__restrict c, int32_t n_index) {
  using namespace npukit_mm;
  aie::set_rounding(aie::rounding_mode::symmetric_inf);
  aie::set_saturation(aie::saturation_mode::saturate);
  for (unsigned ni = 0; ni < kNB; ++ni) {
    const int col0 = n_index * MM_TN + (int)(ni * MM_T);
    const int shift = mm_shift[MM_PER_COLUMN ? col0 : 0];
    bool uniform = true;
    for (unsigned j = 1; MM_PER_COLUMN && j < MM_T; ++j) uniform &= mm_shift[col0 + j] == shift;
    if (uniform)
      requant_block_column(acc, c, col0, ni, shift);
    else
      requant_block_column_scalar(acc, c, col0, ni);
  }
}
#endif

// acc += A . B for one blocked tile pair (the caller zeroes acc before the first k tile).
static inline void npukit_mac_tile_vector(const int8_t *__restrict a, const int8_t *__restrict b,
                                          int32_t *__restrict acc) {
  using namespace npukit_mm;
  if constexpr (kMB % 2 == 0 && kNB % 2 == 0) {
    for (unsigned mi = 0; mi < kMB; mi += 2)
      for (unsigned ni = 0; ni < kNB; ni += 2) mac_quad(a, b, acc, mi, ni);
  } else {
    for (unsigned mi = 0; mi < kMB; ++mi)
      for (unsigned ni = 0; ni < kNB; ++ni) mac_block(a, b, acc, mi, ni);
  }
}

#endif
