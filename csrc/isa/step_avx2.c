/* step_avx2.c -- the engine for AVX2 + FMA; built with -mavx2 -mfma only (setup.py). */
#include "../simd/vec_avx2.h"
/* 16 ymm: 3 rows x 4 vectors (12 accumulators, 4 panel vectors... one spill at most),
   or 4 rows x 3 vectors */
#define FRN_MR_MAX4 3
#define FRN_MR_MAX3 4
#include "template.h"
