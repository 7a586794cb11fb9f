//! Packed, cache-blocked SGEMM (BLIS loop structure) behind [`super::gemm()`]; large products
//! are split across helper threads by column (or, when narrow, row) blocks (see `mod parallel`).
//!
//! Loop nest (row-major C, all blocks clipped at the matrix edges):
//!
//! ```text
//! for jc in 0..n step NC            // B block columns
//!   for pc in 0..k step KC          // depth; beta is applied only when pc == 0
//!     pack B[pc.., jc..] (KC×NC) into NR-column micro-panels
//!     for ic in 0..m step MC
//!       pack A[ic.., pc..] (MC×KC) into MR-row micro-panels
//!       for jr in 0..nc step NR     // B micro-panel stays in L1
//!         for ir in 0..mc step MR   // A micro-panels stream from L2
//!           microkernel: C[MR×NR] = alpha·Apanel·Bpanel + beta·C
//! ```
//!
//! Packing reads the operands through (row, column) strides, so transposed operands cost
//! nothing extra, and zero-pads partial micro-panels so the microkernel always runs full
//! MR×NR tiles; partial tiles of C are computed into a stack tile and merged with a scalar loop.
//! The packing buffers live in a thread-local `Vec<f32>` that only grows, so after the first
//! call of a given size on a thread, `gemm` performs no heap allocation. The microkernel is
//! chosen once per process by runtime CPU feature detection (AVX-512F, AVX2+FMA, portable).
//! The summation order depends only on the shapes and the selected kernel, so results are
//! deterministic.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction-set flavour of the microkernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain Rust (auto-vectorised by the compiler); used on every target.
    Generic,
    /// AVX2 + FMA intrinsics (x86_64 only).
    Avx2,
    /// AVX-512F intrinsics (x86_64 only).
    Avx512,
}

/// 0 = not yet detected, otherwise `1 + Isa as u8`.
static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The best microkernel flavour the running CPU supports (detected once, then cached).
pub(crate) fn detect() -> Isa {
    match DETECTED.load(Ordering::Relaxed) {
        1 => Isa::Generic,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let isa = detect_uncached();
            let code = match isa {
                Isa::Generic => 1,
                Isa::Avx2 => 2,
                Isa::Avx512 => 3,
            };
            DETECTED.store(code, Ordering::Relaxed);
            isa
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_uncached() -> Isa {
    if is_x86_feature_detected!("avx512f") {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Generic
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_uncached() -> Isa {
    Isa::Generic
}

/// Whether the running CPU can execute kernels of flavour `isa`.
#[cfg(test)]
pub(crate) fn supported(isa: Isa) -> bool {
    match (isa, detect()) {
        (Isa::Generic, _) => true,
        (Isa::Avx2, Isa::Avx2) | (Isa::Avx2, Isa::Avx512) => {
            #[cfg(target_arch = "x86_64")]
            {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        }
        (Isa::Avx512, Isa::Avx512) => true,
        _ => false,
    }
}

/// The activation an [`Epilogue`] applies after the bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    /// None: the sum (plus bias) as is.
    Identity,
    /// `max(v, 0)` with NaN kept, exactly as the elementwise `relu` kernel computes it.
    Relu,
}

/// What the driver does to each finished tile of C right after its last depth block, while the
/// tile is still in L1: add a bias row, then an activation. Applying it after the whole sum gives
/// the same bits as the separate product, bias-add and activation passes it replaces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue<'a> {
    /// One value per column of C (of this block: column splits slice it), added to every row.
    pub(crate) bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub(crate) act: Act,
}

impl<'a> Epilogue<'a> {
    /// Nothing: C is the plain product.
    pub(crate) const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        act: Act::Identity,
    };

    fn is_none(&self) -> bool {
        self.bias.is_none() && self.act == Act::Identity
    }

    /// The epilogue of the block of C starting at column `start`.
    fn at_col(self, start: usize) -> Epilogue<'a> {
        Epilogue {
            bias: self.bias.map(|b| &b[start..]),
            ..self
        }
    }

    /// Applies the epilogue to one row of C whose first element is column `col` (of this block).
    pub(crate) fn finish_row(&self, row: &mut [f32], col: usize) {
        // `relu` as in kernels/elementwise.rs: `v < 0 ? 0 : v` keeps NaN and −0.
        match (self.bias, self.act) {
            (None, Act::Identity) => {}
            (Some(b), Act::Identity) => {
                for (v, &b) in row.iter_mut().zip(&b[col..]) {
                    *v += b;
                }
            }
            (Some(b), Act::Relu) => {
                for (v, &b) in row.iter_mut().zip(&b[col..]) {
                    let s = *v + b;
                    *v = if s < 0.0 { 0.0 } else { s };
                }
            }
            (None, Act::Relu) => {
                for v in row.iter_mut() {
                    *v = if *v < 0.0 { 0.0 } else { *v };
                }
            }
        }
    }

    /// Applies the epilogue to the `mr`×`nr` tile at `c` (row stride `rsc`) starting at column
    /// `col` of this block.
    ///
    /// # Safety
    /// The tile must be valid for reads and writes and touched by nobody else meanwhile.
    unsafe fn finish_tile(&self, c: *mut f32, rsc: usize, mr: usize, nr: usize, col: usize) {
        for i in 0..mr {
            // SAFETY: row i < mr of the tile, columns < nr (caller contract).
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * rsc), nr) };
            self.finish_row(row, col);
        }
    }
}

