// npukit's host stand-in for AIE API: exactly the subset npukit's core code uses, written from
// the AIE API User Guide (UG1529, "AI Engine API User Guide (AIE-API)") so that vector core code
// compiles with the host C++ compiler and runs in the emulator. Only the host-core stage puts
// this folder on the include path; Peano builds include mlir-aie's real aie_api headers.
// Sections of the guide each part follows are named beside it; tests/test_host_aie_api.py has
// one test per behaviour used, citing the same section.
//
// Architecture: NPUKIT_AIE_ARCH 20 = AIE-ML/XDNA1 (aie2, npu1), 21 = XDNA2 (aie2p, npu2),
// set by the host-core stage from the build's device.
#ifndef NPUKIT_HOST_AIE_API_AIE_HPP
#define NPUKIT_HOST_AIE_API_AIE_HPP

#include <stdint.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <type_traits>

#ifndef NPUKIT_AIE_ARCH
#error "host AIE API subset: define NPUKIT_AIE_ARCH (20 = aie2, 21 = aie2p)"
#endif
#if NPUKIT_AIE_ARCH != 20 && NPUKIT_AIE_ARCH != 21
#error "host AIE API subset: NPUKIT_AIE_ARCH must be 20 (aie2) or 21 (aie2p)"
#endif

// AIE API's scalar type names (types.hpp).
using int8 = int8_t;
using int16 = int16_t;
using int32 = int32_t;

// Accumulator Element Types: the tags acc32 ("at least 32 bit per element") and acc64, declared
// at global scope as the guide declares them (aie::accum<acc32, 16>, not aie::acc32).
struct acc32 { static constexpr unsigned bits = 32; };
struct acc64 { static constexpr unsigned bits = 64; };

namespace aie {

// --- Configuration: rounding_mode, saturation_mode, set/get_rounding, set/get_saturation ------
enum class rounding_mode : unsigned {
  floor,           // always towards negative infinity
  ceil,            // always towards positive infinity
  positive_inf,    // nearest, half-way towards positive infinity
  negative_inf,    // nearest, half-way towards negative infinity
  symmetric_inf,   // nearest, half-way away from zero
  symmetric_zero,  // nearest, half-way towards zero
  conv_even,       // nearest, half-way to the even neighbour
  conv_odd,        // nearest, half-way to the odd neighbour
};

enum class saturation_mode : unsigned {
  none,      // values overflow (wrap to the element width)
  truncate,  // deprecated spelling of saturate
  saturate,  // clamp to the type's minimum/maximum
  symmetric, // clamp to [-max, max] (signed types)
};

namespace detail {
// The mode registers of the one core whose code is running (the emulator runs cores one call at
// a time, and npukit's kernels set the modes they rely on before converting).
inline rounding_mode g_rounding = rounding_mode::floor;
inline saturation_mode g_saturation = saturation_mode::none;

[[noreturn]] inline void fail(const char *what) {
  std::fprintf(stderr, "host AIE API subset: %s\n", what);
  std::abort();
}

// x / 2^shift rounded as `mode` says (0 <= shift < 64), in 128-bit arithmetic.
inline __int128 round_shift(__int128 x, int shift, rounding_mode mode) {
  if (shift == 0) return x;
  const __int128 one = 1;
  const __int128 q = x >> shift;  // floor: arithmetic shift of a signed value
  const __int128 rem = x - (q << shift);
  const __int128 half = one << (shift - 1);
  switch (mode) {
    case rounding_mode::floor: return q;
    case rounding_mode::ceil: return q + (rem != 0);
    default: break;
  }
  if (rem < half) return q;
  if (rem > half) return q + 1;
  switch (mode) {  // exactly half-way
    case rounding_mode::positive_inf: return q + 1;
    case rounding_mode::negative_inf: return q;
    case rounding_mode::symmetric_inf: return x >= 0 ? q + 1 : q;
    case rounding_mode::symmetric_zero: return x >= 0 ? q : q + 1;
    case rounding_mode::conv_even: return q + (q & 1);
    case rounding_mode::conv_odd: return q + ((q & 1) ^ 1);
    default: return q;
  }
}

// Saturate (or wrap) `x` into T as `mode` says.
template <typename T>
T narrow(__int128 x, saturation_mode mode) {
  static_assert(std::is_integral_v<T>, "host AIE API subset: integral vectors only");
  constexpr __int128 hi = std::numeric_limits<T>::max();
  constexpr __int128 lo = std::numeric_limits<T>::min();
  switch (mode) {
    case saturation_mode::saturate:
    case saturation_mode::truncate:
      return (T)(x > hi ? hi : (x < lo ? lo : x));
    case saturation_mode::symmetric: {
      const __int128 l = std::is_signed_v<T> ? -hi : lo;
      return (T)(x > hi ? hi : (x < l ? l : x));
    }
    default:
      return (T)(std::make_unsigned_t<T>)(unsigned __int128)x;  // two's-complement wrap
  }
}
}  // namespace detail

inline void set_rounding(rounding_mode m) { detail::g_rounding = m; }
inline rounding_mode get_rounding() { return detail::g_rounding; }
inline void set_saturation(saturation_mode m) { detail::g_saturation = m; }
inline saturation_mode get_saturation() { return detail::g_saturation; }

// --- Basic Types: aie::vector<T, Elems> --------------------------------------------------------
template <typename T, unsigned Elems>
class vector {
 public:
  using value_type = T;
  vector() = default;  // elements undefined (zero here)
  static constexpr unsigned size() { return Elems; }
  T get(unsigned idx) const { return data_[check(idx)]; }
  void set(T v, unsigned idx) { data_[check(idx)] = v; }
  T operator[](unsigned idx) const { return get(idx); }
  T &operator[](unsigned idx) { return data_[check(idx)]; }

