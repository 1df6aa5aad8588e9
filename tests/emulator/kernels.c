/* Small core functions for the emulator tests, compiled for the host by conftest.py. */
#include <stdint.h>

void add_i32(const int32_t *in, int32_t *out, int32_t n, int32_t k) {
  for (int32_t i = 0; i < n; i++) out[i] = in[i] + k;
}

void tag_i32(const int32_t *in, int32_t *out, int32_t tile) {
  for (int32_t i = 0; i < 64; i++) out[i] = in[i] + 1000 * tile;
}

void scale_i32(const int32_t *in, int32_t *out, int32_t n, int32_t k) {
  for (int32_t i = 0; i < n; i++) out[i] = in[i] * k;
}

/* Shaped like the attention core: 3 x 4096 int8 in, 4096 int8 out. */
void attn(const int8_t *x, int8_t *y) {
  for (int32_t i = 0; i < 4096; i++) y[i] = (int8_t)(x[i] + x[4096 + i] - x[8192 + i]);
}

/* Does nothing: for measuring the emulator's own cost per run. */
void nop(const int8_t *x, int8_t *y) {
  (void)x;
  (void)y;
}

void pair_sum_i32(const int32_t *a, const int32_t *b, int32_t *out) {
  for (int32_t i = 0; i < 64; i++) out[i] = a[i] + b[i];
}

/* Accumulates 64 values into a core-local buffer; k == 0 starts a new sum. */
void acc_i32(const int32_t *x, int32_t *acc, int32_t k) {
  for (int32_t i = 0; i < 64; i++) acc[i] = (k == 0 ? 0 : acc[i]) + x[i];
}

void store_i32(const int32_t *acc, int32_t *y) {
  for (int32_t i = 0; i < 64; i++) y[i] = acc[i];
}