/// Largest MR·NR over all microkernels (size of the stack tile for partial C tiles).
const TILE_MAX: usize = 512;

/// Alignment (in f32 elements) of the packed panels: 64 bytes.
const ALIGN: usize = 16;

/// A microkernel with its register-block (MR×NR) and cache-block (MC, KC, NC) sizes.
trait Kernel {
    const MR: usize;
    const NR: usize;
    /// Rows of the packed A block (multiple of MR).
    const MC: usize;
    /// Depth of the packed blocks.
    const KC: usize;
    /// Columns of the packed B block (multiple of NR).
    const NC: usize;

    /// `C[i*rsc + j] = alpha * sum_p pa[i*rsa + p*csa] * pb[p*NR + j] + beta * C[i*rsc + j]`
    /// for `i < MR`, `j < NR`; when `beta == 0`, C is not read. A packed A micro-panel has
    /// `(rsa, csa) = (1, MR)`; other strides read A in place.
    ///
    /// # Safety
    /// `pa` must be valid for reads at every `i*rsa + p*csa` (`i < MR`, `p < kc`), `pb` for
    /// `kc*NR` reads, and `c` for reads and writes of the MR×NR tile with row stride `rsc`
    /// (which must not overlap the inputs); the CPU must support the kernel's instruction set.
    #[allow(clippy::too_many_arguments)]
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
    );

    /// Like [`Kernel::ukr`] but only the top-left `mr`×`nr` corner of the tile (`mr ≤ MR`,
    /// `nr ≤ NR`) is read or written. The default computes into a stack tile and merges it.
    ///
    /// # Safety
    /// As for [`Kernel::ukr`], except that `c` need only be valid for the `mr`×`nr` corner.
    #[allow(clippy::too_many_arguments)]
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
        let mut tmp = [0.0f32; TILE_MAX];
        // SAFETY: `pa`/`pb` are forwarded unchanged (caller contract); `tmp` holds
        // MR·NR ≤ TILE_MAX elements at row stride NR, and beta = 0 means it is only written.
        unsafe { Self::ukr(kc, pa, rsa, csa, pb, tmp.as_mut_ptr(), Self::NR, alpha, 0.0) };
        for i in 0..mr {
            // SAFETY: row i < mr of the corner, columns < nr, is valid and unique (contract).
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * rsc), nr) };
            let src = &tmp[i * Self::NR..][..nr];
            if beta == 0.0 {
                row.copy_from_slice(src);
            } else {
                for (d, &s) in row.iter_mut().zip(src) {
                    *d = s + beta * *d;
                }
            }
        }
    }
}

