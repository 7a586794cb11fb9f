//! The training loop: validation before the first step and every `validate_every` iterations,
//! early stopping by patience, the best parameters restored at the end, and an error (with the
//! best parameters restored) if the loss stops being finite.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::options::{LoopOptions, RuleOptions};
use crate::rules::{Rule, RuleState};
use smallvec::SmallVec;
use std::fmt;
use tape::{grad, Expr, Function, Param, Rng, Tensor, TensorView};

/// An ordered map of monitor names to values: `loss` first, then the caller's monitors in order,
/// then (optionally) `grad(name)` for each parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Monitors(pub Vec<(String, f32)>);

impl Monitors {
    /// The value of a monitor.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// The loss (NaN if absent).
    pub fn loss(&self) -> f32 {
        self.get("loss").unwrap_or(f32::NAN)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f32)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

impl fmt::Display for Monitors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{n}={v:.6}")?;
        }
        Ok(())
    }
}

/// Trains parameters to minimise a scalar loss expression with one update rule.
///
/// The compiled step function writes the loss, the monitors and every parameter's gradient into
/// its workspace; the rule then updates each parameter in place from those buffers.
///
/// ```
/// use optim::{Algorithm, Dataset, DatasetOptions, LoopOptions, RuleOptions, Trainer};
/// use tape::{Expr, Param, Tensor};
///
/// // Fit w so that x·w ≈ y on a tiny linear problem.
/// let x = Expr::input("x", 2);
/// let y = Expr::input("y", 2);
/// let w = Param::new("w", Tensor::zeros(&[2, 1]));
/// let err = &x.matmul(&w.expr()) - &y;
/// let loss = (&err * &err).mean();
/// let xs = Tensor::new(&[4, 2], vec![1., 0., 0., 1., 1., 1., 2., 1.])?;
/// let ys = Tensor::new(&[4, 1], vec![2., -1., 1., 3.])?;
/// let mut data = Dataset::new("train", vec![xs, ys], DatasetOptions { batch_size: 4, ..Default::default() })?;
///
/// let mut rule = RuleOptions::new(Algorithm::Nag);
/// rule.learning_rate = 0.1;
/// rule.momentum = 0.5;
/// let lp = LoopOptions { validate_every: 5, patience: 3, max_updates: Some(200), ..Default::default() };
/// let mut trainer = Trainer::new(&loss, &[w.clone()], &[x, y], &[], rule, lp)?;
/// for step in trainer.iterate(&mut data, None) {
///     let (train, valid) = step?;
///     assert!(train.loss().is_finite() && valid.loss().is_finite());
/// }
/// let fitted = w.value();
/// assert!((fitted.data()[0] - 2.0).abs() < 1e-2 && (fitted.data()[1] + 1.0).abs() < 1e-2);
/// # Ok::<(), optim::Error>(())
/// ```
pub struct Trainer {
    step_fn: Function,
    eval_fn: Function,
    params: Vec<Param>,
    rule: Rule,
    options: LoopOptions,
    names: Vec<String>,
    num_monitors: usize,
    rng: Rng,
    probes: Vec<Tensor>,
    sums: Vec<f64>,
    // Loop state.
    iteration: usize,
    validations: usize,
    best_loss: f32,
    best_validation: usize,
    best_params: Vec<Tensor>,
    last_valid: Monitors,
    done: bool,
}

