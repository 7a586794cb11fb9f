//! Parameters as safetensors files, to exchange weights with PyTorch and other frameworks.
//!
//! Two layouts ([`Layout`]):
//!
//! - [`Layout::Native`]: every parameter under its own name (`hid1.w`, `hid1.b`, `out.leak`, …)
//!   and shape, as f32. Any model, tied and custom layers included.
//! - [`Layout::Torch`]: the names and shapes of a PyTorch `nn.Sequential` whose modules
//!   alternate `nn.Linear` and a parameter-free activation module:
//!
//!   ```text
//!   nn.Sequential(nn.Linear(n0, n1), act1, nn.Linear(n1, n2), act2, …, nn.Linear(nk-1, nk)[, actk])
//!   ```
//!
//!   The `j`-th layer after the input (`j = 0, 1, …`; `hid1` is `j = 0`) is the module at index
//!   `2j`, so its parameters map as
//!
//!   | here | shape | PyTorch | shape |
//!   |---|---|---|---|
//!   | `{layer}.w` | `[n_in, n_out]` | `{2j}.weight` | `[n_out, n_in]` (transposed) |
//!   | `{layer}.b` | `[n_out]` | `{2j}.bias` | `[n_out]` |
//!
//!   The activation modules sit at the odd indices `2j + 1` and hold no parameters; a layer with
//!   the `linear` activation still takes its slot (as `nn.Identity()`), so indices stay `2j`.
//!   The transposition is because a layer here computes `x·W` and `nn.Linear` computes `x·Wᵀ`.
//!   Only a chain of plain dense layers maps: each layer after the input must read just the
//!   layer before it and own exactly `w` and `b` (no tied layer, no parametric activation such
//!   as `prelu`, no layer with several inputs); anything else is an error naming the layer.
//!
//! Writes are atomic ([`crate::file::write_atomic`]). Loading checks names, dtypes (F32 only)
//! and shapes, and refuses a file holding tensors the model has no place for, so that a file
//! for another architecture never loads halfway.

use crate::error::Result;
use crate::file::{f32_bytes, f32_values, file_error, read_file, write_atomic};
use crate::network::Network;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;
use tape::{Param, Tensor};

/// How parameter names and shapes are laid out in a safetensors file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// This crate's names and shapes.
    Native,
    /// A PyTorch `nn.Sequential` of `nn.Linear` layers with activations between (see the
    /// module docs for the exact mapping).
    Torch,
}

/// One parameter's place in a file: the parameter, its name there, and whether the file holds
/// its transpose.
struct Slot {
    param: Param,
    name: String,
    transposed: bool,
}

/// Where each parameter of `net` goes under `layout`, or why the model has no such layout.
fn slots(net: &Network, layout: Layout) -> std::result::Result<Vec<Slot>, String> {
    match layout {
        Layout::Native => Ok(net
            .params()
            .into_iter()
            .map(|p| Slot {
                name: p.name().to_string(),
                param: p,
                transposed: false,
            })
            .collect()),
        Layout::Torch => torch_slots(net),
    }
}

fn torch_slots(net: &Network) -> std::result::Result<Vec<Slot>, String> {
    let layers = net.layers();
    let mut out = Vec::new();
    for (j, pair) in layers.windows(2).enumerate() {
        let (prev, layer) = (&pair[0], &pair[1]);
        let name = layer.name();
        let no_linear = |why: &str| {
            format!("layer `{name}` has no nn.Linear counterpart in the Torch layout: {why}")
        };
        let reads_prev =
            layer.inputs().len() == 1 && layer.inputs()[0].0 == format!("{}:out", prev.name());
        if !reads_prev {
            return Err(no_linear(&format!(
                "it must read only the layer before it, `{}`",
                prev.name()
            )));
        }
        if layer.is_tied() {
            return Err(no_linear("it is tied to another layer's weights"));
        }
        let params = layer.params();
        let find = |short: &str, rank: usize| {
            params
                .iter()
                .find(|p| p.name() == format!("{name}.{short}") && p.shape().len() == rank)
                .cloned()
        };
        let (Some(w), Some(b), 2) = (find("w", 2), find("b", 1), params.len()) else {
            return Err(no_linear(
                "it must own exactly a weight matrix `w` and a bias `b` (a parametric \
                 activation or a parameter-free layer has no counterpart)",
            ));
        };
        out.push(Slot {
            param: w,
            name: format!("{}.weight", 2 * j),
            transposed: true,
        });
        out.push(Slot {
            param: b,
            name: format!("{}.bias", 2 * j),
            transposed: false,
        });
    }
    Ok(out)
}

