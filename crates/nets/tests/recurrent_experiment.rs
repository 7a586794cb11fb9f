//! Recurrent models in generic code: through [`Experiment`] (train, snapshot, resume, save and
//! load), as [`Model`]s (scores and metrics over real steps, against hand computations from
//! their predictions), and their glob monitors over real steps only.

mod common;

use nets::experiment::Owned;
use nets::recurrent::{Classifier, Regressor, SequenceOptions};
use nets::tape::{Rng, Tensor};
use nets::{Experiment, LayerSpec, Model, ModelOptions, Regularizers, SaveEvery};

/// Sequences of two features and a label per step: 1 when the previous step's first feature
/// was positive (0 at the first step), which only a model with memory can tell.
fn previous_sign(n: usize, time: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..n * time * 2)
        .map(|_| rng.uniform() * 2.0 - 1.0)
        .collect();
    let labels = (0..n * time)
        .map(|i| match i % time {
            0 => 0.0,
            _ => f32::from(u8::from(x[(i - 1) * 2] > 0.0)),
        })
        .collect();
    vec![
        Tensor::new(&[n, time, 2], x).unwrap(),
        Tensor::new(&[n, time], labels).unwrap(),
    ]
}

fn gru_classifier(seed: u64) -> Classifier {
    Classifier::build(
        vec![LayerSpec::input(2), LayerSpec::gru(8), LayerSpec::dense(2)],
        ModelOptions {
            seed,
            ..Default::default()
        },
        SequenceOptions::default(),
    )
    .unwrap()
}

