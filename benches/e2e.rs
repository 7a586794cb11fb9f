//! End-to-end workloads of issue 13 through the public API, the same workloads as the PyTorch
//! scripts in `../shared/bench` (`torch_mlp.py`, `torch_digits.py`), so the two can be compared
//! side by side (`benches/compare.sh` runs both interleaved and prints the ratios).
//!
//! * `W1`: `Classifier` 784-512-512-10 (ReLU, softmax cross-entropy), Adam lr 1e-3 (β1 0.9,
//!   β2 0.999, ε 1e-8 as torch), batch 128, one MNIST epoch (469 steps, batch order shuffled).
//! * `W1n`: the same with SGD lr 1e-2 + Nesterov momentum 0.9.
//! * `W2`: `Autoencoder` 784-256-64-256-784 (ReLU hidden, linear output, MSE), Adam as W1.
//! * `W3`: digits `Classifier` 64-100-10, Adam lr 1e-3, batch 32, per step, one thread.
//! * `W4`: `Classifier::predict_proba` of the W1 net over the 10,000 test images in batches of
//!   1,000.
//!
//! Parameters start from torch's default `nn.Linear` init, U(−1/√fan_in, 1/√fan_in) for weights
//! and biases. Each step is one `Trainer::step` on a batch held in memory. W1, W1n and W2 run one
//! warm-up epoch and then `E2E_EPOCHS` (default 3) timed epochs and report the median, as
//! `torch_mlp.py` does. Threads: `E2E_THREADS` (default 2) for W1, W1n, W2 and W4; W3 uses one.
//!
//! Output, one machine-readable line per figure:
//! `e2e <name> <value> <unit>` (e.g. `e2e W1 1.234 s/epoch`, `e2e W4 250000 images/s`).
//! MNIST comes from `MNIST_DIR` or `../shared/data/mnist`; without it the MNIST workloads are
//! skipped with a message. `E2E_ONLY=W1,W3` runs a subset; `E2E_OVERLAP=1` overlaps the updates
//! with the backward pass.
//!
//! `E2E_MEM=1` runs W1 alone instead, for `E2E_EPOCHS` epochs (default 10 there), and prints its
//! memory (issue 13's target: peak RSS ≤ 1.3 × (data + parameters + optimizer state), no growth
//! from epoch 2 on): `e2e mem epoch <i> rss <MiB>` after each epoch, then one
//! `e2e mem W1 peak <MiB> ...` line with the budget's parts and the ratio.
//!
//! `E2E_W4_REPEATS` (default 5) sets how many passes over the 10,000 images W4 times (more for
//! profiling it).
//!
//! For the scaling table (`benches/scaling.sh`), `E2E_BATCH` (default 128) and `E2E_HIDDEN`
//! (default 512, both hidden layers) change W1's batch size and width, and `E2E_PROFILE=1` adds
//! one profiled epoch after the timed ones (with `tape::profile`) and prints the GEMMs' share of
//! its wall time: `e2e W1 gemm-share <fraction> (...)`.
//!
//! Run: `cargo bench --bench e2e`.

use std::time::Instant;

use nets::{Autoencoder, Classifier, LayerSpec, ModelOptions};
use optim::{Algorithm, LoopOptions, RuleOptions, Trainer};
use tape::{Param, Rng, Tensor, TensorView};

const BATCH: usize = 128;
const HIDDEN: usize = 512;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `E2E_ONLY` (a comma list) selects workload `name` (all when unset).
fn selected(name: &str) -> bool {
    match std::env::var("E2E_ONLY") {
        Ok(list) => list.split(',').any(|w| w.trim() == name),
        Err(_) => true,
    }
}

/// Sets every parameter to torch's `nn.Linear` default: U(−b, b) with b = 1/√fan_in, where a
/// bias takes the fan-in of the weight before it.
fn torch_init(params: &[Param], seed: u64) {
    let mut fan_in = 1;
    for p in params {
        let shape = p.shape();
        if shape.len() == 2 {
            fan_in = shape[0];
        }
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut rng = Rng::from_name(seed, p.name());
        p.update(|v| {
            for x in v.iter_mut() {
                *x = (2.0 * rng.uniform() - 1.0) * bound;
            }
        });
    }
}

