//! The x86-64 micro-kernels (AVX-512F, AVX2+FMA).

use super::Kernel;
use std::arch::x86_64::*;

/// AVX-512F microkernel: MR rows × 16·NV columns (NV zmm accumulators per row). Partial
/// tiles use masked loads and stores instead of a stack tile.
pub(super) struct Avx512<const MR: usize, const NV: usize>;

impl<const MR: usize, const NV: usize> Kernel for Avx512<MR, NV> {
    const MR: usize = MR;
    const NR: usize = 16 * NV;
    const MC: usize = MR * (144 / MR);
    const KC: usize = 256;
    const NC: usize = 3072;

    unsafe fn ukr(
        kc: usize,
        pa: *const f32,
        rsa: usize,
        csa: usize,
        pb: *const f32,
        c: *mut f32,
        rsc: usize,
        alpha: f32,
        beta: f32,
    ) {
        // SAFETY: forwarded contract (the full tile is the mr = MR, nr = NR corner); the
        // driver selects this kernel only on AVX-512F CPUs.
        unsafe { Self::ukr_edge(kc, pa, rsa, csa, pb, c, rsc, MR, 16 * NV, alpha, beta) }
    }

    unsafe fn ukr_edge(
        kc: usize,
        pa: *const f32,
        rsa: usize,
        csa: usize,
        pb: *const f32,
        c: *mut f32,
        rsc: usize,
        mr: usize,
        nr: usize,
        alpha: f32,
        beta: f32,
    ) {
        // SAFETY: forwarded contract; the driver selects this kernel only on AVX-512F CPUs.
        unsafe {
            if rsa == 1 && csa == MR {
                ukr_avx512::<MR, NV, true>(kc, pa, rsa, csa, pb, c, rsc, mr, nr, alpha, beta)
            } else {
                ukr_avx512::<MR, NV, false>(kc, pa, rsa, csa, pb, c, rsc, mr, nr, alpha, beta)
            }
        }
    }
}

/// Computes the MR×16·NV product of the packed panels and merges its top-left `mr`×`nr`
/// corner into C (masked, so nothing outside the corner is read or written).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr_avx512<const MR: usize, const NV: usize, const PACKED: bool>(
    kc: usize,
    pa: *const f32,
    rsa: usize,
    csa: usize,
    pb: *const f32,
    c: *mut f32,
    rsc: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
) {
    // SAFETY (whole body): `pa` is valid at i·rsa + p·csa (i < MR, p < kc; PACKED means
    // (rsa, csa) = (1, MR)) and `pb` for kc·16·NV reads, and
    // the mr×nr corner at `c` with row stride `rsc` is valid for reads and writes (caller
    // contract). C is only touched through masked loads/stores whose masks cover columns
    // < nr, in rows < mr; masked-off lanes are never accessed (no faults). All accesses are
    // unaligned variants, so no alignment is assumed.
    unsafe {
        let (rsa, csa) = if PACKED { (1, MR) } else { (rsa, csa) };
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut a = pa;
        let mut b = pb;
        for _ in 0..kc {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(16 * v));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i * rsa));
                for (x, &y) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, y, *x);
                }
            }
            a = a.add(csa);
            b = b.add(16 * NV);
        }
        let mut mask = [0 as __mmask16; NV];
        for (v, m) in mask.iter_mut().enumerate() {
            let cols = nr.saturating_sub(16 * v).min(16);
            *m = ((1u32 << cols) - 1) as __mmask16;
        }
        let va = _mm512_set1_ps(alpha);
        let vb = _mm512_set1_ps(beta);
        for (i, row) in acc.iter().enumerate() {
            if i >= mr {
                break;
            }
            let cr = c.add(i * rsc);
            for (v, &x) in row.iter().enumerate() {
                let ab = _mm512_mul_ps(va, x);
                let out = if beta == 0.0 {
                    ab
                } else {
                    let old = _mm512_maskz_loadu_ps(mask[v], cr.add(16 * v));
                    _mm512_fmadd_ps(vb, old, ab)
                };
                _mm512_mask_storeu_ps(cr.add(16 * v), mask[v], out);
            }
        }
    }
}

