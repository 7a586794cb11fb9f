//! Model files: a model saved as a versioned MessagePack document and loaded back bit for bit.
//!
//! A file is an *envelope* `{format, version, payload}` whose payload is itself a MessagePack
//! document. The reader checks the format name and version before it decodes the payload, so a
//! file of another kind or from a newer build is reported as such rather than as damage. The
//! envelope is generic: training snapshots reuse it under their own format name.
//!
//! A model's payload holds its kind, its layer specs as given (custom layers by the name their
//! constructor is registered under in a [`Registry`]), its options and its named parameters.
//! Loading rebuilds the network from the specs and then overwrites every parameter, so the
//! loaded model computes exactly what the saved one did.
//!
//! Every length in a file is checked against the bytes that remain before anything is allocated
//! for it, and every parameter's data against its shape and against the rebuilt layer, so a
//! damaged file is an [`Error::File`] naming the file and the problem, never a panic or a huge
//! allocation. Writes are atomic (see [`write_atomic`]).
//!
//! ```
//! use nets::Regressor;
//! use tape::Tensor;
//! let path = std::env::temp_dir().join(format!("nets-file-doc-{}.model", std::process::id()));
//! let net = Regressor::new(&[3, 4, 2])?;
//! net.save(&path)?;
//! let back = Regressor::load(&path)?;
//! let x = Tensor::new(&[1, 3], vec![0.5, -1.0, 2.0])?;
//! assert_eq!(back.predict(&x)?, net.predict(&x)?);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), nets::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::init::{BiasInit, WeightInit};
use crate::layers::{Form, Layer, LayerContext, LayerSpec, MakeLayer};
use crate::losses::Loss;
use crate::network::{Autoencoder, Classifier, Kind, ModelOptions, Network, Regressor};
use crate::recurrent::{Cell, RecurrentOptions, SequenceOptions};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The format name every model file carries.
pub const MODEL_FORMAT: &str = "theanets-rs model";

/// The model file version this build writes. It reads every version from 1 up to this one and
/// refuses newer ones; the number goes up whenever a field changes meaning or a reader of the
/// previous version could not decode the payload.
pub const MODEL_VERSION: u32 = 1;

/// An [`Error::File`] for `path`.
pub(crate) fn file_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Constructors of custom layers by name, so that a model file can record a custom layer as a
/// name and rebuild it on loading.
///
/// ```
/// use nets::{LayerSpec, Registry, Regressor, ModelOptions};
/// use nets::layers::Feedforward;
/// let mut registry = Registry::new();
/// registry.register("plain", |ctx| {
///     let layer = Feedforward::new(&ctx.name, ctx.size, &ctx.inputs, "tanh",
///                                  &Default::default(), &Default::default(), 7)?;
///     Ok(Box::new(layer) as Box<dyn nets::Layer>)
/// })?;
/// let specs = vec![LayerSpec::input(3), registry.spec("plain", 4)?, LayerSpec::dense(2)];
/// let net = Regressor::build(specs, ModelOptions::default())?;
/// # let _ = net;
/// # Ok::<(), nets::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    makers: BTreeMap<String, MakeLayer>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.makers.keys()).finish()
    }
}

impl Registry {
    /// An empty registry: models with built-in layers only need no more.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `make` under `name`. A name is registered once: a second constructor under the
    /// same name would make old files rebuild with different code, so it is an error.
    pub fn register(
        &mut self,
        name: &str,
        make: impl Fn(&LayerContext) -> Result<Box<dyn Layer>> + Send + Sync + 'static,
    ) -> Result<&mut Registry> {
        let what = format!("custom layer `{name}`");
        if name.is_empty() {
            return Err(crate::error::config(what, "needs a non-empty name"));
        }
        if self.makers.contains_key(name) {
            return Err(crate::error::config(what, "is already registered"));
        }
        self.makers.insert(name.to_string(), Arc::new(make));
        Ok(self)
    }

