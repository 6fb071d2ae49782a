/*
 * activ.h -- vectorised exp, sigmoid and tanh, written once on the simd/ vocabulary
 * and compiled per ISA and dtype (included by layers/engine.h; no include guard).
 *
 * exp(x): Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a polynomial for e^r
 * (float: a degree-6 minimax fit, 3e-9 relative; double: Taylor to r^13, below
 * 0.05 ulp), then p * 2^n.
 * x is clamped first to just below log(max float) -- so e^x stays finite, and
 * 1/(1 + e^x) never meets the reciprocal's 0 * inf = NaN -- and to the subnormal
 * floor below; the clamp keeps NaN (x is the second operand of min/max).
 * sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|): no
 * cancellation and no overflow anywhere, the relative error is that of exp plus the
 * quotient's, and sigmoid(-inf) = 0 exactly as in PyTorch.
 * tanh(x) = e / (e + 2) with e = expm1(2x), itself 2^n (e^r - 1) + (2^n - 1) with a
 * polynomial for e^r - 1 that has no constant term (minimax for float, Taylor for
 * double): no cancellation at any x,
 * one exp-sized polynomial and one reciprocal (the earlier two-branch form -- a
 * series below 0.625 and 1 - 2/(e^2x + 1) above -- cost half again as much for
 * ~1.4 instead of ~3 ulp).
 * Measured worst case over 2.2M points in [-20, 20] and log grids: sigmoid 2.5 ulp,
 * tanh 2.6 ulp, exp 1.3 ulp (float); 2.2, 3 and 1 ulp (double).
 *
 * Short chains: a cell epilogue has dozens of independent activations, but the core
 * holds only a few of their chains at once (a sigmoid is ~20 operations, ~60 cycles
 * deep), so each one's latency, more than its operation count, sets the
 * throughput. Hence the float polynomials in Estrin's scheme, sigmoid's -|x| by a
 * sign copy and its two branches as one quotient (V(quot): a division, or on
 * AVX-512 a times the reciprocal) whose numerator is picked off the chain, and
 * tanh's n taken from |x| before the doubling. Against Horner's rule,
 * abs-and-subtract and a multiply and select after the reciprocal (Zen 3, AVX2):
 * sigmoid over an array 9.35 -> 7.96 ns a vector, tanh 9.55 -> 9.04; layers (3 x 100
 * alternated calls, 1 thread) GRU H=128 1.055x faster at batch 1 and 1.02x at batch
 * 64, GRU H=512 at batch 64 1.026x, LSTM 1.01-1.02x; stream steps 1.00-1.04x (blocks
 * of 20 calls per build, so each finds its weights in L2).
 * The test suite measures the error in ulps over a dense grid and special values
 * (tests/test_activations.py).
 */

#if FRN_ACT_DOUBLE
#define FRN_EXP_LO -745.2
#define FRN_EXP_HI 709.7
#define FRN_LN2_HI 6.93147180369123816490e-01
#define FRN_LN2_LO 1.90821492927058770002e-10
#else
#define FRN_EXP_LO -104.0f
#define FRN_EXP_HI 88.7f
#define FRN_LN2_HI 0.693359375f
#define FRN_LN2_LO -2.12194440e-4f
#endif

/* e^x for x already within [FRN_EXP_LO, FRN_EXP_HI] */
static inline VT FN(vexp_in)(VT x)
{
    VT n = V(round)(V(mul)(x, V(set1)((FRN_T)1.44269504088896340736)));
    VT r = V(fnma)(n, V(set1)((FRN_T)FRN_LN2_HI), x);
    r = V(fnma)(n, V(set1)((FRN_T)FRN_LN2_LO), r);
#if FRN_ACT_DOUBLE
    VT p = V(set1)(1.0 / 6227020800.0);
    p = V(fma)(p, r, V(set1)(1.0 / 479001600.0));
    p = V(fma)(p, r, V(set1)(1.0 / 39916800.0));
    p = V(fma)(p, r, V(set1)(1.0 / 3628800.0));
    p = V(fma)(p, r, V(set1)(1.0 / 362880.0));
    p = V(fma)(p, r, V(set1)(1.0 / 40320.0));
    p = V(fma)(p, r, V(set1)(1.0 / 5040.0));
    p = V(fma)(p, r, V(set1)(1.0 / 720.0));
    p = V(fma)(p, r, V(set1)(1.0 / 120.0));
    p = V(fma)(p, r, V(set1)(1.0 / 24.0));
    p = V(fma)(p, r, V(set1)(1.0 / 6.0));
    p = V(fma)(p, r, V(set1)(0.5));
    p = V(fma)(p, r, V(set1)(1.0));
    p = V(fma)(p, r, V(set1)(1.0));
#else
    /* 1 + r + r^2 Q, Q = c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4: a minimax fit of
       relative error on [-ln2/2, ln2/2] (Lawson's iteration), 3e-9 -- better than
       Taylor to r^7 with one multiply-add less. Q in Estrin's scheme, (c2 + c3 r) +
       r^2 (c4 + c5 r) + r^4 c6: four dependent operations after r where Horner's
       rule took six (activations are latency-bound, see the header) */
    VT r2 = V(mul)(r, r);
    VT q = V(fma)(V(fma)(V(set1)(0.008368709961325355f), r, V(set1)(0.04166838737387867f)), r2,
                  V(fma)(V(set1)(0.16666520688656947f), r, V(set1)(0.4999999345162603f)));
    q = V(fma)(V(set1)(0.001381461309461206f), V(mul)(r2, r2), q);
    VT p = V(fma)(q, r2, V(add)(r, V(set1)(1.0f)));
#endif
    return V(ldexp)(p, n);
}