/// The SIMD part of [`super::pack_transposed`]: rows `j < rows` (a multiple of 4: groups of 8
/// rows, then one of 4) and depths `p < kc / 8 * 8`, i.e.
/// `panel[p*w + j] = src[(r0 + j)*ld + d0 + p]`. The 4-row group matters for 12-row panels
/// (the AVX-512 12×32 kernel), whose last third would otherwise be packed one float at a time.
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn transpose_rows_avx(
    src: &[f32],
    ld: usize,
    r0: usize,
    rows: usize,
    d0: usize,
    kc: usize,
    w: usize,
    panel: &mut [f32],
) {
    let kc8 = kc / 8 * 8;
    if rows == 0 || kc8 == 0 {
        return;
    }
    // One check of the whole region instead of one per 8-float load and store: with a slice
    // and its bounds check per access, the address arithmetic spilled to the stack and was
    // most of this function's time.
    assert!(
        rows.is_multiple_of(4) && rows <= w,
        "transpose: {rows} rows into panels of {w}"
    );
    assert!(
        (r0 + rows - 1) * ld + d0 + kc8 <= src.len(),
        "transpose: source too short"
    );
    assert!(kc8 * w <= panel.len(), "transpose: panel too short");
    let (s, d) = (src.as_ptr(), panel.as_mut_ptr());
    for j0 in (0..rows / 8 * 8).step_by(8) {
        // SAFETY (all pointer arithmetic below): rows r0 + j0 + t < r0 + rows and depths
        // d0 + p0 + 8 ≤ d0 + kc8 lie in `src` (checked above), and panel positions
        // (p0 + q)·w + j0 + 8 ≤ kc8·w lie in `panel` (rows ≤ w).
        let row: [*const f32; 8] =
            std::array::from_fn(|t| unsafe { s.add((r0 + j0 + t) * ld + d0) });
        for p0 in (0..kc8).step_by(8) {
            let r: [__m256; 8] =
                std::array::from_fn(|t| unsafe { _mm256_loadu_ps(row[t].add(p0)) });
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (q, &x) in out.iter().enumerate() {
                // SAFETY: see above.
                unsafe { _mm256_storeu_ps(d.add((p0 + q) * w + j0), x) };
            }
        }
    }
    if rows % 8 == 4 {
        let j0 = rows - 4;
        // SAFETY: as above, for rows j0..j0 + 4 and 4-float stores.
        let row: [*const f32; 4] =
            std::array::from_fn(|t| unsafe { s.add((r0 + j0 + t) * ld + d0) });
        for p0 in (0..kc8).step_by(8) {
            let r: [__m256; 4] =
                std::array::from_fn(|t| unsafe { _mm256_loadu_ps(row[t].add(p0)) });
            // Each 128-bit lane is a 4×4 transpose: lane 0 gives depths p0..p0+4, lane 1 the
            // next four.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let out = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ];
            for (q, &x) in out.iter().enumerate() {
                // SAFETY: see above.
                unsafe {
                    _mm_storeu_ps(d.add((p0 + q) * w + j0), _mm256_castps256_ps128(x));
                    _mm_storeu_ps(d.add((p0 + 4 + q) * w + j0), _mm256_extractf128_ps::<1>(x));
                }
            }
        }
    }
}

/// AVX2+FMA microkernel: MR rows × 16 columns (two ymm accumulators per row).
pub(super) struct Avx2<const MR: usize>;

impl<const MR: usize> Kernel for Avx2<MR> {
    const MR: usize = MR;
    const NR: usize = 16;
    const MC: usize = MR * 24;
    const KC: usize = 256;
    const NC: usize = 16 * 192;

    unsafe fn ukr(
        kc: usize,
        pa: *const f32,
        rsa: usize,
        csa: usize,
        pb: *const f32,
        c: *mut f32,
        rsc: usize,
        alpha: f32,
        beta: f32,
    ) {
        // SAFETY: forwarded contract; the driver selects this kernel only on AVX2+FMA CPUs.
        unsafe {
            if rsa == 1 && csa == MR {
                ukr_avx2::<MR, true>(kc, pa, rsa, csa, pb, c, rsc, alpha, beta)
            } else {
                ukr_avx2::<MR, false>(kc, pa, rsa, csa, pb, c, rsc, alpha, beta)
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr_avx2<const MR: usize, const PACKED: bool>(
    kc: usize,
    pa: *const f32,
    rsa: usize,
    csa: usize,
    pb: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    // SAFETY (whole body): `pa` is valid at i·rsa + p·csa (i < MR, p < kc; PACKED means
    // (rsa, csa) = (1, MR)) and `pb` for kc·16 reads, and the
    // MR×16 tile at `c` with row stride `rsc` is valid for reads and writes (caller contract);
    // all loads/stores are unaligned variants, so no alignment is assumed.
    unsafe {
        let (rsa, csa) = if PACKED { (1, MR) } else { (rsa, csa) };
        let mut acc0 = [_mm256_setzero_ps(); MR];
        let mut acc1 = [_mm256_setzero_ps(); MR];
        let mut a = pa;
        let mut b = pb;
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for i in 0..MR {
                let av = _mm256_broadcast_ss(&*a.add(i * rsa));
                acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
                acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
            }
            a = a.add(csa);
            b = b.add(16);
        }
        let va = _mm256_set1_ps(alpha);
        if beta == 0.0 {
            for i in 0..MR {
                let row = c.add(i * rsc);
                _mm256_storeu_ps(row, _mm256_mul_ps(va, acc0[i]));
                _mm256_storeu_ps(row.add(8), _mm256_mul_ps(va, acc1[i]));
            }
        } else {
            let vb = _mm256_set1_ps(beta);
            for i in 0..MR {
                let row = c.add(i * rsc);
                let c0 = _mm256_mul_ps(vb, _mm256_loadu_ps(row));
                let c1 = _mm256_mul_ps(vb, _mm256_loadu_ps(row.add(8)));
                _mm256_storeu_ps(row, _mm256_fmadd_ps(va, acc0[i], c0));
                _mm256_storeu_ps(row.add(8), _mm256_fmadd_ps(va, acc1[i], c1));
            }
        }
    }
}