    /// A spec for a layer made by the constructor registered as `name`, `size` units wide; the
    /// usual builder methods (`.name(…)`, `.inputs(…)`, …) apply to it.
    pub fn spec(&self, name: &str, size: usize) -> Result<LayerSpec> {
        let make = self.makers.get(name).ok_or_else(|| self.not_found(name))?;
        let mut spec = LayerSpec::dense(size);
        spec.custom = Some(make.clone());
        spec.registered = Some(name.to_string());
        Ok(spec)
    }

    fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            what: format!("registered custom layer `{name}`"),
            available: self.makers.keys().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Bytes stored as a MessagePack `bin` and read back borrowed from the file's buffer, so reading
/// a parameter allocates nothing beyond the tensor it becomes.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes<'a>, D::Error> {
        <&'a [u8]>::deserialize(d).map(Bytes)
    }
}

/// The outer document of every file.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    format: &'a str,
    version: u32,
    #[serde(borrow)]
    payload: Bytes<'a>,
}

/// Writes a payload (encoded with [`encode`]) under `format` and `version` to `path`,
/// atomically.
pub(crate) fn write_envelope(
    path: &Path,
    format: &str,
    version: u32,
    payload: &[u8],
) -> Result<()> {
    let envelope = Envelope {
        format,
        version,
        payload: Bytes(payload),
    };
    write_atomic(path, &encode(path, &envelope)?)
}

/// `value` as a MessagePack document with structs as maps keyed by field name, so that fields
/// can be added later without shifting the others.
pub(crate) fn encode(path: &Path, value: &impl Serialize) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| file_error(path, format!("cannot encode: {e}")))
}

/// The payload of a file read into `bytes`, with its version, after checking that the file is a
/// `format` document of a version from 1 to `newest`.
pub(crate) fn read_envelope<'a>(
    path: &Path,
    bytes: &'a [u8],
    format: &str,
    newest: u32,
) -> Result<(u32, &'a [u8])> {
    let envelope: Envelope = decode(path, bytes, &format!("not a {format} file"))?;
    if envelope.format != format {
        // A damaged or hostile name could be long; the start says what it is.
        let found: String = envelope.format.chars().take(80).collect();
        return Err(file_error(
            path,
            format!("is a `{found}` file, expected a `{format}` file"),
        ));
    }
    if envelope.version > newest {
        return Err(file_error(
            path,
            format!(
                "{format} version {} is newer than this build reads (versions 1 to {newest})",
                envelope.version
            ),
        ));
    }
    if envelope.version == 0 {
        return Err(file_error(
            path,
            format!("{format} version 0 does not exist"),
        ));
    }
    Ok((envelope.version, envelope.payload.0))
}

/// Decodes a MessagePack document after checking every length it declares against the bytes
/// that remain; `what` starts the error message ("not a … file", "the model is damaged").
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    path: &Path,
    bytes: &'a [u8],
    what: &str,
) -> Result<T> {
    check_lengths(bytes).map_err(|p| file_error(path, format!("{what}: {p}")))?;
    rmp_serde::from_slice(bytes).map_err(|e| file_error(path, format!("{what}: {e}")))
}