thread_local! {
    /// Per-thread packing buffer (A block followed by B block); grown on demand, never shrunk.
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Capacity of this thread's packing buffer (for the no-reallocation test).
#[cfg(test)]
pub(crate) fn pack_capacity() -> usize {
    PACK.with(|p| p.borrow().capacity())
}

/// `C = alpha·op(A)·op(B) + beta·C` with the best kernel for this CPU. Shapes are validated by
/// the caller: `a`, `b`, `c` hold at least m·k, k·n, m·n elements and m, n, k ≥ 1.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
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
    sgemm_with(
        detect(),
        m,
        k,
        n,
        alpha,
        a,
        ta,
        b,
        tb,
        beta,
        c,
        Epilogue::NONE,
    );
}

/// [`sgemm`] with an explicit kernel flavour, which must be supported by the running CPU
/// (unsupported flavours fall back to the best supported one), and an epilogue applied to each
/// tile of C once its sum is complete (its bias, if any, holds at least n values).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_with(
    isa: Isa,
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
    epi: Epilogue<'_>,
) {
    let best = detect();
    let isa = match (isa, best) {
        (Isa::Avx512, Isa::Avx512) => Isa::Avx512,
        (Isa::Avx2 | Isa::Avx512, Isa::Avx2 | Isa::Avx512) => Isa::Avx2,
        _ => Isa::Generic,
    };
    let ops = Ops {
        m,
        k,
        n,
        alpha,
        a,
        ta,
        b,
        tb,
        beta,
        lda: if ta { m } else { k },
        ldb: if tb { k } else { n },
        ldc: n,
        full_n: n,
        packed_b: None,
        col0: 0,
        epi,
    };
    run_whole(isa, &ops, c);
}

/// Checks that C holds the whole `m×n` product of `o` and its bias at least `n` values (the
/// raw-pointer kernels rely on both), then runs it, split across threads.
fn run_whole(isa: Isa, o: &Ops<'_>, c: &mut [f32]) {
    assert!(c.len() >= o.m * o.n, "sgemm: C too short");
    assert!(
        o.epi.bias.is_none_or(|b| b.len() >= o.n),
        "sgemm: bias shorter than n"
    );
    // SAFETY: C holds the m×n block at row stride n, exclusively borrowed for this call.
    unsafe { parallel::run_split(isa, o, c.as_mut_ptr()) }
}

/// Runs one block on this thread with its packing buffer.
///
/// # Safety
/// As for [`drive`].
unsafe fn run_local(isa: Isa, ops: &Ops<'_>, c: *mut f32) {
    // `try_with` fails only while the thread is being torn down, and the buffer is never
    // borrowed re-entrantly; either way a temporary buffer is still correct.
    let mut pending = true;
    let _ = PACK.try_with(|p| {
        if let Ok(mut buf) = p.try_borrow_mut() {
            // SAFETY: forwarded from the caller.
            unsafe { run(isa, ops, c, &mut buf) };
            pending = false;
        }
    });
    if pending {
        // SAFETY: forwarded from the caller.
        unsafe { run(isa, ops, c, &mut Vec::new()) };
    }
}

pub(crate) use parallel::{
    effective as gemm_threads, for_each_part, set_limit as set_gemm_threads,
};

/// The product computed on the calling thread only (to compare with the split one in tests).
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_single(
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
    let ops = Ops {
        m,
        k,
        n,
        alpha: 1.0,
        a,
        ta,
        b,
        tb,
        beta: 0.0,
        lda: if ta { m } else { k },
        ldb: if tb { k } else { n },
        ldc: n,
        full_n: n,
        packed_b: None,
        col0: 0,
        epi,
    };
    assert!(c.len() >= m * n);
    // SAFETY: C holds the m×n block, exclusively borrowed.
    unsafe { run_local(detect(), &ops, c.as_mut_ptr()) }
}

// Threads: column (or row) blocks of large products on helper threads, bit-identical to one thread.
mod parallel;

