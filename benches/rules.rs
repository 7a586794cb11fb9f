//! Update-rule throughput: one `Rule::apply` over a 1,048,576-element f32 parameter for every
//! `optim::Algorithm`, without and with momentum 0.9, against a plain memory copy of the same
//! number of bytes measured in the same run.
//!
//! Bytes touched per step = 4 · n · (reads + writes), with reads = parameter + gradient
//! (+ Hessian-vector product for ESGD) + every state slot (+ velocity with momentum) and
//! writes = parameter + every state slot (+ velocity). The copy is `dst.copy_from_slice(&src)` with
//! `src` and `dst` each half that many bytes, so it reads and writes the same total. Rules are
//! memory-bound, so the goal is rule GB/s / copy GB/s ≥ 0.7.
//!
//! Every rule starts from `RuleOptions::new(alg)` with learning rate 1e-3 (and momentum 0.9 in the
//! momentum rows: classic momentum, except NAG which always uses Nesterov's form; NAG without
//! momentum runs the same loop as SGD). Steps alternate between two independent N(0, 1) gradient
//! buffers so the signs Rprop compares change at random, as in training; ESGD gets a fixed N(0, 1)
//! Hessian-vector product.
//!
//! Before criterion runs, a plain-text pass times each rule and its same-size copy in 7
//! interleaved rounds and prints one table row per rule (median times; easy to copy into
//! `docs/benchmarks.md`). Criterion then reports both as bytes/s (`Throughput::Bytes`).
//!
//! Run: `cargo bench --bench rules`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use optim::{Algorithm, Rule, RuleOptions};
use tape::Rng;

/// Elements in the parameter.
const N: usize = 1 << 20;
const LR: f32 = 1e-3;
const MOMENTUM: f32 = 0.9;

/// The inputs every rule reads: two gradients (used alternately) and ESGD's Hessian-vector product.
struct Inputs {
    grads: [Vec<f32>; 2],
    hv: Vec<f32>,
}

impl Inputs {
    fn new() -> Inputs {
        let normal = |name: &str| {
            let mut v = vec![0.0; N];
            Rng::from_name(7, name).fill_normal(&mut v, 0.0, 1.0);
            v
        };
        Inputs {
            grads: [normal("grad0"), normal("grad1")],
            hv: normal("hv"),
        }
    }
}

/// One rule with its parameter.
struct Case {
    alg: Algorithm,
    momentum: bool,
    rule: Rule,
    params: Vec<f32>,
    flip: usize,
}

impl Case {
    fn new(alg: Algorithm, momentum: bool) -> Case {
        let mut opts = RuleOptions::new(alg);
        opts.learning_rate = LR;
        if momentum {
            opts.momentum = MOMENTUM;
        }
        let rule = Rule::new(opts, &[N]).expect("valid rule options");
        let mut params = vec![0.0; N];
        Rng::from_name(7, "params").fill_normal(&mut params, 0.0, 0.1);
        Case {
            alg,
            momentum,
            rule,
            params,
            flip: 0,
        }
    }

    /// f32 arrays read + arrays written per step.
    fn arrays(&self) -> usize {
        let state = Rule::slot_names(self.alg).len() + usize::from(self.momentum);
        let hv = usize::from(self.rule.needs_hv());
        (2 + hv + state) + (1 + state)
    }

    fn bytes(&self) -> u64 {
        (4 * N * self.arrays()) as u64
    }

    fn label(&self) -> String {
        let mom = match (self.momentum, self.alg) {
            (false, _) => "0".to_string(),
            (true, Algorithm::Nag) => format!("{MOMENTUM} (Nesterov)"),
            (true, _) => format!("{MOMENTUM}"),
        };
        format!("{:<9} {:<16}", self.alg.name(), mom)
    }

    fn id(&self) -> BenchmarkId {
        let mom = if self.momentum { "momentum" } else { "plain" };
        BenchmarkId::new(self.alg.name(), mom)
    }

    /// One update step.
    fn step(&mut self, inputs: &Inputs) {
        let g = &inputs.grads[self.flip];
        self.flip ^= 1;
        let hv = self.rule.needs_hv().then_some(&inputs.hv[..]);
        self.rule.begin_step();
        self.rule
            .apply(0, black_box(&mut self.params), black_box(g), black_box(hv))
            .expect("the bench's arrays fit the rule");
        black_box(&mut self.params);
    }

    /// Non-finite parameter values (a rule that produced NaN or ∞).
    fn non_finite(&self) -> usize {
        self.params.iter().filter(|v| !v.is_finite()).count()
    }
}

/// A plain copy that reads and writes `bytes` in total.
struct MemCopy {
    src: Vec<f32>,
    dst: Vec<f32>,
}

