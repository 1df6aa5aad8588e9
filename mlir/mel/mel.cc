// Whisper log-mel frames in fixed point, the scheme of codegen/kernels/mel.py.
// One call turns MEL_TILE frames of MEL_NFFT int16 samples into MEL_TILE rows of MEL_NMELS
// log10-mel codes (Q11 int16); the host pads the clip and clamps to the window's maximum.
#include <stdint.h>

#include "mel_params.h"
#include "npukit_fixed.h"

static int16_t mel_one_bin(int64_t acc, int exponent) {
  if (acc <= 0) return MEL_FLOOR_CODE;
  const int64_t log2_acc = npk_log2_q24_u64((uint64_t)acc, mel_log2_table);
  const int64_t log2_whisper = log2_acc - (int64_t)(2 * exponent + MEL_UNIT_SHIFT) * (1 << 24);
  const int64_t code = npk_round_shift_s64(log2_whisper * MEL_LOG10_2, MEL_CODE_SHIFT);
  return (int16_t)(code < MEL_FLOOR_CODE ? MEL_FLOOR_CODE : code);
}

static void mel_one_frame(const int16_t *x, int16_t *y) {
  int32_t peak = 0;
  for (int n = 0; n < MEL_NFFT; ++n) {
    const int32_t a = x[n] < 0 ? -(int32_t)x[n] : x[n];
    peak = a > peak ? a : peak;
  }
  if (peak == 0) {
    for (int m = 0; m < MEL_NMELS; ++m) y[m] = MEL_FLOOR_CODE;
    return;
  }
  // Block exponent: the frame's peak, shifted left by e, still fits 15 bits.
  int e = 15 - (npk_log2_u64((uint64_t)peak) + 1);
  e = e < 0 ? 0 : e;
  int32_t xw[MEL_NFFT];
  for (int n = 0; n < MEL_NFFT; ++n)
    xw[n] = (int32_t)npk_round_shift_s64((int64_t)x[n] * mel_window[n] * ((int64_t)1 << e),
                                         MEL_WINDOW_BITS - MEL_XW_FRAC);
  // The cosine table is even and its quarter-shifted sine odd about N/2, so sample pairs
  // (n, N - n) are folded first: xw[n] holds their sum, xw[N - n] their difference. The sums
  // stay exact integers, so the result is the direct DFT's, with half the multiplies.
  for (int n = 1; n < MEL_NFFT / 2; ++n) {
    const int32_t a = xw[n], b = xw[MEL_NFFT - n];
    xw[n] = a + b;
    xw[MEL_NFFT - n] = a - b;
  }
  int64_t power[MEL_NBINS];
  for (int k = 0; k < MEL_NBINS; ++k) {
    const int half = (k & 1) * (MEL_NFFT / 2);  // 200 k mod 400
    int64_t re = (int64_t)xw[0] * mel_cos[0] + (int64_t)xw[MEL_NFFT / 2] * mel_cos[half];
    int64_t im = 0;
    int c = k, s = k + MEL_NFFT - MEL_NFFT / 4;  // sin(t) = cos(t - pi/2)
    s -= s >= MEL_NFFT ? MEL_NFFT : 0;
    for (int n = 1; n < MEL_NFFT / 2; ++n) {
      re += (int64_t)xw[n] * mel_cos[c];
      im += (int64_t)xw[MEL_NFFT - n] * mel_cos[s];
      c += k;
      c -= c >= MEL_NFFT ? MEL_NFFT : 0;
      s += k;
      s -= s >= MEL_NFFT ? MEL_NFFT : 0;
    }
    const int64_t r = npk_round_shift_s64(re, MEL_COS_BITS + MEL_XW_FRAC);
    const int64_t i = npk_round_shift_s64(im, MEL_COS_BITS + MEL_XW_FRAC);
    power[k] = r * r + i * i;
  }
  for (int m = 0; m < MEL_NMELS; ++m) {
    const int32_t *w = mel_weights + mel_offset[m];
    const int64_t *p = power + mel_first[m];
    int64_t acc = 0;
    for (int j = 0; j < mel_count[m]; ++j) acc += (int64_t)w[j] * p[j];
    y[m] = mel_one_bin(acc, e);
  }
}

extern "C" void mel_frames_i16(const int16_t *frames, int16_t *mels) {
  for (int f = 0; f < MEL_TILE; ++f) mel_one_frame(frames + f * MEL_NFFT, mels + f * MEL_NMELS);
}
