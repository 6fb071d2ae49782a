/*
 * activ.h -- vectorised exp, sigmoid and tanh, written once on the simd/ vocabulary
 * and compiled per ISA and dtype (included by layers/engine.h; no include guard).
 *
 * exp(x): Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a Taylor polynomial for
 * e^r (degree 7 for float, 13 for double: truncation below 0.05 ulp), then p * 2^n.
 * x is clamped first so 2^n stays finite; the clamp keeps NaN (x is the second
 * operand of min/max).
 * sigmoid(x) = 1 / (1 + exp(-x)): no cancellation anywhere, so the relative error
 * is that of exp plus the reciprocal's.
 * tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)) for |x| >= c, and its Taylor series
 * (odd terms to x^23) below c, where the subtraction would cancel: c = 0.625 for
 * float, 0.3 for double, so the first dropped term is < 1e-9 (float) and
 * < 1e-17 (double) relative.
 * The test suite measures the error in ulps over a dense grid and special values
 * (tests/test_activations.py).
 */

#if FRN_ACT_DOUBLE
#define FRN_EXP_LO -745.2
#define FRN_EXP_HI 709.8
#define FRN_LN2_HI 6.93147180369123816490e-01
#define FRN_LN2_LO 1.90821492927058770002e-10
#define FRN_TANH_SMALL 0.3
#else
#define FRN_EXP_LO -104.0f
#define FRN_EXP_HI 88.8f
#define FRN_LN2_HI 0.693359375f
#define FRN_LN2_LO -2.12194440e-4f
#define FRN_TANH_SMALL 0.625f
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
    VT p = V(set1)(1.0f / 5040.0f);
    p = V(fma)(p, r, V(set1)(1.0f / 720.0f));
    p = V(fma)(p, r, V(set1)(1.0f / 120.0f));
    p = V(fma)(p, r, V(set1)(1.0f / 24.0f));
    p = V(fma)(p, r, V(set1)(1.0f / 6.0f));
    p = V(fma)(p, r, V(set1)(0.5f));
    p = V(fma)(p, r, V(set1)(1.0f));
    p = V(fma)(p, r, V(set1)(1.0f));
#endif
    return V(ldexp)(p, n);
}

static inline VT FN(vsigmoid)(VT x)
{
    const VT one = V(set1)((FRN_T)1);
    return V(recip)(V(add)(one, FN(vexp)(V(sub)(V(zero)(), x))));
}

static inline VT FN(vtanh)(VT x)
{
    const VT one = V(set1)((FRN_T)1);
    VT a = V(abs)(x);
    /* large |x| */
    VT e = FN(vexp)(V(add)(a, a));
    VT big = V(fnma)(V(set1)((FRN_T)2), V(recip)(V(add)(e, one)), one);
    /* small |x|: x + x^3 P(x^2) */
    VT x2 = V(mul)(x, x);
    VT p = V(set1)((FRN_T)-3.927832388331683e-05);
    p = V(fma)(p, x2, V(set1)((FRN_T)9.691537956929451e-05));
    p = V(fma)(p, x2, V(set1)((FRN_T)-0.00023912911424355248));
    p = V(fma)(p, x2, V(set1)((FRN_T)0.000590027440945586));
    p = V(fma)(p, x2, V(set1)((FRN_T)-0.0014558343870513183));
    p = V(fma)(p, x2, V(set1)((FRN_T)0.003592128036572481));
    p = V(fma)(p, x2, V(set1)((FRN_T)-0.008863235529902197));
    p = V(fma)(p, x2, V(set1)((FRN_T)0.021869488536155203));
    p = V(fma)(p, x2, V(set1)((FRN_T)-0.05396825396825397));
    p = V(fma)(p, x2, V(set1)((FRN_T)0.13333333333333333));
    p = V(fma)(p, x2, V(set1)((FRN_T)-0.3333333333333333));
    VT small = V(fma)(V(mul)(p, x2), x, x);
    return V(select_lt)(a, V(set1)((FRN_T)FRN_TANH_SMALL), small, V(copysign)(big, x));
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
#undef FRN_TANH_SMALL
