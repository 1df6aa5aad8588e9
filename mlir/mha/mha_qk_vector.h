// The vector path of the mha core (NPUKIT_VECTOR=1): the scores of one K tile against a group
// of 8 query rows with AIE API int8 mmul blocks, computed as S^T = K . Q^T so that K needs no
// transpose. Layouts (codegen/kernels/mha.py, "Vector path"):
//   K tile (and every Q/K element) as the mem tile streams it: [TK/R][D/8][R][8], each R keys x
//     8 depth block one mmul A operand;
//   Q^T as mha_load_q stores it: [D/8][TQ/8][8][8], each 8 depth x 8 queries block one B operand;
//   the scores of query group qg: [TK][8] int32 (key j, query qg*8 + i at j*8 + i), the C blocks
//     of all key blocks stacked.
// (R, 8, 8) = (4, 8, 8) on aie2, (8, 8, 8) on aie2p: native int8 modes of AIE API's
// "Supported Matrix Multiplication Modes" table. |score| <= D * 2^14 < 2^21: exact in acc32.
// Peano builds include mlir-aie's aie_api; host builds npukit's host subset of it.
#ifndef MHA_QK_VECTOR_H
#define MHA_QK_VECTOR_H

#include <stdint.h>

#include <aie_api/aie.hpp>

#include "mha_params.h"

namespace npukit_mha {

using Mmul = aie::mmul<MHA_R, 8, 8, int8, int8, acc32>;
constexpr unsigned kKeyBlocks = MHA_TK / MHA_R, kDepthBlocks = MHA_D / 8, kGroups = MHA_TQ / 8;
static_assert(MHA_TK % MHA_R == 0 && MHA_D % 8 == 0 && MHA_TQ % 8 == 0,
              "tk, head_dim and tq must be multiples of the mmul block");

}  // namespace npukit_mha

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

#endif
