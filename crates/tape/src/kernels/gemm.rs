//! General matrix multiply `C = alpha * op(A) * op(B) + beta * C` on row-major `f32` slices.

use super::gemm_kernels::{Act, Epilogue};

/// Limits the threads one large product may use: 1 makes every product single-threaded, 0 (the
/// default) uses them all. Helper threads are started on first use: `TAPE_NUM_THREADS` (read
/// once) or the number of cores. Products below about 8 million multiply-adds (half a million
/// when C has fewer than 64 columns) always run on the calling thread. Results are bit-identical
/// whatever the setting: threads split C by columns, or by rows when it is narrow (or tall, with
/// A stored m×k).
pub fn set_num_threads(threads: usize) {
    super::gemm_kernels::set_gemm_threads(threads);
}

/// The threads a large product uses with the current setting.
pub fn num_threads() -> usize {
    super::gemm_kernels::gemm_threads()
}

/// Runs `f` on every part, spreading the parts over the GEMM's helper threads (the first part
/// runs on the calling thread; parts beyond the thread count, or all of them when the helpers are
/// busy or [`set_num_threads`] is 1, run on the calling thread too). For memory-bound
/// elementwise work on large arrays, such as the update of a large parameter: split the arrays
/// into disjoint parts of similar size, and the result is the same whichever thread runs a part.
/// Waking a helper costs microseconds, so parts should each take well over that.
pub fn for_each_part<T: Send>(parts: &mut [T], f: &(dyn Fn(&mut T) + Sync)) {
    super::gemm_kernels::for_each_part(parts, f);
}

/// C = alpha * op(A) * op(B) + beta * C, through our packed, cache-blocked SIMD SGEMM.
///
/// op(A) is m×k: A is stored row-major as m×k when `!ta`, or as k×m when `ta` (then op(A)=Aᵀ).
/// op(B) is k×n: B is stored k×n when `!tb`, or n×k when `tb`. C is m×n row-major.
/// `beta == 0` means C is overwritten (its old contents, even NaN, are ignored). Handles m, n or
/// k == 0 (k == 0 ⇒ C = beta*C, or zeros when beta == 0). Only the first m·k, k·n and m·n
/// elements of `a`, `b` and `c` are touched.
///
/// Transposes are handled while packing (through strides, no transposed copy). The packing
/// buffers are thread-local and only grow, so repeated calls with the same (or smaller) shapes
/// on a thread perform no heap allocation. The microkernel (AVX-512F, AVX2+FMA or portable) is
/// picked once per process from the CPU's features; results depend only on the inputs and it.
/// Large products are split across threads (see [`set_num_threads`]) with identical results.
#[allow(clippy::too_many_arguments)] // the BLAS-style signature is a contract shared with callers
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    beta: f32,
    c: &mut [f32],
) {
    // These bounds make the raw-pointer kernels sound, so they are checked in release too.
    assert!(c.len() >= m * n, "gemm: C too short");
    assert!(a.len() >= m * k, "gemm: A too short");
    assert!(b.len() >= k * n, "gemm: B too short");
    let c = &mut c[..m * n];
    if c.is_empty() {
        return;
    }
    if k == 0 {
        return empty_sum(c, n, beta, Epilogue::NONE);
    }
    super::gemm_kernels::sgemm(m, k, n, alpha, a, ta, b, tb, beta, c);
}

/// The product of an empty inner dimension (`k = 0`) into the non-empty `c` (rows of `n`):
/// nothing to accumulate, so C = beta·C, or zeros (ignoring NaN) when beta == 0, and the
/// epilogue still applies to that empty sum.
fn empty_sum(c: &mut [f32], n: usize, beta: f32, epi: Epilogue<'_>) {
    for r in c.chunks_exact_mut(n) {
        if beta == 0.0 {
            r.fill(0.0);
        } else {
            r.iter_mut().for_each(|v| *v *= beta);
        }
        epi.finish_row(r, 0);
    }
}

/// `C = act(op(A)·op(B) + bias)` with the bias row (at least n values) added and the activation
/// applied to each tile of C right after its sum is complete, instead of in two more passes over
/// C; the bits are those of the product followed by those passes. Same shape contract as
/// [`gemm`] (checked by the caller, the plan).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_epilogue(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    let c = &mut c[..m * n];
    if c.is_empty() {
        return;
    }
    if k == 0 {
        return empty_sum(c, n, 0.0, epi);
    }
    super::gemm_kernels::sgemm_with(
        super::gemm_kernels::detect(),
        m,
        k,
        n,
        1.0,
        a,
        ta,
        b,
        tb,
        0.0,
        c,
        epi,
    );
}

