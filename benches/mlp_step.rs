//! Compiled training steps of small MLPs, single-threaded.
//!
//! * `mlp784/fwd_bwd`: MLP 784-512-512-10 (ReLU hidden layers, softmax cross-entropy, seeded
//!   Glorot-style Gaussian weights, zero biases) at batch 128 on random inputs and labels; one
//!   compiled function returning the loss and all 6 gradients.
//! * `mlp784/sgd_step`: the same graph compiled with plain SGD updates `p - lr·g`
//!   (`Function::compile_with_updates`): a full training step.
//! * `digits/fwd_bwd` and `digits/sgd_step`: the digits MLP 64-100-10 at batch 32 on real rows of
//!   the embedded digits training split (cycling over its 44 full batches).
//! * `digits/adam_step`: the same network trained by `optim::Trainer::step` with Adam (lr 1e-3),
//!   the workload `torch_digits.py` measures.
//!
//! Before criterion runs, a plain-text pass prints the compiled plan of the big step, times every
//! GEMM of that plan on its own through `tape::kernels::gemm` (same shapes, same transposes) and
//! prints `GEMM share = sum(gemm times) / step time` for both big-step variants, then times the
//! big step on all threads, as a compiled function and as an Adam `Trainer::step` with and
//! without overlapping the updates with the backward pass.
//!
//! Run: `cargo bench --bench mlp_step`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tape::{grad, Expr, Function, Param, Rng, Tensor};

const SEED: u64 = 1234;
const LR: f32 = 0.01;

/// An MLP graph: inputs, the loss and its parameters (weights and biases, layer by layer).
struct Mlp {
    x: Expr,
    y: Expr,
    loss: Expr,
    params: Vec<Param>,
}

/// `sizes[0]`-…-`sizes[last]` with ReLU hidden layers and softmax cross-entropy on the logits.
fn mlp(sizes: &[usize], seed: u64) -> Mlp {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let mut params = Vec::new();
    let mut h = x.clone();
    for (i, pair) in sizes.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let mut rng = Rng::from_name(seed, &format!("layer{i}.w"));
        let mut w = Tensor::zeros(&[fan_in, fan_out]);
        rng.fill_normal(w.data_mut(), 0.0, (2.0 / (fan_in + fan_out) as f32).sqrt());
        let w = Param::new(&format!("layer{i}.w"), w);
        let b = Param::new(&format!("layer{i}.b"), Tensor::zeros(&[fan_out]));
        let z = h.matmul(&w.expr()) + b.expr();
        h = if i + 2 < sizes.len() { z.relu() } else { z };
        params.push(w);
        params.push(b);
    }
    let loss = -(h.log_softmax().pick(&y)).mean();
    Mlp { x, y, loss, params }
}

impl Mlp {
    fn exprs(&self) -> Vec<Expr> {
        self.params.iter().map(Param::expr).collect()
    }

    /// Outputs: the loss, then the gradient of every parameter.
    fn fwd_bwd(&self) -> Function {
        let mut outs = vec![self.loss.clone()];
        outs.extend(grad(&self.loss, &self.exprs()).expect("grad"));
        Function::compile(&[self.x.clone(), self.y.clone()], &outs).expect("compile")
    }

    /// Output: the loss; updates: `p ← p - lr·∂loss/∂p` for every parameter.
    fn sgd_step(&self, lr: f32) -> Function {
        let exprs = self.exprs();
        let grads = grad(&self.loss, &exprs).expect("grad");
        let updates: Vec<(Param, Expr)> = self
            .params
            .iter()
            .zip(&exprs)
            .zip(&grads)
            .map(|((p, e), g)| (p.clone(), e - &(g * lr)))
            .collect();
        Function::compile_with_updates(
            &[self.x.clone(), self.y.clone()],
            std::slice::from_ref(&self.loss),
            &updates,
        )
        .expect("compile")
    }
}

/// A random batch: `rows × cols` standard normal inputs and labels in `0..classes`.
fn random_batch(rows: usize, cols: usize, classes: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::from_name(seed, "batch");
    let mut x = Tensor::zeros(&[rows, cols]);
    rng.fill_normal(x.data_mut(), 0.0, 1.0);
    let labels: Vec<f32> = (0..rows).map(|_| rng.below(classes) as f32).collect();
    (x, Tensor::new(&[rows], labels).expect("labels"))
}

