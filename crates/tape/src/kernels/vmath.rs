//! `exp`, `ln`, `tanh` and the logistic sigmoid of one `f32`, written in plain arithmetic so that a
//! loop calling them vectorises.
//!
//! libm's `expf` / `logf` / `tanhf` are opaque calls: a kernel mapping them over a slice runs one
//! element per call, and in the LSTM and small-MLP steps those calls were 9–15% of the time. These
//! versions are straight-line code (selects instead of branches, bit casts instead of `frexp` /
//! `ldexp`), which LLVM turns into 4, 8 or 16 lanes inside the `multiversion!` kernels.
//!
//! Bit-identity across SIMD levels: only `+ − × ÷`, comparisons, selects, bit casts and integer
//! adds/shifts are used, each of them exactly rounded (or exact) in every lane width. No fused
//! multiply-add: the baseline copy runs on CPUs without FMA, where `mul_add` would be a slow libm
//! call, and using it in some copies only would change the roundings. So the scalar call, the
//! baseline (SSE2), AVX2 and AVX-512 copies all give the same bits.
//!
//! Accuracy (tests below, against `f64`, every 97th bit pattern): `exp` 0.99 ulp over its whole
//! range including the subnormal results, `ln` 0.79 ulp over every positive `f32`, `tanh` 1.5 ulp,
//! the sigmoid 2.3 ulp.

/// `log₂ e`, to pick the power of two nearest `eˣ`.
const LOG2_E: f32 = std::f32::consts::LOG2_E;

/// `ln 2` split in two: `LN2_HI` has 15 significant bits, so `n · LN2_HI` is exact for every
/// `|n| < 512` and `x − n · LN2_HI` loses nothing; `LN2_LO = ln 2 − LN2_HI` carries the rest.
const LN2_HI: f32 = 0.693_145_75; // 0x3f31_7200 = 0.693145751953125
const LN2_LO: f32 = 1.428_606_8e-6; // 0x35bf_be8e

/// `1.5 · 2²³`: adding it to a float of magnitude below 2²² rounds that float to the nearest
/// integer (ties to even), which then sits in the low mantissa bits of the sum.
const ROUNDER: f32 = 12_582_912.0;

/// Below this `eˣ` rounds to 0 (`e^-104 < 2^-150`), above `EXP_HI` it overflows (`e^89 >
/// f32::MAX`); clamping to them keeps the power of two in range without changing the result.
const EXP_LO: f32 = -104.0;
const EXP_HI: f32 = 89.0;

/// `2^k` for `k` in the normal exponent range `[-126, 127]`, built from its bits.
#[inline(always)]
fn pow2i(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) << 23) as u32)
}

/// `eˣ` (≤ 2 ulp; `+inf` above `ln f32::MAX`, 0 below the smallest subnormal, NaN stays NaN).
///
/// `x = n·ln 2 + r` with `n` the nearest integer to `x / ln 2`, so `|r| ≤ ln 2 / 2`; `eʳ` by its
/// Taylor series to degree 7 (the first dropped term is below 0.12 ulp there); then times `2ⁿ`,
/// applied as two powers of two `2^(n/2) · 2^(n − n/2)` so that both stay normal numbers: the
/// first product is exact, and the second rounds once, also into the subnormal range.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Written as comparisons rather than `clamp`/`max` so that a NaN falls through both.
    let x = if x < EXP_LO { EXP_LO } else { x };
    let x = if x > EXP_HI { EXP_HI } else { x };
    let t = x * LOG2_E + ROUNDER;
    let n = (t.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32);
    let nf = t - ROUNDER;
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    let q = 1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0));
    let q = 0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * q));
    let p = 1.0 + (r + r * r * q);
    let n1 = n >> 1;
    (p * pow2i(n1)) * pow2i(n.wrapping_sub(n1))
}

/// `√½` as bits: mantissas are reduced into `[√½, √2)` so that `|ln m|` stays below `ln 2 / 2`.
const SQRT_HALF_BITS: u32 = 0x3f35_04f3;

/// `2²³`, to lift a subnormal input into the normal range before reading its exponent.
const TWO_23: f32 = 8_388_608.0;

