//! Training snapshots: a model together with the state of the run that was training it, in the
//! model files' envelope (see [`crate::file`]) under the format name [`SNAPSHOT_FORMAT`].
//!
//! The payload is `{model, run}`: `model` is a model file's payload (the same bytes a model file
//! carries, so a snapshot holds a complete model), `run` the state of the training call in
//! progress, or nil when there is none. The run state is everything a run draws on, so that a run
//! resumed from a snapshot computes bit for bit what the uninterrupted run would have: the
//! algorithms of the call and which one was running, the update rule's state, the loop's
//! counters and best-so-far parameters and monitors, every random stream (the loop's own and the
//! compiled functions' dropout and noise streams) and the cursors of the training and validation
//! datasets.
//!
//! Reading goes through the model files' checks (format and version first, every length checked
//! before anything is allocated), so a damaged snapshot is an [`Error::File`] naming the file.

use crate::error::{Error, Result};
use crate::file::{
    decode, encode, file_error, network_from_payload, read_envelope, read_file, write_envelope,
    Bytes, Registry,
};
use crate::network::{Kind, Network};
use optim::{DatasetState, LoopState, RuleState, TrainerRngs};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The format name every snapshot carries.
pub const SNAPSHOT_FORMAT: &str = "theanets-rs snapshot";

/// The snapshot version this build writes; versions 1 to this one are read, newer ones refused
/// (the same rule as [`crate::file::MODEL_VERSION`]).
pub const SNAPSHOT_VERSION: u32 = 1;

/// Version 1 of a snapshot's payload.
#[derive(Serialize, Deserialize)]
struct SnapshotDoc<'a> {
    #[serde(borrow)]
    model: Bytes<'a>,
    run: Option<Box<RunState>>,
}

/// The state of a training call in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct RunState {
    /// The call's algorithms, lower case, in order.
    pub algorithms: Vec<String>,
    /// The index of the one running.
    pub stage: usize,
    /// Its update rule's state.
    pub rule: RuleState,
    /// Its loop's counters and best-so-far.
    pub loop_state: LoopState,
    /// Every random stream of its trainer.
    pub rngs: TrainerRngs,
    /// The training dataset's cursor.
    pub train: DatasetState,
    /// The validation dataset's cursor, if the call has one.
    pub valid: Option<DatasetState>,
}

/// The first parameter of `net` holding a NaN or an infinity, by name.
fn non_finite_param(net: &Network) -> Option<String> {
    net.params()
        .iter()
        .find(|p| p.read().data().iter().any(|v| !v.is_finite()))
        .map(|p| p.name().to_string())
}

/// Writes a snapshot of `net` and `run` to `path`, atomically. Refuses (an [`Error::Data`],
/// leaving any earlier snapshot in place) when a parameter is not finite: a snapshot of a
/// diverged model would replace the last good one.
pub(crate) fn write_snapshot(path: &Path, net: &Network, run: Option<&RunState>) -> Result<()> {
    if let Some(name) = non_finite_param(net) {
        return Err(Error::Data {
            what: format!("snapshot {}", path.display()),
            problem: format!(
                "parameter `{name}` is not finite; the previous snapshot (if any) is kept"
            ),
        });
    }
    let model = net.model_payload(path)?;
    let doc = SnapshotDoc {
        model: Bytes(&model),
        run: run.map(|r| Box::new(r.clone())),
    };
    write_envelope(
        path,
        SNAPSHOT_FORMAT,
        SNAPSHOT_VERSION,
        &encode(path, &doc)?,
    )
}

/// Reads a snapshot: the model (checked to be of kind `expected`, if given, and rebuilt with the
/// custom layers of `registry`) and the run state it holds.
pub(crate) fn read_snapshot(
    path: &Path,
    registry: &Registry,
    expected: Option<Kind>,
) -> Result<(Network, Option<RunState>)> {
    let bytes = read_file(path)?;
    let (_version, payload) = read_envelope(path, &bytes, SNAPSHOT_FORMAT, SNAPSHOT_VERSION)?;
    let doc: SnapshotDoc = decode(path, payload, "the snapshot is damaged")?;
    let net = network_from_payload(path, doc.model.0, registry, expected)?;
    if let Some(run) = &doc.run {
        check_run(run).map_err(|p| file_error(path, format!("the snapshot is damaged: {p}")))?;
    }
    Ok((net, doc.run.map(|r| *r)))
}

/// What can be checked of a run state without the trainer it belongs to.
fn check_run(run: &RunState) -> std::result::Result<(), String> {
    if run.stage >= run.algorithms.len() {
        return Err(format!(
            "its run is at algorithm {} of a call with {}",
            run.stage + 1,
            run.algorithms.len()
        ));
    }
    Ok(())
}
