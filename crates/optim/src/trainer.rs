//! The training loop: validation before the first step and every `validate_every` iterations,
//! early stopping by patience, the best parameters restored at the end, and an error (with the
//! best parameters restored) if the loss stops being finite.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::options::{LoopOptions, RuleOptions};
use crate::rules::{Rule, RuleState};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;
use tape::{grad, Expr, Function, Param, Rng, Stage, Tensor, TensorView};

/// An ordered map of monitor names to values: `loss` first, then the caller's monitors in order,
/// then (optionally) `grad(name)` for each parameter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
/// its workspace; the rule then updates each parameter in place from those buffers (or, with
/// [`Trainer::set_overlap`], as soon as the parameter's gradient is final, while the step
/// function still runs the rest of the backward pass).
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
///
/// `Send` and `Sync`; a step needs `&mut`. The trainer's compiled functions and random streams are
/// its own: predictions made from the model meanwhile neither use nor advance them.
pub struct Trainer {
    step_fn: Function,
    eval_fn: Function,
    params: Vec<Param>,
    /// Non-trained tensors the step function replaces after every batch (a stateful recurrent
    /// layer's final state), in the order given to [`Trainer::with_carried`].
    carried: Vec<Param>,
    rule: Rule,
    /// Whether updates run inside the step function's run, as each becomes possible.
    overlap: bool,
    /// The step function's stages when overlapping: one per parameter.
    stages: Vec<Stage>,
    options: LoopOptions,
    names: Vec<String>,
    num_monitors: usize,
    rng: Rng,
    probes: Vec<Tensor>,
    /// The caller's check of each batch's values, run before computing with it.
    check: Option<BatchCheck>,
    /// Row-weighted sums of the loss, the monitors and the gradient norms over an iteration.
    sums: Vec<f64>,
    /// Rows seen by `sums`.
    rows: usize,
    // Loop state.
    iteration: usize,
    validations: usize,
    best_loss: f32,
    best_validation: usize,
    best_params: Vec<Tensor>,
    best: Option<Best>,
    last_train: Monitors,
    last_valid: Monitors,
    /// The iteration at which the most recent validation ran.
    validated_at: Option<usize>,
    done: bool,
}

/// The validation that was best so far in a run of the loop, and the training monitors of the
/// iteration just before it (empty when it is the validation before the first step).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Iterations completed when this validation ran (0: before any update).
    pub iteration: usize,
    /// Training monitors of the iteration that ended at `iteration`.
    pub train: Monitors,
    /// The validation monitors.
    pub valid: Monitors,
}

/// Where a run of the loop stands, for a snapshot: the counters, the best validation so far with
/// its parameters, and the most recent monitors. [`Trainer::set_loop_state`] puts it back so that
/// [`Trainer::advance`] continues the run exactly where [`Trainer::loop_state`] left it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Iterations completed in this run.
    pub iteration: usize,
    /// Validations run in this run.
    pub validations: usize,
    /// The best validation loss so far (infinite before the first validation).
    pub best_loss: f32,
    /// The number of the best validation (counted from 1), for patience.
    pub best_validation: usize,
    /// The parameters at the best validation, one flat array per parameter in training order
    /// (empty before the first validation).
    pub best_params: Vec<Vec<f32>>,
    /// The best validation with its monitors.
    pub best: Option<Best>,
    /// The monitors of the last training iteration.
    pub last_train: Monitors,
    /// The monitors of the most recent validation.
    pub last_valid: Monitors,
    /// The iteration at which the most recent validation ran.
    pub validated_at: Option<usize>,
    /// Whether the run has ended.
    pub done: bool,
}