/// `ln x` (≤ 2 ulp; `-inf` at ±0, `+inf` at `+inf`, NaN below 0 and at NaN).
///
/// `x = 2ᵏ·m` with `m ∈ [√½, √2)` read from the bits, `f = m − 1` (exact), and
/// `ln(1 + f) = 2·atanh(s)` with `s = f / (2 + f)`, `|s| < 0.172`: `2s + s·R(s²)` with
/// `R = 2s²/3 + 2s⁴/5 + … + 2s¹⁰/11`. Since `2s = f − s·f`, this is rearranged to
/// `f − (f²/2 − s·(f²/2 + R))`, whose leading term `f` is exact, so the roundings only touch the
/// small correction. Then `+ k·ln 2` with the same two-part `ln 2` as [`exp`].
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * TWO_23 } else { x };
    let k_sub: i32 = if sub { -23 } else { 0 };
    // Adding 1 − √½ (in bits) carries into the exponent exactly when the mantissa is ≥ √2 / 2·2.
    let ix = xs.to_bits().wrapping_add(0x3f80_0000 - SQRT_HALF_BITS);
    let k = ((ix >> 23) as i32).wrapping_sub(127).wrapping_add(k_sub);
    let m = f32::from_bits((ix & 0x007f_ffff).wrapping_add(SQRT_HALF_BITS));
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let r =
        z * (2.0 / 3.0 + z * (2.0 / 5.0 + z * (2.0 / 7.0 + z * (2.0 / 9.0 + z * (2.0 / 11.0)))));
    let hfsq = 0.5 * f * f;
    let kf = k as f32;
    let y = kf * LN2_HI + (f - (hfsq - (s * (hfsq + r) + kf * LN2_LO)));
    // The special inputs, as selects so the loop stays vectorised.
    let y = if x == f32::INFINITY { x } else { y };
    let y = if x == 0.0 { f32::NEG_INFINITY } else { y };
    if x >= 0.0 {
        y
    } else {
        f32::NAN
    }
}

/// `1 / (1 + e⁻ˣ)`, saturating to exactly 0 / 1 for large |x|.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    // Only ever exponentiate a non-positive number, so e never overflows and both tails
    // saturate to 0 / 1 instead of producing inf/inf = NaN.
    let e = exp(-x.abs());
    // e / (1 + e) for negative x as one division (not e · (1 / (1 + e))), one rounding fewer.
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// Below this |x|, [`tanh`] uses its odd Taylor series: from here up `e^(-2|x|) ≤ 1/3`, so
/// `1 − e` cancels less than one bit and the exp formula keeps its accuracy.
const TANH_SERIES_MAX: f32 = 0.55;

/// Taylor coefficients of `tanh x = x + x³·(T1 + T2·x² + …)`; at |x| = 0.55 the first dropped
/// term is 6·10⁻¹⁰ of the result.
const T1: f32 = (-1.0 / 3.0f64) as f32;
const T2: f32 = (2.0 / 15.0f64) as f32;
const T3: f32 = (-17.0 / 315.0f64) as f32;
const T4: f32 = (62.0 / 2835.0f64) as f32;
const T5: f32 = (-1382.0 / 155_925.0f64) as f32;
const T6: f32 = (21_844.0 / 6_081_075.0f64) as f32;
const T7: f32 = (-929_569.0 / 638_512_875.0f64) as f32;
const T8: f32 = (6_404_582.0 / 10_854_718_875.0f64) as f32;
const T9: f32 = (-443_861_162.0 / 1_856_156_927_625.0f64) as f32;

