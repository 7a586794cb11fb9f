//! Single-precision GEMM throughput: `tape::kernels::gemm` against raw `matrixmultiply::sgemm`
//! (the reference: the kernel `tape` wrapped before it got its own packed SGEMM).
//!
//! Shapes are those of the MLP 784-512-512-10 at batch 128 (forward and backward) plus a large
//! square one, the same list `torch_sgemm.py` times. Before criterion runs, a short fixed timing
//! pass prints one `GFLOP/s` line per shape and implementation (easy to copy into
//! `docs/benchmarks.md`); criterion then reports the same work as elements/s with
//! `Throughput::Elements(2·m·k·n)`, i.e. FLOP/s.
//!
//! Run: `cargo bench --bench gemm` (single-threaded on both sides: `matrixmultiply` is built
//! without its `threading` feature).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tape::kernels::gemm;
use tape::Rng;

/// (m, k, n): C[m×n] = A[m×k] · B[k×n].
const SHAPES: [(usize, usize, usize); 5] = [
    (128, 784, 512),
    (128, 512, 512),
    (128, 512, 10),
    (784, 128, 512),
    (1024, 1024, 1024),
];

struct Operands {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Operands {
    fn new(m: usize, k: usize, n: usize) -> Operands {
        let mut rng = Rng::new((m * 1_000_003 + k * 1_009 + n) as u64);
        let mut a = vec![0.0; m * k];
        let mut b = vec![0.0; k * n];
        rng.fill_normal(&mut a, 0.0, 1.0);
        rng.fill_normal(&mut b, 0.0, 1.0);
        Operands {
            m,
            k,
            n,
            a,
            b,
            c: vec![0.0; m * n],
        }
    }

    fn flop(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }

    /// C = A·B through the engine's kernel.
    fn tape(&mut self) {
        gemm(
            self.m,
            self.k,
            self.n,
            1.0,
            black_box(&self.a),
            false,
            black_box(&self.b),
            false,
            0.0,
            &mut self.c,
        );
        black_box(&mut self.c);
    }

    /// C = A·B through `matrixmultiply::sgemm` directly (row-major strides).
    fn raw(&mut self) {
        let (m, k, n) = (self.m, self.k, self.n);
        // SAFETY: a is m×k, b is k×n and c is m×n, all row-major and exactly that long; c is
        // uniquely borrowed and does not alias a or b.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                black_box(self.a.as_ptr()),
                k as isize,
                1,
                black_box(self.b.as_ptr()),
                n as isize,
                1,
                0.0,
                self.c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        black_box(&mut self.c);
    }
}

/// Median and best seconds per call over `rounds` rounds of `reps` calls (reps chosen so a round
/// takes about `round` of wall time).
fn time_it(mut f: impl FnMut(), round: Duration, rounds: usize) -> (f64, f64) {
    // Warm up (caches, packing buffers, CPU clocks) and size the rounds.
    let t = Instant::now();
    let mut warm = 0usize;
    while t.elapsed() < Duration::from_millis(150) || warm < 2 {
        f();
        warm += 1;
    }
    let per = t.elapsed().as_secs_f64() / warm as f64;
    let reps = ((round.as_secs_f64() / per) as usize).max(1);
    let mut ts: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    (ts[ts.len() / 2], ts[0])
}

/// The plain-text pass printed before criterion: one line per shape and implementation.
fn gflops_pass() {
    println!("# sgemm GFLOP/s, single thread, C = A*B row-major, median (best) of 7 rounds");
    for &(m, k, n) in &SHAPES {
        let mut ops = Operands::new(m, k, n);
        let flop = ops.flop() as f64;
        let (med_t, best_t) = time_it(|| ops.tape(), Duration::from_millis(100), 7);
        let (med_r, best_r) = time_it(|| ops.raw(), Duration::from_millis(100), 7);
        println!(
            "GFLOP/s m={m} k={k} n={n}: tape::kernels::gemm {:.1} (best {:.1}), matrixmultiply::sgemm {:.1} (best {:.1}), tape/raw {:.3}",
            flop / med_t / 1e9,
            flop / best_t / 1e9,
            flop / med_r / 1e9,
            flop / best_r / 1e9,
            med_r / med_t,
        );
    }
    println!();
}

/// Our gemm on every thread the machine offers (column blocks split across helper threads).
fn threaded_pass() {
    tape::kernels::set_num_threads(0);
    let threads = tape::kernels::num_threads();
    println!("# sgemm GFLOP/s, {threads} threads (tape::kernels::gemm), median (best) of 7 rounds");
    for &(m, k, n) in &SHAPES {
        let mut ops = Operands::new(m, k, n);
        let flop = ops.flop() as f64;
        let (med, best) = time_it(|| ops.tape(), Duration::from_millis(100), 7);
        println!(
            "GFLOP/s {threads} threads m={m} k={k} n={n}: tape::kernels::gemm {:.1} (best {:.1})",
            flop / med / 1e9,
            flop / best / 1e9
        );
    }
    println!();
    tape::kernels::set_num_threads(1);
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    for &(m, k, n) in &SHAPES {
        let mut ops = Operands::new(m, k, n);
        group.throughput(Throughput::Elements(ops.flop()));
        // The 1024³ product takes ~10–20 ms: fewer samples keep the file under a few minutes.
        group.sample_size(if m * k * n > 100_000_000 { 10 } else { 20 });
        let id = format!("{m}x{k}x{n}");
        group.bench_function(BenchmarkId::new("tape", &id), |bch| bch.iter(|| ops.tape()));
        group.bench_function(BenchmarkId::new("matrixmultiply", &id), |bch| {
            bch.iter(|| ops.raw())
        });
    }
    group.finish();
}

fn main() {
    // Skip the custom pass when cargo runs the bench binary as a test (`cargo test --benches`):
    // criterion then only checks that each benchmark runs once.
    // Everything is measured on one thread (as raw matrixmultiply runs), except threaded_pass.
    tape::kernels::set_num_threads(1);
    if std::env::args().any(|a| a == "--bench") {
        gflops_pass();
        threaded_pass();
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_gemm(&mut c);
    c.final_summary();
}
