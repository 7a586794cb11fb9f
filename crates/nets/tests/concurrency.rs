//! Threads: which public types are `Send + Sync`, models shared by several threads predict the
//! same bits as one thread and really run side by side, a compiled function moved to another
//! thread computes the same bits there, and predictions leave random streams alone.

use nets::network::POOL_SIZE;
use nets::tape::{CustomOp, Expr, Function, Param, Tensor, TensorView};
use nets::{
    Autoencoder, Classifier, Layer, LayerContext, LayerSpec, ModelOptions, Regressor, Regularizers,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Tensor>();
    assert_send_sync::<TensorView<'static>>();
    assert_send_sync::<Expr>();
    assert_send_sync::<Param>();
    assert_send_sync::<Function>();
    assert_send_sync::<nets::Network>();
    assert_send_sync::<Classifier>();
    assert_send_sync::<Regressor>();
    assert_send_sync::<Autoencoder>();
    assert_send_sync::<Regularizers>();
    assert_send_sync::<LayerSpec>();
    assert_send_sync::<Box<dyn Layer>>();
    assert_send_sync::<nets::optim::Trainer>();
    // A dataset may hold an `FnMut + Send` callable: it moves between threads, it is not shared.
    assert_send::<nets::optim::Dataset>();
    assert_send_sync::<nets::Error>();
    assert_send_sync::<nets::tape::Error>();
}

/// `rows × cols` values in [-1, 1) from a fixed linear congruential sequence.
fn values(rows: usize, cols: usize, seed: u64) -> Tensor {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..rows * cols)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::new(&[rows, cols], data).unwrap()
}

/// Labels in 0..3: which of the first three features is largest.
fn labels(x: &Tensor) -> Tensor {
    let cols = x.shape()[1];
    let y: Vec<f32> = x
        .data()
        .chunks(cols)
        .map(|r| {
            let best = (0..3).fold(0, |b, i| if r[i] > r[b] { i } else { b });
            best as f32
        })
        .collect();
    Tensor::vector(&y)
}

const ROWS: usize = 128;

/// A few Adam steps, so that the parameters are no longer their initial values.
fn train(net: &nets::Network, data: &[Tensor]) {
    let mut trainer = net.trainer("adam", &["learning_rate=0.01"]).unwrap();
    let views: Vec<TensorView<'_>> = data.iter().map(Tensor::view).collect();
    for _ in 0..30 {
        assert!(trainer.step(&views).unwrap().is_finite());
    }
}

struct Models {
    classifier: Classifier,
    regressor: Regressor,
    autoencoder: Autoencoder,
    x: Tensor,
    labels: Tensor,
    targets: Tensor,
}

fn trained_models() -> Models {
    let x = values(ROWS, 6, 1);
    let labels = labels(&x);
    let targets = values(ROWS, 2, 2);
    let classifier = Classifier::new(&[6, 8, 3]).unwrap();
    train(&classifier, &[x.clone(), labels.clone()]);
    let regressor = Regressor::new(&[6, 5, 2]).unwrap();
    train(&regressor, &[x.clone(), targets.clone()]);
    let autoencoder = Autoencoder::new(&[6, 3, 6]).unwrap();
    train(&autoencoder, std::slice::from_ref(&x));
    Models {
        classifier,
        regressor,
        autoencoder,
        x,
        labels,
        targets,
    }
}

/// More distinct batch sizes than a function keeps plans for, so plans are evicted and rebuilt
/// while other threads run.
const SIZES: [usize; 12] = [1, 2, 3, 5, 7, 8, 13, 16, 31, 64, 100, 127];

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// Everything the models compute on the first `n` rows that goes through their compiled
/// caches, as bit patterns.
fn everything(m: &Models, n: usize) -> Vec<Vec<u32>> {
    let x = m.x.rows(0, n).unwrap();
    let y = m.labels.rows(0, n).unwrap();
    let t = m.targets.rows(0, n).unwrap();
    let none = Regularizers::default();
    let c = &m.classifier;
    let code = m.autoencoder.encode(&x, None).unwrap();
    vec![
        bits(&c.predict(&x).unwrap()),
        bits(&c.predict_proba(&x).unwrap()),
        bits(&c.predict_logit(&x).unwrap()),
        vec![c.score(&x, &y, None).unwrap().to_bits()],
        vec![c.loss(&[x.clone(), y.clone()], &none).unwrap().to_bits()],
        bits(&m.regressor.predict(&x).unwrap()),
        vec![m.regressor.score(&x, &t, None).unwrap().to_bits()],
        vec![m.regressor.loss(&[x.clone(), t], &none).unwrap().to_bits()],
        bits(&m.autoencoder.predict(&x).unwrap()),
        bits(&code),
        bits(&m.autoencoder.decode(&code, None).unwrap()),
        vec![m.autoencoder.score(&x, None).unwrap().to_bits()],
    ]
}

