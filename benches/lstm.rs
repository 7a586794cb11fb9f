//! One training step of an LSTM through the public API, the workload of `torch_lstm.py`
//! (issue 14): a recurrent `Regressor` `input(128) → lstm(256) → dense(10)` read out at every
//! step, mean squared error against `(32, 100, 10)` targets, batch 32, T = 100; one step =
//! forward + backward through the scan + Adam update (lr 1e-3), by `optim::Trainer::step`.
//! Random standard normal inputs and targets, fixed seeds.
//!
//! * `lstm/adam_step`: the full training step.
//! * `lstm/forward`: the loss alone (the same graph compiled without gradients), to split the
//!   step's time into forward, backward (`fwd_bwd − forward`) and update (`adam_step − fwd_bwd`).
//! * `lstm/fwd_bwd`: the loss and every gradient, without the update.
//!
//! `LSTM_PLAN=1` prints the compiled plan of `fwd_bwd` (with the nested scan bodies) first.
//!
//! Threads: `TAPE_NUM_THREADS` (1 or 2 in docs/benchmarks.md), else every core.
//!
//! Run: `TAPE_NUM_THREADS=1 cargo bench --bench lstm`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use nets::recurrent::Regressor;
use nets::LayerSpec;
use tape::{grad, Expr, Function, Rng, Tensor};

const BATCH: usize = 32;
const TIME: usize = 100;
const INPUTS: usize = 128;
const HIDDEN: usize = 256;
const OUTPUTS: usize = 10;

fn normal(shape: &[usize], name: &str) -> Tensor {
    let mut t = Tensor::zeros(shape);
    Rng::from_name(7, name).fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

/// The benchmarked model: the LSTM's bias starts at zero (`forget_bias(0.0)`) rather than
/// theanets' N(2, 1), closer to PyTorch's small uniform biases.
fn model() -> Regressor {
    Regressor::new(vec![
        LayerSpec::input(INPUTS),
        LayerSpec::lstm(HIDDEN).forget_bias(0.0),
        LayerSpec::dense(OUTPUTS),
    ])
    .expect("model")
}

fn bench_lstm(c: &mut Criterion) {
    let net = model();
    let x = normal(&[BATCH, TIME, INPUTS], "x");
    let y = normal(&[BATCH, TIME, OUTPUTS], "y");
    let args = [x.view(), y.view()];

    let g = net.graph(&Default::default()).expect("graph");
    let params: Vec<Expr> = net.params().iter().map(|p| p.expr()).collect();
    let mut forward = Function::compile(&g.inputs, std::slice::from_ref(&g.loss)).expect("fwd");
    let mut outs = vec![g.loss.clone()];
    outs.extend(grad(&g.loss, &params).expect("grad"));
    let mut fwd_bwd = Function::compile(&g.inputs, &outs).expect("fwd_bwd");
    let mut trainer = net
        .trainer("adam", &["learning_rate=0.001"])
        .expect("trainer");

    if std::env::var_os("LSTM_PLAN").is_some() {
        fwd_bwd.run(&args).expect("run");
        println!("{}", fwd_bwd.debug_plan());
    }
    let mut group = c.benchmark_group("lstm");
    group.throughput(Throughput::Elements((BATCH * TIME) as u64));
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| forward.run(black_box(&args)).expect("run"))
    });
    group.bench_function("fwd_bwd", |b| {
        b.iter(|| fwd_bwd.run(black_box(&args)).expect("run"))
    });
    group.bench_function("adam_step", |b| {
        b.iter(|| trainer.step(black_box(&args)).expect("step"))
    });
    group.finish();
}

fn main() {
    if let Some(n) = std::env::var("TAPE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tape::kernels::set_num_threads(n);
    }
    println!(
        "# LSTM {INPUTS}->{HIDDEN}, batch {BATCH}, T {TIME}, read-out {OUTPUTS} per step, {} thread(s)",
        tape::kernels::num_threads()
    );
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    bench_lstm(&mut c);
    c.final_summary();
}
