//! nets: layers, activations, losses, regularizers and models (being built; see issue 5).

pub use optim;
pub use tape;