/// Walks a MessagePack document without decoding it and checks that every declared length fits
/// in the bytes that remain and that the document ends exactly at the end of `bytes`.
///
/// rmp-serde reserves room for a sequence from its declared length (serde caps that at 1 MiB),
/// before reading any element; a few damaged bytes could so claim megabytes. After this check
/// every declared count is at most the number of bytes left, since each value takes at least
/// one byte. The walk keeps a count of values still to read instead of a stack, so nesting depth
/// costs nothing.
pub(crate) fn check_lengths(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    let be = |pos: usize, n: usize| -> std::result::Result<u64, String> {
        let field = bytes
            .get(pos..pos + n)
            .ok_or_else(|| format!("ends inside a length field at byte {pos}"))?;
        Ok(field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    while pending > 0 {
        let marker = *bytes
            .get(pos)
            .ok_or_else(|| format!("ends early, at byte {pos}, with {pending} value(s) missing"))?;
        let start = pos;
        pos += 1;
        pending -= 1;
        // (bytes of payload to skip, values that follow as elements)
        let (skip, items): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (be(pos, 1)?, 0),
            0xc5 | 0xda => (be(pos, 2)?, 0),
            0xc6 | 0xdb => (be(pos, 4)?, 0),
            0xc7 => (be(pos, 1)? + 1, 0),
            0xc8 => (be(pos, 2)? + 1, 0),
            0xc9 => (be(pos, 4)? + 1, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, be(pos, 2)?),
            0xdd => (0, be(pos, 4)?),
            0xde => (0, 2 * be(pos, 2)?),
            0xdf => (0, 2 * be(pos, 4)?),
            0xc1 => {
                return Err(format!(
                    "byte {start} is 0xc1, which MessagePack never uses"
                ))
            }
        };
        // The length field itself, for the markers that have one.
        pos += match marker {
            0xc4 | 0xd9 | 0xc7 => 1,
            0xc5 | 0xda | 0xc8 | 0xdc | 0xde => 2,
            0xc6 | 0xdb | 0xc9 | 0xdd | 0xdf => 4,
            _ => 0,
        };
        let left = (bytes.len() - pos.min(bytes.len())) as u64;
        if skip > left {
            return Err(format!(
                "the value at byte {start} declares {skip} bytes but only {left} remain"
            ));
        }
        pos += skip as usize;
        pending += items;
        let left = (bytes.len() - pos) as u64;
        if pending > left {
            return Err(format!(
                "the value at byte {start} declares more elements than the {left} bytes left can hold"
            ));
        }
    }
    if pos != bytes.len() {
        return Err(format!(
            "the document ends at byte {pos} but the file has {} bytes",
            bytes.len()
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that `path` holds either its old contents or all of the new ones,
/// even across a crash: a temporary file in the same directory (a rename is only atomic within
/// one file system), written and flushed to disk, renamed over `path`, and the directory flushed
/// so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, e: std::io::Error| file_error(path, format!("cannot {what}: {e}"));
    let name = path
        .file_name()
        .ok_or_else(|| file_error(path, "is not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        unique()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write a temporary file beside it", e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("rename the temporary file over it", e));
    }
    sync_dir(&dir).map_err(|e| io("flush its directory", e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened as files elsewhere; the rename is what there is.
    Ok(())
}

/// A number distinct for each call in this process, so concurrent writers of one path never
/// share a temporary file.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Reads a whole file, as a file error naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))
}

/// Version 1 of a model's payload.
#[allow(clippy::vec_box)] // boxed on purpose, see `layers`
#[derive(Serialize, Deserialize)]
struct ModelDoc<'a> {
    kind: KindDoc,
    // Boxed elements: serde reserves room for a sequence's declared length before reading it,
    // and a box is 8 bytes whatever the element.
    layers: Vec<Box<LayerDoc>>,
    options: OptionsDoc,
    #[serde(borrow)]
    params: Vec<Box<ParamDoc<'a>>>,
    /// Set for a recurrent model (added in place: files without it are feedforward models).
    #[serde(default)]
    sequence: Option<SequenceDoc>,
}

/// [`SequenceOptions`] of a recurrent model, field for field.
#[derive(Serialize, Deserialize)]
struct SequenceDoc {
    masked: bool,
}

/// [`RecurrentOptions`] of a recurrent layer, field for field.
#[derive(Serialize, Deserialize, Default)]
struct RecurrentDoc {
    backward: bool,
    bptt_limit: Option<usize>,
    h_0: Option<String>,
    c_0: Option<String>,
    stateful: Option<usize>,
    forget_bias: Option<f32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum KindDoc {
    Regressor,
    Classifier,
    Autoencoder,
}

impl From<Kind> for KindDoc {
    fn from(k: Kind) -> KindDoc {
        match k {
            Kind::Regressor => KindDoc::Regressor,
            Kind::Classifier => KindDoc::Classifier,
            Kind::Autoencoder => KindDoc::Autoencoder,
        }
    }
}

impl From<KindDoc> for Kind {
    fn from(k: KindDoc) -> Kind {
        match k {
            KindDoc::Regressor => Kind::Regressor,
            KindDoc::Classifier => Kind::Classifier,
            KindDoc::Autoencoder => Kind::Autoencoder,
        }
    }
}

/// A layer's form; a custom layer is recorded by its registered name.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormDoc {
    Input,
    Dense,
    Classifier,
    Tied,
    Product,
    Concatenate,
    Flatten,
    Reshape(Vec<usize>),
    Custom(String),
    Rnn,
    Lstm,
    Gru,
}

/// A [`LayerSpec`] as given, field for field.
#[derive(Serialize, Deserialize)]
struct LayerDoc {
    form: FormDoc,
    size: Option<usize>,
    name: Option<String>,
    activation: Option<String>,
    inputs: Vec<String>,
    partner: Option<String>,
    weight_mean: f32,
    weight_std: Option<f32>,
    weight_sparsity: f32,
    weight_diagonal: f32,
    weight_radius: f32,
    bias_mean: f32,
    bias_std: f32,
    /// A recurrent layer's options (added in place: absent for other layers).
    #[serde(default)]
    recurrent: Option<RecurrentDoc>,
}

/// [`ModelOptions`], field for field (elements boxed as in [`ModelDoc`]).
#[allow(clippy::vec_box)]
#[derive(Serialize, Deserialize)]
struct OptionsDoc {
    seed: u64,
    losses: Vec<Box<Loss>>,
    weighted: bool,
    monitors: Vec<Box<(String, Vec<f32>)>>,
    /// Added in place (files without it read as no names), so version 1 still describes it.
    #[serde(default)]
    classes: Vec<String>,
}

/// A named parameter: its shape and its values as little-endian f32 bytes (exact, NaN payloads
/// included).
#[derive(Serialize, Deserialize)]
struct ParamDoc<'a> {
    name: String,
    shape: Vec<usize>,
    #[serde(borrow)]
    data: Bytes<'a>,
}

impl LayerDoc {
    /// The document of `spec`, which built `layer`.
    fn new(spec: &LayerSpec, layer: &dyn Layer, path: &Path) -> Result<Box<LayerDoc>> {
        // Destructured in full so that a new spec field cannot be forgotten here.
        let LayerSpec {
            form,
            size,
            name,
            activation,
            inputs,
            partner,
            weights,
            bias,
            custom,
            registered,
            recurrent,
        } = spec;
        let form = match (custom, registered) {
            (Some(_), Some(r)) => FormDoc::Custom(r.clone()),
            (Some(_), None) => {
                return Err(file_error(
                    path,
                    format!(
                        "layer `{}` is a custom layer with no registered constructor, so a file \
                         cannot rebuild it; make its spec with Registry::spec",
                        layer.name()
                    ),
                ))
            }
            (None, _) => match form {
                Form::Input => FormDoc::Input,
                Form::Feedforward => FormDoc::Dense,
                Form::Classifier => FormDoc::Classifier,
                Form::Tied => FormDoc::Tied,
                Form::Product => FormDoc::Product,
                Form::Concatenate => FormDoc::Concatenate,
                Form::Flatten => FormDoc::Flatten,
                Form::Reshape(dims) => FormDoc::Reshape(dims.clone()),
                Form::Recurrent(Cell::Rnn) => FormDoc::Rnn,
                Form::Recurrent(Cell::Lstm) => FormDoc::Lstm,
                Form::Recurrent(Cell::Gru) => FormDoc::Gru,
            },
        };
        let RecurrentOptions {
            backward,
            bptt_limit,
            h_0,
            c_0,
            stateful,
            forget_bias,
        } = recurrent;
        let recurrent = (*recurrent != RecurrentOptions::default()).then(|| RecurrentDoc {
            backward: *backward,
            bptt_limit: *bptt_limit,
            h_0: h_0.clone(),
            c_0: c_0.clone(),
            stateful: *stateful,
            forget_bias: *forget_bias,
        });
        let WeightInit {
            mean,
            std,
            sparsity,
            diagonal,
            radius,
        } = weights;
        let BiasInit {
            mean: bias_mean,
            std: bias_std,
        } = bias;
        Ok(Box::new(LayerDoc {
            form,
            size: *size,
            name: name.clone(),
            activation: activation.clone(),
            inputs: inputs.clone(),
            partner: partner.clone(),
            weight_mean: *mean,
            weight_std: *std,
            weight_sparsity: *sparsity,
            weight_diagonal: *diagonal,
            weight_radius: *radius,
            bias_mean: *bias_mean,
            bias_std: *bias_std,
            recurrent,
        }))
    }

    /// The spec this document describes, custom constructors taken from `registry`.
    fn spec(&self, registry: &Registry, path: &Path) -> Result<LayerSpec> {
        let size = self.size.unwrap_or(0);
        let mut spec =
            match &self.form {
                FormDoc::Input => LayerSpec::input(size),
                FormDoc::Dense => LayerSpec::dense(size),
                FormDoc::Classifier => LayerSpec::classifier(size),
                FormDoc::Tied => LayerSpec::tied(),
                FormDoc::Product => LayerSpec::product(size),
                FormDoc::Concatenate => LayerSpec::concatenate(size),
                FormDoc::Flatten => LayerSpec::flatten(size),
                FormDoc::Reshape(dims) => LayerSpec::reshape(dims),
                FormDoc::Rnn => LayerSpec::rnn(size),
                FormDoc::Lstm => LayerSpec::lstm(size),
                FormDoc::Gru => LayerSpec::gru(size),
                FormDoc::Custom(name) => {
                    registry.spec(name, size).map_err(|_| {
                        file_error(
                            path,
                            format!(
                        "the model uses the custom layer `{name}`, which is not registered; \
                         registered: [{}]; load with a Registry holding it",
                        registry.makers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                        )
                    })?
                }
            };
        // The constructors above fill the size from their argument; the spec as given may
        // have had none (a tied layer, or a reshape's own dims).
        spec.size = self.size;
        spec.name = self.name.clone();
        spec.activation = self.activation.clone();
        spec.inputs = self.inputs.clone();
        spec.partner = self.partner.clone();
        spec.weights = WeightInit {
            mean: self.weight_mean,
            std: self.weight_std,
            sparsity: self.weight_sparsity,
            diagonal: self.weight_diagonal,
            radius: self.weight_radius,
        };
        spec.bias = BiasInit {
            mean: self.bias_mean,
            std: self.bias_std,
        };
        if let Some(r) = &self.recurrent {
            spec.recurrent = RecurrentOptions {
                backward: r.backward,
                bptt_limit: r.bptt_limit,
                h_0: r.h_0.clone(),
                c_0: r.c_0.clone(),
                stateful: r.stateful,
                forget_bias: r.forget_bias,
            };
        }
        Ok(spec)
    }
}

/// Little-endian bytes of `values`.
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The values of little-endian f32 `bytes` (whose length is a multiple of 4).
pub(crate) fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The number of values of `shape`, or `None` if it overflows.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Network {
    /// Saves the model to `path` (a MessagePack document, see the module docs), atomically:
    /// `path` holds the old file or the new one, never a mixture.
    ///
    /// Errors ([`Error::File`]): a custom layer whose spec was not made with
    /// [`Registry::spec`] (named in the message), or a failure to write.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        write_envelope(
            path,
            MODEL_FORMAT,
            MODEL_VERSION,
            &self.model_payload(path)?,
        )
    }

    /// The model as a version-[`MODEL_VERSION`] payload, for a file or for a document that
    /// embeds a model (a snapshot); `path` is the file named in errors.
    pub(crate) fn model_payload(&self, path: &Path) -> Result<Vec<u8>> {
        let layers = self
            .specs
            .iter()
            .zip(&self.layers)
            .map(|(spec, layer)| LayerDoc::new(spec, layer.as_ref(), path))
            .collect::<Result<Vec<_>>>()?;
        // Destructured in full so that a new option cannot be forgotten here.
        let ModelOptions {
            seed,
            losses,
            weighted,
            monitors,
            classes,
        } = &self.options;
        let options = OptionsDoc {
            seed: *seed,
            losses: losses.iter().cloned().map(Box::new).collect(),
            weighted: *weighted,
            monitors: monitors.iter().cloned().map(Box::new).collect(),
            classes: classes.clone(),
        };
        let params = self.params();
        let data: Vec<Vec<u8>> = params.iter().map(|p| f32_bytes(p.read().data())).collect();
        let mut seen = std::collections::HashSet::new();
        let mut docs = Vec::with_capacity(params.len());
        for (p, bytes) in params.iter().zip(&data) {
            if !seen.insert(p.name()) {
                return Err(file_error(
                    path,
                    format!("two parameters of the model are named `{}`", p.name()),
                ));
            }
            docs.push(Box::new(ParamDoc {
                name: p.name().to_string(),
                shape: p.shape().to_vec(),
                data: Bytes(bytes),
            }));
        }
        let doc = ModelDoc {
            kind: self.kind.into(),
            layers,
            options,
            params: docs,
            sequence: self.sequence.map(|s| SequenceDoc { masked: s.masked }),
        };
        encode(path, &doc)
    }

    /// Loads a model of any kind saved with [`Network::save`] whose layers are all built in.
    pub fn load(path: impl AsRef<Path>) -> Result<Network> {
        load_network(path.as_ref(), &Registry::new(), None)
    }

    /// Loads a model of any kind, its custom layers made by the constructors in `registry`.
    ///
    /// Errors ([`Error::File`], naming the file): unreadable; not a model file (another format
    /// name, found and expected given); a newer format version; damaged contents (truncated,
    /// a length beyond the end, a parameter whose data does not fill its shape); a custom layer
    /// missing from `registry`; or parameters that do not match the rebuilt layers.
    pub fn load_with(path: impl AsRef<Path>, registry: &Registry) -> Result<Network> {
        load_network(path.as_ref(), registry, None)
    }
}

macro_rules! model_files {
    ($name:ident, $kind:expr) => {
        impl $name {
            /// Loads a model of this kind saved with [`Network::save`] (built-in layers only;
            /// see [`Network::load_with`] for errors). A file holding another kind of model is
            /// an [`Error::File`] naming both kinds.
            pub fn load(path: impl AsRef<Path>) -> Result<$name> {
                $name::load_with(path, &Registry::new())
            }

            /// Loads a model of this kind, its custom layers made by the constructors in
            /// `registry`.
            pub fn load_with(path: impl AsRef<Path>, registry: &Registry) -> Result<$name> {
                Ok($name(load_network(path.as_ref(), registry, Some($kind))?))
            }
        }
    };
}

model_files!(Regressor, Kind::Regressor);
model_files!(Classifier, Kind::Classifier);
model_files!(Autoencoder, Kind::Autoencoder);

/// Reads, checks and rebuilds a model file; `expected` is the kind the caller wants, if any.
fn load_network(path: &Path, registry: &Registry, expected: Option<Kind>) -> Result<Network> {
    let bytes = read_file(path)?;
    let (_version, payload) = read_envelope(path, &bytes, MODEL_FORMAT, MODEL_VERSION)?;
    network_from_payload(path, payload, registry, expected)
}

/// Rebuilds a model from a payload made by [`Network::model_payload`] (version 1, the only
/// one so far), checking it as the module docs describe; `path` is the file named in errors.
pub(crate) fn network_from_payload(
    path: &Path,
    payload: &[u8],
    registry: &Registry,
    expected: Option<Kind>,
) -> Result<Network> {
    let doc: ModelDoc = decode(path, payload, "the model is damaged")?;
    let kind = Kind::from(doc.kind);
    if let Some(want) = expected {
        if want != kind {
            return Err(file_error(
                path,
                format!("holds a {kind:?} model, not a {want:?}"),
            ));
        }
    }
    let saved = check_params(&doc.params).map_err(|p| file_error(path, p))?;
    let total = doc.params.iter().map(|p| p.data.0.len() / 4).sum::<usize>();
    check_budget(&doc.layers, total).map_err(|p| file_error(path, p))?;
    let specs = doc
        .layers
        .iter()
        .map(|l| l.spec(registry, path))
        .collect::<Result<Vec<_>>>()?;
    let OptionsDoc {
        seed,
        losses,
        weighted,
        monitors,
        classes,
    } = doc.options;
    let options = ModelOptions {
        seed,
        losses: losses.into_iter().map(|l| *l).collect(),
        weighted,
        monitors: monitors.into_iter().map(|m| *m).collect(),
        classes,
    };
    let sequence = doc.sequence.map(|s| SequenceOptions { masked: s.masked });
    let net = Network::with_sequence(kind, specs, options, sequence)
        .map_err(|e| file_error(path, format!("the model in the file cannot be built: {e}")))?;
    restore_params(&net, &saved).map_err(|p| file_error(path, p))?;
    Ok(net)
}

/// The saved parameters by name, after checking that each one's data fills its shape exactly
/// and that no name repeats.
fn check_params<'d, 'a>(
    params: &'d [Box<ParamDoc<'a>>],
) -> std::result::Result<HashMap<&'d str, &'d ParamDoc<'a>>, String> {
    let mut by_name = HashMap::with_capacity(params.len());
    for p in params {
        let n = element_count(&p.shape)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| {
                format!(
                    "parameter `{}` has an impossible shape {:?}",
                    p.name, p.shape
                )
            })?;
        if n != p.data.0.len() {
            return Err(format!(
                "parameter `{}` has shape {:?} ({} bytes of f32) but holds {} bytes",
                p.name,
                p.shape,
                n,
                p.data.0.len()
            ));
        }
        if by_name.insert(p.name.as_str(), p.as_ref()).is_some() {
            return Err(format!("parameter `{}` appears twice", p.name));
        }
    }
    Ok(by_name)
}

