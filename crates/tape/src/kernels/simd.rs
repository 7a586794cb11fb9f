//! Run-time choice of the instruction set for the elementwise kernels and the update rules.
//!
//! The release binary targets baseline x86-64 (SSE2) so it runs everywhere; a loop compiled for
//! that baseline processes 4 floats per instruction, while the CPUs the toolkit meets have AVX2
//! (8) or AVX-512 (16). [`multiversion!`](crate::multiversion) compiles one generic loop body
//! three times (AVX-512, AVX2, baseline) and calls the widest one the running CPU supports,
//! detected once and cached.
//!
//! Bit-identity: the three copies are the same Rust code, and Rust never contracts `a * b + c`
//! into a fused multiply-add or reorders floating-point operations, so only the vector width of
//! the machine code differs, never a rounding. Reductions keep their written order (LLVM does not
//! reassociate float adds without fast-math), and `exp`, `ln`, `tanh` and the sigmoid are the
//! plain-arithmetic ones of `vmath` (no FMA in any copy), while the remaining transcendentals
//! (`powf`, `ln_1p`, `sqrt`) call the same libm function (or exactly rounded instruction) per element. Tests compare every level against the baseline bit for bit. The one
//! exception is which NaN a NaN result is: Rust leaves the sign and payload of NaNs unspecified,
//! and when both operands of an x86 instruction are NaN it returns the first one, whose place the
//! compiler may swap in a commutative operation (for instance NaN + (inf − inf) gives +NaN or the
//! negative default NaN). A NaN stays a NaN on every level; its bits may differ.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction sets a multiversioned kernel is compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64); the only level on other architectures.
    Baseline,
    /// AVX2 (8 floats per instruction).
    Avx2,
    /// AVX-512 F/VL/DQ (16 floats per instruction).
    Avx512,
}

impl SimdLevel {
    /// Every level, narrowest first (tests run each supported one).
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512];
}

/// 0 = not yet detected, otherwise `1 + level as u8`.
static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The widest level the running CPU supports (detected on first use, then cached).
#[inline]
pub fn simd_level() -> SimdLevel {
    match DETECTED.load(Ordering::Relaxed) {
        1 => SimdLevel::Baseline,
        2 => SimdLevel::Avx2,
        3 => SimdLevel::Avx512,
        _ => {
            let level = detect_uncached();
            DETECTED.store(level as u8 + 1, Ordering::Relaxed);
            level
        }
    }
}

/// The levels this CPU can run, narrowest first (always starts with `Baseline`).
pub fn supported_simd_levels() -> Vec<SimdLevel> {
    let best = simd_level();
    SimdLevel::ALL.into_iter().filter(|&l| l <= best).collect()
}

