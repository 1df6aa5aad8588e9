// The vector path of the mha core (NPUKIT_VECTOR=1): QK^T and PV on AIE API int8 mmul blocks,
// per group of 8 query rows; the softmax between them stays scalar (mha.cc). Layouts
// (codegen/kernels/mha.py, "Vector path"):
//   QK^T as S^T = K . Q^T, so the K tile needs no transpose:
//     K tile (and every Q/K element) as the mem tile streams it: [TK/R][D/8][R][8], each R keys x
//       8 depth block one A operand;
//     Q^T as mha_load_q stores it: [D/8][TQ/8][8][8], each 8 depth x 8 queries block one B;
//     the scores of query group qg: [TK][8] int32 (key j, query qg*8 + i at j*8 + i).
//   PV with the Q24 weights split into MHA_DIGITS int8 digits of MHA_DIGIT_BITS bits,
//     p = sum_k digit_k 2^(7k) (digits 0..127, the top one 0..8):
//     V tile as the mem tile streams it: [TK/8][D/8][8][8], each 8 keys x 8 depth block one B;
//     the group's weights, stored so by the softmax: [8/R][TK/8][R][8] uint32 (weight_at), and
//       their digits, split by vector shifts: [MHA_DIGITS][8/R][TK/8][R][8] int8, each R rows x
//       8 keys block one A operand;
//     the digit sums: MHA_DIGITS arrays [TQ/R][D/8][R][8] int32 after acc's int64 rows, each
//       R rows x 8 depth block one C. A row's value is acc + sum_k sums_k 2^(7k), folded into
//       acc (and the sums zeroed) before the row is rescaled; mha_end reads it whole.
// Exact: |score| <= D * 2^14 < 2^21, and a digit sum gathers at most 127 * 128 per key over at
// most 32767 keys between folds, < 2^29: no lane of acc32 wraps, so the integers are the scalar
// path's. (R, 8, 8) = (4, 8, 8) on aie2, (8, 8, 8) on aie2p: native int8 modes of AIE API's
// "Supported Matrix Multiplication Modes" table.
// Peano builds include mlir-aie's aie_api; host builds npukit's host subset of it.
#ifndef MHA_VECTOR_H
#define MHA_VECTOR_H

#include <stdint.h>

#include <aie_api/aie.hpp>

#include "mha_params.h"

#define MHA_DIGITS 4
#define MHA_DIGIT_BITS 7

namespace npukit_mha {

using Mmul = aie::mmul<MHA_R, 8, 8, int8, int8, acc32>;
constexpr unsigned kKeyBlocks = MHA_TK / MHA_R, kDepthBlocks = MHA_D / 8, kGroups = MHA_TQ / 8;
constexpr unsigned kKeyBlocks8 = MHA_TK / 8, kRowBlocks = 8 / MHA_R;
static_assert(MHA_TK % 8 == 0 && MHA_D % 8 == 0 && MHA_TQ % 8 == 0 && 8 % MHA_R == 0,
              "tk, head_dim and tq must be multiples of the mmul block");
static_assert((((1u << MHA_P_BITS) >> ((MHA_DIGITS - 1) * MHA_DIGIT_BITS)) <= 127) &&
                  MHA_DIGITS * MHA_DIGIT_BITS > MHA_P_BITS,
              "the weights' digits must be int8 and cover the Q24 weights");

// Lane of the group's weights / digits (row ii of the group, key j): the A-operand order.
constexpr unsigned weight_at(unsigned ii, unsigned j) {
  return ((ii / MHA_R) * kKeyBlocks8 + j / 8) * Mmul::size_A + (ii % MHA_R) * 8 + j % 8;
}

// Byte of the sums' element (row i, depth d) within one digit's array.
constexpr unsigned sum_at(unsigned i, unsigned d) {
  return ((i / MHA_R) * kDepthBlocks + d / 8) * Mmul::size_C + (i % MHA_R) * 8 + d % 8;
}

}  // namespace npukit_mha

// The digit sums after acc's int64 rows.
static inline int32_t *mha_digit_sums(int64_t *acc) { return (int32_t *)(acc + MHA_TQ * MHA_D); }

// score[j * 8 + i] = q_{qg*8+i} . k_j for the tile's TK keys and query group qg.
static inline void mha_qk_group_vector(const int8_t *__restrict qt, const int8_t *__restrict k,
                                       int32_t *__restrict score, unsigned qg) {
  using namespace npukit_mha;
  for (unsigned jb = 0; jb < kKeyBlocks; ++jb) {
    const int8_t *pk = k + jb * kDepthBlocks * Mmul::size_A;
    const int8_t *pq = qt + qg * Mmul::size_B;
    Mmul c;
    c.mul(aie::load_v<Mmul::size_A>(pk), aie::load_v<Mmul::size_B>(pq));
    for (unsigned kb = 1; kb < kDepthBlocks; ++kb) {
      pk += Mmul::size_A;
      pq += kGroups * Mmul::size_B;
      c.mac(aie::load_v<Mmul::size_A>(pk), aie::load_v<Mmul::size_B>(pq));
    }
    aie::store_v(score + jb * Mmul::size_C, c.template to_vector<int32>());
  }
}