impl MemCopy {
    fn new(bytes: u64) -> MemCopy {
        let len = bytes as usize / 8;
        let mut src = vec![0.0; len];
        Rng::from_name(7, "copy").fill_normal(&mut src, 0.0, 1.0);
        MemCopy {
            src,
            dst: vec![0.0; len],
        }
    }

    fn bytes(&self) -> u64 {
        (8 * self.src.len()) as u64
    }

    fn run(&mut self) {
        self.dst.copy_from_slice(black_box(&self.src));
        black_box(&mut self.dst);
    }
}

/// Median seconds per call of `f` and of `g`, timed in `rounds` alternating rounds of about
/// `round` wall time each (so both see the same machine state).
fn time_pair(
    mut f: impl FnMut(),
    mut g: impl FnMut(),
    round: Duration,
    rounds: usize,
) -> (f64, f64) {
    // Warm up (caches, page faults, CPU clocks) and size the rounds.
    let reps = |h: &mut dyn FnMut()| {
        let t = Instant::now();
        let mut calls = 0usize;
        while t.elapsed() < Duration::from_millis(100) || calls < 3 {
            h();
            calls += 1;
        }
        let per = t.elapsed().as_secs_f64() / calls as f64;
        ((round.as_secs_f64() / per) as usize).max(1)
    };
    let (rf, rg) = (reps(&mut f), reps(&mut g));
    let time = |h: &mut dyn FnMut(), reps: usize| {
        let t = Instant::now();
        for _ in 0..reps {
            h();
        }
        t.elapsed().as_secs_f64() / reps as f64
    };
    let mut tf = Vec::with_capacity(rounds);
    let mut tg = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        tf.push(time(&mut f, rf));
        tg.push(time(&mut g, rg));
    }
    tf.sort_by(f64::total_cmp);
    tg.sort_by(f64::total_cmp);
    (tf[rounds / 2], tg[rounds / 2])
}

/// The plain-text pass printed before criterion: one row per rule and momentum setting.
fn table_pass(inputs: &Inputs) {
    println!(
        "# update rules on n = {N} f32, lr {LR}; median of 7 interleaved rounds (rule, same-size copy)"
    );
    println!(
        "{:<9} {:<16} {:>10} {:>10} {:>8} {:>10} {:>6}",
        "rule", "momentum", "bytes/step", "time", "GB/s", "copy GB/s", "ratio"
    );
    let mut bad = Vec::new();
    for alg in Algorithm::ALL {
        for momentum in [false, true] {
            let mut case = Case::new(alg, momentum);
            let mut copy = MemCopy::new(case.bytes());
            assert_eq!(copy.bytes(), case.bytes());
            let bytes = case.bytes() as f64;
            let (t_rule, t_copy) = time_pair(
                || case.step(inputs),
                || copy.run(),
                Duration::from_millis(60),
                7,
            );
            let (gbs, copy_gbs) = (bytes / t_rule / 1e9, bytes / t_copy / 1e9);
            println!(
                "{} {:>6.0} MiB {:>7.3} ms {:>8.1} {:>10.1} {:>6.2}",
                case.label(),
                bytes / (1 << 20) as f64,
                t_rule * 1e3,
                gbs,
                copy_gbs,
                gbs / copy_gbs,
            );
            let nf = case.non_finite();
            if nf > 0 {
                bad.push(format!(
                    "{}: {nf} of {N} parameters are not finite after {} steps",
                    case.label().trim_end(),
                    case.rule.state().step
                ));
            }
        }
    }
    for line in bad {
        println!("WARNING {line}");
    }
    println!();
}

fn bench_rules(c: &mut Criterion, inputs: &Inputs) {
    let mut sizes = Vec::new();
    let mut group = c.benchmark_group("rules");
    group.sample_size(20);
    for alg in Algorithm::ALL {
        for momentum in [false, true] {
            let mut case = Case::new(alg, momentum);
            if !sizes.contains(&case.bytes()) {
                sizes.push(case.bytes());
            }
            group.throughput(Throughput::Bytes(case.bytes()));
            group.bench_function(case.id(), |bch| bch.iter(|| case.step(inputs)));
        }
    }
    group.finish();

    sizes.sort_unstable();
    let mut group = c.benchmark_group("copy");
    group.sample_size(20);
    for bytes in sizes {
        let mut copy = MemCopy::new(bytes);
        group.throughput(Throughput::Bytes(bytes));
        let id = format!("{}MiB", bytes >> 20);
        group.bench_function(BenchmarkId::from_parameter(id), |bch| {
            bch.iter(|| copy.run())
        });
    }
    group.finish();
}

fn main() {
    let inputs = Inputs::new();
    // Skip the custom pass when cargo runs the bench binary as a test (`cargo test --benches`):
    // criterion then only checks that each benchmark runs once.
    if std::env::args().any(|a| a == "--bench") {
        table_pass(&inputs);
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_rules(&mut c, &inputs);
    c.final_summary();
}