/// The transpose of a row-major `rows × cols` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The shape a slot has in the file.
fn file_shape(slot: &Slot) -> Vec<usize> {
    let mut shape = slot.param.shape().to_vec();
    if slot.transposed {
        shape.reverse();
    }
    shape
}

impl Network {
    /// Writes the parameters to `path` as a safetensors file in `layout` (atomically).
    ///
    /// Errors ([`crate::Error::File`]): a model that does not fit [`Layout::Torch`] (naming the
    /// layer and why), or a failure to encode or write.
    pub fn save_safetensors(&self, path: impl AsRef<Path>, layout: Layout) -> Result<()> {
        let path = path.as_ref();
        let slots = slots(self, layout).map_err(|p| file_error(path, p))?;
        let data: Vec<Vec<u8>> = slots
            .iter()
            .map(|s| {
                let value = s.param.read();
                let shape = value.shape();
                if s.transposed {
                    f32_bytes(&transpose(value.data(), shape[0], shape[1]))
                } else {
                    f32_bytes(value.data())
                }
            })
            .collect();
        let views = slots
            .iter()
            .zip(&data)
            .map(|(s, bytes)| {
                TensorView::new(Dtype::F32, file_shape(s), bytes)
                    .map(|v| (s.name.clone(), v))
                    .map_err(|e| file_error(path, format!("cannot encode `{}`: {e}", s.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, None)
            .map_err(|e| file_error(path, format!("cannot encode: {e}")))?;
        write_atomic(path, &bytes)
    }

    /// Sets the parameters from a safetensors file in `layout`. The file must hold exactly the
    /// model's parameters under `layout`'s names, as F32 tensors of the right shapes; nothing is
    /// changed unless all of them are.
    ///
    /// Errors ([`crate::Error::File`], naming the file): unreadable or not safetensors; a model
    /// that does not fit the layout; a tensor missing, of another dtype or shape, or one the
    /// model has no place for.
    pub fn load_safetensors(&self, path: impl AsRef<Path>, layout: Layout) -> Result<()> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
        let slots = slots(self, layout).map_err(|p| file_error(path, p))?;
        if let Some(extra) = file
            .names()
            .into_iter()
            .find(|n| !slots.iter().any(|s| s.name == **n))
        {
            return Err(file_error(
                path,
                format!(
                    "holds a tensor `{extra}` that the model has no place for in the {layout:?} layout"
                ),
            ));
        }
        // Every tensor is checked and converted before any parameter changes.
        let mut values = Vec::with_capacity(slots.len());
        for s in &slots {
            values.push(read_slot(&file, s).map_err(|p| file_error(path, p))?);
        }
        for (s, v) in slots.iter().zip(values) {
            s.param.set(v)?;
        }
        Ok(())
    }
}

/// The value of one slot's tensor, in the parameter's own layout.
fn read_slot(file: &SafeTensors<'_>, slot: &Slot) -> std::result::Result<Tensor, String> {
    let view = file.tensor(&slot.name).map_err(|_| {
        format!(
            "has no tensor `{}` (for parameter `{}`)",
            slot.name,
            slot.param.name()
        )
    })?;
    let want = file_shape(slot);
    if view.dtype() != Dtype::F32 || view.shape() != want.as_slice() {
        return Err(format!(
            "tensor `{}` is {:?} {:?}, expected F32 {:?} (for parameter `{}`)",
            slot.name,
            view.dtype(),
            view.shape(),
            want,
            slot.param.name()
        ));
    }
    let mut data = f32_values(view.data());
    if slot.transposed {
        data = transpose(&data, want[0], want[1]);
    }
    Tensor::new(&slot.param.shape(), data).map_err(|e| e.to_string())
}