 private:
  static unsigned check(unsigned idx) {
    if (idx >= Elems) detail::fail("vector element index out of range");
    return idx;
  }
  T data_[Elems] = {};
};

// --- Basic Types: aie::accum<Tag, Elems> -------------------------------------------------------
// AIE-ML and XDNA2 accumulate acc32 in 32 bits and acc64 in 64 bits (Basic Types, "Supported
// accumulator types and native sizes"); lanes wrap at that width.
template <typename Tag, unsigned Elems>
class accum {
 public:
  using value_type = std::conditional_t<Tag::bits == 32, int32_t, int64_t>;
  accum() = default;
  template <typename T>
  explicit accum(const vector<T, Elems> &v, int shift = 0) { from_vector(v, shift); }
  static constexpr unsigned size() { return Elems; }

  // Basic Types, accum::from_vector: the vector's values upshifted by `shift` bits.
  template <typename T>
  void from_vector(const vector<T, Elems> &v, int shift = 0) {
    if (shift < 0 || shift >= (int)Tag::bits) detail::fail("from_vector: shift out of range");
    for (unsigned i = 0; i < Elems; ++i) lane_[i] = wrap((__int128)v.get(i) << shift);
  }

  // Basic Types, accum::to_vector: shift-round-saturate with the current modes (Configuration).
  template <typename T>
  vector<T, Elems> to_vector(int shift = 0) const {
    if (shift < 0 || shift >= 64) detail::fail("to_vector: shift outside 0..63");
    vector<T, Elems> out;
    for (unsigned i = 0; i < Elems; ++i)
      out.set(detail::narrow<T>(detail::round_shift(lane_[i], shift, get_rounding()),
                                get_saturation()),
              i);
    return out;
  }

  // The host's view of one lane (tests and the mmul below; not an AIE API member).
  value_type lane(unsigned i) const { return lane_[i]; }
  void add_lane(unsigned i, __int128 v) { lane_[i] = wrap((__int128)lane_[i] + v); }
  void add_lane(unsigned i, int32_t v) {  // the common case, in the lane's own width
    using U = std::make_unsigned_t<value_type>;
    lane_[i] = (value_type)((U)lane_[i] + (U)(value_type)v);
  }

