//! Splitting large products across threads by blocks of C's columns (or of its rows when C has
//! too few columns, or is tall with A stored m×k). Every element of C is
//! computed by one thread with exactly the arithmetic of the single-threaded loop (the kernel
//! shape and depth blocking depend only on the full call), so results are bit-identical for any
//! number of threads. Helper threads are started once and wait on a condition variable; handing
//! them work allocates nothing.
//!
//! The same helpers also run [`for_each_part`]: other kernels (the update rules of large
//! parameters) split elementwise work into disjoint parts, so each element again sees exactly the
//! single-threaded arithmetic.

use super::{run_local, Act, Epilogue, Isa, Ops};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// Products smaller than this many multiply-adds stay on the calling thread: waking a helper
/// costs tens of microseconds.
const MIN_WORK: usize = 1 << 23;
/// Column blocks are multiples of the widest micro-panel, so kernels see whole panels.
const ALIGN_COLS: usize = 32;
/// Narrow products (too few columns to split) are split by rows from this many multiply-adds:
/// a polling helper takes work within a microsecond, so a ~15 µs product still gains.
const MIN_ROW_WORK: usize = 1 << 19;
/// Products split by rows have at least twice this many rows. (The row blocks themselves are
/// multiples of the call's kernel's MR, so each thread gets whole micro-panels: 1000 rows on the
/// 12-row kernel split 504 + 496, 42 kernel rows each, where multiples of 16 gave 512 + 488,
/// 43 against 41, and one thread waited for the other.)
const ALIGN_ROWS: usize = 16;
/// How long a helper (and a submitter waiting for helpers) polls before sleeping. The products
/// of one training step follow each other within microseconds, and a futex wake-up plus
/// rescheduling costs tens of them, so a short poll makes back-to-back hand-offs nearly free
/// while an idle helper still sleeps soon.
const SPIN: std::time::Duration = std::time::Duration::from_micros(60);

/// Polls `ready` until it returns true or [`SPIN`] has passed; returns its last answer.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        // Reading the clock costs far more than a poll, so check it every few dozen polls.
        for _ in 0..32 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return ready();
        }
    }
}

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
    /// B packed ahead (pointer and length), if it was.
    packed_b: Option<(*const f32, usize)>,
    col0: usize,
    c: *mut f32,
    fp_mode: u32,
    /// The epilogue's bias (pointer and length) for this block's columns, and its activation.
    bias: Option<(*const f32, usize)>,
    act: Act,
}

// SAFETY: a job's pointers refer to buffers the submitting thread keeps alive and does not
// touch (C's block) until every job of the product has finished.
unsafe impl Send for Job {}

/// One part of a [`for_each_part`] call, type-erased: `call(f, item)` runs `f(&mut item)`.
#[derive(Clone, Copy)]
struct Task {
    call: unsafe fn(*const (), *mut ()),
    f: *const (),
    item: *mut (),
    fp_mode: u32,
}

// SAFETY: `for_each_part` only builds tasks over `Send` items and a `Sync` function, and waits
// for every task before its borrows end.
unsafe impl Send for Task {}

/// What a helper is handed.
enum Work {
    Gemm(Job),
    Task(Task),
}

struct Worker {
    slot: Mutex<Option<Work>>,
    ready: Condvar,
    /// Set once work is in `slot`, so a spinning helper sees it without taking the lock.
    queued: AtomicBool,
}

struct Pool {
    workers: Vec<Worker>,
    busy: AtomicBool,
    pending: AtomicUsize,
    done_lock: Mutex<()>,
    done: Condvar,
    /// Set when a task panicked on a helper, so the submitter can re-raise it.
    task_panicked: AtomicBool,
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
                queued: AtomicBool::new(false),
            })
            .collect();
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            workers,
            busy: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            done_lock: Mutex::new(()),
            done: Condvar::new(),
            task_panicked: AtomicBool::new(false),
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