// The group's weights as MHA_DIGITS int8 digit operands, Mmul::size_A lanes at a time:
// q_k = p >> 7k (floor), digit_k = q_k - 128 q_{k+1} (in acc64, exact, 0..127). pw holds the
// weights in the digits' order ([8/R][TK/8][R][8], weight_at), digits is [MHA_DIGITS][8 * TK].
static inline void mha_group_digits_vector(const uint32_t *__restrict pw,
                                           int8_t *__restrict digits) {
  using namespace npukit_mha;
  constexpr unsigned n = Mmul::size_A;
  using Acc = aie::accum<acc64, n>;
  aie::set_rounding(aie::rounding_mode::floor);
  aie::vector<int16, n> radix;  // -2^7 in every lane
  for (unsigned l = 0; l < n; ++l) radix.set((int16)-(1 << MHA_DIGIT_BITS), l);
  for (unsigned at = 0; at < 8 * MHA_TK; at += n) {
    const Acc p(aie::load_v<n>((const int32_t *)pw + at));  // p <= 2^24: a valid int32
    aie::vector<int32, n> q = p.template to_vector<int32>(0);
    for (unsigned k = 0; k < MHA_DIGITS; ++k) {
      const aie::vector<int32, n> next = p.template to_vector<int32>((k + 1) * MHA_DIGIT_BITS);
      aie::store_v(digits + k * 8 * MHA_TK + at,
                   aie::mac(Acc(q), next, radix).template to_vector<int8>(0));
      q = next;
    }
  }
}

// sums_k(group qg) += digits_k . V for every digit k: MHA_DIGITS x 8/R x D/8 C blocks, each over
// TK/8 key blocks.
static inline void mha_pv_group_vector(const int8_t *__restrict digits,
                                       const int8_t *__restrict v, int32_t *__restrict sums,
                                       unsigned qg) {
  using namespace npukit_mha;
  for (unsigned k = 0; k < MHA_DIGITS; ++k) {
    for (unsigned rb = 0; rb < kRowBlocks; ++rb) {
      const int8_t *pa0 = digits + k * 8 * MHA_TK + rb * kKeyBlocks8 * Mmul::size_A;
      int32_t *pc =
          sums + k * MHA_TQ * MHA_D + (qg * kRowBlocks + rb) * kDepthBlocks * Mmul::size_C;
      for (unsigned db = 0; db < kDepthBlocks; ++db, pc += Mmul::size_C) {
        Mmul c(aie::load_v<Mmul::size_C>(pc));
        const int8_t *pa = pa0, *pb = v + db * Mmul::size_B;
        for (unsigned kb = 0; kb < kKeyBlocks8; ++kb) {
          c.mac(aie::load_v<Mmul::size_A>(pa), aie::load_v<Mmul::size_B>(pb));
          pa += Mmul::size_A;
          pb += kDepthBlocks * Mmul::size_B;
        }
        aie::store_v(pc, c.template to_vector<int32>());
      }
    }
  }
}

// Row i's value at depth d: acc + sum_k sums_k 2^(7k).
static inline int64_t mha_acc_value(const int64_t *acc, unsigned i, unsigned d) {
  const int32_t *sums = (const int32_t *)(acc + MHA_TQ * MHA_D);
  int64_t a = acc[i * MHA_D + d];
  for (unsigned k = 0; k < MHA_DIGITS; ++k)
    a += (int64_t)sums[k * MHA_TQ * MHA_D + npukit_mha::sum_at(i, d)] *
         ((int64_t)1 << (k * MHA_DIGIT_BITS));
  return a;
}

// Row i's digit sums folded into its int64 row ai (before a rescale), the sums zeroed.
static inline void mha_fold_row(int64_t *ai, int32_t *sums, unsigned i) {
  for (unsigned d = 0; d < MHA_D; ++d) {
    int64_t a = ai[d];
    for (unsigned k = 0; k < MHA_DIGITS; ++k) {
      int32_t *s = sums + k * MHA_TQ * MHA_D + npukit_mha::sum_at(i, d);
      a += (int64_t)*s * ((int64_t)1 << (k * MHA_DIGIT_BITS));
      *s = 0;
    }
    ai[d] = a;
  }
}

#endif
