//! Packed, cache-blocked SGEMM (BLIS loop structure) behind [`super::gemm()`]; large products
//! are split across helper threads by column blocks (see `mod parallel`).
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
    sgemm_with(detect(), m, k, n, alpha, a, ta, b, tb, beta, c);
}

/// [`sgemm`] with an explicit kernel flavour, which must be supported by the running CPU
/// (unsupported flavours fall back to the best supported one).
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
    };
    assert!(c.len() >= m * n, "sgemm: C too short");
    // SAFETY: C holds the m×n block at row stride n, exclusively borrowed for this call.
    unsafe { parallel::run_split(isa, &ops, c.as_mut_ptr()) }
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

pub(crate) use parallel::{effective as gemm_threads, set_limit as set_gemm_threads};

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
    };
    assert!(c.len() >= m * n);
    // SAFETY: C holds the m×n block, exclusively borrowed.
    unsafe { run_local(detect(), &ops, c.as_mut_ptr()) }
}

/// Splitting large products across threads by blocks of C's columns. Every element of C is
/// computed by one thread with exactly the arithmetic of the single-threaded loop (the kernel
/// shape and depth blocking depend only on the full call), so results are bit-identical for any
/// number of threads. Helper threads are started once and wait on a condition variable; handing
/// them work allocates nothing.
mod parallel {
    use super::{run_local, Isa, Ops};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex, OnceLock};

    /// Products smaller than this many multiply-adds stay on the calling thread: waking a helper
    /// costs tens of microseconds.
    const MIN_WORK: usize = 1 << 23;
    /// Column blocks are multiples of the widest micro-panel, so kernels see whole panels.
    const ALIGN_COLS: usize = 32;

    /// One column block of one product, as raw parts (the caller waits for it to finish).
    #[derive(Clone, Copy)]
    struct Job {
        isa: Isa,
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        beta: f32,
        a: *const f32,
        a_len: usize,
        ta: bool,
        b: *const f32,
        b_len: usize,
        tb: bool,
        lda: usize,
        ldb: usize,
        ldc: usize,
        full_n: usize,
        c: *mut f32,
        fp_mode: u32,
    }

    // SAFETY: a job's pointers refer to buffers the submitting thread keeps alive and does not
    // touch (C's block) until every job of the product has finished.
    unsafe impl Send for Job {}

    struct Worker {
        slot: Mutex<Option<Job>>,
        ready: Condvar,
    }

    struct Pool {
        workers: Vec<Worker>,
        busy: AtomicBool,
        pending: AtomicUsize,
        done_lock: Mutex<()>,
        done: Condvar,
    }

    static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();

    /// The most threads a product may use (0: as many as the pool has).
    static LIMIT: AtomicUsize = AtomicUsize::new(0);

    /// Limits the threads large products use (1 = single-threaded; 0 = all available).
    pub(crate) fn set_limit(threads: usize) {
        LIMIT.store(threads, Ordering::Relaxed);
    }

    /// The threads a large product would use now.
    pub(crate) fn effective() -> usize {
        let available = pool().map_or(1, |p| p.workers.len() + 1);
        match LIMIT.load(Ordering::Relaxed) {
            0 => available,
            l => l.min(available),
        }
    }

    /// Threads used for large products: `TAPE_NUM_THREADS` if set, else the available cores.
    pub(super) fn threads() -> usize {
        std::env::var("TAPE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, 16)
    }

    fn pool() -> Option<&'static Pool> {
        *POOL.get_or_init(|| {
            let helpers = threads() - 1;
            if helpers == 0 {
                return None;
            }
            let workers = (0..helpers)
                .map(|_| Worker {
                    slot: Mutex::new(None),
                    ready: Condvar::new(),
                })
                .collect();
            let pool: &'static Pool = Box::leak(Box::new(Pool {
                workers,
                busy: AtomicBool::new(false),
                pending: AtomicUsize::new(0),
                done_lock: Mutex::new(()),
                done: Condvar::new(),
            }));
            for i in 0..helpers {
                let spawned = std::thread::Builder::new()
                    .name(format!("tape-gemm-{i}"))
                    .spawn(move || serve(pool, i));
                if spawned.is_err() {
                    return None;
                }
            }
            Some(pool)
        })
    }

    fn serve(pool: &'static Pool, i: usize) {
        let w = &pool.workers[i];
        loop {
            let job = {
                let mut slot = w.slot.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(job) = slot.take() {
                        break job;
                    }
                    slot = w.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
            };
            // A panic must not leave the submitter waiting forever.
            let _ = std::panic::catch_unwind(|| {
                let _mode = crate::fpenv::ModeGuard::set(job.fp_mode);
                // SAFETY: the submitter built these parts from live slices and keeps them alive,
                // and this block of C is touched by no other thread until `pending` drops.
                unsafe {
                    let ops = Ops {
                        m: job.m,
                        k: job.k,
                        n: job.n,
                        alpha: job.alpha,
                        a: std::slice::from_raw_parts(job.a, job.a_len),
                        ta: job.ta,
                        b: std::slice::from_raw_parts(job.b, job.b_len),
                        tb: job.tb,
                        beta: job.beta,
                        lda: job.lda,
                        ldb: job.ldb,
                        ldc: job.ldc,
                        full_n: job.full_n,
                    };
                    run_local(job.isa, &ops, job.c);
                }
            });
            let _guard = pool.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            pool.pending.fetch_sub(1, Ordering::AcqRel);
            pool.done.notify_all();
        }
    }

    /// The columns `start..end` of the product, as its own operands.
    fn block<'a>(o: &Ops<'a>, start: usize, end: usize) -> Ops<'a> {
        let b = if o.tb {
            &o.b[start * o.ldb..]
        } else {
            &o.b[start..]
        };
        Ops {
            n: end - start,
            b,
            ..*o
        }
    }

    /// Computes the product, split across the pool when it is large and the pool is free.
    ///
    /// # Safety
    /// As for [`super::drive`].
    pub(super) unsafe fn run_split(isa: Isa, o: &Ops<'_>, c: *mut f32) {
        let limit = LIMIT.load(Ordering::Relaxed);
        let wanted = o.m * o.k * o.n >= MIN_WORK && o.n >= 2 * ALIGN_COLS && limit != 1;
        let pool = if wanted { pool() } else { None };
        let Some(pool) = pool.filter(|p| {
            p.busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }) else {
            // SAFETY: forwarded.
            return unsafe { run_local(isa, o, c) };
        };
        let cap = if limit == 0 { usize::MAX } else { limit };
        let parts = (pool.workers.len() + 1).min(o.n / ALIGN_COLS).min(cap);
        let width = o.n.div_ceil(parts).div_ceil(ALIGN_COLS) * ALIGN_COLS;
        let fp_mode = crate::fpenv::current_mode();
        let mut handed = 0;
        pool.pending.store(0, Ordering::Release);
        for (w, worker) in pool.workers.iter().enumerate() {
            let start = (w + 1) * width;
            if start >= o.n {
                break;
            }
            let end = (start + width).min(o.n);
            let part = block(o, start, end);
            let job = Job {
                isa,
                m: part.m,
                k: part.k,
                n: part.n,
                alpha: part.alpha,
                beta: part.beta,
                a: part.a.as_ptr(),
                a_len: part.a.len(),
                ta: part.ta,
                b: part.b.as_ptr(),
                b_len: part.b.len(),
                tb: part.tb,
                lda: part.lda,
                ldb: part.ldb,
                ldc: part.ldc,
                full_n: part.full_n,
                // SAFETY: column `start` of row 0 lies inside C.
                c: unsafe { c.add(start) },
                fp_mode,
            };
            pool.pending.fetch_add(1, Ordering::AcqRel);
            *worker.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
            worker.ready.notify_one();
            handed += 1;
        }
        let own = block(o, 0, width.min(o.n));
        // SAFETY: columns 0..width are this thread's alone; the helpers own the others.
        unsafe { run_local(isa, &own, c) };
        if handed > 0 {
            let mut guard = pool.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            while pool.pending.load(Ordering::Acquire) != 0 {
                guard = pool.done.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
        pool.busy.store(false, Ordering::Release);
    }
}

/// Runs the blocked loop nest with the kernel for `isa` (which must be supported).
///
/// # Safety
/// As for [`drive`].
unsafe fn run(isa: Isa, ops: &Ops<'_>, c: *mut f32, buf: &mut Vec<f32>) {
    // SAFETY (all arms): forwarded from the caller.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                // One zmm per row when two would pad the columns by more than ~10% extra.
                let n = ops.full_n;
                if n.div_ceil(16) * 16 * 10 < n.div_ceil(32) * 32 * 9 {
                    drive::<x86::Avx512<16, 1>>(ops, c, buf)
                } else {
                    drive::<x86::Avx512<12, 2>>(ops, c, buf)
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => drive::<x86::Avx2<6>>(ops, c, buf),
            _ => drive::<Generic<4, 16>>(ops, c, buf),
        }
    }
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
    let b_len = round_up(K::NC.min(n), K::NR) * kc_max;
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

    for jc in (0..n).step_by(K::NC) {
        let nc = K::NC.min(n - jc);
        for pc in (0..k).step_by(K::KC) {
            let kc = K::KC.min(k - pc);
            // Later depth blocks accumulate onto what the first one wrote.
            let beta = if pc == 0 { o.beta } else { 1.0 };
            pack_b::<K>(o, pc, kc, jc, nc, pb_buf);
            for ic in (0..m).step_by(K::MC) {
                let mc = K::MC.min(m - ic);
                if pack_all_a {
                    pack_a::<K>(o, ic, mc, pc, kc, pa_buf);
                }
                for jr in (0..nc).step_by(K::NR) {
                    let nr = K::NR.min(nc - jr);
                    let pb = &pb_buf[(jr / K::NR) * kc * K::NR..][..kc * K::NR];
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
    for (q, panel) in dst[..round_up(nc, nr_) * kc]
        .chunks_exact_mut(nr_ * kc)
        .enumerate()
    {
        let c0 = jc + q * nr_;
        let cols = nr_.min(jc + nc - c0);
        if o.tb {
            // B is stored n×k: each column of op(B) is contiguous along the depth.
            pack_transposed(o.b, o.ldb, c0, cols, pc, kc, nr_, panel);
        } else {
            // B is stored k×n: the NR values of one depth are contiguous.
            for (p, d) in panel.chunks_exact_mut(nr_).enumerate() {
                let src = &o.b[(pc + p) * o.ldb + c0..];
                if cols == K::NR {
                    d.copy_from_slice(&src[..K::NR]);
                } else {
                    d[..cols].copy_from_slice(&src[..cols]);
                    d[cols..].fill(0.0);
                }
            }
        }
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
    // Groups of 8 full rows go through an in-register 8×8 transpose when AVX is available.
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if detect() != Isa::Generic && w & 7 == 0 && kc >= 8 {
        done = rows / 8 * 8;
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

#[cfg(target_arch = "x86_64")]
mod x86 {
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

    /// The full-8 part of [`super::pack_transposed`]: rows `j < rows` (a multiple of 8) and depths
    /// `p < kc / 8 * 8`, i.e. `panel[p*w + j] = src[(r0 + j)*ld + d0 + p]`.
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
        for j0 in (0..rows).step_by(8) {
            for p0 in (0..kc / 8 * 8).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (t, x) in r.iter_mut().enumerate() {
                    let s = &src[(r0 + j0 + t) * ld + d0 + p0..][..8];
                    // SAFETY: `s` holds 8 floats (sliced above); unaligned load.
                    *x = unsafe { _mm256_loadu_ps(s.as_ptr()) };
                }
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
                    let d = &mut panel[(p0 + q) * w + j0..][..8];
                    // SAFETY: `d` holds 8 floats (sliced above); unaligned store.
                    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), x) };
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
}
