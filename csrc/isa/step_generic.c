/* step_generic.c -- the engine in portable C: no ISA flags, builds on any target. */
#include "../simd/vec_generic.h"
#define FRN_MR_MAX4 3
#define FRN_MR_MAX3 4
#include "template.h"