/// Torch's Adam (lr 1e-3, β1 0.9, β2 0.999, ε 1e-8) in our half-life terms.
fn adam() -> RuleOptions {
    let mut r = RuleOptions::new(Algorithm::Adam);
    r.learning_rate = 1e-3;
    let halflife = |beta: f32| -std::f32::consts::LN_2 / beta.ln();
    r.beta1_halflife = halflife(0.9);
    r.beta2_halflife = halflife(0.999);
    r.rms_regularizer = 1e-8;
    r
}

/// SGD lr 1e-2 with Nesterov momentum 0.9.
fn nesterov() -> RuleOptions {
    let mut r = RuleOptions::new(Algorithm::Nag);
    r.learning_rate = 1e-2;
    r.momentum = 0.9;
    r.nesterov = true;
    r
}

/// A data set cut into batches of consecutive rows, each batch the list of arrays one
/// `Trainer::step` takes (inputs, then targets if any). Batches are views into the arrays, so
/// the data is held once (copies per batch would double W1's resident memory).
struct Batches<'a> {
    arrays: Vec<&'a Tensor>,
    /// Per batch: its first and one-past-last row, and each array's shape for it.
    items: Vec<(usize, usize, Vec<Vec<usize>>)>,
}

impl<'a> Batches<'a> {
    fn new(arrays: &[&'a Tensor], batch: usize) -> Batches<'a> {
        let n = arrays[0].shape()[0];
        let items = (0..n)
            .step_by(batch)
            .map(|s| {
                let e = (s + batch).min(n);
                let shapes = arrays
                    .iter()
                    .map(|a| {
                        let mut shape = a.shape().to_vec();
                        shape[0] = e - s;
                        shape
                    })
                    .collect();
                (s, e, shapes)
            })
            .collect();
        Batches {
            arrays: arrays.to_vec(),
            items,
        }
    }

    /// Batch `b` as views of rows `s..e` of each array.
    fn views(&self, b: usize) -> Vec<TensorView<'_>> {
        let (s, e, shapes) = &self.items[b];
        self.arrays
            .iter()
            .zip(shapes)
            .map(|(a, shape)| {
                let row = a.len() / a.shape()[0];
                TensorView::new(shape, &a.data()[s * row..e * row]).expect("batch view")
            })
            .collect()
    }

    /// One epoch in a shuffled batch order; returns its seconds.
    fn epoch(&self, trainer: &mut Trainer, rng: &mut Rng) -> f64 {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let t = Instant::now();
        for &b in &order {
            trainer.step(&self.views(b)).expect("step");
        }
        t.elapsed().as_secs_f64()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One warm-up epoch, then `epochs` timed ones; prints the median seconds per epoch (and,
/// with `E2E_PROFILE=1`, the GEMM share of one more epoch).
fn timed(name: &str, trainer: &mut Trainer, data: &Batches, epochs: usize) {
    let mut rng = Rng::new(0);
    data.epoch(trainer, &mut rng);
    let ts: Vec<f64> = (0..epochs).map(|_| data.epoch(trainer, &mut rng)).collect();
    let all: Vec<String> = ts.iter().map(|t| format!("{t:.3}")).collect();
    let med = median(ts);
    println!(
        "e2e {name} {med:.4} s/epoch ({:.1} steps/s; epochs {})",
        data.items.len() as f64 / med,
        all.join(", ")
    );
    if std::env::var("E2E_PROFILE").is_ok_and(|v| v == "1") {
        profiled(name, trainer, data, &mut rng);
    }
}

/// One epoch with `tape::profile` on; prints the GEMMs' share of its wall time and the kinds
/// that took longest.
fn profiled(name: &str, trainer: &mut Trainer, data: &Batches, rng: &mut Rng) {
    tape::profile::reset();
    tape::profile::set_enabled(true);
    let secs = data.epoch(trainer, rng);
    tape::profile::set_enabled(false);
    let entries = tape::profile::take();
    let seconds = |kind: &str| {
        entries
            .iter()
            .find(|e| e.kind == kind)
            .map_or(0.0, |e| e.time.as_secs_f64())
    };
    let gemm = seconds("gemm");
    let instrs: f64 = entries.iter().map(|e| e.time.as_secs_f64()).sum();
    let top: Vec<String> = entries
        .iter()
        .take(5)
        .map(|e| format!("{} {:.3}", e.kind, e.time.as_secs_f64()))
        .collect();
    println!(
        "e2e {name} gemm-share {:.3} (gemm {gemm:.3} s of {secs:.3} s/epoch; compiled-function \
         instructions {instrs:.3} s, top: {}; outside them (update rule, loop) {:.3} s)",
        gemm / secs,
        top.join(", "),
        secs - instrs
    );
}

/// W1's network 784-`hidden`-`hidden`-10.
fn mlp(hidden: usize) -> Classifier {
    let net = Classifier::build(
        vec![
            LayerSpec::input(784),
            LayerSpec::dense(hidden),
            LayerSpec::dense(hidden),
            LayerSpec::classifier(10),
        ],
        ModelOptions::default(),
    )
    .expect("classifier");
    torch_init(&net.params(), 1);
    net
}

/// The trainer of `net`; `E2E_OVERLAP=1` overlaps the updates with the backward pass
/// (`Trainer::set_overlap`) instead of updating after the whole step, for comparisons.
fn trainer(net: &nets::Network, rule: RuleOptions) -> Trainer {
    let mut t = net
        .trainer_with(rule, LoopOptions::default(), &Default::default())
        .expect("trainer");
    t.set_overlap(std::env::var("E2E_OVERLAP").is_ok_and(|v| v == "1"));
    t
}

fn mnist_workloads(dir: &std::path::Path, epochs: usize) {
    let m = nets::data::read_mnist(dir).expect("MNIST");
    let train = Batches::new(&[&m.train_x, &m.train_y], BATCH);
    if selected("W1") {
        let batch = env_usize("E2E_BATCH", BATCH).max(1);
        let net = mlp(env_usize("E2E_HIDDEN", HIDDEN).max(1));
        let mut t = trainer(&net, adam());
        timed(
            "W1",
            &mut t,
            &Batches::new(&[&m.train_x, &m.train_y], batch),
            epochs,
        );
    }
    if selected("W1n") {
        let net = mlp(HIDDEN);
        let mut t = trainer(&net, nesterov());
        timed("W1n", &mut t, &train, epochs);
    }
    if selected("W2") {
        let net = Autoencoder::build(
            vec![
                LayerSpec::input(784),
                LayerSpec::dense(256),
                LayerSpec::dense(64),
                LayerSpec::dense(256),
                LayerSpec::dense(784),
            ],
            ModelOptions::default(),
        )
        .expect("autoencoder");
        torch_init(&net.params(), 2);
        let mut t = trainer(&net, adam());
        timed("W2", &mut t, &Batches::new(&[&m.train_x], BATCH), epochs);
    }
    if selected("W4") {
        let net = mlp(HIDDEN);
        let parts: Vec<Tensor> = (0..10)
            .map(|i| m.test_x.rows(i * 1000, (i + 1) * 1000).expect("rows"))
            .collect();
        net.predict_proba(&parts[0]).expect("predict");
        let ts: Vec<f64> = (0..env_usize("E2E_W4_REPEATS", 5))
            .map(|_| {
                let t = Instant::now();
                for p in &parts {
                    std::hint::black_box(net.predict_proba(p).expect("predict"));
                }
                t.elapsed().as_secs_f64()
            })
            .collect();
        println!("e2e W4 {:.0} images/s", 10_000.0 / median(ts));
    }
}

/// W3: the digits step, one thread, median over 3 seeds of 50 epochs of 45 batches (as
/// `torch_digits.py`).
fn digits_workload() {
    let train = theanets_rs::digits::train();
    let data = Batches::new(&[&train.x, &train.y], 32);
    let previous = tape::kernels::num_threads();
    tape::kernels::set_num_threads(1);
    let mut per_step = Vec::new();
    for seed in 0..3u64 {
        let net = Classifier::build(
            vec![
                LayerSpec::input(64),
                LayerSpec::dense(100),
                LayerSpec::classifier(10),
            ],
            ModelOptions::default(),
        )
        .expect("classifier");
        torch_init(&net.params(), 10 + seed);
        let mut t = trainer(&net, adam());
        let mut rng = Rng::new(seed);
        let epochs = 50;
        let secs: f64 = (0..epochs).map(|_| data.epoch(&mut t, &mut rng)).sum();
        per_step.push(secs / (epochs * data.items.len()) as f64);
    }
    tape::kernels::set_num_threads(previous);
    println!("e2e W3 {:.2} us/step", median(per_step) * 1e6);
}

/// `E2E_MEM=1`: W1 alone for `epochs` epochs, reporting resident memory (see the module docs).
fn memory_workload(dir: &std::path::Path, epochs: usize) {
    use theanets_rs::memory::{mib, status};
    let m = nets::data::read_mnist(dir).expect("MNIST");
    let loaded = status().expect("VmRSS");
    // W1 trains on the training split only; the test split is freed (a `..` pattern would
    // keep it until the end of the function).
    let nets::data::Mnist {
        train_x,
        train_y,
        test_x,
        test_y,
    } = m;
    drop((test_x, test_y));
    let train = Batches::new(&[&train_x, &train_y], BATCH);
    let net = mlp(HIDDEN);
    let mut t = trainer(&net, adam());
    let mut rng = Rng::new(0);
    let mut rss = Vec::new();
    for e in 1..=epochs {
        let secs = train.epoch(&mut t, &mut rng);
        let s = status().expect("VmRSS");
        println!("e2e mem epoch {e} rss {:.1} MiB ({secs:.2} s)", mib(s.rss));
        rss.push(s.rss);
    }
    let peak = status().expect("VmHWM").peak;
    let data = 4 * (train_x.len() + train_y.len()) as u64;
    let params = 4 * net
        .params()
        .iter()
        .map(|p| p.shape().iter().product::<usize>())
        .sum::<usize>() as u64;
    // Adam keeps two moments per parameter.
    let budget = data + params + 2 * params;
    let growth = rss.last().copied().unwrap_or(0) as f64 - rss.get(1).copied().unwrap_or(0) as f64;
    println!(
        "e2e mem W1 peak {:.1} MiB (after loading {:.1}); data {:.1} + params {:.2} + Adam {:.2} = {:.1} MiB; \
         ratio {:.3} (target <= 1.3); rss growth epoch 2 -> {epochs}: {:+.2} MiB",
        mib(peak),
        mib(loaded.peak),
        mib(data),
        mib(params),
        mib(2 * params),
        mib(budget),
        peak as f64 / budget as f64,
        growth / (1024.0 * 1024.0),
    );
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: nothing to time then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let threads = env_usize("E2E_THREADS", 2);
    tape::kernels::set_num_threads(threads);
    println!(
        "e2e threads {threads} (pool {}), simd {:?}",
        tape::kernels::num_threads(),
        tape::kernels::simd_level()
    );
    let dir = std::env::var("MNIST_DIR").unwrap_or_else(|_| theanets_rs::mnist::DEFAULT_DIR.into());
    let dir = std::path::Path::new(&dir);
    if std::env::var("E2E_MEM").is_ok_and(|v| v == "1") {
        memory_workload(dir, env_usize("E2E_EPOCHS", 10).max(2));
        return;
    }
    let epochs = env_usize("E2E_EPOCHS", 3).max(1);
    if ["W1", "W1n", "W2", "W4"].iter().any(|w| selected(w)) {
        if dir.is_dir() {
            mnist_workloads(dir, epochs);
        } else {
            println!(
                "e2e skipped: MNIST not found in {} (set MNIST_DIR)",
                dir.display()
            );
        }
    }
    if selected("W3") {
        digits_workload();
    }
}