 private:
  static value_type wrap(__int128 v) {
    return (value_type)(std::make_unsigned_t<value_type>)(unsigned __int128)v;
  }
  value_type lane_[Elems] = {};
};

// --- Memory: load_v, store_v (aligned vector accesses) -----------------------------------------
template <unsigned Elems, typename T>
vector<std::remove_cv_t<T>, Elems> load_v(const T *ptr) {
  vector<std::remove_cv_t<T>, Elems> v;
  for (unsigned i = 0; i < Elems; ++i) v.set(ptr[i], i);
  return v;
}

template <typename T1, typename T2, unsigned Elems>
T1 *store_v(T1 *ptr, const vector<T2, Elems> &v) {
  static_assert(std::is_same_v<std::remove_cv_t<T1>, T2>, "store_v: element types differ");
  for (unsigned i = 0; i < Elems; ++i) ptr[i] = v.get(i);
  return ptr;
}

// --- Arithmetic: mul, mac (element-wise, into an accumulator) ----------------------------------
namespace detail {
// Arithmetic, "Default accumulator tag for different integral factor types" (AIE-ML, XDNA2).
template <typename A, typename B>
using default_acc = std::conditional_t<(sizeof(A) == 4 || sizeof(B) == 4), acc64, acc32>;
}  // namespace detail

template <typename T1, typename T2, unsigned Elems,
          typename Tag = detail::default_acc<T1, T2>>
accum<Tag, Elems> mul(const vector<T1, Elems> &v1, const vector<T2, Elems> &v2) {
  accum<Tag, Elems> acc;
  for (unsigned i = 0; i < Elems; ++i) acc.add_lane(i, (__int128)v1.get(i) * v2.get(i));
  return acc;
}

template <typename Tag, typename T1, typename T2, unsigned Elems>
accum<Tag, Elems> mac(const accum<Tag, Elems> &acc, const vector<T1, Elems> &v1,
                      const vector<T2, Elems> &v2) {
  accum<Tag, Elems> out = acc;
  for (unsigned i = 0; i < Elems; ++i) out.add_lane(i, (__int128)v1.get(i) * v2.get(i));
  return out;
}

// --- Matrix Multiplication: aie::mmul<M, K, N, TypeA, TypeB, AccumTag> -------------------------
namespace detail {
// Matrix Multiplication, "Supported Matrix Multiplication Modes", 8b x 8b column: the shapes
// AIE-ML/XDNA1 and XDNA2 accept. A shape outside it fails to compile, as with the real headers.
constexpr bool int8_mode_supported(unsigned m, unsigned k, unsigned n) {
#if NPUKIT_AIE_ARCH == 20
  return (m == 4 && k == 8 && n == 4) || (m == 4 && k == 16 && n == 4) ||
         (m == 8 && k == 8 && n == 4) || (m == 2 && k == 8 && n == 8) ||
         (m == 4 && k == 8 && n == 8) || (m == 8 && k == 8 && n == 8) ||
         (m == 1 && k == 16 && n == 8) || (m == 2 && k == 16 && n == 8) ||
         (m == 4 && k == 16 && n == 8);
#else
  return (m == 4 && k == 8 && n == 8) || (m == 8 && k == 8 && n == 8);
#endif
}
}  // namespace detail

template <unsigned M_Elems, unsigned K_Elems, unsigned N_Elems, typename TypeA,
          typename TypeB = TypeA, typename AccumTag = acc32>
struct mmul {
  static_assert(std::is_same_v<TypeA, int8> && std::is_same_v<TypeB, int8> &&
                    std::is_same_v<AccumTag, acc32>,
                "host AIE API subset: only int8 x int8 -> acc32 mmul is provided");
  static_assert(detail::int8_mode_supported(M_Elems, K_Elems, N_Elems),
                "mmul shape not among the 8b x 8b modes of this architecture");

  static constexpr unsigned M = M_Elems, K = K_Elems, N = N_Elems;
  static constexpr unsigned size_A = M * K, size_B = K * N, size_C = M * N;
  using accum_type = accum<AccumTag, size_C>;

  mmul() = default;
  explicit mmul(const accum_type &acc) : acc_(acc) {}
  // "Data is initialized from the given vector", row-major, upshifted by `shift`.
  template <typename T>
  explicit mmul(const vector<T, size_C> &v, int shift = 0) : acc_(v, shift) {}

  static constexpr unsigned size() { return size_C; }

  // C = A x B, A row-major M x K, B row-major K x N; overwrites the previous result.
  mmul &mul(const vector<TypeA, size_A> &a, const vector<TypeB, size_B> &b) {
    acc_ = accum_type();
    return mac(a, b);
  }

  // C += A x B.
  mmul &mac(const vector<TypeA, size_A> &a, const vector<TypeB, size_B> &b) {
    for (unsigned i = 0; i < M; ++i)  // each product of int8s is exact; lanes wrap at 32 bits
      for (unsigned k = 0; k < K; ++k) {
        const int32_t x = a.get(i * K + k);
        for (unsigned j = 0; j < N; ++j) acc_.add_lane(i * N + j, x * b.get(k * N + j));
      }
    return *this;
  }

  accum_type to_accum() const { return acc_; }
  operator accum_type() const { return acc_; }
  template <typename T>
  vector<T, size_C> to_vector(int shift = 0) const { return acc_.template to_vector<T>(shift); }

 private:
  accum_type acc_;
};

}  // namespace aie

#endif