/// Runs the blocked loop nest with the kernel for `isa` (which must be supported).
///
/// # Safety
/// As for [`drive`].
unsafe fn run(isa: Isa, ops: &Ops<'_>, c: *mut f32, buf: &mut Vec<f32>) {
    // SAFETY (all arms): forwarded from the caller.
    unsafe {
        match Variant::of(isa, ops.full_n) {
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512x16 => drive::<x86::Avx512<16, 1>>(ops, c, buf),
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512x12 => drive::<x86::Avx512<12, 2>>(ops, c, buf),
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => drive::<x86::Avx2<6>>(ops, c, buf),
            Variant::Generic => drive::<Generic<4, 16>>(ops, c, buf),
        }
    }
}

/// The kernel (and so the blocking) a call uses: fixed by the instruction set and the call's
/// full n, so a B packed ahead for a call is laid out as that call's kernel reads it.
#[derive(Clone, Copy)]
enum Variant {
    /// AVX-512, 16 rows × one zmm of columns.
    #[cfg(target_arch = "x86_64")]
    Avx512x16,
    /// AVX-512, 12 rows × two zmm of columns.
    #[cfg(target_arch = "x86_64")]
    Avx512x12,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Generic,
}

impl Variant {
    fn of(isa: Isa, full_n: usize) -> Variant {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                // One zmm per row when two would pad the columns by more than ~10% extra.
                let n = full_n;
                if n.div_ceil(16) * 16 * 10 < n.div_ceil(32) * 32 * 9 {
                    Variant::Avx512x16
                } else {
                    Variant::Avx512x12
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Variant::Avx2,
            _ => Variant::Generic,
        }
    }

    /// The rows of one micro-panel of A (and of one kernel call's tile of C).
    fn mr(self) -> usize {
        self.tile().0
    }

    /// The columns of one packed micro-panel of B.
    fn nr(self) -> usize {
        self.tile().1
    }

    /// The kernel's register tile, MR × NR.
    fn tile(self) -> (usize, usize) {
        fn of<K: Kernel>() -> (usize, usize) {
            (K::MR, K::NR)
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512x16 => of::<x86::Avx512<16, 1>>(),
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512x12 => of::<x86::Avx512<12, 2>>(),
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => of::<x86::Avx2<6>>(),
            Variant::Generic => of::<Generic<4, 16>>(),
        }
    }
}

/// Floats a buffer needs to hold op(B) (`k×n`) packed by [`pack_b_whole`] for this process's
/// kernel, alignment slack included.
pub(crate) fn packed_b_len(k: usize, n: usize) -> usize {
    round_up(n, Variant::of(detect(), n).nr()) * k + ALIGN
}

/// Where the packed panels start in a buffer of [`packed_b_len`] floats: the first 64-byte
/// boundary (the same for the packing and every product, as the buffer does not move).
fn packed_start(buf: &[f32]) -> usize {
    buf.as_ptr().align_offset(ALIGN * 4).min(ALIGN)
}

/// Packs the whole op(B) (`k×n`, stored `n×k` when `tb`) into `dst` (at least
/// [`packed_b_len`] floats) exactly as the products of [`sgemm_packed_b`] with this `k` and `n`
/// read it: depth blocks of KC, each holding every NR-column micro-panel of the block.
pub(crate) fn pack_b_whole(k: usize, n: usize, b: &[f32], tb: bool, dst: &mut [f32]) {
    assert!(b.len() >= k * n, "pack_b: B too short");
    assert!(dst.len() >= packed_b_len(k, n), "pack_b: buffer too short");
    let off = packed_start(dst);
    let ops = Ops {
        m: 0,
        k,
        n,
        alpha: 1.0,
        a: &[],
        ta: false,
        b,
        tb,
        beta: 0.0,
        lda: 0,
        ldb: if tb { k } else { n },
        ldc: n,
        full_n: n,
        packed_b: None,
        col0: 0,
        epi: Epilogue::NONE,
    };
    let dst = &mut dst[off..];
    match Variant::of(detect(), n) {
        #[cfg(target_arch = "x86_64")]
        Variant::Avx512x16 => pack_b_blocks::<x86::Avx512<16, 1>>(&ops, dst),
        #[cfg(target_arch = "x86_64")]
        Variant::Avx512x12 => pack_b_blocks::<x86::Avx512<12, 2>>(&ops, dst),
        #[cfg(target_arch = "x86_64")]
        Variant::Avx2 => pack_b_blocks::<x86::Avx2<6>>(&ops, dst),
        Variant::Generic => pack_b_blocks::<Generic<4, 16>>(&ops, dst),
    }
}