/// The full batches of `batch` consecutive rows of the digits training split.
fn digits_batches(batch: usize) -> Vec<(Tensor, Tensor)> {
    let train = theanets_rs::digits::train();
    let cols = train.x.shape()[1];
    let rows = train.y.shape()[0];
    (0..rows / batch)
        .map(|i| {
            let x = &train.x.data()[i * batch * cols..(i + 1) * batch * cols];
            let y = &train.y.data()[i * batch..(i + 1) * batch];
            (
                Tensor::new(&[batch, cols], x.to_vec()).expect("x"),
                Tensor::new(&[batch], y.to_vec()).expect("y"),
            )
        })
        .collect()
}

/// One `gemm` instruction of a plan listing.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GemmCall {
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    bias: bool,
}

/// Parses the `bufN <- gemm MxKxN (a[ᵀ], b[ᵀ])[ + bias …]` lines of `Function::debug_plan`.
fn parse_gemms(plan: &str) -> Vec<GemmCall> {
    plan.lines()
        .filter_map(|line| {
            let rest = line.split_once("<- gemm ")?.1;
            let (dims, rest) = rest.split_once(' ')?;
            let d: Vec<usize> = dims
                .split('x')
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            let operands = rest.strip_prefix('(')?.split_once(')')?;
            let (a, b) = operands.0.split_once(", ")?;
            let code = operands.1.split('#').next().unwrap_or("");
            match d[..] {
                [m, k, n] => Some(GemmCall {
                    m,
                    k,
                    n,
                    ta: a.ends_with('ᵀ'),
                    tb: b.ends_with('ᵀ'),
                    bias: code.contains("+ bias"),
                }),
                _ => None,
            }
        })
        .collect()
}

