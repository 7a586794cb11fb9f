//! Fuzzing models: random configurations (layer sizes including 0, layer forms wired to random
//! inputs, known and unknown activations, losses, regularizer and noise/dropout text, weighted or
//! not, tied layers), random and often wrong data (widths, labels out of range, NaN, no rows),
//! random option text for the text entry points (`TrainOptions::parse`, `Regularizers::set`,
//! `SaveEvery`, `LossKind`, `Activation::build`, `Network::trainer`), and damaged model files.
//!
//! Every case runs under `catch_unwind`. Building, training two updates, predicting, scoring,
//! saving and loading must return `Ok` or a typed `Err` with a message, never panic; when a
//! prediction is `Ok` its shape is the one the model's kind and sizes imply. A damaged file must
//! load (and then predict with the right shapes) or be refused with a file error, and loading
//! must never allocate more than a small multiple of the file's size (measured with
//! `tape::testing::PeakAllocator`).
//!
//! Cases: the small budgets below, or `PROPTEST_CASES` for a long campaign
//! (`PROPTEST_CASES=5000 cargo test --release -p nets --test fuzz`).

mod common;

use nets::activations::Activation;
use nets::experiment::SaveEvery;
use nets::{
    Classifier, Error, Experiment, Kind, LayerSpec, Loss, LossKind, Model, ModelOptions, Network,
    Regularizers, TrainOptions,
};
use optim::Algorithm;
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use tape::testing::{peak_since, start_peak, PeakAllocator};
use tape::Tensor;

/// Outcome counts, printed by `zz_stats` with `FUZZ_STATS=1`: models refused at build, trained,
/// refused at training, predicted on good rows; files loaded, files refused.
static STATS: [AtomicUsize; 6] = [const { AtomicUsize::new(0) }; 6];

fn count_outcome(k: usize) {
    STATS[k].fetch_add(1, Ordering::Relaxed);
}

#[global_allocator]
static GLOBAL: PeakAllocator = PeakAllocator;

fn config(ci: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(ci);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

/// Runs `f`, turning a panic into a test failure naming `what`.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| fail(format!("panic in {what}")))
}

/// An error must say something.
fn said(e: &Error, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !e.to_string().trim().is_empty(),
        "{what}: empty message: {e:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Option text.

const KEYS: &[&str] = &[
    "learning_rate",
    "momentum",
    "max_updates",
    "batch_size",
    "iteration_size",
    "save_every",
    "weight_l2",
    "hidden_l1",
    "contractive",
    "input_noise",
    "hidden_dropout",
    "noise",
    "dropout",
    "noisy_validation",
    "patience",
    "rprop_min_step",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "0.5",
            "1e39",
            "NaN",
            "inf",
            "-inf",
            "",
            " ",
            "none",
            "true",
            "2",
            "18446744073709551616",
            "hid*:out=0.1",
            "*=0.5",
            "in:out=2",
            "=",
            "a=b=c",
            "x=NaN",
            "hid1:out=-1",
            "-0.5",
            "1.0",
            "ü",
            "0x1",
            "1e-50",
            "-1e308",
            "-1e-320",
        ])
        .prop_map(String::from),
        any::<String>(),
        "[a-z0-9*:=._-]{0,10}",
    ]
}

fn pair() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        1 => any::<String>(),
    ];
    (
        key,
        text(),
        prop::sample::select(vec!["=", " = ", "", "=="]),
    )
        .prop_map(|(k, v, sep)| format!("{k}{sep}{v}"))
}

