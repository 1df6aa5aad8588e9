// GELU on one tile of int8 values: a lookup in the render-time table.
#include <stdint.h>

#include "gelu_params.h"

#ifdef GELU_RUNTIME_PARAMS
#define GELU_PARAMS , const int8_t *gelu_table  // the table is the params input
#else
#define GELU_PARAMS
#endif

extern "C" void gelu_i8(const int8_t *x, int8_t *y GELU_PARAMS) {
  for (int i = 0; i < GELU_TILE; ++i) y[i] = gelu_table[(int)x[i] + 128];
}