/// Runs one column block of a product on this helper.
fn run_job(job: &Job) {
    let _mode = crate::fpenv::ModeGuard::set(job.fp_mode);
    // SAFETY: the submitter built these parts from live slices and keeps them alive, and this
    // block of C is touched by no other thread until `pending` drops.
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
            packed_b: job.packed_b.map(|(p, n)| std::slice::from_raw_parts(p, n)),
            col0: job.col0,
            epi: Epilogue {
                bias: job.bias.map(|(p, n)| std::slice::from_raw_parts(p, n)),
                act: job.act,
            },
        };
        run_local(job.isa, &ops, job.c);
    }
}

fn serve(pool: &'static Pool, i: usize) {
    let w = &pool.workers[i];
    loop {
        spin_until(|| w.queued.load(Ordering::Acquire));
        let job = {
            let mut slot = w.slot.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = slot.take() {
                    w.queued.store(false, Ordering::Relaxed);
                    break job;
                }
                slot = w.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A panic must not leave the submitter waiting forever.
        let is_task = matches!(job, Work::Task(_));
        let outcome = std::panic::catch_unwind(|| match job {
            Work::Gemm(job) => run_job(&job),
            Work::Task(task) => {
                let _mode = crate::fpenv::ModeGuard::set(task.fp_mode);
                // SAFETY: built by `for_each_part`, which keeps `f` and the item alive and
                // untouched by anyone else until `pending` drops.
                unsafe { (task.call)(task.f, task.item) }
            }
        });
        if outcome.is_err() && is_task {
            pool.task_panicked.store(true, Ordering::Release);
        }
        let _guard = pool.done_lock.lock().unwrap_or_else(|e| e.into_inner());
        pool.pending.fetch_sub(1, Ordering::AcqRel);
        pool.done.notify_all();
    }
}

/// The columns `start..end` of the product, as its own operands (a packed B is shared: the
/// block finds its panels from its first column).
fn block<'a>(o: &Ops<'a>, start: usize, end: usize) -> Ops<'a> {
    let b = if o.packed_b.is_some() {
        o.b
    } else if o.tb {
        &o.b[start * o.ldb..]
    } else {
        &o.b[start..]
    };
    Ops {
        n: end - start,
        b,
        col0: o.col0 + start,
        epi: o.epi.at_col(start),
        ..*o
    }
}

/// Computes the product, split across the pool when it is large and the pool is free.
///
/// # Safety
/// As for [`super::drive`].
pub(super) unsafe fn run_split(isa: Isa, o: &Ops<'_>, c: *mut f32) {
    let limit = LIMIT.load(Ordering::Relaxed);
    let work = o.m * o.k * o.n;
    // Wide products split by columns; narrow ones (n of a few classes) by rows instead, and so
    // do tall ones whose A is packed by transposing (stored m×k, as a batch of inputs): a thread
    // with a column block would pack all of A, one with a row block only its rows (and all of B,
    // which for B stored k×n is a plain copy), e.g. inference on 1000-row batches.
    let tall = !o.ta && !o.tb && o.m >= 2 * o.n;
    let by_cols = work >= MIN_WORK && o.n >= 2 * ALIGN_COLS && !tall;
    let by_rows = !by_cols && work >= MIN_ROW_WORK && o.m >= 2 * ALIGN_ROWS;
    let pool = if (by_cols || by_rows) && limit != 1 {
        pool()
    } else {
        None
    };
    let Some(pool) = pool.filter(|p| {
        p.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }) else {
        // SAFETY: forwarded.
        return unsafe { run_local(isa, o, c) };
    };
    let cap = if limit == 0 { usize::MAX } else { limit };
    let (len, align) = if by_cols {
        (o.n, ALIGN_COLS)
    } else {
        (o.m, super::Variant::of(isa, o.full_n).mr())
    };
    let width = part_width(len, (pool.workers.len() + 1).min(cap), align);
    // The part `start..end` (of the columns or of the rows) with where its C block starts.
    let part = |start: usize, end: usize| {
        if by_cols {
            (block(o, start, end), start)
        } else {
            (row_block(o, start, end), start * o.ldc)
        }
    };
    let fp_mode = crate::fpenv::current_mode();
    let mut handed = 0;
    pool.pending.store(0, Ordering::Release);
    for (w, worker) in pool.workers.iter().enumerate() {
        let start = (w + 1) * width;
        if start >= len {
            break;
        }
        let (part, c_off) = part(start, (start + width).min(len));
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
            packed_b: part.packed_b.map(|p| (p.as_ptr(), p.len())),
            col0: part.col0,
            // SAFETY: the part's first element of C lies inside C.
            c: unsafe { c.add(c_off) },
            fp_mode,
            bias: part.epi.bias.map(|b| (b.as_ptr(), b.len())),
            act: part.epi.act,
        };
        pool.pending.fetch_add(1, Ordering::AcqRel);
        hand(worker, Work::Gemm(job));
        handed += 1;
    }
    let (own, _) = part(0, width.min(len));
    // SAFETY: the first part is this thread's alone; the helpers own the others.
    unsafe { run_local(isa, &own, c) };
    if handed > 0 {
        wait_all(pool);
    }
    pool.busy.store(false, Ordering::Release);
}

