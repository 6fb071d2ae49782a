/* step_avx512.c -- the engine for AVX-512 (F, DQ, BW, VL); built with those flags only
   (setup.py), chosen at run time by dispatch.c. */
#include "../simd/vec_avx512.h"
/* 32 zmm: 6 rows x 4 vectors (24 accumulators + 4 panel vectors + a broadcast),
   or 8 rows x 3 vectors */
#define FRN_MR_MAX4 6
#define FRN_MR_MAX3 8
/* a tile of several rows loads each panel vector once into a register (kernels/tile.h) */
#define FRN_TILE_LOAD_REG 1
/* Tiles' k loop unrolled twice: on an Intel Xeon (Sapphire Rapids class), both
   builds in one process, 5 alternated rounds, medians, us a step, 1 thread: batch
   64, T=20, LSTM H=512 2013 -> 1923 and 2105 -> 1965, GRU H=512 1635 -> 1478 and
   1572 -> 1542; batch 1, T=100, LSTM H=256 13.4 -> 12.6 and 14.6 -> 13.3, GRU H=256
   9.60 -> 9.17 and 10.3 -> 9.72, LSTM H=512 134 -> 128; H=64-128 and streams level
   (0.98-1.03x). Four times: the same as twice. A 6 x 4 tile alone over panels in L2
   (K=256, 96 rows): 162 -> 175 GFLOP/s. */
#define FRN_TILE_UNROLL_K 2
/* row tiles ask for the next panel into L2 (layers/engine.h, run_panel_rows) */
#define FRN_TILE_PF_NEXT 1
#include "template.h"