/// Hyperbolic tangent: `±(1 − e) / (1 + e)` with `e = e^(-2|x|)` (never overflows, ±1 at ±inf),
/// and the Taylor series near 0, where that formula would lose its relative accuracy.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let e = exp(-2.0 * a);
    let big = (1.0 - e) / (1.0 + e);
    let z = x * x;
    let p = T5 + z * (T6 + z * (T7 + z * (T8 + z * T9)));
    let p = T1 + z * (T2 + z * (T3 + z * (T4 + z * p)));
    let small = a + a * (z * p);
    // Both branches computed on |x|, the sign put back last (which also keeps tanh(-0) = -0).
    let y = if a < TANH_SERIES_MAX { small } else { big };
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |got − want| in units of the last place of `want` rounded to f32 (subnormal spacing
    /// 2⁻¹⁴⁹ at the bottom), so 0.5 is a correctly rounded result.
    fn ulps(got: f32, want: f64) -> f64 {
        // Also an overflow to inf where the exact value rounds to inf.
        if got as f64 == want || got == want as f32 {
            return 0.0;
        }
        if !got.is_finite() || !want.is_finite() {
            return f64::INFINITY;
        }
        let w = want.abs().max(f32::MIN_POSITIVE as f64);
        let ulp = 2f64.powi(w.log2().floor() as i32 - 23);
        (got as f64 - want).abs() / ulp
    }

    /// Every `step`-th f32 bit pattern whose value is in `[lo, hi]` (both signs).
    fn sweep(step: u32, lo: f32, hi: f32) -> impl Iterator<Item = f32> {
        (0..=u32::MAX / step)
            .map(move |i| f32::from_bits(i * step))
            .filter(move |x| *x >= lo && *x <= hi)
    }

    /// The largest ulp error of `f` against `want` over `xs`, with its argument.
    fn worst(xs: impl Iterator<Item = f32>, f: fn(f32) -> f32, want: fn(f64) -> f64) -> (f64, f32) {
        xs.map(|x| (ulps(f(x), want(x as f64)), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    #[test]
    fn exp_is_within_2_ulp_over_its_range() {
        let (e, at) = worst(sweep(97, -104.0, 89.0), exp, f64::exp);
        eprintln!("exp: max {e:.3} ulp at {at:e}");
        assert!(e <= 2.0, "exp({at:e}) is {e} ulp off");
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(exp(88.8), f32::INFINITY);
        assert_eq!(exp(f32::MAX), f32::INFINITY);
        assert_eq!(exp(-104.0).to_bits(), 0);
        assert_eq!(exp(f32::MIN).to_bits(), 0);
        assert!(exp(f32::NAN).is_nan());
        // The largest finite result and the smallest subnormal one.
        for x in [88.72283f32, -103.27893, -87.5, -100.0] {
            assert_eq!(exp(x), (x as f64).exp() as f32, "exp({x})");
        }
        assert_eq!(exp(1.0e-30), 1.0);
    }

    #[test]
    fn ln_is_within_2_ulp_on_every_positive_float() {
        let (e, at) = worst(sweep(97, 0.0, f32::MAX), ln, f64::ln);
        eprintln!("ln: max {e:.3} ulp at {at:e}");
        assert!(e <= 2.0, "ln({at:e}) is {e} ulp off");
        // Near 1, where the result is small and only relative accuracy counts.
        let near_one = (0..200_000).map(|i| 0.9 + i as f32 * 1e-6);
        let (e, at) = worst(near_one, ln, f64::ln);
        assert!(e <= 2.0, "ln({at:e}) is {e} ulp off");
    }

    #[test]
    fn ln_special_values() {
        assert_eq!(ln(1.0).to_bits(), 0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(-0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ln(f32::NEG_INFINITY).is_nan());
        assert!(ln(f32::NAN).is_nan());
        assert_eq!(
            ln(f32::from_bits(1)),
            (f32::from_bits(1) as f64).ln() as f32
        );
        assert_eq!(ln(2.0), std::f32::consts::LN_2);
    }

    #[test]
    fn tanh_and_sigmoid_are_within_a_few_ulp() {
        let tanh_ref = |x: f64| x.tanh();
        let (e, at) = worst(sweep(97, -20.0, 20.0), tanh, tanh_ref);
        eprintln!("tanh: max {e:.3} ulp at {at:e}");
        assert!(e <= 3.0, "tanh({at:e}) is {e} ulp off");
        let sig_ref = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (e, at) = worst(sweep(97, -100.0, 100.0), sigmoid, sig_ref);
        eprintln!("sigmoid: max {e:.3} ulp at {at:e}");
        // For x < 0 the result e/(1+e) carries exp's error (< 1 ulp) plus the roundings of 1 + e
        // and of the division, each up to half an ulp, relative to different binades.
        assert!(e <= 2.5, "sigmoid({at:e}) is {e} ulp off");
    }

    #[test]
    fn tanh_special_values() {
        assert_eq!(tanh(0.0).to_bits(), 0);
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh(1.0e-30), 1.0e-30);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(50.0), 1.0);
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
    }
}