/// The width of the parts `len` columns or rows are split into for at most `threads` threads
/// (the last part may be narrower, and parts starting past `len` are not run): a multiple of
/// `align`, so each part holds whole panels of the kernel, and the busiest part holds as few as
/// any split over as many threads can give it.
fn part_width(len: usize, threads: usize, align: usize) -> usize {
    let panels = len.div_ceil(align);
    panels.div_ceil(threads.min(len / align).max(1)) * align
}

/// The rows `start..end` of the product, as its own operands (C's block starts at row `start`).
fn row_block<'a>(o: &Ops<'a>, start: usize, end: usize) -> Ops<'a> {
    let a = if o.ta {
        &o.a[start..]
    } else {
        &o.a[start * o.lda..]
    };
    Ops {
        m: end - start,
        a,
        ..*o
    }
}

/// Puts `work` in the helper's slot and wakes it (a spinning helper sees `queued` first).
fn hand(worker: &Worker, work: Work) {
    let mut slot = worker.slot.lock().unwrap_or_else(|e| e.into_inner());
    *slot = Some(work);
    // Under the lock, so it cannot outlive the helper's `take` (which clears it).
    worker.queued.store(true, Ordering::Release);
    drop(slot);
    worker.ready.notify_one();
}

/// Blocks until every handed-out job has finished.
fn wait_all(pool: &Pool) {
    if spin_until(|| pool.pending.load(Ordering::Acquire) == 0) {
        return;
    }
    let mut guard = pool.done_lock.lock().unwrap_or_else(|e| e.into_inner());
    while pool.pending.load(Ordering::Acquire) != 0 {
        guard = pool.done.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

/// Calls `f(item)` for a type-erased [`Task`].
///
/// # Safety
/// `f` must point to a live `&(dyn Fn(&mut T) + Sync)` and `item` to a live `T` nobody else uses.
unsafe fn call_part<T>(f: *const (), item: *mut ()) {
    // SAFETY: per the contract, both pointers were made from these types and are live.
    unsafe {
        let f = &*(f as *const &(dyn Fn(&mut T) + Sync));
        f(&mut *(item as *mut T));
    }
}

/// Runs `f` on every part: the first on the calling thread, the next ones on the helper threads
/// when the pool is free and more than one thread is allowed, any remaining ones on the calling
/// thread too. Returns when all are done. Parts should be disjoint pieces of one job of similar
/// size; each part sees the same arithmetic whichever thread runs it.
pub(crate) fn for_each_part<T: Send>(parts: &mut [T], f: &(dyn Fn(&mut T) + Sync)) {
    let limit = LIMIT.load(Ordering::Relaxed);
    let pool = if parts.len() > 1 && limit != 1 {
        pool()
    } else {
        None
    };
    let Some(pool) = pool.filter(|p| {
        p.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }) else {
        parts.iter_mut().for_each(f);
        return;
    };
    let cap = if limit == 0 { usize::MAX } else { limit };
    let helpers = pool.workers.len().min(cap - 1).min(parts.len() - 1);
    let fp_mode = crate::fpenv::current_mode();
    let (own, rest) = parts.split_at_mut(1);
    let (handed, local) = rest.split_at_mut(helpers);
    pool.pending.store(0, Ordering::Release);
    let f_ptr: *const &(dyn Fn(&mut T) + Sync) = &f;
    for (worker, item) in pool.workers.iter().zip(handed.iter_mut()) {
        let task = Task {
            call: call_part::<T>,
            f: f_ptr.cast(),
            item: (item as *mut T).cast(),
            fp_mode,
        };
        pool.pending.fetch_add(1, Ordering::AcqRel);
        hand(worker, Work::Task(task));
    }
    // A panic here must still wait for the helpers, which hold pointers into our frame.
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        own.iter_mut().chain(local.iter_mut()).for_each(f)
    }));
    wait_all(pool);
    let theirs = pool.task_panicked.swap(false, Ordering::AcqRel);
    pool.busy.store(false, Ordering::Release);
    if let Err(payload) = mine {
        std::panic::resume_unwind(payload);
    }
    assert!(!theirs, "for_each_part: a part panicked on a helper thread");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::ThreadId;

    /// One part: its index, what it computed and the thread that ran it.
    type Part = (usize, usize, Option<ThreadId>);

    fn run_parts(n: usize) -> Vec<Part> {
        let mut parts: Vec<Part> = (0..n).map(|i| (i, 0, None)).collect();
        for_each_part(&mut parts, &|p: &mut Part| {
            p.1 = p.0 * p.0 + 1;
            p.2 = Some(std::thread::current().id());
        });
        parts
    }

    #[test]
    fn splits_hold_whole_panels_and_the_busiest_part_is_as_small_as_can_be() {
        // 1000 rows on the 12-row kernel: 42 + 42 kernel rows (the last one partial).
        assert_eq!(part_width(1000, 2, 12), 504);
        assert_eq!(part_width(128, 2, 16), 64);
        assert_eq!(part_width(512, 2, 32), 256);
        for len in 1..600 {
            for threads in 1..5 {
                for align in [4, 6, 12, 16, 32] {
                    let width = part_width(len, threads, align);
                    let parts = len.div_ceil(width);
                    assert!(parts >= 1 && parts <= threads && width.is_multiple_of(align));
                    let panels: Vec<usize> = (0..parts)
                        .map(|p| (len.min((p + 1) * width) - len.min(p * width)).div_ceil(align))
                        .collect();
                    let total = len.div_ceil(align);
                    assert_eq!(panels.iter().sum::<usize>(), total);
                    // The busiest thread has as few panels as any split over as many threads.
                    let fewest = total.div_ceil(threads.min(len / align).max(1));
                    assert_eq!(
                        panels.iter().max(),
                        Some(&fewest),
                        "{len} {threads} {align}"
                    );
                    assert!(panels.iter().all(|&p| p > 0), "{len} {threads} {align}");
                }
            }
        }
    }

    #[test]
    fn every_part_runs_once_and_helpers_take_some() {
        let caller = std::thread::current().id();
        let mut helped = false;
        // Another test may hold the pool for a while (a helper printing a panic's backtrace
        // takes long): then everything runs here, which is correct too, so keep trying for some
        // seconds before concluding the helpers never help.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            for n in [1, 2, 3, 7] {
                let parts = run_parts(n);
                for (i, p) in parts.iter().enumerate() {
                    assert_eq!((p.0, p.1), (i, i * i + 1), "part {i} of {n}");
                }
                assert_eq!(
                    parts[0].2,
                    Some(caller),
                    "the first part runs on the caller"
                );
                helped |= parts.iter().any(|p| p.2 != Some(caller));
            }
            if helped {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            helped,
            pool().is_some() && LIMIT.load(Ordering::Relaxed) != 1
        );
    }

    #[test]
    fn a_part_that_panics_on_a_helper_is_reported_to_the_caller() {
        if pool().is_none() {
            return;
        }
        let caller = std::thread::current().id();
        let mut reported = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let mut parts = [0usize, 1];
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for_each_part(&mut parts, &|p: &mut usize| {
                    if std::thread::current().id() != caller {
                        panic!("part {p} fails on a helper");
                    }
                    *p += 10;
                })
            }));
            // Either the helper took part 1 and its panic reached us, or the pool was busy and
            // both parts ran here without a panic.
            match outcome {
                Err(_) => {
                    reported = true;
                    break;
                }
                Ok(()) => assert_eq!(parts, [10, 11]),
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(reported);
        // The pool is still usable afterwards.
        assert_eq!(run_parts(3)[2].1, 5);
    }
}