/// Every depth block of op(B), each at `pc · round_up(n, NR)` (the blocks before it are KC
/// deep), its micro-panels as [`pack_b`] lays them out for one column block.
fn pack_b_blocks<K: Kernel>(o: &Ops<'_>, dst: &mut [f32]) {
    let npad = round_up(o.n, K::NR);
    for pc in (0..o.k).step_by(K::KC) {
        let kc = K::KC.min(o.k - pc);
        pack_b::<K>(o, pc, kc, 0, o.n, &mut dst[pc * npad..][..npad * kc]);
    }
}

/// `C = alpha·op(A)·B + beta·C` with B packed by [`pack_b_whole`] for this `k` and `n`: the
/// same kernel, blocking and threads as [`sgemm`], so the same bits, without packing B.
/// Shapes are validated by the caller, as for [`sgemm`]; `epi` as in [`sgemm_with`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_packed_b(
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
    assert!(
        packed.len() >= packed_b_len(k, n),
        "sgemm: packed B too short"
    );
    let ops = Ops {
        m,
        k,
        n,
        alpha,
        a,
        ta,
        b: &[],
        tb: false,
        beta,
        lda: if ta { m } else { k },
        ldb: 0,
        ldc: n,
        full_n: n,
        packed_b: Some(&packed[packed_start(packed)..]),
        col0: 0,
        epi,
    };
    run_whole(detect(), &ops, c);
}