#[cfg(test)]
// The references index with plain loops on purpose: they must be obviously correct.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::testing::values;
    use proptest::prelude::*;

    #[test]
    fn large_products_split_across_threads_give_the_same_bits() {
        let mut rng = crate::Rng::new(9);
        for &(m, k, n) in &[
            (128usize, 784usize, 512usize),
            // Taller than one row block (MC), as the weight gradient 784×128·128×512.
            (784, 128, 512),
            // Too narrow to split by columns: split by rows.
            (128, 512, 10),
            (200, 700, 20),
            (200, 300, 333),
            (96, 1024, 130),
            // Tall, A stored m×k (an inference batch): split by rows.
            (1000, 784, 512),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut a = vec![0.0f32; m * k];
                let mut b = vec![0.0f32; k * n];
                rng.fill_normal(&mut a, 0.0, 1.0);
                rng.fill_normal(&mut b, 0.0, 1.0);
                let mut split = vec![f32::NAN; m * n];
                let mut single = vec![f32::NAN; m * n];
                gemm(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut split);
                super::super::gemm_kernels::sgemm_single(
                    m,
                    k,
                    n,
                    &a,
                    ta,
                    &b,
                    tb,
                    &mut single,
                    super::super::gemm_kernels::Epilogue::NONE,
                );
                assert!(
                    split
                        .iter()
                        .zip(&single)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} ta={ta} tb={tb}"
                );
            }
        }
    }

    /// Textbook triple loop in f64; also returns, per element, the magnitude bound used for the
    /// rounding tolerance.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        beta: f32,
        c: &[f32],
    ) -> (Vec<f64>, Vec<f64>) {
        let mut out = vec![0.0; m * n];
        let mut mag = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                let mut sa = 0.0f64;
                for l in 0..k {
                    let av = if ta { a[l * m + i] } else { a[i * k + l] } as f64;
                    let bv = if tb { b[j * k + l] } else { b[l * n + j] } as f64;
                    s += av * bv;
                    sa += (av * bv).abs();
                }
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta as f64 * c[i * n + j] as f64
                };
                out[i * n + j] = alpha as f64 * s + old;
                mag[i * n + j] = (alpha as f64).abs() * sa + old.abs();
            }
        }
        (out, mag)
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        beta: f32,
        c0: &[f32],
    ) -> Result<(), TestCaseError> {
        let (want, mag) = naive(m, k, n, alpha, a, ta, b, tb, beta, c0);
        let mut c = c0.to_vec();
        gemm(m, k, n, alpha, a, ta, b, tb, beta, &mut c);
        for idx in 0..m * n {
            let tol = 4.0 * f32::EPSILON as f64 * (k as f64 + 2.0) * mag[idx] + 1e-6;
            let got = c[idx] as f64;
            prop_assert!(
                (got - want[idx]).abs() <= tol,
                "m={m} k={k} n={n} ta={ta} tb={tb} alpha={alpha} beta={beta} idx={idx}: {got} vs {}",
                want[idx]
            );
        }
        Ok(())
    }

    fn scalar() -> impl Strategy<Value = f32> {
        prop_oneof![Just(0.0f32), Just(1.0f32), Just(-1.0f32), -3.0f32..3.0]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_naive(
            (m, k, n, a, b, c) in (0usize..=9, 0usize..=9, 0usize..=9).prop_flat_map(|(m, k, n)| {
                (Just(m), Just(k), Just(n), values(-2.0..2.0, m * k), values(-2.0..2.0, k * n), values(-2.0..2.0, m * n))
            }),
            ta in any::<bool>(),
            tb in any::<bool>(),
            alpha in scalar(),
            beta in scalar(),
        ) {
            check(m, k, n, alpha, &a, ta, &b, tb, beta, &c)?;
        }

        #[test]
        fn beta_zero_ignores_nan(
            (m, k, n, a, b) in (0usize..=9, 0usize..=9, 0usize..=9).prop_flat_map(|(m, k, n)| {
                (Just(m), Just(k), Just(n), values(-2.0..2.0, m * k), values(-2.0..2.0, k * n))
            }),
            ta in any::<bool>(),
            tb in any::<bool>(),
            alpha in scalar(),
        ) {
            let c = vec![f32::NAN; m * n];
            check(m, k, n, alpha, &a, ta, &b, tb, 0.0, &c)?;
        }
    }

    fn det(len: usize, seed: u32) -> Vec<f32> {
        // Cheap deterministic pseudo-random fill so the large cases need no RNG plumbing.
        (0..len)
            .map(|i| {
                let x = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(40_503));
                ((x >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn larger_fixed_cases_all_transposes() {
        for &(m, k, n) in &[
            (33, 17, 65),
            (64, 128, 48),
            (1, 300, 1),
            (70, 1, 70),
            (5, 257, 3),
        ] {
            for (case, &(ta, tb)) in [(false, false), (false, true), (true, false), (true, true)]
                .iter()
                .enumerate()
            {
                let a = det(m * k, 1 + case as u32);
                let b = det(k * n, 7 + case as u32);
                let c = det(m * n, 13);
                check(m, k, n, 0.7, &a, ta, &b, tb, -0.3, &c).unwrap();
                check(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &vec![f32::NAN; m * n]).unwrap();
            }
        }
    }

    #[test]
    fn every_kernel_matches_naive_across_block_edges() {
        use super::super::gemm_kernels::{sgemm_with, supported, Isa};
        // Shapes straddle MR/NR/MC/KC (and for the small-NC portable kernel, NC) boundaries.
        let shapes = [
            (1, 1, 1),
            // n ≤ 2·NR: full A micro-panels are read in place, partial ones packed.
            (40, 300, 10),
            (50, 70, 30),
            (13, 300, 33),
            (150, 517, 70),
            (7, 9, 2100),
            (29, 40, 3100),
        ];
        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
            if !supported(isa) {
                continue;
            }
            for &(m, k, n) in &shapes {
                for (case, &(ta, tb)) in
                    [(false, false), (false, true), (true, false), (true, true)]
                        .iter()
                        .enumerate()
                {
                    let a = det(m * k, 3 + case as u32);
                    let b = det(k * n, 11 + case as u32);
                    let c0 = det(m * n, 17);
                    for &(alpha, beta) in &[(1.0f32, 0.0f32), (-0.6, 1.3)] {
                        let (want, mag) = naive(m, k, n, alpha, &a, ta, &b, tb, beta, &c0);
                        let mut c = if beta == 0.0 {
                            vec![f32::NAN; m * n]
                        } else {
                            c0.clone()
                        };
                        sgemm_with(
                            isa,
                            m,
                            k,
                            n,
                            alpha,
                            &a,
                            ta,
                            &b,
                            tb,
                            beta,
                            &mut c,
                            super::super::gemm_kernels::Epilogue::NONE,
                        );
                        for idx in 0..m * n {
                            let tol =
                                4.0 * f32::EPSILON as f64 * (k as f64 + 2.0) * mag[idx] + 1e-6;
                            assert!(
                                (c[idx] as f64 - want[idx]).abs() <= tol,
                                "{isa:?} m={m} k={k} n={n} ta={ta} tb={tb} beta={beta} idx={idx}: {} vs {}",
                                c[idx],
                                want[idx]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn repeated_calls_reuse_the_packing_buffer() {
        use super::super::gemm_kernels::pack_capacity;
        // Tests run on their own threads, so this thread's buffer is untouched by other tests.
        let shapes = [
            (128, 784, 512),
            (128, 512, 10),
            (5, 257, 3),
            (784, 128, 512),
        ];
        for (ta, tb) in [(false, false), (true, false), (false, true)] {
            for &(m, k, n) in &shapes {
                let a = det(m * k, 1);
                let b = det(k * n, 2);
                let mut c = vec![0.0; m * n];
                gemm(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut c);
                let cap = pack_capacity();
                assert!(cap > 0);
                let first = c.clone();
                gemm(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut c);
                assert_eq!(pack_capacity(), cap, "buffer regrown for {m}x{k}x{n}");
                // Deterministic: the same inputs give bit-identical results.
                assert_eq!(c, first);
            }
        }
    }

    /// The unfused sequence the epilogue replaces: the product, then the graph's bias-add and
    /// relu kernels over the whole of C.
    #[allow(clippy::too_many_arguments)]
    fn unfused(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        bias: &[f32],
        relu: bool,
    ) -> Vec<f32> {
        use crate::kernels::{binary, unary_inplace, Binary, Layout, Unary};
        let mut c = vec![f32::NAN; m * n];
        gemm(m, k, n, 1.0, a, ta, b, tb, 0.0, &mut c);
        let mut out = vec![f32::NAN; m * n];
        let row = Layout::new(&[n], &[m, n]).expect("a row broadcasts");
        binary(
            Binary::Add,
            &[m, n],
            &c,
            &Layout::Full,
            bias,
            &row,
            &mut out,
        );
        if relu {
            unary_inplace(Unary::Relu, &mut out);
        }
        out
    }

    #[test]
    fn epilogue_gives_the_bits_of_the_separate_bias_and_relu_passes() {
        use super::super::gemm_kernels::{sgemm_with, supported, Act, Epilogue, Isa};
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut rng = crate::Rng::new(21);
        // k beyond one depth block (KC = 256) so the bias must wait for the last one; large
        // enough shapes to split by columns (128x784x512) and by rows (1000x600x10) on 2 threads.
        let shapes = [
            (1, 1, 1),
            (5, 257, 3),
            (33, 300, 65),
            (40, 600, 10),
            (150, 517, 70),
            (128, 784, 512),
            (1000, 600, 10),
            (7, 0, 9),
        ];
        // Both the split product (all threads, the default) and the calling thread alone.
        for threads in [1, 2] {
            for &(m, k, n) in &shapes {
                for (ta, tb) in [(false, false), (true, false), (false, true)] {
                    let mut a = vec![0.0f32; m * k];
                    let mut b = vec![0.0f32; k * n];
                    let mut bias = vec![0.0f32; n];
                    rng.fill_normal(&mut a, 0.0, 1.0);
                    rng.fill_normal(&mut b, 0.0, 1.0);
                    rng.fill_normal(&mut bias, 0.0, 3.0);
                    for relu in [false, true] {
                        let want = unfused(m, k, n, &a, ta, &b, tb, &bias, relu);
                        let epi = Epilogue {
                            bias: Some(&bias),
                            act: if relu { Act::Relu } else { Act::Identity },
                        };
                        let mut got = vec![f32::NAN; m * n];
                        if threads == 1 && k > 0 {
                            super::super::gemm_kernels::sgemm_single(
                                m, k, n, &a, ta, &b, tb, &mut got, epi,
                            );
                        } else {
                            gemm_epilogue(m, k, n, &a, ta, &b, tb, &mut got, epi);
                        }
                        let case = format!("{m}x{k}x{n} ta={ta} tb={tb} relu={relu} t={threads}");
                        assert_eq!(bits(&got), bits(&want), "{case}");
                        if relu {
                            assert!(got.iter().all(|&v| v >= 0.0), "{case}");
                        }
                        // Every kernel flavour applies it after its own last depth block.
                        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
                            if !supported(isa) || k == 0 {
                                continue;
                            }
                            let mut plain = vec![f32::NAN; m * n];
                            sgemm_with(
                                isa,
                                m,
                                k,
                                n,
                                1.0,
                                &a,
                                ta,
                                &b,
                                tb,
                                0.0,
                                &mut plain,
                                Epilogue::NONE,
                            );
                            let mut fused = vec![f32::NAN; m * n];
                            sgemm_with(isa, m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut fused, epi);
                            let by_hand: Vec<f32> = plain
                                .iter()
                                .enumerate()
                                .map(|(i, &v)| {
                                    let s = v + bias[i % n];
                                    if relu && s < 0.0 {
                                        0.0
                                    } else {
                                        s
                                    }
                                })
                                .collect();
                            assert_eq!(bits(&fused), bits(&by_hand), "{isa:?} {case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn k_zero_scales_or_zeroes() {
        let mut c = vec![1.0, 2.0, f32::NAN, 4.0];
        gemm(2, 0, 2, 1.0, &[], false, &[], false, 0.0, &mut c);
        assert_eq!(c, vec![0.0; 4]);
        let mut c = vec![1.0, 2.0, 3.0, 4.0];
        gemm(2, 0, 2, 1.0, &[], true, &[], true, 2.0, &mut c);
        assert_eq!(c, vec![2.0, 4.0, 6.0, 8.0]);
    }

    #[test]
    fn known_product() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        gemm(2, 2, 2, 1.0, &a, false, &b, false, 0.0, &mut c);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        // Aᵀ B with A stored as given: [1 3; 2 4] * B = [26 30; 38 44]
        gemm(2, 2, 2, 1.0, &a, true, &b, false, 0.0, &mut c);
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
    }
}

/// One planned product `out = op(a)·op(b)` (`m×k` times `k×n`), optionally plus a bias row and
/// then a ReLU, both applied by the GEMM's epilogue to each finished tile. When `packed_b`, `b`
/// holds op(B) packed by a [`PackBCall`].
#[derive(Clone, Debug)]
pub(crate) struct GemmCall<S> {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) a: S,
    pub(crate) ta: bool,
    pub(crate) b: S,
    pub(crate) tb: bool,
    pub(crate) bias: Option<S>,
    pub(crate) packed_b: bool,
    pub(crate) relu: bool,
    /// Set when `b` is a parameter this product may keep packed between calls (run by the
    /// interpreter, which decides per call: see [`KeptB::next`]).
    pub(crate) kept: Option<KeptB>,
}

/// The packed copy of a parameter B that a product of a top-level function keeps from one call
/// to the next, so that repeated predictions with unchanged weights do not pack them again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeptB {
    /// The workspace buffer holding the packed panels (of [`packed_b_len`] floats); no other
    /// instruction writes it.
    pub(crate) buf: usize,
    /// The parameter's slot in the program.
    pub(crate) slot: usize,
    /// The parameter version the buffer holds, if any.
    pub(crate) packed_at: Option<u64>,
    /// The parameter version the previous call saw.
    pub(crate) seen: Option<u64>,
}

/// How one call of a product with a [`KeptB`] reads its B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeptUse {
    /// From the kept buffer, which holds the current weights.
    Packed,
    /// Pack the current weights into the kept buffer first, then read them from it.
    PackFirst,
    /// Unpacked from the parameter, as a product without a kept B (same bits either way).
    Unpacked,
}

impl KeptB {
    /// Decides how this call reads B, given the parameter's current `version`. Weights are
    /// packed once they stayed the same over two calls: a prediction or evaluation packs on its
    /// second call and reuses the panels from then on, while a training step, whose weights
    /// change between every two calls, never pays for a separate pack (its threads pack their
    /// share of B inside the product as before).
    pub(crate) fn next(&mut self, version: u64) -> KeptUse {
        if self.packed_at == Some(version) {
            return KeptUse::Packed;
        }
        let settled = self.seen == Some(version);
        self.seen = Some(version);
        if settled {
            self.packed_at = Some(version);
            KeptUse::PackFirst
        } else {
            KeptUse::Unpacked
        }
    }
}

impl<S> GemmCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let epi = Epilogue {
            bias: self.bias.as_ref().map(|b| &get(b)[..n]),
            act: if self.relu { Act::Relu } else { Act::Identity },
        };
        let (a, b, c) = (get(&self.a), get(&self.b), &mut out[..m * n]);
        if self.packed_b {
            gemm_packed_b(m, k, n, 1.0, a, self.ta, b, 0.0, c, epi);
        } else {
            gemm_epilogue(m, k, n, a, self.ta, b, self.tb, c, epi);
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "gemm {}x{}x{} ({}{}, {}{}{}){}{}{}",
            self.m,
            self.k,
            self.n,
            name(&self.a),
            if self.ta { "ᵀ" } else { "" },
            if self.packed_b { "packed " } else { "" },
            name(&self.b),
            // A packed B was transposed while packing (its `pack B` line says so).
            if self.tb && !self.packed_b { "ᵀ" } else { "" },
            self.bias
                .as_ref()
                .map(|b| format!(" + bias {}", name(b)))
                .unwrap_or_default(),
            if self.relu { ", relu" } else { "" },
            if self.kept.is_some() {
                ", B kept packed"
            } else {
                ""
            }
        )
    }
}

// Products whose B is the same for many calls (a scan step's weights): B is packed once, by a
// `PackBCall` the plan hoists out of the step loop, and every product reads the packed panels.

/// Floats of a buffer that holds op(B) (`k×n`) packed by [`pack_b`].
pub(crate) fn packed_b_len(k: usize, n: usize) -> usize {
    super::gemm_kernels::packed_b_len(k, n)
}

/// Packs op(B) (`k×n`; B stored `n×k` when `tb`) into `dst` (at least [`packed_b_len`] floats)
/// for [`gemm_packed_b`] products with the same `k` and `n`. `dst` must not move between the
/// packing and the products (a `Vec`'s heap buffer does not when the `Vec` itself is moved).
pub(crate) fn pack_b(k: usize, n: usize, b: &[f32], tb: bool, dst: &mut [f32]) {
    super::gemm_kernels::pack_b_whole(k, n, b, tb, dst);
}

/// [`gemm`] with op(B) already packed by [`pack_b`] for this `k` and `n`, then `epi` (as in
/// [`gemm_epilogue`]): the same bits, split across threads the same way, without packing B again.
#[allow(clippy::too_many_arguments)] // gemm's signature, with the packed B for b and tb
pub(crate) fn gemm_packed_b(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: bool,
    packed: &[f32],
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    assert!(c.len() >= m * n, "gemm: C too short");
    assert!(a.len() >= m * k, "gemm: A too short");
    let c = &mut c[..m * n];
    if c.is_empty() {
        return;
    }
    if k == 0 {
        return empty_sum(c, n, beta, epi);
    }
    super::gemm_kernels::sgemm_packed_b(m, k, n, alpha, a, ta, packed, beta, c, epi);
}

/// Packs a loop-invariant op(B) (`k×n`) into `out` for the products that read it packed.
#[derive(Clone, Debug)]
pub(crate) struct PackBCall<S> {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) b: S,
    pub(crate) tb: bool,
}

impl<S> PackBCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        pack_b(self.k, self.n, get(&self.b), self.tb, out);
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "pack B {}x{} ({}{})",
            self.k,
            self.n,
            name(&self.b),
            if self.tb { "ᵀ" } else { "" }
        )
    }
}

#[cfg(test)]
mod packed_tests {
    use super::*;

    /// Products with B packed once give the bits of the ordinary call on one thread, whether
    /// they split across threads or not, for every transpose.
    #[test]
    fn prepacked_b_gives_the_bits_of_the_unpacked_product() {
        let mut rng = crate::Rng::new(11);
        for &(m, k, n) in &[
            (32usize, 256usize, 1024usize),
            (32, 1024, 256),
            (128, 784, 512),
            (784, 128, 512),
            (128, 512, 10),
            (200, 700, 20),
            (200, 300, 333),
            (96, 1024, 130),
            (7, 300, 33),
            (1, 1, 1),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut a = vec![0.0f32; m * k];
                let mut b = vec![0.0f32; k * n];
                rng.fill_normal(&mut a, 0.0, 1.0);
                rng.fill_normal(&mut b, 0.0, 1.0);
                let mut packed = vec![f32::NAN; packed_b_len(k, n)];
                pack_b(k, n, &b, tb, &mut packed);
                let single_with = |epi| {
                    let mut c = vec![f32::NAN; m * n];
                    super::super::gemm_kernels::sgemm_single(m, k, n, &a, ta, &b, tb, &mut c, epi);
                    c
                };
                let single = single_with(Epilogue::NONE);
                for beta in [0.0f32, 1.0] {
                    let mut got = vec![if beta == 0.0 { f32::NAN } else { 0.0 }; m * n];
                    gemm_packed_b(
                        m,
                        k,
                        n,
                        1.0,
                        &a,
                        ta,
                        &packed,
                        beta,
                        &mut got,
                        Epilogue::NONE,
                    );
                    assert!(
                        got.iter()
                            .zip(&single)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{k}x{n} ta={ta} tb={tb} beta={beta}"
                    );
                }
                // A packed product finishes its tiles with the same bias and ReLU.
                let mut bias = vec![0.0f32; n];
                rng.fill_normal(&mut bias, 0.0, 1.0);
                let epi = Epilogue {
                    bias: Some(&bias),
                    act: Act::Relu,
                };
                let want = single_with(epi);
                let mut got = vec![f32::NAN; m * n];
                gemm_packed_b(m, k, n, 1.0, &a, ta, &packed, 0.0, &mut got, epi);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} ta={ta} tb={tb} with bias and relu"
                );
            }
        }
    }
}