/// What [`check_budget`] knows of an earlier layer.
struct Seen {
    name: String,
    width: usize,
    /// The width of its first input, the rows of its first weight matrix (dense layers).
    first_in: Option<usize>,
    tied: bool,
    /// Whether it owns parameters a tied layer could borrow (dense and custom layers).
    has_weights: bool,
}

/// Checks, before a network is built from `layers`, that the parameters its built-in layers
/// would create fit in the `total` values the file holds. Building allocates those parameters,
/// so a damaged size could otherwise ask for gigabytes before the shapes are compared. Widths
/// follow the rules of `resolve.rs`; where they cannot be known here (a custom partner) the
/// widest earlier layer stands in, which only errs towards building and comparing afterwards.
fn check_budget(layers: &[Box<LayerDoc>], total: usize) -> std::result::Result<(), String> {
    let last = layers.len().saturating_sub(1);
    let mut seen: Vec<Seen> = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let name = l.name.clone().unwrap_or_else(|| match i {
            0 => "in".to_string(),
            _ if i == last => "out".to_string(),
            _ => format!("hid{i}"),
        });
        let width_of = |input: &str| {
            let layer = input.split(':').next().unwrap_or(input);
            seen.iter().find(|s| s.name == layer).map_or(0, |s| s.width)
        };
        let input_widths: Vec<usize> = if l.inputs.is_empty() {
            seen.last().map(|s| s.width).into_iter().collect()
        } else {
            l.inputs.iter().map(|s| width_of(s)).collect()
        };
        let dense = matches!(l.form, FormDoc::Dense | FormDoc::Classifier) && i > 0;
        let recurrent = matches!(l.form, FormDoc::Rnn | FormDoc::Lstm | FormDoc::Gru);
        let width = match &l.form {
            FormDoc::Tied => tied_width(l, &seen),
            FormDoc::Reshape(dims) => dims.last().copied().unwrap_or(0),
            _ => l.size.unwrap_or(0),
        };
        let own = if dense {
            let fan_in = input_widths
                .iter()
                .fold(0usize, |a, &w| a.saturating_add(w));
            fan_in.saturating_add(1).saturating_mul(width)
        } else if matches!(l.form, FormDoc::Tied) {
            width
        } else if recurrent {
            // At least the hidden-to-hidden matrix.
            width.saturating_mul(width)
        } else {
            0
        };
        let needed = own.saturating_add(activation_params(l.activation.as_deref(), width));
        if needed > total {
            return Err(format!(
                "layer `{name}` would have {needed} parameter values but the file holds {total} in all"
            ));
        }
        seen.push(Seen {
            name,
            width,
            first_in: dense.then(|| input_widths.first().copied().unwrap_or(0)),
            tied: matches!(l.form, FormDoc::Tied),
            has_weights: dense || matches!(l.form, FormDoc::Custom(_)),
        });
    }
    Ok(())
}