/// The operands of one call (or of one column block of a call split across threads).
struct Ops<'a> {
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &'a [f32],
    ta: bool,
    b: &'a [f32],
    tb: bool,
    beta: f32,
    /// Row stride of A as stored (m when `ta`, else k).
    lda: usize,
    /// Row stride of B as stored (k when `tb`, else the full n).
    ldb: usize,
    /// Row stride of C (the full n).
    ldc: usize,
    /// The full n of the call, which picks the kernel shape (the same for every block).
    full_n: usize,
    /// op(B) already packed for the whole call by [`pack_b_whole`] (then `b` is not read).
    packed_b: Option<&'a [f32]>,
    /// The column of the whole call where this block starts (to find its packed panels).
    col0: usize,
    /// Applied to each tile of this block's C after its last depth block.
    epi: Epilogue<'a>,
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The blocked loop nest for kernel `K`, packing into `buf` (grown if too small).
///
/// # Safety
/// `c` must be valid for reads and writes of every `i·ldc + j` (`i < m`, `j < n`), and no other
/// thread may touch those elements during the call.
unsafe fn drive<K: Kernel>(o: &Ops<'_>, c: *mut f32, buf: &mut Vec<f32>) {
    let (m, k, n) = (o.m, o.k, o.n);
    debug_assert!(K::MR * K::NR <= TILE_MAX);
    debug_assert!(K::MC % K::MR == 0 && K::NC % K::NR == 0);
    let kc_max = K::KC.min(k);
    let a_len = round_up(round_up(K::MC.min(m), K::MR) * kc_max, ALIGN);
    let b_len = if o.packed_b.is_some() {
        0
    } else {
        round_up(K::NC.min(n), K::NR) * kc_max
    };
    let need = a_len + b_len + ALIGN;
    if buf.len() < need {
        // The only allocation: replaces the buffer with a larger zeroed one.
        *buf = vec![0.0; need];
    }
    let off = buf.as_ptr().align_offset(ALIGN * 4).min(ALIGN);
    let (pa_buf, pb_buf) = buf[off..off + a_len + b_len].split_at_mut(a_len);
    // Packing A pays off through reuse across B's column panels; with at most two of them,
    // full A micro-panels are read in place (partial ones are still packed, zero-padded).
    let pack_all_a = n.div_ceil(K::NR) > 2;
    let epi = (!o.epi.is_none()).then_some(o.epi);

    for jc in (0..n).step_by(K::NC) {
        let nc = K::NC.min(n - jc);
        for pc in (0..k).step_by(K::KC) {
            let kc = K::KC.min(k - pc);
            // Later depth blocks accumulate onto what the first one wrote.
            let beta = if pc == 0 { o.beta } else { 1.0 };
            // After the last one the tiles are complete sums: finish each while it is in L1.
            let finish = epi.filter(|_| pc + kc == k);
            // A B packed ahead holds this block's panels at its depth block's offset.
            let pb_block: &[f32] = match o.packed_b {
                Some(all) => {
                    let panel0 = (o.col0 + jc) / K::NR;
                    &all[pc * round_up(o.full_n, K::NR) + panel0 * kc * K::NR..]
                }
                None => {
                    pack_b::<K>(o, pc, kc, jc, nc, pb_buf);
                    pb_buf
                }
            };
            for ic in (0..m).step_by(K::MC) {
                let mc = K::MC.min(m - ic);
                if pack_all_a {
                    pack_a::<K>(o, ic, mc, pc, kc, pa_buf);
                }
                for jr in (0..nc).step_by(K::NR) {
                    let nr = K::NR.min(nc - jr);
                    let pb = &pb_block[(jr / K::NR) * kc * K::NR..][..kc * K::NR];
                    for ir in (0..mc).step_by(K::MR) {
                        let mr = K::MR.min(mc - ir);
                        let (pa, rsa, csa) = if pack_all_a {
                            (&pa_buf[(ir / K::MR) * kc * K::MR..][..kc * K::MR], 1, K::MR)
                        } else if mr == K::MR {
                            // Read the full micro-panel of A in place through its strides.
                            let (start, rsa, csa) = if o.ta {
                                (pc * o.lda + ic + ir, 1, o.lda)
                            } else {
                                ((ic + ir) * o.lda + pc, o.lda, 1)
                            };
                            (
                                &o.a[start..=start + (K::MR - 1) * rsa + (kc - 1) * csa],
                                rsa,
                                csa,
                            )
                        } else {
                            let panel = &mut pa_buf[..kc * K::MR];
                            pack_a_panel::<K>(o, ic + ir, mr, pc, kc, panel);
                            (&*panel, 1, K::MR)
                        };
                        let c0 = (ic + ir) * o.ldc + jc + jr;
                        // SAFETY: rows ic+ir.. and columns jc+jr.. lie inside the m×n block the
                        // caller guarantees valid and exclusive (see # Safety).
                        let tile = unsafe { c.add(c0) };
                        if mr == K::MR && nr == K::NR {
                            // SAFETY: `pa` holds every i·rsa + p·csa (i < MR, p < kc) and `pb`
                            // kc·NR elements (both sliced above), `tile` starts the MR×NR tile
                            // at row stride ldc inside C, disjoint from the packed inputs, and
                            // `sgemm_with` only selects kernels the CPU supports.
                            unsafe {
                                K::ukr(
                                    kc,
                                    pa.as_ptr(),
                                    rsa,
                                    csa,
                                    pb.as_ptr(),
                                    tile,
                                    o.ldc,
                                    o.alpha,
                                    beta,
                                )
                            };
                        } else {
                            // SAFETY: as above, for the mr×nr corner.
                            unsafe {
                                K::ukr_edge(
                                    kc,
                                    pa.as_ptr(),
                                    rsa,
                                    csa,
                                    pb.as_ptr(),
                                    tile,
                                    o.ldc,
                                    mr,
                                    nr,
                                    o.alpha,
                                    beta,
                                )
                            };
                        }
                        if let Some(e) = &finish {
                            // SAFETY: the same mr×nr tile the kernel just wrote (see above).
                            unsafe { e.finish_tile(tile, o.ldc, mr, nr, jc + jr) };
                        }
                    }
                }
            }
        }
    }
}