#[test]
fn shared_models_predict_the_same_bits_on_four_threads() {
    let models = trained_models();
    let reference: Vec<Vec<Vec<u32>>> = SIZES.iter().map(|&n| everything(&models, n)).collect();
    let models = &models;
    let reference = &reference;
    std::thread::scope(|s| {
        for thread in 0..4 {
            s.spawn(move || {
                for round in 0..6 {
                    // Each thread walks the sizes in its own order, so that threads run
                    // different shapes at the same moment: a workspace shared between them
                    // would mix their values.
                    for k in 0..SIZES.len() {
                        let i = if thread % 2 == 0 {
                            (k + 3 * thread + round) % SIZES.len()
                        } else {
                            (SIZES.len() - 1 - k + thread + round) % SIZES.len()
                        };
                        let got = everything(models, SIZES[i]);
                        assert_eq!(
                            got, reference[i],
                            "thread {thread}, round {round}, {} rows",
                            SIZES[i]
                        );
                    }
                }
            });
        }
    });
    // The pools stay bounded: at most POOL_SIZE instances per kind of request.
    for net in [
        &*models.classifier,
        &*models.regressor,
        &*models.autoencoder,
    ] {
        assert!(net.pooled_functions() <= POOL_SIZE * net.compiled_functions());
        assert!(net.pooled_functions() >= net.compiled_functions());
    }
}

/// Two calls that meet: each run waits (up to a timeout) until another run has arrived too. If
/// runs on one shared model were serialized, the first would time out alone.
struct Rendezvous {
    armed: AtomicBool,
    arrived: Mutex<usize>,
    wake: Condvar,
    met: AtomicUsize,
}

impl CustomOp for Rendezvous {
    fn name(&self) -> &str {
        "rendezvous"
    }

    fn forward(&self, inputs: &[TensorView], out: &mut [f32]) -> Result<(), String> {
        if self.armed.load(Ordering::SeqCst) {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            self.wake.notify_all();
            let (arrived, _) = self
                .wake
                .wait_timeout_while(arrived, Duration::from_secs(10), |n| *n < 2)
                .unwrap();
            if *arrived >= 2 {
                self.met.fetch_add(1, Ordering::SeqCst);
            }
        }
        out.copy_from_slice(inputs[0].data());
        Ok(())
    }

    fn grad(
        &self,
        _inputs: &[Expr],
        _output: &Expr,
        _g: &Expr,
    ) -> nets::tape::Result<Vec<Option<Expr>>> {
        Ok(vec![None])
    }
}

#[test]
fn predictions_on_a_shared_model_run_at_the_same_time() {
    let op = Arc::new(Rendezvous {
        armed: AtomicBool::new(false),
        arrived: Mutex::new(0),
        wake: Condvar::new(),
        met: AtomicUsize::new(0),
    });
    let specs = vec![LayerSpec::input(3), through(op.clone())];
    let net = Regressor::build(specs, ModelOptions::default()).unwrap();
    let x = values(4, 3, 7);
    // Compiled once before the threads start, as a server warms up.
    assert_eq!(bits(&net.predict(&x).unwrap()), bits(&x));
    op.armed.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| assert_eq!(bits(&net.predict(&x).unwrap()), bits(&x)));
        }
    });
    assert_eq!(
        op.met.load(Ordering::SeqCst),
        2,
        "both predictions should have been inside the compiled function at once"
    );
    assert_eq!(net.compiled_functions(), 1);
    assert_eq!(net.pooled_functions(), 2);
}

/// An identity op that takes a while and counts how many runs are inside it at once.
#[derive(Default)]
struct Busy {
    inside: AtomicUsize,
    most_inside: AtomicUsize,
}

impl CustomOp for Busy {
    fn name(&self) -> &str {
        "busy"
    }

    fn forward(&self, inputs: &[TensorView], out: &mut [f32]) -> Result<(), String> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
        out.copy_from_slice(inputs[0].data());
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn grad(
        &self,
        _inputs: &[Expr],
        _output: &Expr,
        _g: &Expr,
    ) -> nets::tape::Result<Vec<Option<Expr>>> {
        Ok(vec![None])
    }
}

/// An output layer that passes its input through `op`.
fn through(op: Arc<dyn CustomOp>) -> LayerSpec {
    LayerSpec::custom(3, move |ctx: &LayerContext| {
        let layer = OpLayer {
            name: ctx.name.clone(),
            size: ctx.size,
            inputs: ctx.inputs.clone(),
            op: op.clone(),
        };
        Ok(Box::new(layer) as Box<dyn Layer>)
    })
}

struct OpLayer {
    name: String,
    size: usize,
    inputs: Vec<(String, usize)>,
    op: Arc<dyn CustomOp>,
}

