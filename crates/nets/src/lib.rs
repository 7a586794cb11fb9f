//! # nets
//!
//! Layers, activations, losses, regularizers and the three model kinds (regressor, classifier,
//! autoencoder), built on `tape` expressions and trained with `optim`.
//!
//! ```
//! use nets::Classifier;
//! let net = Classifier::new(&[64, 100, 10])?;
//! assert_eq!(net.num_params(), 64 * 100 + 100 + 100 * 10 + 10);
//! assert_eq!(net.find("hid1", "w")?.name(), "hid1.w");
//! # Ok::<(), nets::Error>(())
//! ```

#![deny(missing_docs)]

pub mod activations;
pub mod data;
pub mod error;
pub mod experiment;
pub mod file;
mod graph;
pub mod init;
pub mod interchange;
pub mod layers;
pub mod losses;
mod models;
pub mod network;
mod pool;
mod predict;
pub mod recurrent;
pub mod regularizers;
mod resolve;
pub mod snapshot;
mod train;
pub mod trainers;

pub use error::{Error, Result};
pub use experiment::{Data, Experiment, SaveEvery, TrainOptions};
pub use file::Registry;
pub use interchange::Layout;
pub use layers::{Layer, LayerContext, LayerSpec};
pub use losses::{GllForm, HingeForm, Loss, LossKind};
pub use network::{Autoencoder, Classifier, Graph, Kind, Model, ModelOptions, Network, Regressor};
pub use optim;
pub use regularizers::Regularizers;
pub use tape;
pub use trainers::Stage;