/// A tied layer's width: the rows of its partner's weight matrix, the partner named or found by
/// theanets' counting rule as in `resolve.rs`.
fn tied_width(l: &LayerDoc, seen: &[Seen]) -> usize {
    let widest = seen.iter().map(|s| s.width).max().unwrap_or(0);
    let partner = match &l.partner {
        Some(p) => seen.iter().find(|s| &s.name == p),
        None => {
            let mut count = 1i32;
            seen.iter().rev().find(|s| {
                count += if s.tied { 1 } else { -1 };
                count == 0
            })
        }
    };
    partner
        .filter(|p| p.has_weights)
        .and_then(|p| p.first_in)
        .unwrap_or(widest)
}

/// How many parameter values an activation spec creates for `width` units (see
/// [`crate::activations::Activation::build`]); unknown names count 0 and fail when built.
fn activation_params(spec: Option<&str>, width: usize) -> usize {
    spec.unwrap_or("")
        .split('+')
        .map(|part| {
            let part = part.trim().to_ascii_lowercase();
            let per_unit = match part.as_str() {
                "prelu" | "leaky-relu" => 1,
                "lgrelu" | "leaky-gain-relu" => 2,
                p => p
                    .strip_prefix("maxout:")
                    .and_then(|k| k.parse::<usize>().ok())
                    .map_or(0, |k| k.saturating_mul(2)),
            };
            per_unit.saturating_mul(width)
        })
        .fold(0usize, usize::saturating_add)
}

/// Sets every parameter of `net` from `saved`, which must hold exactly the network's parameters
/// with the same shapes.
fn restore_params(
    net: &Network,
    saved: &HashMap<&str, &ParamDoc<'_>>,
) -> std::result::Result<(), String> {
    let params = net.params();
    for p in &params {
        let doc = saved.get(p.name()).ok_or_else(|| {
            format!(
                "the model has a parameter `{}` of shape {:?} that the file does not hold",
                p.name(),
                p.shape().as_slice()
            )
        })?;
        if doc.shape.as_slice() != p.shape().as_slice() {
            return Err(format!(
                "parameter `{}` has shape {:?} in the file but {:?} in the model",
                p.name(),
                doc.shape,
                p.shape().as_slice()
            ));
        }
        let value =
            tape::Tensor::new(&doc.shape, f32_values(doc.data.0)).map_err(|e| e.to_string())?;
        p.set(value).map_err(|e| e.to_string())?;
    }
    if let Some(extra) = saved
        .keys()
        .find(|name| !params.iter().any(|p| p.name() == **name))
    {
        return Err(format!(
            "the file holds a parameter `{extra}` that the model does not have"
        ));
    }
    Ok(())
}
