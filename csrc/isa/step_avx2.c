/* step_avx2.c -- the engine for AVX2 + FMA; built with -mavx2 -mfma only (setup.py). */
#include "../simd/vec_avx2.h"
/* 16 ymm: 3 rows x 4 vectors (12 accumulators, 4 panel vectors... one spill at most),
   or 4 rows x 3 vectors; 4-vector W_hh panels are split for tiles of up to 6 rows x
   2 vectors (layers/pack.c, kernels/tile.h) */
#define FRN_MR_MAX4 3
#define FRN_MR_MAX3 4
/* No projection ahead (layers/engine.h, weaves): the woven loop's accumulators, a
   pair's projections and their W_ih vectors fill the 16 ymm, and projecting each
   chunk first measured faster everywhere. Zen 3, batch 1, T=100, I=H, 3 x 200
   alternated calls, us a step, 1 thread: LSTM H=64 1.63 -> 1.59, H=128 5.69 ->
   5.36, H=256 23.6 -> 22.2, H=512 113 -> 102; GRU H=64 1.46 -> 1.29, H=128 5.22 ->
   4.54, H=256 19.5 -> 17.9, H=512 78.8 -> 68.6; 2 threads: LSTM H=64 1.43 -> 1.31,
   H=256 13.3 -> 12.4, H=512 76.8 -> 74.4; GRU H=128 2.66 -> 2.43, H=256 8.83 ->
   8.18, H=512 46.3 -> 40.2; LSTM H=128 level. */
#define FRN_AHEAD_MAX_WHH 0.0
#include "template.h"
