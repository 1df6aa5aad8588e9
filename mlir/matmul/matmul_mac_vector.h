// The vector path of the matmul core (NPUKIT_VECTOR=1): AIE API mmul over the blocked tiles of
// the whole-array layout. A tile [MM_TM/MM_R][MM_TK/MM_S][MM_R][MM_S], B tile
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

namespace npukit_mm {

using Mmul = aie::mmul<MM_R, MM_S, MM_T, int8, int8, aie::acc32>;
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

}  // namespace npukit_mm

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
