//! `Experiment`: options per call (text or typed, unknown keys with a suggestion), repeated calls
//! and algorithm sequences continuing from the current parameters (the guide's "newbob"
//! schedule), snapshots that resume a run bit for bit for every update rule with noise and
//! dropout on, and damaged snapshot files refused as typed file errors.

mod common;

use nets::experiment::{Data, Experiment, SaveEvery, TrainOptions};
use nets::{Classifier, Error, LayerSpec, ModelOptions, Network, Registry, Regressor};
use optim::{Algorithm, Monitors};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tape::{Rng, Tensor};

fn normal(shape: &[usize], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    Rng::new(seed).fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

/// A fresh directory for one test (tests run in parallel in one process).
fn scratch(test: &str) -> PathBuf {
    common::scratch("exp", test)
}

/// Regression data: y = tanh(x·A) + a little noise, so a small net can fit it.
fn regression(rows: usize, seed: u64) -> Vec<Tensor> {
    let x = normal(&[rows, 3], seed);
    let a = normal(&[3, 2], 99);
    let noise = normal(&[rows, 2], seed + 1);
    let mut y = Tensor::zeros(&[rows, 2]);
    for r in 0..rows {
        for c in 0..2 {
            let s: f32 = (0..3)
                .map(|k| x.data()[r * 3 + k] * a.data()[k * 2 + c])
                .sum();
            y.data_mut()[r * 2 + c] = s.tanh() + 0.05 * noise.data()[r * 2 + c];
        }
    }
    vec![x, y]
}

/// Two Gaussian blobs in 10 dimensions, labels 0 and 1: the guide's (10, 5, 2) classifier.
fn blobs(rows: usize, seed: u64) -> Vec<Tensor> {
    let mut x = normal(&[rows, 10], seed);
    let mut labels = Vec::with_capacity(rows);
    for r in 0..rows {
        let class = r % 2;
        for c in 0..10 {
            x.data_mut()[r * 10 + c] += if class == 1 { 0.7 } else { -0.7 };
        }
        labels.push(class as f32);
    }
    vec![x, Tensor::vector(&labels)]
}

fn bits(net: &Network) -> Vec<Vec<u32>> {
    net.params()
        .iter()
        .map(|p| p.read().data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn config_problem<T>(result: nets::Result<T>) -> String {
    match result {
        Err(e @ (Error::Config { .. } | Error::Optim(optim::Error::Config { .. }))) => {
            e.to_string()
        }
        Err(e) => panic!("expected a config error, got {e:?}"),
        Ok(_) => panic!("expected a config error, got Ok"),
    }
}

fn file_problem<T>(result: nets::Result<T>, path: &Path) -> String {
    match result {
        Err(e @ Error::File { .. }) => {
            let Error::File { path: p, problem } = &e else {
                unreachable!()
            };
            assert_eq!(p, path);
            assert!(e.to_string().contains(&path.display().to_string()));
            problem.clone()
        }
        Err(e) => panic!("expected a file error, got {e:?}"),
        Ok(_) => panic!("expected a file error, got Ok"),
    }
}

#[test]
fn unknown_keys_suggest_the_nearest_valid_one_from_every_namespace() {
    let mut exp = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    let data = regression(16, 1);
    for (typo, meant) in [
        ("learning_rat=0.1", "learning_rate"),
        ("batch_sise=4", "batch_size"),
        ("hiden_l1=0.1", "hidden_l1"),
        ("patiense=3", "patience"),
        ("iteration_sizes=2", "iteration_size"),
        ("save_evry=3", "save_every"),
    ] {
        let problem = config_problem(exp.train(&data, Data::None, "sgd", &[typo]));
        assert!(
            problem.contains(&format!("did you mean `{meant}`")),
            "{typo}: {problem}"
        );
    }
    let problem = config_problem(exp.train(&data, Data::None, "sgd", &["save_every=2.5"]));
    assert!(problem.contains("whole"), "{problem}");
}

#[test]
fn network_aware_trainers_run_alone_through_train() {
    let data = regression(32, 1);
    for name in [
        "sample",
        "layerwise",
        "supervised:nag",
        "pretrain",
        "unsupervised:adam",
    ] {
        let mut exp = Experiment::new(Regressor::new(&[3, 4, 4, 2]).unwrap());
        let before = bits(exp.network());
        let settings: &[&str] = if name == "sample" {
            &[]
        } else {
            &["max_updates=2"]
        };
        exp.train(&data, Data::None, name, settings).unwrap();
        assert_ne!(bits(exp.network()), before, "{name} changed nothing");
    }
    let mut exp = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    // Not in a sequence, not as an iteration, not on a Dataset, not with typed options.
    let problem = config_problem(exp.train(&data, Data::None, "sgd layerwise", &["max_updates=1"]));
    assert!(
        problem.contains("give one alone to Experiment::train"),
        "{problem}"
    );
    let problem = config_problem(
        exp.itertrain(&data, Data::None, "pretrain", &["max_updates=1"])
            .map(|_| ()),
    );
    assert!(problem.contains("not to itertrain"), "{problem}");
    let typed = TrainOptions::new(optim::Algorithm::RmsProp, 13);
    let problem = config_problem(exp.train(&data, Data::None, "layerwise", &typed));
    assert!(problem.contains("key=value text"), "{problem}");
    let problem =
        config_problem(exp.train(&data, Data::None, "layerwise:adamw", &["max_updates=1"]));
    assert!(problem.contains("adamw"), "{problem}");
    // Before anything trains: a later bad name refuses the whole call.
    let before = bits(exp.network());
    let problem = config_problem(exp.train(&data, Data::None, "sgd adamw", &["max_updates=1"]));
    assert!(problem.contains("adamw"), "{problem}");
    assert_eq!(bits(exp.network()), before);
}

#[test]
fn the_save_every_number_convention() {
    assert_eq!("3".parse::<SaveEvery>().unwrap(), SaveEvery::Iterations(3));
    assert_eq!(
        "-2".parse::<SaveEvery>().unwrap(),
        SaveEvery::Time(Duration::from_secs(120))
    );
    assert_eq!(
        SaveEvery::from(Duration::from_millis(5)),
        SaveEvery::Time(Duration::from_millis(5))
    );
    for bad in ["0", "1.5", "nan", "x", "-inf"] {
        assert!(bad.parse::<SaveEvery>().is_err(), "{bad}");
    }
}

/// Runs one call; returns its first validation (run before any update, so it reads the
/// parameters the previous call left) and its best validation loss.
fn call(
    exp: &mut Experiment<Classifier>,
    data: &[Tensor],
    valid: &[Tensor],
    algorithm: &str,
    options: &[&str],
) -> (Monitors, f32) {
    let mut it = exp.itertrain(data, valid, algorithm, options).unwrap();
    let (_, first) = it.next().unwrap().unwrap();
    for step in &mut it {
        step.unwrap();
    }
    let best = it.best().unwrap().1.loss();
    (first, best)
}

#[test]
fn newbob_annealing_continues_each_call_from_the_last_and_never_ends_worse() {
    let train = blobs(64, 3);
    let valid = blobs(32, 4);
    let mut exp = Experiment::new(Classifier::new(&[10, 5, 2]).unwrap());
    let mut calls = Vec::new();
    for e in [-2i32, -3, -4] {
        let lr = format!("learning_rate={}", 10f64.powi(e));
        let momentum = format!("momentum={}", 1.0 - 10f64.powi(e + 1));
        calls.push(("nag", vec![lr, momentum]));
    }
    calls.push((
        "rmsprop",
        vec!["learning_rate=0.0001".into(), "momentum=0.9".into()],
    ));
    assert_eq!(calls[1].1, ["learning_rate=0.001", "momentum=0.99"]);
    let mut previous: Option<f32> = None;
    let mut initial = f32::NAN;
    for (algorithm, options) in &calls {
        let mut opts: Vec<&str> = options.iter().map(String::as_str).collect();
        opts.extend([
            "batch_size=16",
            "max_updates=30",
            "validate_every=2",
            "patience=100",
        ]);
        let (first, best) = call(&mut exp, &train, &valid, algorithm, &opts);
        assert!(first.get("acc").is_some() && first.get("err").is_some());
        match previous {
            // The call starts where the last one ended: from its best parameters, so its first
            // validation reads exactly the previous call's best loss.
            Some(p) => {
                assert_eq!(first.loss(), p, "{algorithm} {options:?}");
                assert!(best <= p, "{algorithm} {options:?}: {best} > {p}");
            }
            None => initial = first.loss(),
        }
        previous = Some(best);
    }
    let last = previous.unwrap();
    assert!(last < initial * 0.9, "{last} vs {initial}");
}

#[test]
fn a_sequence_of_algorithms_equals_the_same_calls_one_after_another() {
    let data = regression(24, 5);
    // One batch of all rows, so that the batch order (which a call's algorithms share, as in
    // theanets, and separate calls do not) plays no part.
    let opts = [
        "batch_size=0",
        "max_updates=4",
        "validate_every=1",
        "learning_rate=0.05",
        "momentum=0.5",
    ];
    let mut seq = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    let items = seq
        .itertrain(&data, Data::None, "sgd  NAG\trmsprop", &opts)
        .unwrap()
        .count();
    assert_eq!(items, 12, "three algorithms of 4 iterations each");
    let mut one_by_one = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    for algorithm in ["sgd", "nag", "rmsprop"] {
        one_by_one
            .train(&data, Data::None, algorithm, &opts)
            .unwrap();
    }
    let fresh = Regressor::new(&[3, 4, 2]).unwrap();
    assert_ne!(bits(seq.network()), bits(&fresh));
    assert_eq!(bits(seq.network()), bits(one_by_one.network()));
}

#[test]
fn typed_options_train_as_the_same_text_does() {
    let data = regression(24, 6);
    let mut text = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    text.train(
        &data,
        Data::None,
        "nag",
        &[
            "learning_rate=0.02",
            "momentum=0.9",
            "max_updates=5",
            "batch_size=8",
            "weight_l2=0.01",
        ],
    )
    .unwrap();
    let mut typed = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    let mut o = TrainOptions::new(Algorithm::Sgd, ModelOptions::default().seed);
    o.rule.learning_rate = 0.02;
    o.rule.momentum = 0.9;
    o.loop_options.max_updates = Some(5);
    o.batch_size = 8;
    o.regularizers.weight_l2 = 0.01;
    typed.train(&data, Data::None, "nag", &o).unwrap();
    assert_eq!(bits(text.network()), bits(typed.network()));
}

/// Options for the resume test: every rule, noise on the input and dropout on the hidden layer.
fn resume_options(algorithm: Algorithm) -> Vec<String> {
    let mut o: Vec<String> = [
        "batch_size=4",
        "max_updates=6",
        "validate_every=2",
        "patience=100",
        "input_noise=0.1",
        "hidden_dropout=0.3",
        "noisy_validation=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    o.push(
        match algorithm {
            Algorithm::Sgd | Algorithm::Nag => "learning_rate=0.05",
            Algorithm::Rprop => "learning_rate=0.01",
            _ => "learning_rate=0.01",
        }
        .into(),
    );
    if algorithm == Algorithm::Nag {
        o.push("momentum=0.9".into());
    }
    o
}

#[test]
fn a_run_resumed_from_a_snapshot_equals_the_uninterrupted_run_bit_for_bit() {
    let dir = scratch("resume");
    let train = regression(12, 7);
    let valid = regression(8, 8);
    for algorithm in Algorithm::ALL {
        let options = resume_options(algorithm);
        let opts: Vec<&str> = options.iter().map(String::as_str).collect();
        let name = algorithm.name();
        let build = |seed| {
            let o = ModelOptions {
                seed,
                ..Default::default()
            };
            Regressor::build(
                vec![3.into(), LayerSpec::dense(5).activation("tanh"), 2.into()],
                o,
            )
            .unwrap()
        };

        let mut whole = Experiment::new(build(13));
        let all: Vec<(Monitors, Monitors)> = whole
            .itertrain(&train, &valid, name, &opts)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len(), 6);

        let path = dir.join(format!("{name}.snapshot"));
        let mut first = Experiment::new(build(13))
            .save_progress(&path, SaveEvery::Iterations(3))
            .unwrap();
        let half: Vec<_> = first
            .itertrain(&train, &valid, name, &opts)
            .unwrap()
            .take(3)
            .map(Result::unwrap)
            .collect();
        assert_eq!(half[..], all[..3], "{name}");
        drop(first);

        // Another seed: the model must come from the snapshot, not from this constructor.
        let mut resumed = Experiment::new(build(99))
            .save_progress(&path, SaveEvery::Iterations(3))
            .unwrap();
        let rest: Vec<_> = resumed
            .itertrain(&train, &valid, name, &opts)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rest[..], all[3..], "{name}");
        assert_eq!(bits(resumed.network()), bits(whole.network()), "{name}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_sequence_resumes_from_a_snapshot_taken_after_any_iteration() {
    let dir = scratch("sequence");
    let data = regression(12, 9);
    let opts = [
        "batch_size=4",
        "max_updates=4",
        "validate_every=1",
        "learning_rate=0.02",
    ];
    let mut whole = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap());
    let all: Vec<_> = whole
        .itertrain(&data, Data::None, "adam sgd", &opts)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 8);
    // Every cut, including the end of the first algorithm (4) and of the call (8).
    for cut in 1..=8 {
        let path = dir.join(format!("seq{cut}.snapshot"));
        let mut first = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap())
            .save_progress(&path, Duration::ZERO)
            .unwrap();
        let head: Vec<_> = first
            .itertrain(&data, Data::None, "adam sgd", &opts)
            .unwrap()
            .take(cut)
            .map(Result::unwrap)
            .collect();
        drop(first);
        let mut resumed = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap())
            .save_progress(&path, Duration::ZERO)
            .unwrap();
        let tail: Vec<_> = resumed
            .itertrain(&data, Data::None, "adam sgd", &opts)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!([head, tail].concat(), all, "cut after {cut}");
        assert_eq!(
            bits(resumed.network()),
            bits(whole.network()),
            "cut after {cut}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A seeded batch function: the same batches every time it is built.
fn batches(seed: u64) -> optim::Dataset {
    let mut rng = Rng::new(seed);
    let f = move || {
        let mut x = Tensor::zeros(&[4, 3]);
        rng.fill_normal(x.data_mut(), 0.0, 1.0);
        let y = Tensor::new(&[4, 2], x.data().iter().take(8).map(|v| v * 0.5).collect()).unwrap();
        vec![x, y]
    };
    let options = optim::DatasetOptions {
        iteration_size: Some(2),
        ..Default::default()
    };
    optim::Dataset::from_fn("train", f, options).unwrap()
}

#[test]
fn a_callable_dataset_trains_reports_user_monitors_and_resumes() {
    let dir = scratch("callable");
    let path = dir.join("fn.snapshot");
    let build = || {
        let o = ModelOptions {
            monitors: vec![("hid1:out".into(), vec![0.0])],
            ..Default::default()
        };
        Regressor::build(
            vec![3.into(), LayerSpec::dense(4).activation("relu"), 2.into()],
            o,
        )
        .unwrap()
    };
    let opts = ["max_updates=6", "validate_every=2", "learning_rate=0.01"];
    let mut whole = Experiment::new(build());
    let all: Vec<_> = whole
        .itertrain(batches(1), batches(2), "rmsprop", &opts)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let (t, v) = &all[0];
    assert_eq!(
        t.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        ["loss", "err", "hid1:out<0"]
    );
    assert!(v.get("hid1:out<0").is_some());
    let mut first = Experiment::new(build())
        .save_progress(&path, SaveEvery::Iterations(3))
        .unwrap();
    let head: Vec<_> = first
        .itertrain(batches(1), batches(2), "rmsprop", &opts)
        .unwrap()
        .take(3)
        .map(Result::unwrap)
        .collect();
    drop(first);
    let mut resumed = Experiment::new(build())
        .save_progress(&path, SaveEvery::Iterations(3))
        .unwrap();
    let tail: Vec<_> = resumed
        .itertrain(batches(1), batches(2), "rmsprop", &opts)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!([head, tail].concat(), all);
    assert_eq!(bits(resumed.network()), bits(whole.network()));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn custom_layers_resume_through_the_registry() {
    let dir = scratch("custom");
    let path = dir.join("custom.snapshot");
    let mut registry = Registry::new();
    registry.register("plain", common::plain_layer).unwrap();
    let specs = || {
        vec![
            LayerSpec::input(3),
            registry.spec("plain", 4).unwrap(),
            LayerSpec::dense(2),
        ]
    };
    let data = regression(12, 10);
    let mut exp = Experiment::new(Regressor::build(specs(), ModelOptions::default()).unwrap())
        .save_progress(&path, SaveEvery::Iterations(2))
        .unwrap();
    exp.train(
        &data,
        Data::None,
        "rmsprop",
        &["max_updates=2", "learning_rate=0.01"],
    )
    .unwrap();
    assert!(path.exists());
    // Overwrite with the model as it ended (the run's snapshot holds the last iteration's
    // parameters, which need not be the best the run restored).
    exp.save_snapshot(&path).unwrap();
    let trained = bits(exp.network());
    let without = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap())
        .save_progress(&path, SaveEvery::Iterations(2));
    assert!(file_problem(without, &path).contains("not registered"));
    let back = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap())
        .with_registry(registry.clone())
        .save_progress(&path, SaveEvery::Iterations(2))
        .unwrap();
    assert_eq!(bits(back.network()), trained);
    let kind = Experiment::new(Classifier::new(&[3, 2]).unwrap())
        .with_registry(registry.clone())
        .save_progress(&path, SaveEvery::Iterations(2));
    assert!(file_problem(kind, &path).contains("not a Classifier"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_snapshot_is_never_replaced_by_one_with_parameters_that_are_not_finite() {
    let dir = scratch("finite");
    let path = dir.join("r.snapshot");
    let data = regression(12, 11);
    let mut exp = Experiment::new(Regressor::new(&[3, 4, 2]).unwrap())
        .save_progress(&path, SaveEvery::Iterations(1))
        .unwrap();
    exp.train(&data, Data::None, "sgd", &["max_updates=2"])
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let w = exp.network().find("hid1", "w").unwrap();
    let mut bad = w.value();
    bad.data_mut()[3] = f32::NAN;
    w.set(bad).unwrap();
    let err = exp.save_snapshot(&path).unwrap_err();
    assert!(err.to_string().contains("hid1.w"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Training from there diverges: the loop reports it and the snapshot stays.
    let result = exp.train(&data, Data::None, "sgd", &["max_updates=2"]);
    assert!(result.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A small snapshot with a run in it.
fn small_snapshot(dir: &Path) -> (Vec<u8>, PathBuf) {
    let path = dir.join("good.snapshot");
    let mut exp = Experiment::new(Regressor::new(&[2, 2, 1]).unwrap())
        .save_progress(&path, SaveEvery::Iterations(1))
        .unwrap();
    let data = vec![normal(&[4, 2], 1), normal(&[4, 1], 2)];
    exp.train(&data, Data::None, "adam", &["max_updates=1"])
        .unwrap();
    (std::fs::read(&path).unwrap(), dir.join("damaged.snapshot"))
}

fn open(path: &Path) -> nets::Result<Experiment<Regressor>> {
    Experiment::new(Regressor::new(&[2, 2, 1]).unwrap())
        .save_progress(path, SaveEvery::Iterations(1))
}

#[test]
fn a_snapshot_truncated_at_every_byte_is_a_file_error() {
    let dir = scratch("truncated");
    let (good, path) = small_snapshot(&dir);
    assert!(open(&dir.join("good.snapshot")).is_ok());
    std::fs::write(&path, &good).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for cut in (0..good.len()).rev() {
        file.set_len(cut as u64).unwrap();
        assert!(!file_problem(open(&path), &path).is_empty());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bit_flips_in_a_snapshot_give_a_file_error_or_a_usable_experiment() {
    let dir = scratch("flips");
    let (good, path) = small_snapshot(&dir);
    let data = vec![normal(&[4, 2], 1), normal(&[4, 1], 2)];
    let mut rng = Rng::new(7);
    let (mut refused, mut loaded) = (0, 0);
    for _ in 0..200 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(good.len());
            bad[i] ^= 1 << rng.below(8);
        }
        std::fs::write(&path, &bad).unwrap();
        match open(&path) {
            Err(Error::File { path: p, .. }) => {
                assert_eq!(p, path);
                refused += 1;
            }
            Err(e) => panic!("a damaged snapshot gave a non-file error: {e:?}"),
            Ok(mut exp) => {
                // A run state that no longer fits the call is a file error too; any other
                // outcome (a diverged loss from flipped values) is an ordinary result.
                if let Err(Error::File { path: p, .. }) =
                    exp.train(&data, Data::None, "adam", &["max_updates=2"])
                {
                    assert_eq!(p, path);
                }
                loaded += 1;
            }
        }
    }
    assert!(
        refused > 50 && loaded > 0,
        "{refused} refused, {loaded} loaded"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn foreign_newer_huge_and_junk_snapshots_say_what_is_wrong() {
    let dir = scratch("foreign");
    let path = dir.join("x.snapshot");
    Regressor::new(&[2, 2, 1]).unwrap().save(&path).unwrap();
    let problem = file_problem(open(&path), &path);
    assert!(
        problem.contains("`theanets-rs model`") && problem.contains("`theanets-rs snapshot`"),
        "{problem}"
    );

    let (good, _) = small_snapshot(&dir);
    let v = good.windows(7).position(|w| w == b"version").unwrap() + 7;
    let mut newer = good.clone();
    assert_eq!(newer[v], 1);
    newer[v] = 2;
    std::fs::write(&path, &newer).unwrap();
    assert!(file_problem(open(&path), &path).contains("snapshot version 2 is newer"));

    // The payload's length field claims 4 GiB; then the model inside claims as much.
    let mut huge = common::envelope("theanets-rs snapshot", b"abc");
    let n = huge.len();
    huge[n - 7..n - 3].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(file_problem(open(&path), &path).contains("declares 4294967295 bytes"));
    let mut doc = vec![0x82, 0xa5];
    doc.extend(b"model");
    doc.push(0xc6);
    doc.extend(u32::MAX.to_be_bytes());
    doc.extend(b"abc");
    std::fs::write(&path, common::envelope("theanets-rs snapshot", &doc)).unwrap();
    let problem = file_problem(open(&path), &path);
    assert!(
        problem.contains("the snapshot is damaged")
            && problem.contains("declares 4294967295 bytes"),
        "{problem}"
    );

    for junk in [&b""[..], b"not msgpack at all", b"\xc1"] {
        std::fs::write(&path, junk).unwrap();
        let problem = file_problem(open(&path), &path);
        assert!(
            problem.starts_with("not a theanets-rs snapshot file"),
            "{problem}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
