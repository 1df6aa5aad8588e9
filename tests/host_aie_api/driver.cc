// C entry points into npukit's host AIE API subset, for tests/test_host_aie_api.py (ctypes).
// Each function exercises one part of the subset; the Python side computes what the AIE API
// User Guide says the result must be, independently.
#include <stdint.h>

#include <aie_api/aie.hpp>

namespace {
constexpr unsigned L = 16;  // lanes of the element-wise tests
}

extern "C" {

// acc64 = a * b (element-wise), then to_vector<int8 | int16 | int32>(shift) under the modes.
void conv_mul(const int32_t *a, const int32_t *b, int shift, int rounding, int saturation,
              int out_bits, int32_t *out) {
  aie::set_rounding(static_cast<aie::rounding_mode>(rounding));
  aie::set_saturation(static_cast<aie::saturation_mode>(saturation));
  const aie::accum<acc64, L> acc = aie::mul(aie::load_v<L>(a), aie::load_v<L>(b));
  for (unsigned i = 0; i < L; ++i) {
    if (out_bits == 8) out[i] = acc.to_vector<int8>(shift).get(i);
    else if (out_bits == 16) out[i] = acc.to_vector<int16>(shift).get(i);
    else out[i] = acc.to_vector<int32>(shift).get(i);
  }
}

// acc64 = acc + a * b for acc = c * d: mac on top of mul, read back at shift 0.
void mac_mul(const int32_t *a, const int32_t *b, const int32_t *c, const int32_t *d,
             int32_t *hi, uint32_t *lo) {
  const auto acc = aie::mac(aie::mul(aie::load_v<L>(c), aie::load_v<L>(d)), aie::load_v<L>(a),
                            aie::load_v<L>(b));
  for (unsigned i = 0; i < L; ++i) {
    const int64_t v = acc.lane(i);
    hi[i] = (int32_t)(v >> 32);
    lo[i] = (uint32_t)v;
  }
}

// accum<acc32>(vector<int32>, shift) read back through to_vector<int32>(0).
void from_vector_acc32(const int32_t *v, int shift, int32_t *out) {
  aie::set_rounding(aie::rounding_mode::floor);
  aie::set_saturation(aie::saturation_mode::none);
  aie::accum<acc32, L> acc;
  acc.from_vector(aie::load_v<L>(v), shift);
  aie::store_v(out, acc.to_vector<int32>(0));
}

// set_* then get_*: the modes read back as set.
int modes_round_trip(int rounding, int saturation) {
  aie::set_rounding(static_cast<aie::rounding_mode>(rounding));
  aie::set_saturation(static_cast<aie::saturation_mode>(saturation));
  return (int)aie::get_rounding() * 16 + (int)aie::get_saturation();
}

// load_v<L> from src + offset, then store_v to dst + offset; element get/set/[] on the way.
void load_store(const int8_t *src, int8_t *dst, int offset) {
  aie::vector<int8, 32> v = aie::load_v<32>(src + offset);
  v.set((int8)(v.get(1) + 1), 1);
  v[2] = (int8)(v[2] - 1);
  aie::store_v(dst + offset, v);
}

// One mmul<R, S, T> over row-major blocks: c = a . b (mul), then c += a2 . b2 (mac) when
// `twice`; the result starts from `init` when `from_vector` (mmul(vector) constructor).
#define NPK_MMUL_ENTRY(R, S, T)                                                               \
  void mmul_##R##x##S##x##T(const int8_t *a, const int8_t *b, const int8_t *a2,               \
                            const int8_t *b2, const int32_t *init, int from_vector, int twice, \
                            int32_t *c) {                                                      \
    using M = aie::mmul<R, S, T, int8, int8, acc32>;                                      \
    M m = from_vector ? M(aie::load_v<M::size_C>(init)) : M();                                 \
    if (from_vector) m.mac(aie::load_v<M::size_A>(a), aie::load_v<M::size_B>(b));              \
    else m.mul(aie::load_v<M::size_A>(a), aie::load_v<M::size_B>(b));                          \
    if (twice) m.mac(aie::load_v<M::size_A>(a2), aie::load_v<M::size_B>(b2));                  \
    const aie::accum<acc32, M::size_C> acc = m.to_accum();                                \
    aie::store_v(c, M(acc).template to_vector<int32>());                                       \
  }

NPK_MMUL_ENTRY(4, 8, 8)
NPK_MMUL_ENTRY(8, 8, 8)

// mul() after earlier results overwrites them ("Data is overwritten regardless how it was
// initialised").
void mmul_mul_overwrites(const int8_t *a, const int8_t *b, const int32_t *init, int32_t *c) {
  using M = aie::mmul<4, 8, 8, int8, int8, acc32>;
  M m(aie::load_v<M::size_C>(init));
  m.mul(aie::load_v<M::size_A>(a), aie::load_v<M::size_B>(b));
  aie::store_v(c, m.to_vector<int32>());
}

}  // extern "C"