#[cfg(target_arch = "x86_64")]
fn detect_uncached() -> SimdLevel {
    // The GEMM's detection picks its micro-kernel from the same CPU flags; the elementwise
    // level additionally needs every feature its AVX-512 copy is compiled with.
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let avx512 = avx2
        && super::gemm_kernels::detect() == super::gemm_kernels::Isa::Avx512
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512dq");
    if avx512 {
        SimdLevel::Avx512
    } else if avx2 {
        SimdLevel::Avx2
    } else {
        SimdLevel::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_uncached() -> SimdLevel {
    SimdLevel::Baseline
}

/// Defines a function whose body is compiled for each [`SimdLevel`], called at the widest level
/// the CPU supports.
///
/// `multiversion! { /// docs
/// pub fn name / name_at(args) -> Ret { body } }` defines `name(args)` (dispatching) and
/// `pub(crate) name_at(level, args)`, which runs the copy for `level` clamped to what the CPU supports (so it
/// is safe with any argument; tests use it to compare the levels). Arguments must be plain
/// (non-generic) types; helpers the body calls should be `#[inline(always)]` so they are
/// compiled into each copy.
#[doc(hidden)]
#[macro_export]
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident / $at:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $at($crate::kernels::simd_level(), $($arg),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled for `level` (clamped to what the CPU supports).")]
        #[allow(clippy::too_many_arguments, dead_code)]
        pub(crate) fn $at(level: $crate::kernels::SimdLevel, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            match level.min($crate::kernels::simd_level()) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the level is at most the detected one, so the CPU has these features.
                $crate::kernels::SimdLevel::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                $crate::kernels::SimdLevel::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_start_at_baseline_and_are_ordered() {
        let levels = supported_simd_levels();
        assert_eq!(levels[0], SimdLevel::Baseline);
        assert!(levels.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*levels.last().unwrap(), simd_level());
    }
}

/// Every multiversioned kernel at every level this CPU supports, against the baseline copy, bit
/// for bit, on random data with odd lengths, NaN, infinities, zeros of both signs and subnormals.
#[cfg(test)]
mod bit_identity {
    use super::super::broadcast::{broadcast_to_at, sum_to_at, Layout};
    use super::super::elementwise::*;
    use super::super::reduce::*;
    use super::super::softmax::*;
    use super::*;
    use crate::rng::Rng;

    /// Lengths around the vector widths (4, 8, 16) and their multiples, plus a long odd one.
    const LENS: [usize; 12] = [0, 1, 3, 7, 8, 15, 16, 17, 33, 63, 65, 1001];

    const SPECIAL: [f32; 14] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1.0e-40,  // subnormal
        -3.0e-42, // subnormal
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        88.8,
        -104.0,
        1.0,
        -1.0,
    ];

    /// Random values of widely varying magnitude with about one in four special.
    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut v = vec![0.0; len];
        rng.fill_normal(&mut v, 0.0, 1.0);
        for x in &mut v {
            if rng.below(4) == 0 {
                *x = SPECIAL[rng.below(SPECIAL.len())];
            } else {
                *x *= 10f32.powi(rng.below(9) as i32 - 4);
            }
        }
        v
    }

    /// The same value bit for bit, or both NaN (a NaN's sign and payload are unspecified).
    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Runs `f` at every supported level and compares each result with the baseline's bits.
    fn check(what: &str, f: impl Fn(SimdLevel) -> Vec<f32>) {
        let base = f(SimdLevel::Baseline);
        for level in supported_simd_levels() {
            let got = f(level);
            assert_eq!(got.len(), base.len(), "{what} at {level:?}: length");
            for (i, (g, b)) in got.iter().zip(&base).enumerate() {
                assert!(
                    same(*g, *b),
                    "{what} at {level:?}: element {i} is {g:e} ({:#x}), baseline {b:e} ({:#x})",
                    g.to_bits(),
                    b.to_bits()
                );
            }
        }
    }

    #[test]
    fn this_cpu_gets_a_wide_level_when_it_has_one() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(simd_level() >= SimdLevel::Avx2);
        }
        assert_eq!(supported_simd_levels()[0], SimdLevel::Baseline);
    }

    #[test]
    fn unary_maps() {
        for &n in &LENS {
            let x = data(n, n as u64);
            for op in Unary::ALL {
                check(&format!("unary {op:?} n={n}"), |l| {
                    let mut out = vec![7.0; n];
                    unary_at(l, op, &x, &mut out);
                    out
                });
                check(&format!("unary_inplace {op:?} n={n}"), |l| {
                    let mut out = x.clone();
                    unary_inplace_at(l, op, &mut out);
                    out
                });
            }
        }
    }

    const BINARY: [Binary; 13] = Binary::ALL;

    /// `(shape of a, shape of b)` pairs broadcasting to `[rows, cols]`, covering every layout.
    fn shape_pairs(rows: usize, cols: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
        let full = vec![rows, cols];
        vec![
            (full.clone(), full.clone()),
            (full.clone(), vec![cols]),
            (full.clone(), vec![rows, 1]),
            (full.clone(), vec![]),
            (vec![cols], full.clone()),
            (vec![cols], vec![rows, 1]),
            (vec![rows, 1], vec![1, cols]),
        ]
    }

    #[test]
    fn binary_maps_on_every_layout() {
        for (rows, cols) in [(1, 1), (3, 17), (5, 33), (2, 65), (7, 3)] {
            let to = [rows, cols];
            for (sa, sb) in shape_pairs(rows, cols) {
                let a = data(sa.iter().product(), 1 + rows as u64);
                let b = data(sb.iter().product(), 2 + cols as u64);
                let la = Layout::new(&sa, &to).unwrap();
                let lb = Layout::new(&sb, &to).unwrap();
                for op in BINARY {
                    let what = format!("binary {op:?} {sa:?} {sb:?}");
                    check(&what, |l| {
                        let mut out = vec![7.0; rows * cols];
                        binary_at(l, op, &to, &a, &la, &b, &lb, &mut out);
                        out
                    });
                    if la == Layout::Full {
                        check(&format!("{what} in place lhs"), |l| {
                            let mut out = a.clone();
                            binary_inplace_lhs_at(l, op, &to, &mut out, &b, &lb);
                            out
                        });
                    }
                    if lb == Layout::Full {
                        check(&format!("{what} in place rhs"), |l| {
                            let mut out = b.clone();
                            binary_inplace_rhs_at(l, op, &to, &a, &la, &mut out);
                            out
                        });
                    }
                }
            }
        }
    }

    #[test]
    fn select_clip_scale_axpy() {
        for &n in &LENS {
            let (c, a, b) = (data(n, 10), data(n, 11), data(n, 12));
            let shape = [n];
            let full = Layout::Full;
            check(&format!("select n={n}"), |l| {
                let mut out = vec![7.0; n];
                select_at(l, &shape, &c, &full, &a, &full, &b, &full, &mut out);
                out
            });
            if n > 0 {
                check(&format!("select with a scalar n={n}"), |l| {
                    let mut out = vec![7.0; n];
                    select_at(
                        l,
                        &shape,
                        &c,
                        &full,
                        &a,
                        &full,
                        &b[..1],
                        &Layout::Scalar,
                        &mut out,
                    );
                    out
                });
            }
            for (lo, hi) in [(-1.0, 2.0), (f32::NEG_INFINITY, 0.0), (3.0, -3.0)] {
                check(&format!("clip {lo} {hi} n={n}"), |l| {
                    let mut out = vec![7.0; n];
                    clip_at(l, &a, lo, hi, &mut out);
                    out
                });
                check(&format!("clip_inplace {lo} {hi} n={n}"), |l| {
                    let mut out = a.clone();
                    clip_inplace_at(l, &mut out, lo, hi);
                    out
                });
            }
            for alpha in [0.37f32, -2.0, f32::INFINITY, 1.0e-39] {
                check(&format!("scale {alpha} n={n}"), |l| {
                    let mut out = a.clone();
                    scale_inplace_at(l, &mut out, alpha);
                    out
                });
                check(&format!("axpy {alpha} n={n}"), |l| {
                    let mut out = vec![7.0; n];
                    axpy_at(l, &a, alpha, &b, &mut out);
                    out
                });
                check(&format!("axpy lhs {alpha} n={n}"), |l| {
                    let mut out = a.clone();
                    axpy_inplace_lhs_at(l, &mut out, alpha, &b);
                    out
                });
                check(&format!("axpy rhs {alpha} n={n}"), |l| {
                    let mut out = b.clone();
                    axpy_inplace_rhs_at(l, &a, alpha, &mut out);
                    out
                });
            }
        }
    }

    #[test]
    fn broadcasts_and_their_adjoints() {
        for (rows, cols) in [(1, 1), (3, 17), (5, 33), (33, 65), (7, 3)] {
            let to = [rows, cols];
            let g = data(rows * cols, 20);
            for small in [vec![rows, cols], vec![cols], vec![rows, 1], vec![]] {
                let x = data(small.iter().product(), 21);
                let layout = Layout::new(&small, &to).unwrap();
                check(&format!("broadcast_to {small:?} → {to:?}"), |l| {
                    let mut out = vec![7.0; rows * cols];
                    broadcast_to_at(l, &x, &layout, &to, &mut out);
                    out
                });
                check(&format!("sum_to {to:?} → {small:?}"), |l| {
                    let mut out = vec![7.0; x.len()];
                    sum_to_at(l, &g, &to, &layout, &mut out);
                    out
                });
            }
        }
    }

    #[test]
    fn reductions_keep_their_order() {
        for &n in &LENS {
            let x = data(n, 30 + n as u64);
            // Finite values too, so the sums are numbers whose every bit matters.
            let mut finite = x.clone();
            finite
                .iter_mut()
                .filter(|v| !v.is_finite())
                .for_each(|v| *v = 0.5);
            for (name, v) in [("special", &x), ("finite", &finite)] {
                check(&format!("sum_all {name} n={n}"), |l| vec![sum_all_at(l, v)]);
                check(&format!("max_all {name} n={n}"), |l| vec![max_all_at(l, v)]);
            }
        }
        for (outer, len, inner) in [(1, 1, 1), (3, 17, 1), (2, 9, 5), (4, 33, 17), (1, 65, 3)] {
            let x = data(outer * len * inner, 40 + len as u64);
            let m = outer * inner;
            let what = format!("({outer}, {len}, {inner})");
            check(&format!("reduce_sum {what}"), |l| {
                let mut out = vec![7.0; m];
                reduce_sum_at(l, &x, outer, len, inner, &mut out);
                out
            });
            check(&format!("reduce_mean {what}"), |l| {
                let mut out = vec![7.0; m];
                reduce_mean_at(l, &x, outer, len, inner, &mut out);
                out
            });
            check(&format!("reduce_max {what}"), |l| {
                let mut out = vec![7.0; m];
                reduce_max_at(l, &x, outer, len, inner, &mut out);
                out
            });
            check(&format!("max_mask {what}"), |l| {
                let mut out = vec![7.0; x.len()];
                max_mask_at(l, &x, outer, len, inner, &mut out);
                out
            });
            let (rows, cols) = (outer * inner, len);
            check(&format!("argmax_rows {what}"), |l| {
                let mut out = vec![7.0; rows];
                argmax_rows_at(l, &x, rows, cols, &mut out);
                out
            });
            check(&format!("transpose {what}"), |l| {
                let mut out = vec![7.0; x.len()];
                transpose_at(l, &x, rows, cols, &mut out);
                out
            });
        }
    }

    #[test]
    fn softmax_family() {
        for (rows, cols) in [(1, 1), (3, 17), (2, 10), (4, 33), (1, 1001)] {
            let mut x = data(rows * cols, 50 + cols as u64);
            // Mostly moderate rows, as softmax sees them, with the specials still in some.
            x.iter_mut()
                .step_by(3)
                .for_each(|v| *v = v.clamp(-30.0, 30.0));
            let what = format!("{rows}×{cols}");
            check(&format!("softmax {what}"), |l| {
                let mut out = vec![7.0; x.len()];
                softmax_at(l, &x, rows, cols, &mut out);
                out
            });
            check(&format!("softmax_inplace {what}"), |l| {
                let mut out = x.clone();
                softmax_inplace_at(l, &mut out, rows, cols);
                out
            });
            check(&format!("log_softmax {what}"), |l| {
                let mut out = vec![7.0; x.len()];
                log_softmax_at(l, &x, rows, cols, &mut out);
                out
            });
            check(&format!("log_softmax_inplace {what}"), |l| {
                let mut out = x.clone();
                log_softmax_inplace_at(l, &mut out, rows, cols);
                out
            });
            check(&format!("logsumexp {what}"), |l| {
                let mut out = vec![7.0; rows];
                logsumexp_at(l, &x, rows, cols, &mut out);
                out
            });
        }
    }
}
