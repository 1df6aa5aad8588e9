// GELU on one tile of int8 values: a lookup in the render-time table.
#include <stdint.h>

#include "gelu_params.h"

extern "C" void gelu_i8(const int8_t *x, int8_t *y) {
  for (int i = 0; i < GELU_TILE; ++i) y[i] = gelu_table[(int)x[i] + 128];
}
