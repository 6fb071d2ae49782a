/* step_avx512.c -- the engine for AVX-512 (F, DQ, BW, VL); built with those flags only
   (setup.py), chosen at run time by dispatch.c. */
#include "../simd/vec_avx512.h"
/* 32 zmm: 6 rows x 4 vectors (24 accumulators + 4 panel vectors + a broadcast),
   or 8 rows x 3 vectors */
#define FRN_MR_MAX4 6
#define FRN_MR_MAX3 8
/* a tile of several rows loads each panel vector once into a register (kernels/tile.h) */
#define FRN_TILE_LOAD_REG 1
#include "template.h"
