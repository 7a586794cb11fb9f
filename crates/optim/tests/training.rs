//! The training loop: convergence on Rosenbrock, progress of every rule on a matrix factorisation,
//! validation/patience/restore rules, divergence handling, ESGD's Hessian-vector products, and the
//! configuration errors.

use optim::options::configure;
use optim::{Algorithm, Dataset, DatasetOptions, Error, LoopOptions, RuleOptions, Trainer};
use tape::testing::normal_from;
use tape::{grad, Expr, Function, Param, Rng, Tensor};

fn one_batch(name: &str, arrays: Vec<Tensor>) -> Dataset {
    Dataset::new(
        name,
        arrays,
        DatasetOptions {
            batch_size: 0,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn nag_solves_rosenbrock_from_minus_three() {
    let x = Param::new("x", Tensor::vector(&[-3.0, -3.0]));
    let (a, b) = (x.expr().slice(0, 0, 1), x.expr().slice(0, 1, 1));
    let loss = ((&b - &a.square()).square() * 100.0 + (1.0 - &a).square()).sum();
    // Rosenbrock has no data: the dataset is a single dummy row that the graph ignores.
    let dummy = Expr::input("dummy", 2);
    let mut data = one_batch("rosenbrock", vec![Tensor::zeros(&[1, 1])]);
    let mut rule = RuleOptions::new(Algorithm::Nag);
    rule.learning_rate = 1e-3;
    rule.momentum = 0.9;
    rule.max_gradient_norm = 1.0;
    let lp = LoopOptions {
        validate_every: 100,
        patience: 1000,
        max_updates: Some(30_000),
        ..Default::default()
    };
    let mut trainer =
        Trainer::new(&loss, std::slice::from_ref(&x), &[dummy], &[], rule, lp).unwrap();
    trainer.train(&mut data, None).unwrap();
    let v = x.value();
    assert!(
        (v.data()[0] - 1.0).abs() < 1e-2 && (v.data()[1] - 1.0).abs() < 1e-2,
        "ended at {:?}",
        v.data()
    );
}

fn factorisation() -> (Expr, Vec<Param>, Vec<Expr>, Dataset) {
    let mut rng = Rng::new(11);
    let mut draw = |shape: &[usize], std: f32| normal_from(&mut rng, shape, std);
    let (a, b) = (draw(&[40, 4], 1.0), draw(&[4, 12], 1.0));
    let target = Function::compile(&[], &[Expr::constant(a).matmul(&Expr::constant(b))])
        .unwrap()
        .call(&[])
        .unwrap()
        .remove(0);
    let u = Param::new("u", draw(&[40, 4], 0.3));
    let v = Param::new("v", draw(&[4, 12], 0.3));
    let x = Expr::input("x", 2);
    let rows = Expr::input("rows", 2); // one-hot row selectors: a minibatch picks rows of u
    let err = &x - &rows.matmul(&u.expr()).matmul(&v.expr());
    let loss = (&err * &err).mean();
    let eye = Tensor::from_fn(&[40, 40], |i| if i[0] == i[1] { 1.0 } else { 0.0 });
    let data = Dataset::new(
        "factor",
        vec![target, eye],
        DatasetOptions {
            batch_size: 10,
            ..Default::default()
        },
    )
    .unwrap();
    (loss, vec![u, v], vec![x, rows], data)
}

#[test]
fn every_rule_makes_progress_on_a_matrix_factorisation() {
    for alg in Algorithm::ALL {
        let (loss, params, inputs, mut data) = factorisation();
        let mut rule = RuleOptions::new(alg);
        rule.learning_rate = match alg {
            Algorithm::Sgd => 0.5,
            Algorithm::Nag | Algorithm::Esgd => 0.05,
            Algorithm::AdaGrad => 0.1,
            _ => 0.01,
        };
        if alg == Algorithm::AdaDelta {
            // ADADELTA has no learning rate; a larger ε makes its first steps larger.
            rule.rms_regularizer = 1e-4;
        }
        if alg == Algorithm::Nag {
            rule.momentum = 0.9;
        }
        let lp = LoopOptions {
            validate_every: 1000,
            max_updates: Some(60),
            ..Default::default()
        };
        let mut trainer = Trainer::new(&loss, &params, &inputs, &[], rule, lp).unwrap();
        let before = trainer.evaluate(&mut data).unwrap().loss();
        let mut last = before;
        for step in trainer.iterate(&mut data, None) {
            last = step.unwrap().0.loss();
        }
        assert!(last < 0.5 * before, "{alg}: loss {before} → {last}");
    }
}

/// w is pulled towards 5 by the training set while the validation set wants 0.
fn tug_of_war(lp: LoopOptions) -> (Trainer, Param, Dataset, Dataset) {
    let w = Param::new("w", Tensor::vector(&[0.0]));
    let y = Expr::input("y", 1);
    let loss = (&w.expr() - &y).square().mean();
    let monitor = ("w".to_string(), w.expr().sum());
    let mut rule = RuleOptions::new(Algorithm::Sgd);
    rule.learning_rate = 0.1;
    let trainer =
        Trainer::new(&loss, std::slice::from_ref(&w), &[y], &[monitor], rule, lp).unwrap();
    let train = one_batch("train", vec![Tensor::vector(&[5.0; 4])]);
    let valid = one_batch("valid", vec![Tensor::vector(&[0.0; 4])]);
    (trainer, w, train, valid)
}

#[test]
fn validation_patience_and_restoring_the_best_parameters() {
    let lp = LoopOptions {
        validate_every: 3,
        patience: 2,
        ..Default::default()
    };
    let (mut trainer, w, mut train, mut valid) = tug_of_war(lp);
    let items: Vec<_> = trainer
        .iterate(&mut train, Some(&mut valid))
        .map(Result::unwrap)
        .collect();
    // Validations at iterations 0, 3, 6, 9: the first is the best; patience 2 is exhausted at the
    // fourth, before iteration 10 runs, so 9 iterations are yielded.
    assert_eq!(items.len(), 9);
    // The yielded validation is the most recent one, identical until the next.
    assert_eq!(items[0].1, items[2].1);
    assert_ne!(items[2].1, items[3].1);
    assert_eq!(items[0].1.loss(), 0.0);
    assert_eq!(
        items[0].0.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        vec!["loss", "w"]
    );
    // Training moved w towards 5, but the loop restored the best (initial) value at the end.
    assert!(items[8].0.get("w").unwrap() > 1.0);
    assert_eq!(w.value().data(), &[0.0]);
}

#[test]
fn max_updates_and_min_improvement() {
    let lp = LoopOptions {
        validate_every: 1,
        patience: 100,
        max_updates: Some(4),
        ..Default::default()
    };
    let (mut trainer, _, mut train, _) = tug_of_war(lp);
    assert_eq!(trainer.iterate(&mut train, None).count(), 4);
    // Validating on the training set itself every iteration: it improves by less than 90% each
    // time, so with min_improvement 0.9 and patience 1 the loop stops after 2 iterations.
    let lp = LoopOptions {
        validate_every: 1,
        patience: 1,
        min_improvement: 0.9,
        ..Default::default()
    };
    let (mut trainer, _, mut train, _) = tug_of_war(lp);
    assert_eq!(trainer.iterate(&mut train, None).count(), 2);
}

#[test]
fn a_diverging_loss_stops_with_an_error_and_restores_the_best() {
    let w = Param::new("w", Tensor::vector(&[1.0]));
    let x = Expr::input("x", 1);
    // Gradient descent on −(w·x)² runs away to −∞.
    let loss = -(&w.expr() * &x).square().mean();
    let mut rule = RuleOptions::new(Algorithm::Sgd);
    rule.learning_rate = 10.0;
    let lp = LoopOptions {
        validate_every: 100,
        ..Default::default()
    };
    let mut trainer = Trainer::new(&loss, std::slice::from_ref(&w), &[x], &[], rule, lp).unwrap();
    let mut data = one_batch("x", vec![Tensor::vector(&[-1.0, -2.0])]);
    let results: Vec<_> = trainer.iterate(&mut data, None).collect();
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, Error::Diverged { .. }), "{err:?}");
    assert!(err.to_string().contains("iteration"), "{err}");
    assert_eq!(
        w.value().data(),
        &[1.0],
        "best (initial) parameters restored"
    );
}

#[test]
fn esgd_hessian_vector_products_match_finite_differences() {
    let (loss, params, inputs, mut data) = factorisation();
    let rule = RuleOptions::new(Algorithm::Esgd);
    let mut trainer =
        Trainer::new(&loss, &params, &inputs, &[], rule, LoopOptions::default()).unwrap();
    let mut rng = Rng::new(2);
    let probes: Vec<Tensor> = params
        .iter()
        .map(|p| normal_from(&mut rng, &p.shape(), 1.0))
        .collect();
    let batch: Vec<Tensor> = data
        .next_batch()
        .unwrap()
        .iter()
        .map(|v| v.to_tensor())
        .collect();
    let views: Vec<_> = batch.iter().map(Tensor::view).collect();
    let hv = trainer.hessian_vector(&views, &probes).unwrap();

    let exprs: Vec<Expr> = params.iter().map(Param::expr).collect();
    let mut gfn = Function::compile(&inputs, &grad(&loss, &exprs).unwrap()).unwrap();
    let originals: Vec<Tensor> = params.iter().map(Param::value).collect();
    let h = 1e-2f32;
    let mut shifted = |sign: f32| {
        for ((p, w), v) in params.iter().zip(&originals).zip(&probes) {
            let moved: Vec<f32> = w
                .data()
                .iter()
                .zip(v.data())
                .map(|(a, b)| a + sign * h * b)
                .collect();
            p.set(Tensor::new(w.shape(), moved).unwrap()).unwrap();
        }
        gfn.call(&batch.iter().collect::<Vec<_>>()).unwrap()
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    for (k, hv) in hv.iter().enumerate() {
        for i in 0..hv.len() {
            let numeric = (plus[k].data()[i] - minus[k].data()[i]) / (2.0 * h);
            let analytic = hv.data()[i];
            assert!(
                (analytic - numeric).abs() <= 1e-3 + 2e-2 * analytic.abs().max(numeric.abs()),
                "Hv[{k}][{i}] {analytic} vs {numeric}"
            );
        }
    }
}

#[test]
fn configuration_is_typed_and_strict() {
    assert_eq!("RmsProp".parse::<Algorithm>().unwrap(), Algorithm::RmsProp);
    let e = "rms_prop".parse::<Algorithm>().unwrap_err().to_string();
    assert!(
        e.contains("sgd, nag, rprop, rmsprop, adagrad, adadelta, esgd, adam"),
        "{e}"
    );
    let d = RuleOptions::new(Algorithm::Adam);
    assert_eq!(
        (
            d.learning_rate,
            d.momentum,
            d.nesterov,
            d.beta1_halflife,
            d.beta2_halflife,
            d.rms_regularizer
        ),
        (1e-4, 0.0, false, 7.0, 69.0, 1e-8)
    );
    assert!(RuleOptions::new(Algorithm::Nag).nesterov);
    let r = RuleOptions::new(Algorithm::Rprop);
    assert_eq!(
        (
            r.rprop_increase,
            r.rprop_decrease,
            r.rprop_min_step,
            r.rprop_max_step
        ),
        (1.01, 0.99, 0.0, 100.0)
    );
    assert_eq!(
        LoopOptions::default(),
        LoopOptions {
            validate_every: 10,
            patience: 5,
            min_improvement: 0.0,
            max_updates: None,
            monitor_gradients: false,
            seed: 0
        }
    );

    let (mut rule, mut lp) = (RuleOptions::new(Algorithm::Sgd), LoopOptions::default());
    configure(
        &mut rule,
        &mut lp,
        ["learning_rate=0.5", "momentum = 0.9", "max_updates=7"],
    )
    .unwrap();
    assert_eq!(
        (rule.learning_rate, rule.momentum, lp.max_updates),
        (0.5, 0.9, Some(7))
    );
    for (bad, fragment) in [
        ("learning_rat=0.1", "did you mean `learning_rate`"),
        ("momentun=0.1", "did you mean `momentum`"),
        ("learning_rate=-1", "must be a finite number ≥ 0"),
        ("momentum=1", "in [0, 1)"),
        ("rms_halflife=0", "> 0"),
        ("beta1_halflife=-3", "> 0"),
        ("learning_rate=fast", "not a number"),
        ("patience", "expected key=value"),
        ("validate_every=0", "at least 1"),
    ] {
        let e = configure(&mut rule, &mut lp, [bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains(fragment), "{bad}: {e}");
    }
    let mut nag = RuleOptions::new(Algorithm::Nag);
    assert!(nag.set("nesterov", "false").is_err());
}

#[test]
fn monitor_gradients_reports_squared_norms() {
    let w = Param::new("w", Tensor::vector(&[1.0, 2.0]));
    let loss = (w.expr().square() * 0.5).sum();
    let dummy = Expr::input("d", 2);
    let lp = LoopOptions {
        monitor_gradients: true,
        max_updates: Some(1),
        ..Default::default()
    };
    let mut trainer = Trainer::new(
        &loss,
        &[w],
        &[dummy],
        &[],
        RuleOptions::new(Algorithm::Sgd),
        lp,
    )
    .unwrap();
    let mut data = one_batch("d", vec![Tensor::zeros(&[1, 1])]);
    let (train, _) = trainer.train(&mut data, None).unwrap();
    assert_eq!(train.get("grad(w)"), Some(5.0)); // g = w, Σ g² = 1 + 4
}

/// w is pulled towards 5 by the training set and the validation set agrees, so every iteration
/// improves the validation loss.
fn downhill_all_the_way(lp: LoopOptions) -> (Trainer, Param, Dataset, Dataset) {
    let (trainer, w, train, _) = tug_of_war(lp);
    let valid = one_batch("valid", vec![Tensor::vector(&[5.0; 4])]);
    (trainer, w, train, valid)
}

/// w after `n` SGD steps of rate 0.1 on (w − 5)² from 0: w ← w + 0.2·(5 − w).
fn w_after(n: usize) -> f32 {
    (0..n).fold(0.0f64, |w, _| w + 0.2 * (5.0 - w)) as f32
}

#[test]
fn max_updates_validates_the_last_iterations() {
    let lp = LoopOptions {
        validate_every: 3,
        patience: 100,
        max_updates: Some(4),
        ..Default::default()
    };
    let (mut trainer, w, mut train, mut valid) = downhill_all_the_way(lp);
    let (t, v) = trainer.train(&mut train, Some(&mut valid)).unwrap();
    // Validations ran at iterations 0 and 3, and once more at 4 when max_updates ended the loop:
    // iteration 4 is the best, so its parameters stay.
    let best = trainer.best().unwrap();
    assert_eq!(best.iteration, 4);
    assert!(
        (w.value().data()[0] - w_after(4)).abs() < 1e-6,
        "{:?}",
        w.value()
    );
    assert!((v.loss() - (5.0 - w_after(4)).powi(2)).abs() < 1e-4, "{v}");
    // The training monitors returned are those of the iteration that ended at the best
    // validation: the mean loss of the 4th step, taken before its update.
    assert!((t.loss() - (5.0 - w_after(3)).powi(2)).abs() < 1e-4, "{t}");
}

#[test]
fn breaking_out_early_leaves_the_best_parameters() {
    // The validation set wants 0, so the initial w is the best; training moves w away.
    let lp = LoopOptions {
        validate_every: 1,
        patience: 100,
        ..Default::default()
    };
    let (mut trainer, w, mut train, mut valid) = tug_of_war(lp);
    for (i, step) in trainer.iterate(&mut train, Some(&mut valid)).enumerate() {
        step.unwrap();
        if i == 2 {
            assert!(w.value().data()[0] > 1.0);
            break;
        }
    }
    assert_eq!(w.value().data(), &[0.0]);

    // `finish` validates the iterations since the last validation before restoring.
    let lp = LoopOptions {
        validate_every: 10,
        patience: 100,
        ..Default::default()
    };
    let (mut trainer, w, mut train, mut valid) = downhill_all_the_way(lp);
    let mut it = trainer.iterate(&mut train, Some(&mut valid));
    for _ in 0..3 {
        it.next().unwrap().unwrap();
    }
    let best = it.finish().unwrap().unwrap();
    assert_eq!(best.iteration, 3);
    assert!((w.value().data()[0] - w_after(3)).abs() < 1e-6);
}

#[test]
fn train_returns_the_best_validation() {
    let lp = LoopOptions {
        validate_every: 2,
        patience: 2,
        ..Default::default()
    };
    let (mut trainer, w, mut train, mut valid) = tug_of_war(lp);
    let (t, v) = trainer.train(&mut train, Some(&mut valid)).unwrap();
    // The best validation is the first (w = 0, before any update): loss 0, no training yet.
    assert_eq!(v.loss(), 0.0);
    assert_eq!(v.get("w"), Some(0.0));
    assert!(t.0.is_empty());
    assert_eq!(trainer.best().unwrap().iteration, 0);
    assert_eq!(w.value().data(), &[0.0]);
}

#[test]
fn monitors_are_means_over_rows_not_over_batches() {
    // Five rows cut into batches of 4 and 1; the loss of w = 0 is 0 on the first four rows and
    // 100 on the last, so the mean over rows is 20 (a mean of batch means would say 50).
    let w = Param::new("w", Tensor::vector(&[0.0]));
    let y = Expr::input("y", 1);
    let loss = (&w.expr() - &y).square().mean();
    let mut rule = RuleOptions::new(Algorithm::Sgd);
    rule.learning_rate = 0.0;
    let lp = LoopOptions {
        max_updates: Some(1),
        ..Default::default()
    };
    let mut trainer = Trainer::new(&loss, &[w], &[y], &[], rule, lp).unwrap();
    let options = DatasetOptions {
        batch_size: 4,
        ..Default::default()
    };
    let mut data = Dataset::new(
        "five",
        vec![Tensor::vector(&[0., 0., 0., 0., 10.])],
        options,
    )
    .unwrap();
    assert_eq!(trainer.evaluate(&mut data).unwrap().loss(), 20.0);
    let (t, _) = trainer.iterate(&mut data, None).next().unwrap().unwrap();
    assert_eq!(t.loss(), 20.0);
}

#[test]
fn validation_can_use_its_own_graph() {
    let lp = LoopOptions {
        validate_every: 1,
        max_updates: Some(2),
        ..Default::default()
    };
    let (mut trainer, w, mut train, mut valid) = tug_of_war(lp);
    // A validation graph that reads the same parameter but scores it twice as hard.
    let y = Expr::input("y", 1);
    let double = (&w.expr() - &y).square().mean() * 2.0;
    let monitor = ("w".to_string(), w.expr().sum());
    trainer
        .validate_with(
            std::slice::from_ref(&y),
            &double,
            std::slice::from_ref(&monitor),
        )
        .unwrap();
    let train_set = one_batch("t", vec![Tensor::vector(&[5.0; 4])]);
    let mut check = train_set;
    assert_eq!(trainer.evaluate(&mut check).unwrap().loss(), 50.0);
    trainer.train(&mut train, Some(&mut valid)).unwrap();
    // Monitors must line up with the training graph's.
    let err = trainer
        .validate_with(&[y], &double, &[("v".to_string(), w.expr().sum())])
        .unwrap_err();
    assert!(err.to_string().contains("monitors"), "{err}");
}

#[test]
fn booleans_and_limits_parse_one_way() {
    let mut lp = LoopOptions::default();
    for (text, want) in [
        ("on", true),
        ("True", true),
        ("YES", true),
        ("1", true),
        ("off", false),
        ("False", false),
        ("no", false),
        ("0", false),
    ] {
        lp.set("monitor_gradients", text).unwrap();
        assert_eq!(lp.monitor_gradients, want, "{text}");
        let mut rule = RuleOptions::new(Algorithm::Sgd);
        rule.set("nesterov", text).unwrap();
        assert_eq!(rule.nesterov, want, "{text}");
    }
    for bad in ["maybe", "", "tru"] {
        let e = lp.set("monitor_gradients", bad).unwrap_err().to_string();
        assert!(e.contains("not a boolean"), "{bad}: {e}");
        let mut rule = RuleOptions::new(Algorithm::Sgd);
        assert!(rule.set("nesterov", bad).is_err(), "{bad}");
    }
    lp.set("max_updates", "12").unwrap();
    assert_eq!(lp.max_updates, Some(12));
    for unlimited in ["none", "Unlimited"] {
        lp.set("max_updates", "12").unwrap();
        lp.set("max_updates", unlimited).unwrap();
        assert_eq!(lp.max_updates, None, "{unlimited}");
    }
    lp.set("max_updates", "12").unwrap();
    let e = lp.set("max_updates", "0").unwrap_err().to_string();
    assert!(e.contains("max_updates=none"), "{e}");
    assert!(lp.set("max_updates", "").is_err());
    // A refused value leaves the option as it was.
    assert_eq!(lp.max_updates, Some(12));
    assert!(lp.set("validate_every", "0").is_err());
    assert_eq!(lp.validate_every, 10);
}

#[test]
fn every_option_refuses_a_bad_value_and_changes_nothing() {
    for alg in Algorithm::ALL {
        let mut rule = RuleOptions::new(alg);
        rule.set("learning_rate", "0.25").unwrap();
        let before = rule.clone();
        for spec in RuleOptions::TABLE {
            for bad in ["garbage", "-1", "NaN", "inf", ""] {
                // Some keys take some of these (e.g. -1 is no boolean, but inf is no rate).
                let mut probe = rule.clone();
                if probe.set(spec.key, bad).is_ok() {
                    continue;
                }
                let e = rule.set(spec.key, bad).unwrap_err().to_string();
                assert!(e.contains(spec.key), "{}={bad}: {e}", spec.key);
                assert_eq!(rule, before, "{}={bad} changed the options", spec.key);
            }
            // What `get` prints, `set` reads back unchanged.
            let text = (spec.get)(&rule);
            rule.set(spec.key, &text).unwrap();
            assert_eq!(
                rule, before,
                "{} does not round-trip through `{text}`",
                spec.key
            );
        }
        // The garbage value is refused by every key.
        for spec in RuleOptions::TABLE {
            assert!(
                rule.clone().set(spec.key, "garbage").is_err(),
                "{}",
                spec.key
            );
        }
    }
    let mut lp = LoopOptions {
        patience: 3,
        ..Default::default()
    };
    let before = lp.clone();
    for spec in LoopOptions::TABLE {
        for bad in ["garbage", "-1", "1.5x"] {
            assert!(lp.set(spec.key, bad).is_err(), "{}={bad}", spec.key);
            assert_eq!(lp, before, "{}={bad} changed the options", spec.key);
        }
        let text = (spec.get)(&lp);
        lp.set(spec.key, &text).unwrap();
        assert_eq!(
            lp, before,
            "{} does not round-trip through `{text}`",
            spec.key
        );
    }
}

#[test]
fn typed_options_are_checked_by_the_same_rules() {
    let mut rule = RuleOptions::new(Algorithm::Rprop);
    rule.momentum = 1.0;
    assert!(rule
        .validate()
        .unwrap_err()
        .to_string()
        .contains("in [0, 1)"));
    rule.momentum = 0.5;
    rule.rprop_min_step = 2.0;
    rule.rprop_max_step = 1.0;
    assert!(rule
        .validate()
        .unwrap_err()
        .to_string()
        .contains("rprop_min_step"));
    let lp = LoopOptions {
        validate_every: 0,
        ..Default::default()
    };
    let w = Param::new("w", Tensor::vector(&[0.0]));
    let e = Trainer::new(
        &w.expr().sum(),
        &[w],
        &[Expr::input("d", 1)],
        &[],
        RuleOptions::new(Algorithm::Sgd),
        lp,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("validate_every") && e.contains("at least 1"),
        "{e}"
    );
}

#[test]
fn the_tables_state_the_true_defaults() {
    let defaults = RuleOptions::new(Algorithm::Sgd);
    for spec in RuleOptions::TABLE {
        let mut o = defaults.clone();
        o.set(spec.key, spec.default).unwrap();
        assert_eq!(o, defaults, "{} default `{}`", spec.key, spec.default);
    }
    let defaults = LoopOptions::default();
    for spec in LoopOptions::TABLE {
        let mut o = defaults.clone();
        o.set(spec.key, spec.default).unwrap();
        assert_eq!(o, defaults, "{} default `{}`", spec.key, spec.default);
    }
}

/// The loop state, rule state, random streams and dataset cursor of a trainer stopped halfway
/// continue, in a newly built trainer, exactly as the uninterrupted run (ESGD: its probe
/// vectors come from the loop's stream).
#[test]
fn a_run_continues_in_a_new_trainer_from_its_saved_state() {
    for algorithm in [Algorithm::Esgd, Algorithm::Adam] {
        let run = |stop_at: Option<usize>| {
            let (loss, params, inputs, mut data) = factorisation();
            let mut rule = RuleOptions::new(algorithm);
            rule.learning_rate = 0.01;
            let lp = LoopOptions {
                validate_every: 3,
                patience: 100,
                max_updates: Some(8),
                ..Default::default()
            };
            let build = || Trainer::new(&loss, &params, &inputs, &[], rule.clone(), lp.clone());
            let mut trainer = build().unwrap();
            trainer.begin();
            let mut items = Vec::new();
            if let Some(n) = stop_at {
                for _ in 0..n {
                    items.push(trainer.advance(&mut data, None).unwrap().unwrap());
                }
                let (state, rngs, rules) = (
                    trainer.loop_state(),
                    trainer.rng_states(),
                    trainer.rule_state().clone(),
                );
                let cursor = data.state();
                // Drop all of it: a new trainer and a new dataset built the same way.
                drop(trainer);
                let (_, _, _, fresh) = factorisation();
                data = fresh;
                data.set_state(cursor).unwrap();
                trainer = build().unwrap();
                trainer.set_loop_state(state).unwrap();
                trainer.set_rng_states(&rngs).unwrap();
                trainer.set_rule_state(rules).unwrap();
            }
            while let Some(item) = trainer.advance(&mut data, None) {
                items.push(item.unwrap());
            }
            let values: Vec<Vec<u32>> = params
                .iter()
                .map(|p| p.value().data().iter().map(|v| v.to_bits()).collect())
                .collect();
            (items, values, trainer.best().cloned())
        };
        let whole = run(None);
        assert_eq!(whole.0.len(), 8);
        assert_eq!(run(Some(4)), whole, "{algorithm:?}");
    }
}

#[test]
fn a_saved_state_that_does_not_fit_is_refused() {
    let (loss, params, inputs, _) = factorisation();
    let mut t = Trainer::new(
        &loss,
        &params,
        &inputs,
        &[],
        RuleOptions::new(Algorithm::Sgd),
        LoopOptions::default(),
    )
    .unwrap();
    let mut state = t.loop_state();
    state.best_params = vec![vec![0.0; 3]];
    let err = t.set_loop_state(state).unwrap_err();
    assert!(err.to_string().contains("sizes [3]"), "{err}");
    let mut rngs = t.rng_states();
    rngs.step.push([1, 2, 3, 4]);
    assert!(t.set_rng_states(&rngs).is_err());
}

/// Issue 12 item 15: a parameter the loss does not use was reported at a line inside the
/// standard library (where the trainer's parameter list was mapped); the error names it.
#[test]
fn an_unused_parameter_is_named_without_a_source_path() {
    let x = Expr::input_with_dims("x", &[None, Some(2)]);
    let w = Param::new("w", Tensor::zeros(&[2, 1]));
    let lonely = Param::new("lonely", Tensor::zeros(&[1]));
    let loss = x.matmul(&w.expr()).mean();
    let rule = RuleOptions::new(Algorithm::Sgd);
    let e = Trainer::new(&loss, &[w, lonely], &[x], &[], rule, LoopOptions::default())
        .err()
        .expect("`lonely` is not used by the loss");
    let text = e.to_string();
    assert!(text.contains("parameter `lonely`"), "{text}");
    assert!(!text.contains(".rs"), "{text}");
}

/// A batch check's row is reported where the user can find it: through the shuffle for arrays,
/// by call for a callable, and within the batch for a direct `step`.
#[test]
fn batch_checks_locate_the_bad_row() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::zeros(&[1, 1]));
    let loss = x.matmul(&w.expr()).square().mean();
    let lp = LoopOptions {
        max_updates: Some(5),
        ..Default::default()
    };
    let rule = RuleOptions::new(Algorithm::Sgd);
    let mut trainer = Trainer::new(&loss, &[w], &[x], &[], rule, lp).unwrap();
    trainer.check_batches_with(
        |batch| match batch[0].data().iter().position(|&v| v < 0.0) {
            Some(row) => Err(optim::RowProblem {
                row,
                problem: "negative".into(),
            }),
            None => Ok(()),
        },
    );
    // Validation sees the arrays in their natural order.
    let xs = Tensor::new(&[5, 1], vec![1.0, 2.0, 3.0, -4.0, 5.0]).unwrap();
    let options = DatasetOptions {
        batch_size: 2,
        ..Default::default()
    };
    let mut data = Dataset::new("d", vec![xs], options.clone()).unwrap();
    let e = trainer.train(&mut data, None).unwrap_err();
    assert_eq!(e.root().to_string(), "dataset `d`: row 3: negative");

    // A callable's third call returns the bad row second.
    let mut calls = 0;
    let mut data = Dataset::from_fn(
        "gen",
        move || {
            calls += 1;
            let bad = if calls == 3 { -1.0 } else { 1.0 };
            vec![Tensor::new(&[2, 1], vec![1.0, bad]).unwrap()]
        },
        DatasetOptions {
            iteration_size: Some(2),
            ..options
        },
    )
    .unwrap();
    let mut valid = one_batch("v", vec![Tensor::new(&[1, 1], vec![1.0]).unwrap()]);
    let e = trainer.train(&mut data, Some(&mut valid)).unwrap_err();
    assert_eq!(
        e.root().to_string(),
        "dataset `gen`: row 1 of call 3: negative"
    );

    let bad = Tensor::new(&[2, 1], vec![1.0, -1.0]).unwrap();
    let e = trainer.step(&[bad.view()]).unwrap_err();
    assert!(e.to_string().ends_with("row 1: negative"), "{e}");
}
