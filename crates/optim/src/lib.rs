//! optim: datasets, update rules and the training loop over `tape` graphs (being built; see
//! issue 4). It depends on `tape` only and knows nothing of layers.

pub use tape;
