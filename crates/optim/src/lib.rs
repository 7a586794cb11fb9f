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
pub use trainer::{Best, Iterate, Monitors, Trainer};