/// Operands for one GEMM of the plan, timed alone through `tape::kernels::gemm` with the plan's
/// shapes and transposes (beta = 1 when the plan fuses a bias, as its instruction does after
/// copying the bias rows into C; the row copy itself is not timed). Operands stay cache-warm.
struct GemmOperands {
    g: GemmCall,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl GemmOperands {
    fn new(g: GemmCall) -> GemmOperands {
        let mut rng = Rng::new((g.m * 7919 + g.k * 31 + g.n) as u64);
        let mut a = vec![0.0; g.m * g.k];
        let mut b = vec![0.0; g.k * g.n];
        rng.fill_normal(&mut a, 0.0, 1.0);
        rng.fill_normal(&mut b, 0.0, 1.0);
        GemmOperands {
            g,
            a,
            b,
            c: vec![0.0; g.m * g.n],
        }
    }

    fn run(&mut self) {
        let g = self.g;
        tape::kernels::gemm(
            g.m,
            g.k,
            g.n,
            1.0,
            black_box(&self.a),
            g.ta,
            black_box(&self.b),
            g.tb,
            if g.bias { 1.0 } else { 0.0 },
            &mut self.c,
        );
        black_box(&mut self.c);
    }
}

/// Calls per timing round so that one round of `f` lasts about `round` (after a short warm-up).
fn reps_for(f: &mut dyn FnMut(), round: Duration) -> usize {
    let t = Instant::now();
    let mut n = 0usize;
    while t.elapsed() < Duration::from_millis(50) || n < 3 {
        f();
        n += 1;
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    ((round.as_secs_f64() / per) as usize).max(1)
}

/// Seconds per call of one round of `reps` calls.
fn round_of(f: &mut dyn FnMut(), reps: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn median_and_min(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

/// The plain-text pass: plans, per-GEMM times and the GEMM share of the 784-512-512-10 step.
///
/// The step and each of its GEMMs are timed in interleaved rounds (step, gemm 1, …, gemm 8, step,
/// …) so that load from other processes hits both sides alike; the share is reported from the
/// medians and from the minima of the rounds.
fn gemm_share_pass() {
    const ROUNDS: usize = 11;
    let net = mlp(&[784, 512, 512, 10], SEED);
    let (x, y) = random_batch(128, 784, 10, SEED);
    let args = [x.view(), y.view()];
    println!("# MLP 784-512-512-10, batch 128, single thread");
    for (name, mut f) in [
        ("fwd_bwd (loss + 6 gradients)", net.fwd_bwd()),
        ("sgd_step (loss + 6 SGD updates)", net.sgd_step(LR)),
    ] {
        f.run(&args).expect("run");
        let plan = f.debug_plan();
        println!("## {name}: compiled plan");
        for line in plan.lines() {
            println!("    {line}");
        }
        let gemms = parse_gemms(&plan);
        assert!(
            gemms.len() >= 5,
            "expected the plan's gemm lines (3 forward, >= 5 backward), parsed {}: the debug_plan format may have changed",
            gemms.len()
        );
        let mut ops: Vec<GemmOperands> = gemms.iter().map(|&g| GemmOperands::new(g)).collect();
        let mut step = || f.run(black_box(&args)).expect("run");
        let step_reps = reps_for(&mut step, Duration::from_millis(60));
        let gemm_reps: Vec<usize> = ops
            .iter_mut()
            .map(|o| reps_for(&mut || o.run(), Duration::from_millis(20)))
            .collect();
        let mut step_t = Vec::new();
        let mut gemm_t = vec![Vec::new(); ops.len()];
        for _ in 0..ROUNDS {
            step_t.push(round_of(&mut step, step_reps));
            for ((o, &r), ts) in ops.iter_mut().zip(&gemm_reps).zip(&mut gemm_t) {
                ts.push(round_of(&mut || o.run(), r));
            }
        }
        let (step_med, step_min) = median_and_min(step_t);
        let (mut sum_med, mut sum_min, mut flop) = (0.0, 0.0, 0.0);
        println!("## {name}: its GEMMs timed alone through tape::kernels::gemm (median, min of {ROUNDS} rounds)");
        for (g, ts) in gemms.iter().zip(gemm_t) {
            let (med, min) = median_and_min(ts);
            let fl = 2.0 * (g.m * g.k * g.n) as f64;
            sum_med += med;
            sum_min += min;
            flop += fl;
            println!(
                "    gemm {}x{}x{} ta={} tb={} bias={}: {:8.1} us (min {:8.1})  {:6.1} GFLOP/s",
                g.m,
                g.k,
                g.n,
                g.ta,
                g.tb,
                g.bias,
                med * 1e6,
                min * 1e6,
                fl / med / 1e9
            );
        }
        println!(
            "step {name}: {:.1} us/step median (min {:.1}); {} gemms, {:.3} GFLOP per step, {:.1} GFLOP/s over the step",
            step_med * 1e6,
            step_min * 1e6,
            gemms.len(),
            flop / 1e9,
            flop / step_med / 1e9
        );
        println!(
            "GEMM share {name} = sum(gemm times) / step time = {:.1} us / {:.1} us = {:.1}% from medians (non-GEMM {:.1} us); {:.1} us / {:.1} us = {:.1}% from minima (non-GEMM {:.1} us)",
            sum_med * 1e6,
            step_med * 1e6,
            100.0 * sum_med / step_med,
            (step_med - sum_med) * 1e6,
            sum_min * 1e6,
            step_min * 1e6,
            100.0 * sum_min / step_min,
            (step_min - sum_min) * 1e6
        );
        println!();
    }

    let small = mlp(&[64, 100, 10], SEED);
    let batches = digits_batches(32);
    let mut f = small.fwd_bwd();
    f.run(&[batches[0].0.view(), batches[0].1.view()])
        .expect("run");
    println!("## digits 64-100-10 fwd_bwd, batch 32: compiled plan");
    for line in f.debug_plan().lines() {
        println!("    {line}");
    }
    println!();
}

/// The big step with GEMMs split across every core (helper threads), for comparison with
/// torch_mlp.py's two-thread numbers.
fn threaded_step_pass() {
    tape::kernels::set_num_threads(0);
    let threads = tape::kernels::num_threads();
    let net = mlp(&[784, 512, 512, 10], SEED);
    let (x, y) = random_batch(128, 784, 10, SEED);
    for (name, mut f) in [("fwd_bwd", net.fwd_bwd()), ("sgd_step", net.sgd_step(LR))] {
        let mut run = || f.run(black_box(&[x.view(), y.view()])).expect("run");
        let reps = reps_for(&mut run, Duration::from_millis(200));
        let (med, min) = median_and_min((0..7).map(|_| round_of(&mut run, reps)).collect());
        println!(
            "step {name} on {threads} threads: {:.1} us/step median (min {:.1})",
            med * 1e6,
            min * 1e6
        );
    }
    adam_overlap_pass("784-512-512-10 b128", &net, &[(x, y)], threads);
    tape::kernels::set_num_threads(1);
    let digits = mlp(&[64, 100, 10], SEED);
    adam_overlap_pass("digits 64-100-10 b32", &digits, &digits_batches(32), 1);
}

/// The big step as `optim::Trainer::step` with Adam, updates after the step (`overlap off`)
/// and overlapped with the backward pass (`on`), the two rounds interleaved so that a change of
/// machine load hits both alike.
fn adam_overlap_pass(name: &str, net: &Mlp, batches: &[(Tensor, Tensor)], threads: usize) {
    let mut rule = optim::RuleOptions::new(optim::Algorithm::Adam);
    rule.learning_rate = 1e-3;
    let mut trainers: Vec<optim::Trainer> = [false, true]
        .iter()
        .map(|&on| {
            let mut t = optim::Trainer::new(
                &net.loss,
                &net.params,
                &[net.x.clone(), net.y.clone()],
                &[],
                rule.clone(),
                optim::LoopOptions::default(),
            )
            .expect("trainer");
            t.set_overlap(on);
            t
        })
        .collect();
    let mut times = [Vec::new(), Vec::new()];
    let mut reps = 0;
    for round in 0..20 {
        let k = round % 2;
        let t = &mut trainers[k];
        let mut i = 0;
        let mut step = || {
            let (x, y) = &batches[i % batches.len()];
            i += 1;
            t.step(black_box(&[x.view(), y.view()])).expect("step");
        };
        if reps == 0 {
            reps = reps_for(&mut step, Duration::from_millis(200));
        }
        times[k].push(round_of(&mut step, reps));
    }
    for (k, ts) in times.into_iter().enumerate() {
        let (med, min) = median_and_min(ts);
        println!(
            "trainer adam step {name} on {threads} thread(s), overlap {}: {:.1} us/step median \
             (min {:.1})",
            ["off", "on"][k],
            med * 1e6,
            min * 1e6
        );
    }
}

fn bench_mlp784(c: &mut Criterion) {
    let net = mlp(&[784, 512, 512, 10], SEED);
    let (x, y) = random_batch(128, 784, 10, SEED);
    let mut group = c.benchmark_group("mlp784");
    group.throughput(Throughput::Elements(128));
    group.sample_size(30);
    let mut f = net.fwd_bwd();
    group.bench_function("fwd_bwd", |b| {
        b.iter(|| f.run(black_box(&[x.view(), y.view()])).expect("run"))
    });
    let mut f = net.sgd_step(LR);
    group.bench_function("sgd_step", |b| {
        b.iter(|| f.run(black_box(&[x.view(), y.view()])).expect("run"))
    });
    group.finish();
}

fn bench_digits(c: &mut Criterion) {
    let net = mlp(&[64, 100, 10], SEED);
    let batches = digits_batches(32);
    let mut group = c.benchmark_group("digits");
    group.throughput(Throughput::Elements(32));
    for (name, mut f) in [("fwd_bwd", net.fwd_bwd()), ("sgd_step", net.sgd_step(0.1))] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (x, y) = &batches[i % batches.len()];
                i += 1;
                f.run(black_box(&[x.view(), y.view()])).expect("run")
            })
        });
    }
    // The workload of `torch_digits.py`: an Adam step (lr 1e-3) through optim's trainer, i.e. the
    // compiled forward+backward plus the native Adam update of every parameter.
    let mut rule = optim::RuleOptions::new(optim::Algorithm::Adam);
    rule.learning_rate = 1e-3;
    let mut trainer = optim::Trainer::new(
        &net.loss,
        &net.params,
        &[net.x.clone(), net.y.clone()],
        &[],
        rule,
        optim::LoopOptions::default(),
    )
    .expect("trainer");
    let mut i = 0;
    group.bench_function("adam_step", |b| {
        b.iter(|| {
            let (x, y) = &batches[i % batches.len()];
            i += 1;
            trainer
                .step(black_box(&[x.view(), y.view()]))
                .expect("step")
        })
    });
    group.finish();
}

fn main() {
    // Skip the plain-text pass when the binary runs as a test (`cargo test --benches`).
    // Single-threaded throughout, except the two-thread line of the big step below.
    tape::kernels::set_num_threads(1);
    if std::env::args().any(|a| a == "--bench") {
        gemm_share_pass();
        threaded_step_pass();
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench_mlp784(&mut c);
    bench_digits(&mut c);
    c.final_summary();
}
