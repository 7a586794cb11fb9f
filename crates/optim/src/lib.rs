//! # optim
//!
//! Datasets, update rules and the training loop over `tape` graphs: the Rust counterpart of
//! *downhill*. It depends on `tape` only and knows nothing of layers: it takes a scalar loss
//! expression, the parameters to train, the input expressions and optional monitor expressions.
//!
//! - [`Dataset`]: arrays (or a batch-making callable) cut into seeded, shuffled minibatches.
//! - [`Algorithm`], [`RuleOptions`], [`LoopOptions`]: typed configuration with downhill's
//!   defaults, settable from `key=value` text ([`options::configure`]).
//! - [`Rule`]: the update rules (sgd, nag, rprop, rmsprop, adagrad, adadelta, esgd, adam).
//! - [`Trainer`]: the loop, as an iterator of `(train, valid)` [`Monitors`].
//!
//! ## Where this differs from downhill (0.3.2), on purpose
//!
//! Update rules:
//! - **Adam** uses the paper's bias corrections `1 − β1ᵗ` and `1 − β2ᵗ` (downhill 0.3 divided by
//!   `1 − β2` without the power and decayed β1 by `beta1_decay`, which is not an option here).
//! - **ESGD** uses the exact Hessian-vector product of the whole loss,
//!   `Hv = ∂(Σ_p ⟨g_p, v_p⟩)/∂θ` by differentiating twice, so the cross terms between parameters are
//!   included (downhill's R-operator product was block-diagonal: each parameter's own block). Its
//!   running mean of `(Hv)²` is divided by `1 − γᵗ`, as Adam's moments are, so the first steps are
//!   not inflated by the zero start; ε is added outside the square root. The Gaussian probe vectors
//!   `v` come from the stream named `optim.esgd` under [`LoopOptions::seed`] (downhill drew them
//!   from Theano's generator with its fixed default seed), so runs repeat bit for bit.
//! - **RMSProp** clamps the variance estimate `m − f²` at 0 before the square root: rounding can
//!   push it below zero for a steady gradient, which made the step NaN.
//! - Rule state (running averages) flushes subnormal values to zero.
//!
//! The loop ([`Trainer::iterate`]):
//! - When `max_updates` ends the loop it validates once more (unless it just did), so the last
//!   iterations can be the best; downhill kept the best of the earlier validations only.
//! - Leaving the loop early (a `break`, a dropped iterator) still restores the best parameters;
//!   [`Iterate::finish`] validates first. [`Trainer::train`] returns the monitors of the best
//!   validation, not the last iteration's, and [`Trainer::best`] says which iteration that was.
//! - Monitors are means over rows: each batch counts by its number of rows (downhill averaged
//!   batch means, so a short last batch weighed as much as a full one).
//! - The improvement test is relative to `|best|`, so negative losses behave.
//! - `max_updates=0` is refused as text (downhill read it as "no limit"); `none` says no limit.
//! - Setting an option is atomic (a refused value changes nothing), and booleans read one way
//!   everywhere ([`options::parse_bool`]).
//! - A model can validate on a graph of its own ([`Trainer::validate_with`]): `nets` uses it to
//!   validate without noise and dropout.
//! - A [`Dataset`] from a callable resumes exactly from a saved state by replaying the function.
//! - A run can be stopped and continued in a newly built trainer bit for bit: [`LoopState`],
//!   [`TrainerRngs`] and [`RuleState`] save it, [`Trainer::begin`] / [`Trainer::advance`] drive
//!   the loop for a caller that owns the trainer and its datasets side by side (`nets`'
//!   `Experiment` and its snapshots).

#![deny(missing_docs)]

pub mod dataset;
pub mod error;
pub mod options;
pub mod rules;
pub mod trainer;

pub use dataset::{Dataset, DatasetOptions, DatasetState};
pub use error::{Error, Result};
pub use options::{Algorithm, LoopOptions, RuleOptions};
pub use rules::{Rule, RuleState};
pub use tape;
pub use trainer::{
    BatchCheck, Best, Iterate, LoopState, Monitors, RowProblem, Trainer, TrainerRngs,
};