fn bits(model: &Classifier) -> Vec<Vec<u32>> {
    model
        .params()
        .iter()
        .map(|p| p.value().data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// A recurrent classifier trained by an Experiment learns a task that needs memory; a run
/// interrupted after three iterations and resumed from its snapshot ends with the same
/// parameters bit for bit; the saved model loads back with the same predictions.
#[test]
fn a_recurrent_classifier_trains_and_resumes_through_experiment() {
    let dir = common::scratch("recurrent", "experiment");
    let train = previous_sign(128, 6, 1);
    let valid = previous_sign(64, 6, 2);
    let test = previous_sign(256, 6, 3);
    let opts = [
        "learning_rate=0.02",
        "max_updates=8",
        "batch_size=16",
        "patience=100",
    ];
    let model = gru_classifier(5);
    let before = model.score_on(&test).unwrap();
    let mut whole = Experiment::new(model);
    let all: Vec<_> = whole
        .itertrain(&train, &valid, "adam", &opts)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 8);
    let learned: &dyn Model = whole.model();
    let accuracy = learned.score_on(&test).unwrap();
    assert!(
        accuracy > 0.9 && accuracy > before + 0.2,
        "accuracy {before} before training, {accuracy} after"
    );

    let path = dir.join("run.snapshot");
    let mut first = Experiment::new(gru_classifier(5))
        .save_progress(&path, SaveEvery::Iterations(3))
        .unwrap();
    let half: Vec<_> = first
        .itertrain(&train, &valid, "adam", &opts)
        .unwrap()
        .take(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(half[..], all[..3]);
    drop(first);
    // Another seed: the model must come from the snapshot.
    let mut resumed = Experiment::new(gru_classifier(99))
        .save_progress(&path, SaveEvery::Iterations(3))
        .unwrap();
    let rest: Vec<_> = resumed
        .itertrain(&train, &valid, "adam", &opts)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rest[..], all[3..]);
    assert_eq!(bits(resumed.model()), bits(whole.model()));

    let file = dir.join("model.nets");
    whole.network().save(&file).unwrap();
    let loaded = Classifier::load(&file).unwrap();
    let x = &test[0];
    assert_eq!(
        loaded.predict_proba(x).unwrap().data(),
        whole.model().predict_proba(x).unwrap().data()
    );
    // A feedforward experiment refuses the recurrent snapshot, naming both.
    let e = Experiment::new(nets::Classifier::new(&[2, 2]).unwrap())
        .save_progress(&path, SaveEvery::Iterations(3))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("recurrent model") && e.contains("feedforward"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn masked_regressor(monitors: Vec<(String, Vec<f32>)>) -> Regressor {
    Regressor::build(
        vec![LayerSpec::input(2), LayerSpec::rnn(3), LayerSpec::dense(2)],
        ModelOptions {
            monitors,
            weighted: true,
            ..Default::default()
        },
        SequenceOptions { masked: true },
    )
    .unwrap()
}

fn uniform(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()).unwrap()
}

/// `[x, targets, weights, mask]` for two sequences of three steps, the second with one real
/// step only.
fn masked_data() -> Vec<Tensor> {
    vec![
        uniform(&[2, 3, 2], 11),
        uniform(&[2, 3, 2], 12),
        Tensor::new(&[2, 3], vec![1., 2., 1., 0.5, 1., 3.]).unwrap(),
        Tensor::new(&[2, 3], vec![1., 1., 1., 1., 0., 0.]).unwrap(),
    ]
}

/// A glob monitor on a sequence output is the fraction of values below the level over the real
/// steps: counted by hand from the predictions, with padding left out.
#[test]
fn glob_monitors_count_real_steps_only() {
    let level = 0.05;
    let net = masked_regressor(vec![("out:out".into(), vec![level])]);
    let data = masked_data();
    let (x, mask) = (&data[0], &data[3]);
    let p = net.predict_with(&[x, mask]).unwrap();
    let (mut below, mut count) = (0.0f64, 0.0f64);
    for (s, values) in p.data().chunks(2).enumerate() {
        if mask.data()[s] == 1.0 {
            below += values.iter().filter(|&&v| v < level).count() as f64;
            count += 2.0;
        }
    }
    let m = net.evaluate(&data, &Regularizers::default()).unwrap();
    let got = m.get(&format!("out:out<{level}")).unwrap();
    assert!(
        (f64::from(got) - below / count).abs() < 1e-6,
        "{got} vs {below}/{count}"
    );
    // The padding's outputs are all below the level (a zero state through a dense layer whose
    // bias is near zero), so counting them would change the fraction.
    let all = p.data().iter().filter(|&&v| v < level).count() as f64 / p.len() as f64;
    assert!(
        (all - below / count).abs() > 1e-3,
        "{all} vs {}",
        below / count
    );
}

/// The Model trait over real steps: R², MSE and MAE computed by hand from the predictions with
/// each step weighted by its weight times its mask; the loss is the model's loss.
#[test]
fn recurrent_models_are_models_scored_over_real_steps() {
    let net = masked_regressor(vec![]);
    let data = masked_data();
    let (x, y, w, mask) = (&data[0], &data[1], &data[2], &data[3]);
    let p = net.predict_with(&[x, mask]).unwrap();
    let step_w: Vec<f64> = (0..6)
        .map(|i| f64::from(w.data()[i] * mask.data()[i]))
        .collect();
    let (mut sw, mut swy) = (0.0, 0.0);
    for i in 0..12 {
        sw += step_w[i / 2];
        swy += step_w[i / 2] * f64::from(y.data()[i]);
    }
    let mean = swy / sw;
    let (mut res, mut tot, mut abs) = (0.0, 0.0, 0.0);
    for i in 0..12 {
        let d = f64::from(y.data()[i] - p.data()[i]);
        res += step_w[i / 2] * d * d;
        abs += step_w[i / 2] * d.abs();
        tot += step_w[i / 2] * (f64::from(y.data()[i]) - mean).powi(2);
    }
    let model: &dyn Model = &net;
    let metrics = model.metrics(&data).unwrap();
    let get = |k: &str| f64::from(metrics.iter().find(|(n, _)| *n == k).unwrap().1);
    assert!((get("r2") - (1.0 - res / tot)).abs() < 1e-5, "{metrics:?}");
    assert!((get("mse") - res / sw).abs() < 1e-5, "{metrics:?}");
    assert!((get("mae") - abs / sw).abs() < 1e-5, "{metrics:?}");
    assert_eq!(get("loss"), f64::from(net.loss_on(&data).unwrap()));
    assert_eq!(model.loss_on(&data).unwrap(), net.loss_on(&data).unwrap());
    assert_eq!(model.score_on(&data).unwrap(), metrics[0].1);
    // predict(x) alone does not fit a masked model: the error lists what it needs.
    let e = model.predict(x).unwrap_err().to_string();
    assert!(e.contains("[x, mask]"), "{e}");
    assert!(Regressor::expects_recurrent() == Some(true));
}