/// Packs rows `ic..ic+mc`, depth `pc..pc+kc` of op(A) into MR-row micro-panels: panel `r`
/// holds, for each depth `p`, the MR values `op(A)[ic + r·MR + i, pc + p]` (zero past row mc).
fn pack_a<K: Kernel>(o: &Ops<'_>, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]) {
    for (r, panel) in dst[..round_up(mc, K::MR) * kc]
        .chunks_exact_mut(K::MR * kc)
        .enumerate()
    {
        let r0 = ic + r * K::MR;
        pack_a_panel::<K>(o, r0, K::MR.min(ic + mc - r0), pc, kc, panel);
    }
}

/// Packs one MR-row micro-panel: rows `r0..r0+rows` (`rows ≤ MR`), depth `pc..pc+kc`.
fn pack_a_panel<K: Kernel>(
    o: &Ops<'_>,
    r0: usize,
    rows: usize,
    pc: usize,
    kc: usize,
    panel: &mut [f32],
) {
    if o.ta {
        // A is stored k×m: the MR values of one depth are contiguous.
        for (p, d) in panel[..kc * K::MR].chunks_exact_mut(K::MR).enumerate() {
            let src = &o.a[(pc + p) * o.lda + r0..];
            if rows == K::MR {
                d.copy_from_slice(&src[..K::MR]);
            } else {
                d[..rows].copy_from_slice(&src[..rows]);
                d[rows..].fill(0.0);
            }
        }
    } else {
        // A is stored m×k: each row is contiguous along the depth.
        pack_transposed(o.a, o.lda, r0, rows, pc, kc, K::MR, panel);
    }
}

/// Packs depth `pc..pc+kc`, columns `jc..jc+nc` of op(B) into NR-column micro-panels: panel
/// `q` holds, for each depth `p`, the NR values `op(B)[pc + p, jc + q·NR + j]` (zero past nc).
fn pack_b<K: Kernel>(o: &Ops<'_>, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
    let nr_ = K::NR;
    if !o.tb {
        // B is stored k×n: walk it row by row, so its reads are one sequential stream (panel by
        // panel they would jump a row's length each depth), and scatter each row's NR-wide
        // pieces to their panels; a last partial piece is zero-padded with a fixed-width select
        // (for a B of a few columns, a short copy and a fill per depth cost more than the panel).
        let full = nc / nr_;
        for p in 0..kc {
            let row = &o.b[(pc + p) * o.ldb + jc..][..nc];
            let pieces = row.chunks_exact(nr_);
            let rest = pieces.remainder();
            for (q, piece) in pieces.enumerate() {
                dst[q * nr_ * kc + p * nr_..][..nr_].copy_from_slice(piece);
            }
            if !rest.is_empty() {
                let d = &mut dst[full * nr_ * kc + p * nr_..][..nr_];
                for (j, v) in d.iter_mut().enumerate() {
                    *v = if j < rest.len() { rest[j] } else { 0.0 };
                }
            }
        }
        return;
    }
    for (q, panel) in dst[..round_up(nc, nr_) * kc]
        .chunks_exact_mut(nr_ * kc)
        .enumerate()
    {
        // B is stored n×k: each column of op(B) is contiguous along the depth.
        let c0 = jc + q * nr_;
        let cols = nr_.min(jc + nc - c0);
        pack_transposed(o.b, o.ldb, c0, cols, pc, kc, nr_, panel);
    }
}

