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
 * reciprocal's, and sigmoid(-inf) = 0 exactly as in PyTorch.
 * tanh(x) = e / (e + 2) with e = expm1(2x), itself 2^n (e^r - 1) + (2^n - 1) with a
 * polynomial for e^r - 1 that has no constant term (minimax for float, Taylor for
 * double): no cancellation at any x,
 * one exp-sized polynomial and one reciprocal (the earlier two-branch form -- a
 * series below 0.625 and 1 - 2/(e^2x + 1) above -- cost half again as much for
 * ~1.4 instead of ~3 ulp).
 * Measured worst case over 2.2M points in [-20, 20] and log grids: sigmoid 2.5 ulp,
 * tanh 3 ulp, exp 1.2 ulp (float); 2, 3 and 1 ulp (double).
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

static inline VT FN(vexp)(VT x)
{
    x = V(min)(V(set1)((FRN_T)FRN_EXP_HI), V(max)(V(set1)((FRN_T)FRN_EXP_LO), x));
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
    /* 1 + r + r^2 (c2 + c3 r + ... + c6 r^4): a minimax fit of relative error on
       [-ln2/2, ln2/2] (Lawson's iteration), 3e-9 -- better than Taylor to r^7 with
       one multiply-add less */
    VT p = V(set1)(0.001381461309461206f);
    p = V(fma)(p, r, V(set1)(0.008368709961325355f));
    p = V(fma)(p, r, V(set1)(0.04166838737387867f));
    p = V(fma)(p, r, V(set1)(0.16666520688656947f));
    p = V(fma)(p, r, V(set1)(0.4999999345162603f));
    p = V(fma)(p, r, V(set1)(1.0f));
    p = V(fma)(p, r, V(set1)(1.0f));
#endif
    return V(ldexp)(p, n);
}

static inline VT FN(vsigmoid)(VT x)
{
    /* e = exp(-|x|) <= 1 never overflows; 1/(1+e) for x >= 0, e/(1+e) below, so
       sigmoid(-inf) is exactly 0 and tiny values keep their relative accuracy */
    const VT one = V(set1)((FRN_T)1);
    VT e = FN(vexp)(V(sub)(V(zero)(), V(abs)(x)));
    VT r = V(recip)(V(add)(one, e));
    return V(select_lt)(x, V(zero)(), V(mul)(e, r), r);
}

/* e^x - 1 without cancellation near 0: x = n ln2 + r, e^r - 1 = r + r^2 P(r)
   (float: minimax, P of degree 4; double: Taylor to r^14), then
   2^n (e^r - 1) + (2^n - 1) in one rounding. Callers keep 0 <= x <= 40. */
static inline VT FN(vexpm1)(VT x)
{
    VT n = V(round)(V(mul)(x, V(set1)((FRN_T)1.44269504088896340736)));
    VT r = V(fnma)(n, V(set1)((FRN_T)FRN_LN2_HI), x);
    r = V(fnma)(n, V(set1)((FRN_T)FRN_LN2_LO), r);
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
    /* minimax fit of the relative error of r + r^2 P(r), P of degree 4: 1.3e-8 */
    VT p = V(set1)(0.0013882522823799117f);
    p = V(fma)(p, r, V(set1)(0.00836651404584703f));
    p = V(fma)(p, r, V(set1)(0.04166719964870567f));
    p = V(fma)(p, r, V(set1)(0.16666543669364714f));
    p = V(fma)(p, r, V(set1)(0.4999999815513751f));
#endif
    VT q = V(fma)(V(mul)(r, r), p, r);
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
    VT a2 = V(min)(V(add)(sat, sat), V(add)(a, a));
    VT e = FN(vexpm1)(a2);
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