fn activation_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "linear",
            "relu",
            "tanh",
            "sigmoid",
            "softmax",
            "prelu",
            "lgrelu",
            "maxout:2",
            "maxout:0",
            "maxout:-1",
            "maxout:99999",
            "maxout:",
            "relu+norm:z",
            "prelu+prelu",
            "bogus",
            "",
            "+",
            "relu+",
            "RELU",
            "rect:minmax",
            "norm:mean",
            "Maxout:1",
        ])
        .prop_map(String::from),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn option_text_parses_or_is_a_typed_error(pairs in prop::collection::vec(pair(), 0..5), alg in 0usize..8) {
        let refs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        let algorithm = Algorithm::ALL[alg];
        let r = no_panic("TrainOptions::parse", || TrainOptions::parse(algorithm, 1, &refs))?;
        match r {
            Err(e) => {
                said(&e, "TrainOptions::parse")?;
                prop_assert!(matches!(e, Error::Config { .. } | Error::Optim(_)), "{e:?}");
            }
            Ok(o) => {
                // Whatever was accepted is in range.
                prop_assert!(o.rule.validate().is_ok() && o.loop_options.validate().is_ok());
                let r = &o.regularizers;
                for x in [r.weight_l2, r.weight_l1, r.hidden_l1, r.contractive, r.input_noise, r.hidden_noise] {
                    prop_assert!(x.is_finite() && x >= 0.0, "{x}");
                }
                for p in [r.input_dropout, r.hidden_dropout].into_iter().chain(r.dropout.iter().map(|d| d.1)) {
                    prop_assert!((0.0..1.0).contains(&p), "dropout {p}");
                }
                for (_, s) in &r.noise {
                    prop_assert!(s.is_finite() && *s >= 0.0, "noise {s}");
                }
                if let Some(SaveEvery::Iterations(n)) = o.save_every {
                    prop_assert!(n > 0);
                }
            }
        }
        // The network's own text door, on a small model.
        let net = Network::new(Kind::Regressor, vec![LayerSpec::input(2), LayerSpec::dense(1)], ModelOptions::default()).unwrap();
        let r = no_panic("Network::trainer", || net.trainer(algorithm.name(), &refs).map(|_| ()))?;
        if let Err(e) = r {
            said(&e, "Network::trainer")?;
        }
    }

    #[test]
    fn single_parsers_never_panic(t in text(), key in prop::sample::select(Regularizers::KEYS.to_vec()), act in activation_name(), size in 0usize..4) {
        let mut regs = Regularizers::default();
        if let Err(e) = no_panic("Regularizers::set", || regs.set(key, &t))? {
            said(&e, "Regularizers::set")?;
            prop_assert!(e.to_string().contains(key), "{e}");
        }
        match no_panic("SaveEvery", || t.parse::<SaveEvery>())? {
            Err(e) => said(&e, "SaveEvery")?,
            Ok(SaveEvery::Iterations(n)) => prop_assert!(n > 0),
            Ok(SaveEvery::Time(_)) => {}
        }
        match no_panic("LossKind", || t.parse::<LossKind>())? {
            Err(e) => said(&e, "LossKind")?,
            // Every accepted name prints as a short name that parses back to the same kind.
            Ok(k) => prop_assert_eq!(k.name().parse::<LossKind>().ok(), Some(k)),
        }
        match no_panic("Activation::build", || Activation::build(&act, "hid1", size))? {
            Err(e) => {
                said(&e, "Activation::build")?;
                prop_assert!(e.to_string().contains("layer `hid1`"), "{e}");
            }
            Ok(a) => {
                // Parametric activations make parameters sized by the layer.
                for p in a.params() {
                    prop_assert!(p.name().starts_with("hid1."), "{}", p.name());
                    prop_assert_eq!(p.shape().first().copied(), Some(size));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Models.

/// One layer of a random configuration: a form, a size and wiring chosen by index.
#[derive(Clone, Debug)]
enum Form {
    Dense(usize),
    Classifier(usize),
    Tied,
    Product(usize),
    Concatenate(usize),
    Flatten(usize),
    Reshape(Vec<usize>),
}

#[derive(Clone, Debug)]
struct LayerGene {
    form: Form,
    activation: Option<String>,
    /// Inputs by index into the layers before (taken modulo), when not the previous one.
    inputs: Vec<usize>,
    /// The partner of a tied layer, by index (modulo).
    partner: usize,
}

#[derive(Clone, Debug)]
struct Config {
    kind: Kind,
    input: usize,
    layers: Vec<LayerGene>,
    losses: Vec<String>,
    weighted: bool,
    settings: Vec<String>,
    algorithm: &'static str,
    rows: usize,
    /// Added to the input width of the data (0: right width).
    x_width_error: usize,
    /// Added to the target width.
    y_width_error: usize,
    /// Labels up to this many past the last class.
    labels_past: usize,
    nan_at: Option<usize>,
    seed: u64,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 1usize..4, 1 => Just(0usize)]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        12 => size().prop_map(Form::Dense),
        1 => size().prop_map(Form::Classifier),
        2 => Just(Form::Tied),
        1 => size().prop_map(Form::Product),
        1 => (1usize..7).prop_map(Form::Concatenate),
        1 => size().prop_map(Form::Flatten),
        1 => prop::collection::vec(0usize..4, 0..3).prop_map(Form::Reshape),
    ]
}

fn layer() -> impl Strategy<Value = LayerGene> {
    let activation = prop::option::weighted(
        0.4,
        prop_oneof![
            3 => prop::sample::select(vec!["relu", "tanh", "prelu", "maxout:2", "lgrelu", "sigmoid+norm:z"]).prop_map(String::from),
            1 => activation_name(),
        ],
    );
    let inputs = prop_oneof![
        3 => Just(vec![]),
        1 => prop::collection::vec(0usize..8, 1..3),
    ];
    (form(), activation, inputs, 0usize..8).prop_map(|(form, activation, inputs, partner)| {
        LayerGene {
            form,
            activation,
            inputs,
            partner,
        }
    })
}

fn model_config() -> impl Strategy<Value = Config> {
    let kind = prop::sample::select(vec![Kind::Regressor, Kind::Classifier, Kind::Autoencoder]);
    let loss = prop::sample::select(vec![
        "mse", "mae", "xe", "hinge", "kl", "mmd", "gll", "bogus", "mse", "xe",
    ])
    .prop_map(String::from);
    let setting = prop_oneof![
        4 => prop::sample::select(vec![
            "weight_l2=0.01", "weight_l1=0.1", "hidden_l1=0.1", "contractive=0.1",
            "input_noise=0.1", "hidden_noise=0.2", "input_dropout=0.3", "hidden_dropout=0.5",
            "noise=hid*:out=0.1", "dropout=hid1:out=0.2", "noise=nomatch=0.1", "dropout=*=0.99",
            "learning_rate=0.01", "momentum=0.9", "batch_size=0", "batch_size=1",
            "iteration_size=1", "noisy_validation=yes", "max_gradient_norm=1", "min_improvement=1e9",
            "learning_rate=1e30", "patience=0", "validate_every=1",
        ]).prop_map(String::from),
        1 => pair(),
    ];
    let algorithm = prop::sample::select(vec![
        "sgd",
        "nag",
        "rmsprop",
        "adam",
        "adadelta",
        "adagrad",
        "esgd",
        "rprop",
        "sgd nag",
        "layerwise",
        "pretrain",
        "sample",
        "bogus",
        "",
    ]);
    (
        (kind, size(), prop::collection::vec(layer(), 1..4)),
        (
            prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec(loss, 1..3)],
            any::<bool>(),
            prop::collection::vec(setting, 0..4),
            algorithm,
        ),
        (
            0usize..6,
            prop::sample::select(vec![0usize, 0, 0, 1]),
            prop::sample::select(vec![0usize, 0, 0, 1]),
            prop::sample::select(vec![0usize, 0, 0, 2]),
        ),
        (prop::option::weighted(0.1, 0usize..32), any::<u64>()),
    )
        .prop_map(
            |(
                (kind, input, layers),
                (losses, weighted, settings, algorithm),
                (rows, xw, yw, lp),
                (nan_at, seed),
            )| Config {
                kind,
                input,
                layers,
                losses,
                weighted,
                settings,
                algorithm,
                rows,
                x_width_error: xw,
                y_width_error: yw,
                labels_past: lp,
                nan_at,
                seed,
            },
        )
}

/// The layer specs of a configuration: the input, then each gene, named `hid1`, `hid2`, … and
/// the last one `out` (the default names), wired to earlier layers by index.
fn specs(c: &Config) -> Vec<LayerSpec> {
    let mut names = vec!["in".to_string()];
    let mut out = vec![LayerSpec::input(c.input)];
    let n = c.layers.len();
    for (k, g) in c.layers.iter().enumerate() {
        let name = if k + 1 == n {
            "out".to_string()
        } else {
            format!("hid{}", k + 1)
        };
        let mut spec = match &g.form {
            // An autoencoder's output mostly as wide as its input, so that many of them build.
            Form::Dense(_)
                if k + 1 == n && c.kind == Kind::Autoencoder && !c.seed.is_multiple_of(4) =>
            {
                LayerSpec::dense(c.input)
            }
            Form::Dense(s) => LayerSpec::dense(*s),
            Form::Classifier(s) => LayerSpec::classifier(*s),
            // Mostly an earlier layer with weights (any layer but the input), sometimes any.
            Form::Tied if names.len() > 1 && g.partner % 4 != 0 => {
                LayerSpec::tied().partner(&names[1 + g.partner % (names.len() - 1)])
            }
            Form::Tied => LayerSpec::tied().partner(&names[g.partner % names.len()]),
            Form::Product(s) => LayerSpec::product(*s),
            Form::Concatenate(s) => LayerSpec::concatenate(*s),
            Form::Flatten(s) => LayerSpec::flatten(*s),
            Form::Reshape(d) => LayerSpec::reshape(d),
        };
        if !g.inputs.is_empty() {
            let ins: Vec<&str> = g
                .inputs
                .iter()
                .map(|&i| names[i % names.len()].as_str())
                .collect();
            spec = spec.inputs(&ins);
        }
        if let Some(a) = &g.activation {
            spec = spec.activation(a);
        }
        out.push(spec.name(&name));
        names.push(name);
    }
    out
}

fn options(c: &Config) -> Result<ModelOptions, Error> {
    let losses = c
        .losses
        .iter()
        .map(|l| l.parse::<LossKind>().map(Loss::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ModelOptions {
        seed: c.seed,
        losses,
        weighted: c.weighted,
        ..ModelOptions::default()
    })
}

/// Data for a model: `[x, y or labels, weights]` as the kind and weighting want, with the
/// configured mistakes.
fn data(c: &Config, net: &Network) -> Vec<Tensor> {
    let (n, i, o) = (
        c.rows,
        net.input_size() + c.x_width_error,
        net.output_size(),
    );
    let mut x = Tensor::from_fn(&[n, i], |ix| {
        ((ix[0] * 7 + ix[1] * 3) % 5) as f32 * 0.25 - 0.5
    });
    if let Some(at) = c.nan_at {
        if !x.is_empty() {
            let len = x.len();
            x.data_mut()[at % len] = f32::NAN;
        }
    }
    let mut arrays = vec![x];
    match c.kind {
        Kind::Classifier => {
            let classes = o + c.labels_past;
            arrays.push(Tensor::from_fn(&[n], |ix| (ix[0] % classes.max(1)) as f32));
        }
        Kind::Regressor => arrays.push(Tensor::from_fn(&[n, o + c.y_width_error], |ix| {
            (ix[1] as f32) * 0.5
        })),
        Kind::Autoencoder => {}
    }
    if c.weighted {
        let w = if c.kind == Kind::Autoencoder {
            Tensor::ones(&[n, i])
        } else if c.kind == Kind::Classifier {
            Tensor::ones(&[n])
        } else {
            Tensor::ones(&[n, o])
        };
        arrays.push(w);
    }
    arrays
}

/// Checks a prediction's shape against the model's sizes.
fn check_prediction(
    net: &Network,
    rows: usize,
    r: Result<Tensor, Error>,
    what: &str,
) -> Result<(), TestCaseError> {
    match r {
        Err(e) => said(&e, what),
        Ok(y) => {
            prop_assert_eq!(y.shape(), &[rows, net.output_size()][..], "{}", what);
            Ok(())
        }
    }
}

fn run_model(c: &Config) -> Result<(), TestCaseError> {
    let built = no_panic("build", || {
        options(c).and_then(|o| Network::new(c.kind, specs(c), o))
    })?;
    let net = match built {
        Err(e) => {
            count_outcome(0);
            if std::env::var_os("FUZZ_VERBOSE").is_some() {
                eprintln!("build: {e}");
            }
            return said(&e, "build");
        }
        Ok(net) => net,
    };
    prop_assert_eq!(net.input_size(), c.input);
    let arrays = data(c, &net);
    let mut settings: Vec<String> = c.settings.clone();
    settings.extend([
        "max_updates=2".into(),
        "validate_every=1".into(),
        "batch_size=2".into(),
    ]);
    let mut exp = Experiment::new(net);
    let trained = no_panic("train", || {
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        exp.train(arrays.clone(), nets::Data::None, c.algorithm, &refs[..])
    })?;
    match &trained {
        Err(e) => {
            count_outcome(2);
            if std::env::var_os("FUZZ_VERBOSE").is_some() {
                eprintln!("train: {e}");
            }
            said(e, "train")?;
        }
        Ok(_) => count_outcome(1),
    }
    let net = exp.into_model();
    let x = &arrays[0];
    let rows = x.shape()[0];
    let raw = no_panic("predict_raw", || net.predict_raw(x))?;
    let x_fits = c.x_width_error == 0 && c.nan_at.is_none_or(|_| x.is_empty());
    check_prediction(&net, rows, raw, "predict_raw")?;
    // A well-formed x of another batch size.
    let x3 = Tensor::from_fn(&[3, net.input_size()], |ix| ix[1] as f32 * 0.1);
    let r = no_panic("predict_raw", || net.predict_raw(&x3))?;
    if trained.is_ok() && x_fits {
        // A model that trained predicts on good rows (its output may still be NaN-checked).
        if let Err(e) = &r {
            prop_assert!(!matches!(e, Error::Config { .. }), "{e}");
        }
    }
    if r.is_ok() {
        count_outcome(3);
    }
    // A model saved and loaded back predicts the same bits.
    if let Ok(before) = &r {
        round_trip(&net, &x3, before)?;
    }
    check_prediction(&net, 3, r, "predict_raw on 3 rows")?;
    if c.kind == Kind::Autoencoder {
        let model = nets::Autoencoder(net);
        let layer = ["hid1", "out", "in", "bogus", ""][c.seed as usize % 5];
        let z = no_panic("encode", || model.encode(&x3, Some(layer)))?;
        match z {
            Err(e) => said(&e, "encode")?,
            Ok(z) => {
                prop_assert_eq!(z.shape()[0], 3);
                let back = no_panic("decode", || model.decode(&z, Some(layer)))?;
                match back {
                    Err(e) => said(&e, "decode")?,
                    Ok(y) => prop_assert_eq!(y.shape(), &[3, model.input_size()][..]),
                }
                // Codes of the wrong width are refused.
                let wide = Tensor::zeros(&[3, z.shape()[1] + 1]);
                let r = no_panic("decode", || model.decode(&wide, Some(layer)))?;
                prop_assert!(
                    r.is_err(),
                    "decode accepted codes {} wide",
                    z.shape()[1] + 1
                );
            }
        }
        return Ok(());
    }
    let scored = no_panic("metrics", || match c.kind {
        Kind::Classifier => {
            let model = Classifier(net);
            let p = model.predict(&x3);
            if let Ok(p) = &p {
                // One label per row, each a class.
                assert_eq!(p.shape(), &[3]);
                assert!(p.data().iter().all(|&l| (l as usize) < model.output_size()));
            }
            model.metrics(&arrays).map(|_| ())
        }
        _ => net.loss(&arrays, &Regularizers::default()).map(|_| ()),
    })?;
    if let Err(e) = scored {
        said(&e, "metrics")?;
    }
    Ok(())
}

/// Saves `net`, loads it back and checks the copy predicts `before` on `x`, bit for bit.
fn round_trip(net: &Network, x: &Tensor, before: &Tensor) -> Result<(), TestCaseError> {
    let dir = std::env::temp_dir().join(format!("nets-fuzz-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model");
    if let Err(e) = no_panic("save", || net.save(&path))? {
        return Err(fail(format!("a built model did not save: {e}")));
    }
    let loaded = no_panic("load", || Network::load(&path))?
        .map_err(|e| fail(format!("a saved model did not load: {e}")))?;
    let after = no_panic("predict after load", || loaded.predict_raw(x))?
        .map_err(|e| fail(format!("a loaded model did not predict: {e}")))?;
    // Cases run one at a time, so the folder is this case's alone.
    std::fs::remove_dir_all(&dir).unwrap();
    let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    prop_assert_eq!(after.shape(), before.shape());
    prop_assert_eq!(
        bits(&after),
        bits(before),
        "predictions changed through a file"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_models_build_train_and_predict_or_refuse(c in model_config()) {
        run_model(&c)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Model files.

/// Loads of files this size or less may use this much regardless; beyond, per byte of file.
const FIXED: usize = 4 << 10;
const PER_BYTE: usize = 8;

#[derive(Clone, Debug)]
enum Damage {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Sets four bytes to a big-endian u32 (a length field, if it lands on one).
    Length(usize, u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    let at = || any::<usize>();
    prop_oneof![
        3 => (at(), 0u8..8).prop_map(|(i, b)| Damage::Flip(i, b)),
        2 => (at(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        1 => at().prop_map(Damage::Truncate),
        1 => (at(), prop::collection::vec(any::<u8>(), 1..6)).prop_map(|(i, v)| Damage::Insert(i, v)),
        1 => (at(), 1usize..6).prop_map(|(i, n)| Damage::Remove(i, n)),
        2 => (at(), prop_oneof![Just(u32::MAX), Just(1 << 30), 0u32..64, any::<u32>()]).prop_map(|(i, v)| Damage::Length(i, v)),
    ]
}

fn apply_damage(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match d {
        Damage::Flip(i, b) => bytes[i % len] ^= 1 << b,
        Damage::Set(i, b) => bytes[i % len] = *b,
        Damage::Truncate(i) => bytes.truncate(i % len),
        Damage::Insert(i, v) => {
            let at = i % (len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Damage::Remove(i, n) => {
            let at = i % len;
            bytes.drain(at..(at + n).min(len));
        }
        Damage::Length(i, v) => {
            let at = i % len;
            for (k, b) in v.to_be_bytes().into_iter().enumerate() {
                if at + k < len {
                    bytes[at + k] = b;
                }
            }
        }
    }
}

/// A few saved models of different shapes: plain, a classifier with parametric activations and
/// class names, a tied autoencoder.
fn saved_models(dir: &std::path::Path) -> Vec<(Kind, Vec<u8>)> {
    let models = vec![
        Network::new(
            Kind::Regressor,
            vec![LayerSpec::input(3), LayerSpec::dense(2)],
            ModelOptions::default(),
        ),
        Network::new(
            Kind::Classifier,
            vec![
                LayerSpec::input(2),
                LayerSpec::dense(3).activation("prelu"),
                LayerSpec::dense(2),
            ],
            ModelOptions {
                classes: vec!["a".into(), "b".into()],
                ..ModelOptions::default()
            },
        ),
        Network::new(
            Kind::Autoencoder,
            vec![
                LayerSpec::input(3),
                LayerSpec::dense(2).activation("maxout:2"),
                LayerSpec::tied().partner("hid1"),
            ],
            ModelOptions::default(),
        ),
    ];
    models
        .into_iter()
        .enumerate()
        .map(|(k, m)| {
            let m = m.expect("a valid model");
            let path = dir.join(format!("good{k}.model"));
            m.save(&path).expect("saves");
            (m.kind(), std::fs::read(&path).unwrap())
        })
        .collect()
}

/// Loads `bytes` as a model file: no panic, a file error or a model that predicts the right
/// shapes, and a bounded peak allocation.
fn load_damaged(path: &std::path::Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    std::fs::write(path, bytes).unwrap();
    let base = start_peak();
    let loaded = no_panic("load", || Network::load(path))?;
    let peak = peak_since(base);
    prop_assert!(
        peak <= FIXED + PER_BYTE * bytes.len(),
        "a {}-byte file peaked at {peak} bytes",
        bytes.len()
    );
    match loaded {
        Err(e) => {
            said(&e, "load")?;
            prop_assert!(matches!(e, Error::File { .. }), "not a file error: {e:?}");
            count_outcome(5);
        }
        Ok(net) => {
            count_outcome(4);
            let x = Tensor::from_fn(&[2, net.input_size()], |ix| ix[1] as f32 * 0.3);
            let r = no_panic("predict after load", || net.predict_raw(&x))?;
            check_prediction(&net, 2, r, "predict after load")?;
        }
    }
    Ok(())
}

#[test]
fn damaged_model_files_load_or_are_refused() {
    let dir = common::scratch("fuzz", "files");
    let good = saved_models(&dir);
    let path = dir.join("damaged.model");
    let mut runner = proptest::test_runner::TestRunner::new(config(512));
    let strategy = (0..good.len(), prop::collection::vec(damage(), 1..4));
    runner
        .run(&strategy, |(which, damages)| {
            let mut bytes = good[which].1.clone();
            for d in &damages {
                apply_damage(&mut bytes, d);
            }
            load_damaged(&path, &bytes)
        })
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Prints the outcome counts (run after the others: `--test-threads 1`).
#[test]
fn zz_stats() {
    if std::env::var_os("FUZZ_STATS").is_some() {
        let s: Vec<usize> = STATS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        eprintln!(
            "models: build refused {}, trained {}, training refused {}, predicted {}; files: loaded {}, refused {}",
            s[0], s[1], s[2], s[3], s[4], s[5]
        );
    }
}

/// Found by the fuzzer: a dense layer given the same input twice built two parameters named
/// `out.w_in:out`; the model trained and predicted, then could not be saved.
#[test]
fn a_dense_layer_refuses_an_input_listed_twice() {
    for inputs in [["in", "in"], ["in", "in:out"]] {
        let specs = vec![LayerSpec::input(1), LayerSpec::dense(1).inputs(&inputs)];
        let e = Network::new(Kind::Regressor, specs, ModelOptions::default())
            .err()
            .expect("an input listed twice");
        let msg = e.to_string();
        assert!(
            msg.contains("layer `out`") && msg.contains("`in:out` is listed twice"),
            "{msg}"
        );
    }
    // Concatenating an input with itself has no weights to clash and stays valid.
    let specs = vec![
        LayerSpec::input(1),
        LayerSpec::concatenate(2).inputs(&["in", "in"]),
        LayerSpec::dense(1),
    ];
    assert!(Network::new(Kind::Regressor, specs, ModelOptions::default()).is_ok());
}

/// Found by the fuzzer: an activation given to a product, concatenate, flatten or reshape layer
/// was dropped without a word (the model built and trained without it), and a model file of
/// such a layer then failed to load, its loader counting the activation's parameters.
#[test]
fn layers_without_an_activation_refuse_one() {
    let layers = [
        LayerSpec::product(2),
        LayerSpec::concatenate(2),
        LayerSpec::flatten(2),
        LayerSpec::reshape(&[2]),
    ];
    for layer in layers {
        let specs = vec![
            LayerSpec::input(2),
            layer.activation("prelu"),
            LayerSpec::dense(1),
        ];
        let e = Network::new(Kind::Regressor, specs, ModelOptions::default())
            .err()
            .expect("an activation on a layer that applies none");
        let msg = e.to_string();
        assert!(
            msg.contains("layer `hid1`") && msg.contains("`prelu`"),
            "{msg}"
        );
    }
    // Likewise a classifier layer, which always applies softmax.
    let specs = |a: &str| vec![LayerSpec::input(2), LayerSpec::classifier(2).activation(a)];
    let e = Network::new(Kind::Classifier, specs("prelu"), ModelOptions::default())
        .err()
        .expect("prelu on a classifier layer");
    assert!(e.to_string().contains("layer `out`"), "{e}");
    assert!(Network::new(Kind::Classifier, specs("softmax"), ModelOptions::default()).is_ok());
}