/// Interleaves `rows` source rows (row stride `ld`, starting at row `r0`, depth `d0..d0+kc`)
/// into a `w`-wide micro-panel: `panel[p*w + j] = src[(r0 + j)*ld + d0 + p]`, zero for
/// `rows ≤ j < w`. Works in depth blocks so the written lines stay in L1.
#[allow(clippy::too_many_arguments)]
fn pack_transposed(
    src: &[f32],
    ld: usize,
    r0: usize,
    rows: usize,
    d0: usize,
    kc: usize,
    w: usize,
    panel: &mut [f32],
) {
    const PB: usize = 16;
    let panel = &mut panel[..kc * w];
    if rows < w {
        for d in panel.chunks_exact_mut(w) {
            d[rows..].fill(0.0);
        }
    }
    // Groups of 8 (then 4) full rows go through in-register transposes when AVX is available.
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if detect() != Isa::Generic && w & 3 == 0 && kc >= 8 {
        done = rows / 4 * 4;
        // SAFETY: AVX2 support (hence AVX) was detected at run time.
        unsafe { x86::transpose_rows_avx(src, ld, r0, done, d0, kc, w, panel) };
    }
    for p0 in (0..kc).step_by(PB) {
        let pl = PB.min(kc - p0);
        let dst = &mut panel[p0 * w..(p0 + pl) * w];
        // Rows `done..rows` for every depth, plus the depth tail the SIMD path leaves.
        let first = if p0 + pl <= kc / 8 * 8 { done } else { 0 };
        for j in first..rows {
            let s = &src[(r0 + j) * ld + d0 + p0..][..pl];
            for (d, &v) in dst.chunks_exact_mut(w).zip(s) {
                d[j] = v;
            }
        }
    }
}

/// Portable microkernel (MR×NR accumulators in a local array; the compiler vectorises it).
struct Generic<const MR: usize, const NR: usize>;

impl<const MR: usize, const NR: usize> Kernel for Generic<MR, NR> {
    const MR: usize = MR;
    const NR: usize = NR;
    const MC: usize = MR * 24;
    const KC: usize = 256;
    const NC: usize = NR * 128;

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
        // SAFETY: the caller guarantees `pb` is valid for kc·NR reads.
        let pb = unsafe { std::slice::from_raw_parts(pb, kc * NR) };
        let mut acc = [[0.0f32; NR]; MR];
        for (p, bv) in pb.chunks_exact(NR).enumerate() {
            let mut av = [0.0f32; MR];
            for (i, x) in av.iter_mut().enumerate() {
                // SAFETY: i < MR and p < kc, so this is a read the caller guarantees valid.
                *x = unsafe { *pa.add(i * rsa + p * csa) };
            }
            for i in 0..MR {
                for j in 0..NR {
                    acc[i][j] += av[i] * bv[j];
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: the caller guarantees the MR×NR tile at row stride `rsc` is valid and
            // uniquely accessible through `c`.
            let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * rsc), NR) };
            if beta == 0.0 {
                for (d, &s) in dst.iter_mut().zip(row) {
                    *d = alpha * s;
                }
            } else {
                for (d, &s) in dst.iter_mut().zip(row) {
                    *d = alpha * s + beta * *d;
                }
            }
        }
    }
}

// The x86-64 micro-kernels (AVX-512F, AVX2+FMA), chosen at run time.
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod pack_tests {
    use super::pack_transposed;

    /// Every panel width the kernels use, with full and partial row counts and depths around the
    /// SIMD block of 8 and the depth block of 16: the SIMD transposes (8- and 4-row groups)
    /// must place each value exactly where the one-at-a-time definition does.
    #[test]
    fn transposed_packing_matches_its_definition() {
        let (ld, total_rows) = (61usize, 40usize);
        let src: Vec<f32> = (0..ld * total_rows).map(|i| i as f32 + 0.5).collect();
        for w in [4usize, 6, 8, 12, 16, 32] {
            for rows in 1..=w {
                for kc in [1usize, 7, 8, 12, 16, 23, 40] {
                    let (r0, d0) = (3, 5);
                    let mut panel = vec![f32::NAN; kc * w];
                    pack_transposed(&src, ld, r0, rows, d0, kc, w, &mut panel);
                    for p in 0..kc {
                        for j in 0..w {
                            let want = if j < rows {
                                src[(r0 + j) * ld + d0 + p]
                            } else {
                                0.0
                            };
                            assert_eq!(
                                panel[p * w + j].to_bits(),
                                want.to_bits(),
                                "w {w} rows {rows} kc {kc} p {p} j {j}"
                            );
                        }
                    }
                }
            }
        }
    }
}