/// A check of a batch's values that the trainer runs before computing with the batch (see
/// [`Trainer::check_batches_with`]): `Err` names the first bad row of the batch and what is
/// wrong with it.
pub type BatchCheck =
    Arc<dyn Fn(&[TensorView<'_>]) -> std::result::Result<(), RowProblem> + Send + Sync>;

/// What a [`BatchCheck`] found: the row of the batch and the problem in words, naming the
/// caller's thing (for a classifier: the output layer whose labels are wrong).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The row of the batch (counted from 0).
    pub row: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// The states of every random stream a trainer draws from, for a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainerRngs {
    /// The loop's own stream (ESGD's probe vectors).
    pub loop_rng: [u64; 4],
    /// The training step function's streams (dropout, noise), in graph order.
    pub step: Vec<[u64; 4]>,
    /// The validation function's streams (none unless validation is noisy).
    pub eval: Vec<[u64; 4]>,
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
        Trainer::with_carried(loss, params, inputs, monitors, &[], rule, options)
    }

    /// [`Trainer::new`] with carried state: after each training batch, each `(tensor, value)`
    /// pair replaces the non-trained `tensor` by `value` computed on that batch (all from the
    /// values before the batch), as [`Function::compile_with_updates`] does. A stateful
    /// recurrent layer passes its `(batch, size)` state and its final state, so that the next
    /// batch starts where this one ended: truncated backpropagation through time across
    /// consecutive chunks of long sequences.
    ///
    /// With carried state:
    /// - the state is set to zeros when a run starts ([`Trainer::begin`]) and before the first
    ///   batch of every pass over arrays (so batch `k` of a pass continues batch `k − 1` of the
    ///   same pass; a callable has no passes and carries on until the run ends);
    /// - training data whose batch order changes between passes ([`Dataset::is_shuffled`]) is
    ///   refused with [`Error::Config`]: the chunks would not follow each other;
    /// - a batch whose number of rows is not the state's first axis is refused with
    ///   [`Error::Config`] naming the tensor, the expected and the given batch size;
    /// - validation is a pass of its own: it saves the training state, starts from zeros,
    ///   carries the state from one validation batch to the next (in natural order), and puts
    ///   the training state back afterwards, so validating never disturbs training.
    ///
    /// The carried tensors are not part of [`LoopState`]: a run resumed mid-pass restarts its
    /// state from zeros.
    pub fn with_carried(
        loss: &Expr,
        params: &[Param],
        inputs: &[Expr],
        monitors: &[(String, Expr)],
        carried: &[(Param, Expr)],
        rule: RuleOptions,
        options: LoopOptions,
    ) -> Result<Trainer> {
        if params.is_empty() {
            return Err(Error::Config {
                what: "trainer".into(),
                problem: "no parameters to train".into(),
            });
        }
        options.validate()?;
        let exprs: Vec<Expr> = params.iter().map(Param::expr).collect();
        let grads = grad(loss, &exprs).map_err(|e| name_param(loss, params, e))?;
        let mut outputs = vec![loss.clone()];
        outputs.extend(monitors.iter().map(|(_, e)| e.clone()));
        let eval_fn =
            Function::compile_with_updates(inputs, &outputs, carried).map_err(compiling)?;
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
            outputs.extend(grad(&gv, &exprs).map_err(compiling)?);
            step_inputs.extend(vs);
            probes = params.iter().map(|p| Tensor::zeros(&p.shape())).collect();
        }
        let step_fn =
            Function::compile_with_updates(&step_inputs, &outputs, carried).map_err(compiling)?;
        let mut names = vec!["loss".to_string()];
        names.extend(monitors.iter().map(|(n, _)| n.clone()));
        if options.monitor_gradients {
            names.extend(params.iter().map(|p| format!("grad({})", p.name())));
        }
        let sums = vec![0.0; names.len()];
        let stages = update_stages(params, monitors.len(), rule.needs_hv());
        let mut trainer = Trainer {
            step_fn,
            eval_fn,
            params: params.to_vec(),
            carried: carried.iter().map(|(p, _)| p.clone()).collect(),
            rule,
            overlap: false,
            stages,
            rng: Rng::from_name(options.seed, "optim.esgd"),
            options,
            names,
            num_monitors: monitors.len(),
            probes,
            check: None,
            sums,
            rows: 0,
            iteration: 0,
            validations: 0,
            best_loss: f32::INFINITY,
            best_validation: 0,
            best_params: Vec::new(),
            best: None,
            last_train: Monitors::default(),
            last_valid: Monitors::default(),
            validated_at: None,
            done: true,
        };
        trainer.set_overlap(false);
        Ok(trainer)
    }

    /// Validates with a graph of its own instead of the training loss: `inputs` (in dataset
    /// order), `loss` and `monitors` (the same names, in the same order, as the trainer's
    /// monitors). A network trained with noise or dropout passes its clean graph here, so that
    /// early stopping reads the model as it will predict rather than a random corruption of it.
    ///
    /// A trainer with carried state needs [`Trainer::validate_with_carried`] instead, or its
    /// validation batches all start from zeros.
    pub fn validate_with(
        &mut self,
        inputs: &[Expr],
        loss: &Expr,
        monitors: &[(String, Expr)],
    ) -> Result<()> {
        self.validate_with_carried(inputs, loss, monitors, &[])
    }

    /// [`Trainer::validate_with`] for a trainer with carried state: `carried` gives the
    /// validation graph's value of each carried tensor (the same tensors as the trainer's, in
    /// the same order), so that the validation pass carries its state from batch to batch.
    pub fn validate_with_carried(
        &mut self,
        inputs: &[Expr],
        loss: &Expr,
        monitors: &[(String, Expr)],
        carried: &[(Param, Expr)],
    ) -> Result<()> {
        let given: Vec<&str> = carried.iter().map(|(p, _)| p.name()).collect();
        let own: Vec<&str> = self.carried.iter().map(Param::name).collect();
        if !carried.is_empty() && given != own {
            return Err(Error::Config {
                what: "validation graph".into(),
                problem: format!("it carries {given:?} but the training graph carries {own:?}"),
            });
        }
        let names: Vec<&str> = monitors.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<&str> = self.names[1..1 + self.num_monitors]
            .iter()
            .map(String::as_str)
            .collect();
        if names != expected {
            return Err(Error::Config {
                what: "validation graph".into(),
                problem: format!(
                    "its monitors are {names:?} but the training graph's are {expected:?}"
                ),
            });
        }
        let mut outputs = vec![loss.clone()];
        outputs.extend(monitors.iter().map(|(_, e)| e.clone()));
        self.eval_fn = Function::compile_with_updates(inputs, &outputs, carried)?;
        Ok(())
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

    /// Where the current run stands (see [`LoopState`]).
    pub fn loop_state(&self) -> LoopState {
        LoopState {
            iteration: self.iteration,
            validations: self.validations,
            best_loss: self.best_loss,
            best_validation: self.best_validation,
            best_params: self.best_params.iter().map(|t| t.data().to_vec()).collect(),
            best: self.best.clone(),
            last_train: self.last_train.clone(),
            last_valid: self.last_valid.clone(),
            validated_at: self.validated_at,
            done: self.done,
        }
    }

    /// Puts back a run saved by [`Trainer::loop_state`] from a trainer built the same way; the
    /// next [`Trainer::advance`] continues it. Errors (changing nothing) if the saved best
    /// parameters do not match this trainer's parameters in number and size.
    pub fn set_loop_state(&mut self, state: LoopState) -> Result<()> {
        let sizes: Vec<usize> = self.params.iter().map(|p| p.read().len()).collect();
        let saved: Vec<usize> = state.best_params.iter().map(Vec::len).collect();
        if !saved.is_empty() && saved != sizes {
            return Err(Error::Config {
                what: "loop state".into(),
                problem: format!(
                    "its best parameters have sizes {saved:?} but the trainer's have {sizes:?}"
                ),
            });
        }
        let best_params = self
            .params
            .iter()
            .zip(state.best_params)
            .map(|(p, data)| Tensor::new(&p.shape(), data))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.iteration = state.iteration;
        self.validations = state.validations;
        self.best_loss = state.best_loss;
        self.best_validation = state.best_validation;
        self.best_params = best_params;
        self.best = state.best;
        self.last_train = state.last_train;
        self.last_valid = state.last_valid;
        self.validated_at = state.validated_at;
        self.done = state.done;
        Ok(())
    }

    /// The states of every random stream (see [`TrainerRngs`]).
    pub fn rng_states(&self) -> TrainerRngs {
        TrainerRngs {
            loop_rng: self.rng.state(),
            step: self.step_fn.rng_states(),
            eval: self.eval_fn.rng_states(),
        }
    }

    /// Restores states saved by [`Trainer::rng_states`] from a trainer built the same way.
    /// Errors (changing nothing) if the number of streams differs.
    pub fn set_rng_states(&mut self, states: &TrainerRngs) -> Result<()> {
        let (step, eval) = (self.step_fn.rng_states(), self.eval_fn.rng_states());
        if states.step.len() != step.len() || states.eval.len() != eval.len() {
            return Err(Error::Config {
                what: "random streams".into(),
                problem: format!(
                    "saved {} training and {} validation streams, the trainer has {} and {}",
                    states.step.len(),
                    states.eval.len(),
                    step.len(),
                    eval.len()
                ),
            });
        }
        self.step_fn.set_rng_states(&states.step)?;
        self.eval_fn.set_rng_states(&states.eval)?;
        self.rng = Rng::from_state(states.loop_rng);
        Ok(())
    }

    /// Checks every batch with `check` before training or validating on it. A bad row then
    /// fails with an error naming the data set and the row (through any shuffling) instead of
    /// an error from inside the compiled graph. `nets` installs one that checks a classifier's
    /// labels against its output layer.
    pub fn check_batches_with(
        &mut self,
        check: impl Fn(&[TensorView<'_>]) -> std::result::Result<(), RowProblem> + Send + Sync + 'static,
    ) {
        self.check = Some(Arc::new(check));
    }

    /// Runs the batch check, if any.
    fn check_batch(&self, batch: &[TensorView<'_>]) -> std::result::Result<(), RowProblem> {
        match &self.check {
            Some(check) => check(batch),
            None => Ok(()),
        }
    }

    /// One minibatch: computes loss, monitors and gradients, then updates every parameter.
    /// Returns the loss computed before the update.
    pub fn step(&mut self, batch: &[TensorView<'_>]) -> Result<f32> {
        self.check_batch(batch).map_err(|p| Error::Data {
            dataset: "the batch given to Trainer::step".into(),
            problem: format!("row {}: {}", p.row, p.problem),
        })?;
        self.step_checked(batch)
    }

    /// [`Trainer::step`] after the batch check.
    fn step_checked(&mut self, batch: &[TensorView<'_>]) -> Result<f32> {
        self.check_carried_rows(batch_rows(batch))?;
        let _flush = tape::fpenv::FlushDenormals::new();
        let np = self.params.len();
        if self.rule.needs_hv() {
            for probe in &mut self.probes {
                self.rng.fill_normal(probe.data_mut(), 0.0, 1.0);
            }
        }
        let mut args: SmallVec<[TensorView<'_>; 8]> = batch.iter().copied().collect();
        args.extend(self.probes.iter().map(Tensor::view));
        let updated = if self.overlap {
            run_overlapped(
                &mut self.step_fn,
                &mut self.rule,
                &self.params,
                &self.stages,
                &args,
            )?;
            true
        } else {
            self.step_fn.run(&args)?;
            false
        };
        let loss = self.step_fn.output(0)?.data()[0];
        if !loss.is_finite() {
            return Ok(loss);
        }
        // Monitors are means over rows, so each batch counts by its size: a short last batch
        // must not weigh as much as a full one.
        let rows = batch_rows(batch);
        let weight = rows as f64;
        self.rows += rows;
        let first_grad = 1 + self.num_monitors;
        for k in 0..1 + self.num_monitors {
            self.sums[k] += weight * f64::from(self.step_fn.output(k)?.data()[0]);
        }
        if self.options.monitor_gradients {
            for k in 0..np {
                let g = self.step_fn.output(first_grad + k)?.data();
                self.sums[first_grad + k] +=
                    weight * g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
            }
        }
        if updated {
            return Ok(loss);
        }
        self.rule.begin_step();
        let (f, rule) = (&self.step_fn, &mut self.rule);
        for (k, p) in self.params.iter().enumerate() {
            let g = f.output(first_grad + k)?.data();
            let hv = if rule.needs_hv() {
                Some(f.output(first_grad + np + k)?.data())
            } else {
                None
            };
            apply_update(rule, k, p, g, hv)?;
        }
        Ok(loss)
    }

    /// Whether each parameter is updated as soon as its gradient is final, while the step
    /// function still runs the rest of the backward pass (see [`Trainer::set_overlap`]).
    pub fn overlap(&self) -> bool {
        self.overlap
    }

    /// Turns overlapping the updates with the backward pass on or off (off by default: on the
    /// 2-core machine it was measured on it gained nothing, see `docs/benchmarks.md`, because
    /// the backward GEMMs already keep both threads busy and the update of a large parameter
    /// is itself split across them). Each parameter is then updated as soon as its gradient is
    /// final and no
    /// remaining instruction of the step reads the parameter (the backward pass reads a
    /// layer's weights below that layer), and only once nothing left in the step can fail, so
    /// a step that fails or whose loss is not finite still updates nothing. Each update reads
    /// only its own parameter, gradient and state, and clipping works per parameter, so the
    /// results are bit-identical to updating after the whole step.
    ///
    /// A trainer that trains a tensor it also carries (see [`Trainer::with_carried`]) cannot
    /// overlap: the step function overwrites that tensor itself at its end. Turning overlap on
    /// then leaves it off and returns false; otherwise returns the new setting.
    pub fn set_overlap(&mut self, on: bool) -> bool {
        self.overlap = on && self.can_overlap();
        self.overlap
    }

    /// Whether no trained parameter is also carried state.
    fn can_overlap(&self) -> bool {
        !self.params.iter().any(|p| self.carried.contains(p))
    }

    /// Sets every carried tensor (see [`Trainer::with_carried`]) to zeros, as at the start of
    /// a pass.
    pub fn reset_carried(&self) -> Result<()> {
        for p in &self.carried {
            p.set(Tensor::zeros(&p.shape()))?;
        }
        Ok(())
    }

    /// The carried tensors' current values, for putting back after validation.
    fn save_carried(&self) -> Vec<Tensor> {
        self.carried.iter().map(Param::value).collect()
    }

    /// Puts back values saved by [`Trainer::save_carried`].
    fn restore_carried(&self, saved: Vec<Tensor>) -> Result<()> {
        for (p, t) in self.carried.iter().zip(saved) {
            p.set(t)?;
        }
        Ok(())
    }

    /// Refuses a batch whose number of rows differs from the carried state's batch size,
    /// naming the tensor: the compiled graph would only report mismatched shapes.
    fn check_carried_rows(&self, rows: usize) -> Result<()> {
        check_carried_rows(&self.carried, rows)
    }

    /// Before a training batch with carried state: refuses shuffled data and starts a pass from
    /// zeros.
    fn prepare_carried(&self, train: &Dataset) -> Result<()> {
        if self.carried.is_empty() {
            return Ok(());
        }
        if train.is_shuffled() {
            let names: Vec<&str> = self.carried.iter().map(Param::name).collect();
            return Err(Error::Config {
                what: format!("training data `{}`", train.name()),
                problem: format!(
                    "its batches are shuffled, but the trainer carries state ({}) from each batch \
                     into the next; set shuffle_batches and shuffle_samples off so that \
                     consecutive batches are consecutive chunks",
                    names.join(", ")
                ),
            });
        }
        if train.at_pass_start() {
            self.reset_carried()?;
        }
        Ok(())
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
        (0..np)
            .map(|k| Ok(self.step_fn.output(first_hv + k)?.to_tensor()))
            .collect()
    }

    /// Loss and monitors over one pass of `data` (no update): each batch's values weighted by
    /// its number of rows, so the result is the mean over rows whatever the batch size.
    /// Uses the validation graph (see [`Trainer::validate_with`]).
    ///
    /// With carried state (see [`Trainer::with_carried`]) the pass starts from zeros, carries
    /// the state from batch to batch, and the state from before is put back afterwards, even on
    /// an error.
    pub fn evaluate(&mut self, data: &mut Dataset) -> Result<Monitors> {
        let saved = self.save_carried();
        self.reset_carried()?;
        let result = self.evaluate_pass(data);
        self.restore_carried(saved)?;
        result
    }

    /// [`Trainer::evaluate`] from whatever state is carried now.
    fn evaluate_pass(&mut self, data: &mut Dataset) -> Result<Monitors> {
        let n_out = 1 + self.num_monitors;
        let mut sums = vec![0.0f64; n_out];
        let mut rows = 0usize;
        let (f, check, carried) = (&mut self.eval_fn, &self.check, &self.carried);
        let (name, arrays) = (data.name().to_string(), data.len().is_some());
        let mut batches = 0;
        data.for_each_batch(|batch| {
            batches += 1;
            if let Some(Err(p)) = check.as_ref().map(|c| c(batch)) {
                // Validation walks arrays in their natural order, so rows count on from here.
                let at = if arrays {
                    format!("row {}", rows + p.row)
                } else {
                    format!("row {} of batch {batches}", p.row)
                };
                return Err(Error::Data {
                    dataset: name.clone(),
                    problem: format!("{at}: {}", p.problem),
                });
            }
            let n = batch_rows(batch);
            check_carried_rows(carried, n)?;
            f.run(batch)?;
            for (k, s) in sums.iter_mut().enumerate() {
                *s += n as f64 * f64::from(f.output(k)?.data()[0]);
            }
            rows += n;
            Ok(())
        })?;
        let denom = rows.max(1) as f64;
        Ok(Monitors(
            self.names[..n_out]
                .iter()
                .cloned()
                .zip(sums.iter().map(|s| (s / denom) as f32))
                .collect(),
        ))
    }

    /// Runs the loop to its end, leaves the best parameters in place and returns the
    /// `(train, valid)` monitors of the best validation (see [`Best`]).
    pub fn train(
        &mut self,
        train: &mut Dataset,
        valid: Option<&mut Dataset>,
    ) -> Result<(Monitors, Monitors)> {
        for step in self.iterate(train, valid) {
            step?;
        }
        let best = self.best.clone().unwrap_or_default();
        Ok((best.train, best.valid))
    }

    /// The best validation of the current (or last) run of the loop, `None` before the first
    /// validation.
    pub fn best(&self) -> Option<&Best> {
        self.best.as_ref()
    }

    /// The loop as an iterator of `(train, valid)` monitors, one item per iteration
    /// (`iteration_size` minibatches); `valid` is the most recent validation. Validation uses
    /// `valid`, or the training set when `None`, before the first iteration and every
    /// `validate_every` iterations.
    ///
    /// The loop ends when patience runs out, or when `max_updates` iterations have run (then it
    /// validates once more, unless it just did, so that the last iterations can be the best).
    /// Data never ends it: arrays start a new pass and a batch function is called again, so
    /// without patience or `max_updates` the loop runs on.
    /// Either way, and also on an error or when the iterator is dropped early (a `break`), the
    /// parameters of the best validation are put back. Dropping does not validate the
    /// iterations since the last validation; [`Iterate::finish`] does.
    pub fn iterate<'a>(
        &'a mut self,
        train: &'a mut Dataset,
        valid: Option<&'a mut Dataset>,
    ) -> Iterate<'a> {
        self.begin();
        Iterate {
            trainer: self,
            train,
            valid,
        }
    }

    /// Starts a new run of the loop (what [`Trainer::iterate`] does first), for a caller that
    /// owns the trainer and its datasets side by side and drives the run with
    /// [`Trainer::advance`].
    ///
    /// Carried state (see [`Trainer::with_carried`]) is set to zeros; the tensors were checked
    /// at construction, so this cannot fail.
    pub fn begin(&mut self) {
        let _ = self.reset_carried();
        self.done = false;
        self.iteration = 0;
        self.validations = 0;
        self.best_loss = f32::INFINITY;
        self.best_validation = 0;
        self.best_params.clear();
        self.best = None;
        self.last_train = Monitors::default();
        self.last_valid = Monitors::default();
        self.validated_at = None;
    }

    /// One item of the run started by [`Trainer::begin`] (or put back by
    /// [`Trainer::set_loop_state`]): exactly what the [`Iterate`] iterator yields, `None` once
    /// the run is over (the best parameters are then in place).
    pub fn advance(
        &mut self,
        train: &mut Dataset,
        valid: Option<&mut Dataset>,
    ) -> Option<Result<(Monitors, Monitors)>> {
        self.next_item(train, valid)
    }

    /// Ends a run driven by [`Trainer::advance`] before its end, as dropping an [`Iterate`]
    /// does: puts the best parameters back without validating again. Does nothing once the run
    /// is over.
    pub fn abandon(&mut self) {
        if !self.done {
            self.restore_best();
            self.done = true;
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

    /// Validates now and records the best. Returns whether patience has run out.
    fn validate(&mut self, train: &mut Dataset, valid: Option<&mut Dataset>) -> Result<bool> {
        let v = match valid {
            Some(v) => self.evaluate(v),
            None => self.evaluate(train),
        }
        .map_err(|e| e.context(validating_context(self.iteration)))?;
        self.validations += 1;
        self.validated_at = Some(self.iteration);
        let loss = v.loss();
        if !loss.is_finite() {
            return Err(Error::Diverged {
                iteration: self.iteration,
                loss,
            });
        }
        // Relative improvement, measured against |best| so negative losses behave.
        let improved = self.best_params.is_empty()
            || self.best_loss - loss > self.options.min_improvement * self.best_loss.abs();
        if improved {
            self.best_loss = loss;
            self.best_validation = self.validations;
            self.best_params = self.params.iter().map(Param::value).collect();
            self.best = Some(Best {
                iteration: self.iteration,
                train: self.last_train.clone(),
                valid: v.clone(),
            });
        }
        self.last_valid = v;
        Ok(self.validations - self.best_validation > self.options.patience)
    }

    /// Ends a run early: validates the iterations since the last validation (if any ran) and
    /// restores the best parameters.
    fn finish_early(&mut self, train: &mut Dataset, valid: Option<&mut Dataset>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let result = if self.validated_at == Some(self.iteration) {
            Ok(())
        } else {
            self.validate(train, valid).map(|_| ())
        };
        self.finish(Some(result)).unwrap_or(Ok(()))
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
            return match self.finish_early(train, valid) {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            };
        }
        if self.iteration.is_multiple_of(self.options.validate_every) {
            match self.validate(train, valid) {
                Ok(false) => {}
                Ok(true) => return self.finish(None),
                Err(e) => return self.finish(Some(Err(e))),
            }
        }
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.rows = 0;
        let batches = train.iteration_size();
        for b in 0..batches {
            if let Err(e) = self.prepare_carried(train) {
                return self.finish(Some(Err(e)));
            }
            // The batch's views borrow the dataset, so a bad row is located after they end.
            let stepped = match train.next_batch() {
                Ok(batch) => match self.check_batch(&batch) {
                    Ok(()) => self.step_checked(&batch).map_err(Ok),
                    Err(p) => Err(Err(p)),
                },
                Err(e) => Err(Ok(e)),
            };
            let stepped = stepped.map_err(|e| {
                e.unwrap_or_else(|p| Error::Data {
                    dataset: train.name().to_string(),
                    problem: format!("{}: {}", train.describe_batch_row(p.row), p.problem),
                })
            });
            let loss = match stepped {
                Ok(l) => l,
                Err(e) => {
                    let context = format!(
                        "training: iteration {}, batch {} of {batches}",
                        self.iteration + 1,
                        b + 1
                    );
                    return self.finish(Some(Err(e.context(context))));
                }
            };
            if !loss.is_finite() {
                let iteration = self.iteration + 1;
                return self.finish(Some(Err(Error::Diverged { iteration, loss })));
            }
        }
        self.iteration += 1;
        let n = self.rows.max(1) as f64;
        let t = Monitors(
            self.names
                .iter()
                .cloned()
                .zip(self.sums.iter().map(|s| (s / n) as f32))
                .collect(),
        );
        self.last_train = t.clone();
        Some(Ok((t, self.last_valid.clone())))
    }
}

/// Updates parameter `k` (`p`) from its gradient, naming the parameter in an error.
fn apply_update(rule: &mut Rule, k: usize, p: &Param, g: &[f32], hv: Option<&[f32]>) -> Result<()> {
    let mut applied = Ok(());
    p.update(|values| applied = rule.apply(k, values, g, hv));
    applied.map_err(|e| e.context(format!("updating parameter `{}`", p.name())))
}

/// Runs the step function, updating each parameter as soon as its stage (the loss, its
/// gradient and, for ESGD, its Hessian-vector product) is handed over. Nothing is updated when
/// the loss is not finite; the first update counts the step for the rule.
fn run_overlapped(
    f: &mut Function,
    rule: &mut Rule,
    params: &[Param],
    stages: &[Stage],
    args: &[TensorView<'_>],
) -> Result<()> {
    let mut began = false;
    let mut failed = None;
    f.run_staged(args, stages, &mut |k, views| {
        if failed.is_some() || !views[0].data()[0].is_finite() {
            return;
        }
        if !began {
            rule.begin_step();
            began = true;
        }
        let hv = views.get(2).map(TensorView::data);
        if let Err(e) = apply_update(rule, k, &params[k], views[1].data(), hv) {
            failed = Some(e);
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// One stage per parameter for [`Function::run_staged`]: the loss (the update waits for it, and
/// skips a step whose loss is not finite), the gradient and, for ESGD, the Hessian-vector
/// product, overwriting the parameter.
fn update_stages(params: &[Param], num_monitors: usize, hv: bool) -> Vec<Stage> {
    let (np, first_grad) = (params.len(), 1 + num_monitors);
    params
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut outputs = vec![0, first_grad + k];
            if hv {
                outputs.push(first_grad + np + k);
            }
            Stage {
                outputs,
                overwrites: Some(p.clone()),
            }
        })
        .collect()
}

/// The context of an error met while building the trainer's functions: the graph it was given
/// could not be differentiated or compiled.
fn compiling(e: tape::Error) -> Error {
    Error::from(e).context("trainer: compiling the training functions")
}

/// The context of an error met while validating, after `iteration` iterations (counted from 1,
/// as in [`Error::Diverged`]).
/// Names the parameter behind a differentiation error (one the loss does not use, say): the
/// engine can only point at the line that built the parameter's node, which for a parameter
/// list is a line inside this crate or the standard library, not anything of the user's.
fn name_param(loss: &Expr, params: &[Param], e: tape::Error) -> Error {
    // A fault of the loss itself (not a scalar, say) is about no parameter in particular.
    if grad(loss, &[]).is_err() {
        return compiling(e);
    }
    let culprit = params.iter().find_map(|p| match grad(loss, &[p.expr()]) {
        Err(tape::Error::Grad { reason, .. }) => Some((p, reason)),
        _ => None,
    });
    match culprit {
        Some((p, reason)) => Error::Config {
            what: format!("trainer: parameter `{}`", p.name()),
            problem: format!("{reason}; every parameter given must be used by the loss"),
        },
        None => compiling(e),
    }
}

fn validating_context(iteration: usize) -> String {
    if iteration == 0 {
        "validating: before the first iteration".into()
    } else {
        format!("validating: after iteration {iteration}")
    }
}

/// Refuses `rows` unless every carried tensor's first axis (its batch size) is `rows`.
fn check_carried_rows(carried: &[Param], rows: usize) -> Result<()> {
    match carried.iter().find(|p| p.shape().first() != Some(&rows)) {
        None => Ok(()),
        Some(p) => Err(Error::Config {
            what: format!("carried state `{}`", p.name()),
            problem: format!(
                "holds the state of batches of {} sequences, got a batch of {rows}; carrying \
                 state needs every batch (the last one of a pass included) to have that size",
                p.shape().first().copied().unwrap_or(0)
            ),
        }),
    }
}

/// The rows of a batch: the length of its first array's first axis.
fn batch_rows(batch: &[TensorView<'_>]) -> usize {
    batch
        .first()
        .and_then(|b| b.shape().first())
        .copied()
        .unwrap_or(1)
}

/// The training loop in progress; see [`Trainer::iterate`]. Dropping it before the end puts the
/// best parameters back.
pub struct Iterate<'a> {
    trainer: &'a mut Trainer,
    train: &'a mut Dataset,
    valid: Option<&'a mut Dataset>,
}

impl Iterate<'_> {
    /// Ends the loop here: validates the iterations run since the last validation, so that they
    /// can become the best, restores the best parameters and returns the best validation.
    /// Errors (and still restores the best) if that validation fails or diverges.
    pub fn finish(mut self) -> Result<Option<Best>> {
        let valid = self.valid.as_deref_mut();
        self.trainer.finish_early(self.train, valid)?;
        Ok(self.trainer.best.clone())
    }
}

impl Iterator for Iterate<'_> {
    type Item = Result<(Monitors, Monitors)>;

    fn next(&mut self) -> Option<Self::Item> {
        let valid = self.valid.as_deref_mut();
        self.trainer.next_item(self.train, valid)
    }
}

impl Drop for Iterate<'_> {
    fn drop(&mut self) {
        self.trainer.abandon();
    }
}