static inline VT FN(vexp)(VT x)
{
    return FN(vexp_in)(
        V(min)(V(set1)((FRN_T)FRN_EXP_HI), V(max)(V(set1)((FRN_T)FRN_EXP_LO), x)));
}

static inline VT FN(vsigmoid)(VT x)
{
    /* e = exp(-|x|) <= 1 never overflows (only the lower clamp can apply); 1/(1+e)
       for x >= 0 and e/(1+e) below in one quotient, its numerator chosen while 1+e
       is summed: sigmoid(-inf) is exactly 0 and tiny values keep their relative
       accuracy */
    const VT one = V(set1)((FRN_T)1);
    VT e = FN(vexp_in)(V(max)(V(set1)((FRN_T)FRN_EXP_LO), V(copysign)(x, V(set1)((FRN_T)-1))));
    return V(quot)(V(select_lt)(x, V(zero)(), e, one), V(add)(one, e));
}

/* e^x - 1 without cancellation near 0, given n = round(x / ln2): x = n ln2 + r,
   e^r - 1 = r + r^2 P(r) (float: minimax, P of degree 4; double: Taylor to r^14),
   then 2^n (e^r - 1) + (2^n - 1) in one rounding. Callers keep 0 <= x <= 40. */
static inline VT FN(vexpm1_n)(VT x, VT n)
{
    VT r = V(fnma)(n, V(set1)((FRN_T)FRN_LN2_HI), x);
    r = V(fnma)(n, V(set1)((FRN_T)FRN_LN2_LO), r);
    VT r2 = V(mul)(r, r);
#if FRN_ACT_DOUBLE
    VT p = V(set1)(1.0 / 87178291200.0);
    p = V(fma)(p, r, V(set1)(1.0 / 6227020800.0));
    p = V(fma)(p, r, V(set1)(1.0 / 479001600.0));
    p = V(fma)(p, r, V(set1)(1.0 / 39916800.0));
    p = V(fma)(p, r, V(set1)(1.0 / 3628800.0));
    p = V(fma)(p, r, V(set1)(1.0 / 362880.0));
    p = V(fma)(p, r, V(set1)(1.0 / 40320.0));
    p = V(fma)(p, r, V(set1)(1.0 / 5040.0));
    p = V(fma)(p, r, V(set1)(1.0 / 720.0));
    p = V(fma)(p, r, V(set1)(1.0 / 120.0));
    p = V(fma)(p, r, V(set1)(1.0 / 24.0));
    p = V(fma)(p, r, V(set1)(1.0 / 6.0));
    p = V(fma)(p, r, V(set1)(0.5));
#else
    /* minimax fit of the relative error of r + r^2 P(r), P of degree 4: 1.3e-8;
       P = (k0 + k1 r) + r^2 (k2 + k3 r) + r^4 k4 (Estrin, as in vexp_in) */
    VT p = V(fma)(V(fma)(V(set1)(0.00836651404584703f), r, V(set1)(0.04166719964870567f)), r2,
                  V(fma)(V(set1)(0.16666543669364714f), r, V(set1)(0.4999999815513751f)));
    p = V(fma)(V(set1)(0.0013882522823799117f), V(mul)(r2, r2), p);
#endif
    VT q = V(fma)(r2, p, r);
    VT t = V(ldexp)(V(set1)((FRN_T)1), n);
    return V(fma)(t, q, V(sub)(t, V(set1)((FRN_T)1)));
}

/* tanh(a) = e / (e + 2) = 1 - 2 / (e + 2) with e = expm1(2a), a = |x|, and the sign
   of x copied back:
   exactly odd, tanh(-0) = -0. Past the point where tanh rounds to 1 (a >= 9.1 for
   float, 19.1 for double) the result is 1 exactly; 2a is clamped there too. */
static inline VT FN(vtanh)(VT x)
{
#if FRN_ACT_DOUBLE
    const VT sat = V(set1)(19.1);
#else
    const VT sat = V(set1)(9.1f);
#endif
    const VT one = V(set1)((FRN_T)1);
    VT a = V(abs)(x);
    /* 2a clamped, and n for expm1 from a directly (2a = a + a and 2 log2(e) are
       exact doublings: the same n as from 2a, one addition sooner) */
    VT ac = V(min)(sat, a);
    VT n = V(round)(V(mul)(ac, V(set1)((FRN_T)2.88539008177792681472)));
    VT e = FN(vexpm1_n)(V(add)(ac, ac), n);
    VT r = V(recip)(V(add)(e, V(set1)((FRN_T)2)));
    /* e/(e+2) where it is small; 1 - 2/(e+2) where it is near 1, so the
       reciprocal's last-bit error cannot push it past 1 or out of order */
    VT t = V(select_lt)(a, V(set1)((FRN_T)0.55), V(mul)(e, r), V(fnma)(V(set1)((FRN_T)2), r, one));
    return V(copysign)(V(select_lt)(sat, a, one, t), x); /* NaN a keeps t */
}

static inline VT FN(vrelu)(VT x)
{
    /* max(0, x) with NaN kept (x second) */
    return V(max)(V(zero)(), x);
}

#undef FRN_EXP_LO
#undef FRN_EXP_HI
#undef FRN_LN2_HI
#undef FRN_LN2_LO