impl Layer for OpLayer {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> usize {
        self.size
    }
    fn inputs(&self) -> &[(String, usize)] {
        &self.inputs
    }
    fn params(&self) -> Vec<Param> {
        Vec::new()
    }
    fn connect(&self, inputs: &[Expr]) -> nets::Result<Vec<(String, Expr)>> {
        Ok(vec![(
            "out".into(),
            Expr::custom(self.op.clone(), &inputs[..1]),
        )])
    }
}

#[test]
fn more_threads_than_the_pool_holds_wait_their_turn() {
    let op = Arc::new(Busy::default());
    let specs = vec![LayerSpec::input(3), through(op.clone())];
    let net = Regressor::build(specs, ModelOptions::default()).unwrap();
    let x = values(5, 3, 9);
    // Twelve threads on two requests (predictions and every named output): six want each
    // request at once, more than its pool may hold, so some wait for an instance to come back.
    std::thread::scope(|s| {
        for thread in 0..12 {
            let (net, x) = (&net, &x);
            s.spawn(move || {
                for _ in 0..20 {
                    let got = if thread % 2 == 0 {
                        net.predict(x).unwrap()
                    } else {
                        net.feed_forward(x).unwrap().pop().unwrap().1
                    };
                    assert_eq!(bits(&got), bits(x));
                }
            });
        }
    });
    assert_eq!(net.compiled_functions(), 2);
    assert!(net.pooled_functions() <= 2 * POOL_SIZE);
    let most = op.most_inside.load(Ordering::SeqCst);
    assert!(
        (2..=2 * POOL_SIZE).contains(&most),
        "{most} runs at once; the pools allow {} and twelve threads should reach two",
        2 * POOL_SIZE
    );
}

#[test]
fn a_function_moved_to_another_thread_gives_the_same_bits() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", values(5, 4, 3));
    let b = Param::new("b", values(1, 4, 4).reshape(&[4]).unwrap());
    let y = (&x.matmul(&w.expr()) + &b.expr()).tanh().softmax();
    let compile = || Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y));
    let small = values(3, 5, 5);
    let large = values(300, 5, 6);
    // The reference: a separate function on this thread.
    let mut here = compile().unwrap();
    let want_small = bits(&here.call(&[&small]).unwrap()[0]);
    let want_large = bits(&here.call(&[&large]).unwrap()[0]);
    // The function under test runs once here, then moves with its plans to another thread.
    let mut moved = compile().unwrap();
    assert_eq!(bits(&moved.call(&[&small]).unwrap()[0]), want_small);
    let (got_small, got_large) = std::thread::spawn(move || {
        let large_first = bits(&moved.call(&[&large]).unwrap()[0]);
        let small_again = bits(&moved.call(&[&small]).unwrap()[0]);
        (small_again, large_first)
    })
    .join()
    .unwrap();
    assert_eq!(got_small, want_small);
    assert_eq!(got_large, want_large);
}

#[test]
fn concurrent_noisy_outputs_draw_one_stream_and_leave_training_alone() {
    let x = values(16, 6, 8);
    let y = labels(&x);
    let mut dropout = Regularizers::default();
    dropout.set("hidden_dropout", "0.5").unwrap();
    let make = || {
        let net = Classifier::new(&[6, 8, 3]).unwrap();
        let trainer = net
            .trainer("sgd", &["learning_rate=0.1", "hidden_dropout=0.5"])
            .unwrap();
        (net, trainer)
    };
    // Reference: eight dropout outputs on one thread, then two training steps.
    let (net, mut trainer) = make();
    let views = [x.view(), y.view()];
    let mut want: Vec<Vec<u32>> = (0..8)
        .map(|_| bits(&net.output(&x, "hid1", &dropout).unwrap()))
        .collect();
    let want_losses: Vec<u32> = (0..2)
        .map(|_| trainer.step(&views).unwrap().to_bits())
        .collect();
    // The same eight outputs from four threads, in whatever order they run.
    let (net, mut trainer) = make();
    let rngs_before = trainer.rng_states();
    let got = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..2 {
                    let out = bits(&net.output(&x, "hid1", &dropout).unwrap());
                    got.lock().unwrap().push(out);
                }
            });
        }
    });
    let mut got = got.into_inner().unwrap();
    // One stream: the same eight masks as on one thread (in some order), not clones repeating
    // the first draws.
    want.sort();
    want.dedup();
    assert_eq!(
        want.len(),
        8,
        "dropout should draw a new mask on every call"
    );
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        net.pooled_functions(),
        1,
        "a noisy request keeps one instance"
    );
    // Predicting did not touch the trainer's streams: training goes on as if it never happened.
    assert_eq!(trainer.rng_states(), rngs_before);
    let losses: Vec<u32> = (0..2)
        .map(|_| trainer.step(&views).unwrap().to_bits())
        .collect();
    assert_eq!(losses, want_losses);
}