impl Trainer {
    /// Compiles the training and evaluation functions for `loss` over `inputs` (the dataset's
    /// arrays, in order), training `params` with the rule, and reporting `monitors` by name.
    pub fn new(
        loss: &Expr,
        params: &[Param],
        inputs: &[Expr],
        monitors: &[(String, Expr)],
        rule: RuleOptions,
        options: LoopOptions,
    ) -> Result<Trainer> {
        if params.is_empty() {
            return Err(Error::Config {
                what: "trainer".into(),
                problem: "no parameters to train".into(),
            });
        }
        if options.validate_every == 0 {
            return Err(Error::Config {
                what: "option `validate_every`".into(),
                problem: "must be at least 1".into(),
            });
        }
        let exprs: Vec<Expr> = params.iter().map(Param::expr).collect();
        let grads = grad(loss, &exprs)?;
        let mut outputs = vec![loss.clone()];
        outputs.extend(monitors.iter().map(|(_, e)| e.clone()));
        let eval_fn = Function::compile(inputs, &outputs)?;
        outputs.extend(grads.iter().cloned());
        let mut step_inputs = inputs.to_vec();
        let sizes: Vec<usize> = params.iter().map(|p| p.read().len()).collect();
        let rule = Rule::new(rule, &sizes)?;
        let mut probes = Vec::new();
        if rule.needs_hv() {
            // Hv = ∂(Σ_p ⟨g_p, v_p⟩)/∂θ: an exact Hessian-vector product by differentiating twice.
            let vs: Vec<Expr> = params
                .iter()
                .map(|p| {
                    let dims: Vec<Option<usize>> = p.shape().iter().map(|&d| Some(d)).collect();
                    Expr::input_with_dims(&format!("esgd.probe.{}", p.name()), &dims)
                })
                .collect();
            let gv = grads
                .iter()
                .zip(&vs)
                .map(|(g, v)| g.dot(v))
                .reduce(|a, b| a + b)
                .expect("at least one parameter");
            outputs.extend(grad(&gv, &exprs)?);
            step_inputs.extend(vs);
            probes = params.iter().map(|p| Tensor::zeros(&p.shape())).collect();
        }
        let step_fn = Function::compile(&step_inputs, &outputs)?;
        let mut names = vec!["loss".to_string()];
        names.extend(monitors.iter().map(|(n, _)| n.clone()));
        if options.monitor_gradients {
            names.extend(params.iter().map(|p| format!("grad({})", p.name())));
        }
        let sums = vec![0.0; names.len()];
        Ok(Trainer {
            step_fn,
            eval_fn,
            params: params.to_vec(),
            rule,
            rng: Rng::from_name(options.seed, "optim.esgd"),
            options,
            names,
            num_monitors: monitors.len(),
            probes,
            sums,
            iteration: 0,
            validations: 0,
            best_loss: f32::INFINITY,
            best_validation: 0,
            best_params: Vec::new(),
            last_valid: Monitors::default(),
            done: false,
        })
    }

    /// The update rule (with its state).
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The rule's state, for saving.
    pub fn rule_state(&self) -> &RuleState {
        self.rule.state()
    }

    /// Restores a saved rule state.
    pub fn set_rule_state(&mut self, state: RuleState) -> Result<()> {
        self.rule.set_state(state)
    }

