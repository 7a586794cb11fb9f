//! Splitting large products across threads by blocks of C's columns. Every element of C is
//! computed by one thread with exactly the arithmetic of the single-threaded loop (the kernel
//! shape and depth blocking depend only on the full call), so results are bit-identical for any
//! number of threads. Helper threads are started once and wait on a condition variable; handing
//! them work allocates nothing.

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
