//! Compile time of the contractive penalty on a 784-1000-784 autoencoder (ReLU hidden layer,
//! linear output, the model seed's Glorot weights), single-threaded.
//!
//! * `contractive/build`: `Network::graph` with `contractive=0.1`, i.e. the expression graph of
//!   the loss and its penalty (the penalty itself takes gradients).
//! * `contractive/trainer`: `Network::trainer("sgd", ["contractive=0.1"])`: the graph, the
//!   gradient of the loss with respect to every parameter and `Function::compile` of the
//!   training step, everything a user waits for before the first update.
//!
//! The plain-text pass also times two SGD steps on 64 rows, since the penalty's form sets the
//! cost of every update as well.
//!
//! Each iteration is long (milliseconds to seconds), so criterion takes 10 flat samples of one
//! iteration each. A plain-text pass first times one call of each, which is what the report
//! quotes when criterion's run is too short to be stable.
//!
//! Run: `cargo bench --bench contractive`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use nets::{Autoencoder, Regularizers};
use tape::{Rng, Tensor};

fn model() -> Autoencoder {
    Autoencoder::new(&[784, 1000, 784]).expect("the 784-1000-784 autoencoder builds")
}

fn contractive() -> Regularizers {
    let mut regs = Regularizers::default();
    regs.set("contractive", "0.1")
        .expect("contractive is a regularizer");
    regs
}

fn one_shot(net: &Autoencoder, regs: &Regularizers) {
    let t = Instant::now();
    black_box(net.graph(regs).expect("the graph builds"));
    let build = t.elapsed();
    let t = Instant::now();
    black_box(
        net.trainer("sgd", &["contractive=0.1"])
            .expect("the trainer compiles"),
    );
    let trainer = t.elapsed();
    println!("one shot: build {build:?}, trainer (build + grad + compile) {trainer:?}");
    // What the penalty's form costs per update too: two SGD steps on 64 random rows (the first
    // also allocates the workspace).
    let mut x = Tensor::zeros(&[64, 784]);
    Rng::new(7).fill_normal(x.data_mut(), 0.0, 1.0);
    let mut t = net
        .trainer("sgd", &["contractive=0.1"])
        .expect("the trainer compiles");
    for i in 0..2 {
        let start = Instant::now();
        black_box(t.step(&[x.view()]).expect("a step"));
        println!("one shot: step {} on 64 rows {:?}", i + 1, start.elapsed());
    }
}

fn main() {
    tape::kernels::set_num_threads(1);
    let net = model();
    let regs = contractive();
    one_shot(&net, &regs);

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("contractive");
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("build", |b| {
        b.iter(|| black_box(net.graph(&regs).expect("the graph builds")))
    });
    group.bench_function("trainer", |b| {
        b.iter(|| {
            black_box(
                net.trainer("sgd", &["contractive=0.1"])
                    .expect("the trainer compiles"),
            )
        })
    });
    group.finish();
    c.final_summary();
}