    /// Iterations completed so far.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// One minibatch: computes loss, monitors and gradients, then updates every parameter.
    /// Returns the loss computed before the update.
    pub fn step(&mut self, batch: &[TensorView<'_>]) -> Result<f32> {
        let _flush = tape::fpenv::FlushDenormals::new();
        let np = self.params.len();
        if self.rule.needs_hv() {
            for probe in &mut self.probes {
                self.rng.fill_normal(probe.data_mut(), 0.0, 1.0);
            }
            let mut args: SmallVec<[TensorView<'_>; 8]> = batch.iter().copied().collect();
            args.extend(self.probes.iter().map(Tensor::view));
            self.step_fn.run(&args)?;
        } else {
            self.step_fn.run(batch)?;
        }
        let loss = self.step_fn.output(0).data()[0];
        if !loss.is_finite() {
            return Ok(loss);
        }
        let first_grad = 1 + self.num_monitors;
        for k in 0..1 + self.num_monitors {
            self.sums[k] += f64::from(self.step_fn.output(k).data()[0]);
        }
        if self.options.monitor_gradients {
            for k in 0..np {
                let g = self.step_fn.output(first_grad + k).data();
                self.sums[first_grad + k] +=
                    g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
            }
        }
        self.rule.begin_step();
        let (f, rule) = (&self.step_fn, &mut self.rule);
        for (k, p) in self.params.iter().enumerate() {
            let g = f.output(first_grad + k).data();
            let hv = rule
                .needs_hv()
                .then(|| f.output(first_grad + np + k).data());
            p.update(|values| rule.apply(k, values, g, hv));
        }
        Ok(loss)
    }

    /// The Hessian-vector products ESGD uses, for one batch and the given probe vectors (one per
    /// parameter), without updating anything. Errors unless the rule is ESGD.
    pub fn hessian_vector(
        &mut self,
        batch: &[TensorView<'_>],
        probes: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let np = self.params.len();
        if !self.rule.needs_hv() || probes.len() != np {
            return Err(Error::Config {
                what: "hessian_vector".into(),
                problem: format!("needs the esgd rule and {np} probe vectors, one per parameter"),
            });
        }
        let mut args: Vec<TensorView<'_>> = batch.to_vec();
        args.extend(probes.iter().map(Tensor::view));
        self.step_fn.run(&args)?;
        let first_hv = 1 + self.num_monitors + np;
        Ok((0..np)
            .map(|k| self.step_fn.output(first_hv + k).to_tensor())
            .collect())
    }

    /// Mean loss and monitors over one pass of `data` (no update).
    pub fn evaluate(&mut self, data: &mut Dataset) -> Result<Monitors> {
        let n_out = 1 + self.num_monitors;
        let mut sums = vec![0.0f64; n_out];
        let mut batches = 0usize;
        let f = &mut self.eval_fn;
        data.for_each_batch(|batch| {
            f.run(batch)?;
            for (k, s) in sums.iter_mut().enumerate() {
                *s += f64::from(f.output(k).data()[0]);
            }
            batches += 1;
            Ok(())
        })?;
        let denom = batches.max(1) as f64;
        Ok(Monitors(
            self.names[..n_out]
                .iter()
                .cloned()
                .zip(sums.iter().map(|s| (s / denom) as f32))
                .collect(),
        ))
    }

    /// Runs the loop to its end and returns the last `(train, valid)` monitors.
    pub fn train(
        &mut self,
        train: &mut Dataset,
        valid: Option<&mut Dataset>,
    ) -> Result<(Monitors, Monitors)> {
        let mut last = (Monitors::default(), Monitors::default());
        for step in self.iterate(train, valid) {
            last = step?;
        }
        Ok(last)
    }

    /// The loop as an iterator of `(train, valid)` monitors, one item per iteration
    /// (`iteration_size` minibatches). Validation uses `valid`, or the training set when `None`.
    /// It ends when patience runs out or `max_updates` is reached, restoring the best parameters.
    pub fn iterate<'a>(
        &'a mut self,
        train: &'a mut Dataset,
        valid: Option<&'a mut Dataset>,
    ) -> Iterate<'a> {
        self.done = false;
        self.iteration = 0;
        self.validations = 0;
        self.best_loss = f32::INFINITY;
        self.best_validation = 0;
        self.best_params.clear();
        Iterate {
            trainer: self,
            train,
            valid,
        }
    }

    fn restore_best(&mut self) {
        for (p, best) in self.params.iter().zip(&self.best_params) {
            // Shapes match by construction: these values were read from the same parameters.
            let _ = p.set(best.clone());
        }
    }

    fn finish<T>(&mut self, result: Option<Result<T>>) -> Option<Result<T>> {
        self.restore_best();
        self.done = true;
        result
    }

    fn next_item(
        &mut self,
        train: &mut Dataset,
        valid: Option<&mut Dataset>,
    ) -> Option<Result<(Monitors, Monitors)>> {
        if self.done {
            return None;
        }
        if self
            .options
            .max_updates
            .is_some_and(|m| self.iteration >= m)
        {
            return self.finish(None);
        }
        if self.iteration.is_multiple_of(self.options.validate_every) {
            let v = match valid {
                Some(v) => self.evaluate(v),
                None => self.evaluate(train),
            };
            let v = match v {
                Ok(v) => v,
                Err(e) => return self.finish(Some(Err(e))),
            };
            self.validations += 1;
            let loss = v.loss();
            if !loss.is_finite() {
                return self.finish(Some(Err(Error::Diverged {
                    iteration: self.iteration,
                    loss,
                })));
            }
            // Relative improvement, measured against |best| so negative losses behave.
            let improved = self.best_params.is_empty()
                || self.best_loss - loss > self.options.min_improvement * self.best_loss.abs();
            if improved {
                self.best_loss = loss;
                self.best_validation = self.validations;
                self.best_params = self.params.iter().map(Param::value).collect();
            }
            self.last_valid = v;
            if self.validations - self.best_validation > self.options.patience {
                return self.finish(None);
            }
        }
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        let batches = train.iteration_size();
        for _ in 0..batches {
            let loss = match train.next_batch().and_then(|b| self.step(&b)) {
                Ok(l) => l,
                Err(e) => return self.finish(Some(Err(e))),
            };
            if !loss.is_finite() {
                let iteration = self.iteration + 1;
                return self.finish(Some(Err(Error::Diverged { iteration, loss })));
            }
        }
        self.iteration += 1;
        let n = batches.max(1) as f64;
        let t = Monitors(
            self.names
                .iter()
                .cloned()
                .zip(self.sums.iter().map(|s| (s / n) as f32))
                .collect(),
        );
        Some(Ok((t, self.last_valid.clone())))
    }
}

/// The training loop in progress; see [`Trainer::iterate`].
pub struct Iterate<'a> {
    trainer: &'a mut Trainer,
    train: &'a mut Dataset,
    valid: Option<&'a mut Dataset>,
}

impl Iterator for Iterate<'_> {
    type Item = Result<(Monitors, Monitors)>;

    fn next(&mut self) -> Option<Self::Item> {
        let valid = self.valid.as_deref_mut();
        self.trainer.next_item(self.train, valid)
    }
}
