//! Compiled, cached computations on data: outputs and predictions, decoding from codes, and the
//! loss and monitors on a data set (`evaluate`). Each is compiled once per kind of request and
//! kept in the network's caches.

use crate::error::{config, Error, Result};
use crate::layers::Layer;
use crate::network::Network;
use crate::pool::Pooled;
use crate::regularizers::Regularizers;
use optim::Monitors;
use tape::{Expr, Function, Tensor, TensorView};

/// A compiled loss-and-monitors function for [`Network::evaluate`], per set of regularizers.
#[derive(Clone)]
pub(crate) struct Evaluator {
    /// `loss`, then the monitors' names, in output order.
    names: Vec<String>,
    f: Function,
}

impl Pooled for Evaluator {
    fn is_random(&self) -> bool {
        self.f.is_random()
    }
}

impl Network {
    /// Compiles (once, then from the cache) a function from `x` to the named outputs.
    fn run_outputs(
        &self,
        key: &str,
        x: &Tensor,
        make: impl FnOnce(&Self) -> Result<(Vec<Expr>, Vec<Expr>)>,
    ) -> Result<Vec<Tensor>> {
        self.check_x(x)?;
        self.run_cached(key, &[x.view()], make)
    }

    /// Runs the function cached under `key` (compiled by `make` on first use) on `args`, on an
    /// instance leased from the pool so that other threads can run the same request meanwhile.
    fn run_cached(
        &self,
        key: &str,
        args: &[tape::TensorView<'_>],
        make: impl FnOnce(&Self) -> Result<(Vec<Expr>, Vec<Expr>)>,
    ) -> Result<Vec<Tensor>> {
        let mut f = self.compiled.lease(key, || {
            let (inputs, outputs) = make(self)?;
            Ok(Function::compile(&inputs, &outputs)?)
        })?;
        f.run(args).map_err(|e| self.data_error(e))?;
        (0..f.num_outputs())
            .map(|i| Ok(f.output(i)?.to_tensor()))
            .collect()
    }

    fn data_error(&self, e: tape::Error) -> Error {
        match e {
            tape::Error::NonFinite { index, value, .. } => Error::Data {
                what: format!("input layer `{}`", self.layers[0].name()),
                problem: format!("value {value} at flat index {index} is not finite"),
            },
            other => Error::Tape(other),
        }
    }

    /// Every named output for the data `x` (no regularizers).
    pub fn feed_forward(&self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let g = self.graph(&Regularizers::default())?;
        let input = g.inputs[0].clone();
        let (names, exprs): (Vec<String>, Vec<Expr>) = g.outputs.into_iter().unzip();
        let values = self.run_outputs("feed_forward", x, move |_| Ok((vec![input], exprs)))?;
        Ok(names.into_iter().zip(values).collect())
    }

    /// The named output (`"hid1"`, `"out:pre"`) for `x`, optionally with regularizer rewrites
    /// active (e.g. dropout at prediction time for Monte-Carlo estimates).
    pub fn output(&self, x: &Tensor, name: &str, regs: &Regularizers) -> Result<Tensor> {
        let key = format!("output {name} {regs:?}");
        let name = name.to_string();
        let regs = regs.clone();
        Ok(self
            .run_outputs(&key, x, move |net| {
                let g = net.graph(&regs)?;
                let e = g.output(&name).cloned().ok_or_else(|| Error::NotFound {
                    what: format!("output `{name}`"),
                    available: crate::graph::names(&g.outputs),
                })?;
                Ok((vec![g.inputs[0].clone()], vec![e]))
            })?
            .remove(0))
    }

    /// The output layer's values for `x`.
    pub fn predict_raw(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.layers[self.layers.len() - 1].name().to_string();
        self.output(x, &last, &Regularizers::default())
    }

    /// The network's values from a hidden layer's output `z` onwards (decoding): `z` replaces
    /// the default output of `layer` (a name, or an index with 0 the input layer).
    ///
    /// This is [`Network::decode_codes`] with one code and no input: when a later layer also
    /// reads an output computed before `layer` (a skip connection), it is an error naming that
    /// output; give its code too, or the input, with `decode_codes`.
    pub fn decode_from(&self, layer: &str, z: &Tensor) -> Result<Tensor> {
        self.decode_codes(&[(layer, z)], None)
    }

    /// The network's values given codes for one or more layers (decoding from several layers):
    /// each `(layer, code)` replaces that layer's default output, and only what the output layer
    /// still needs is computed. When that includes something computed from the network input
    /// (a later layer reads an earlier output no code replaces), `x` must be given and those
    /// values come from it; otherwise `x` is not used. The compiled function is cached per
    /// list of layers (and whether `x` is used), like every prediction.
    ///
    /// Errors: an unknown layer, a layer given twice, a code not shaped `[rows, layer size]`,
    /// codes (and `x`) with different row counts, a later layer reading a non-default output
    /// (such as `pre`) of a replaced layer, or a needed input without `x`.
    pub fn decode_codes(&self, codes: &[(&str, &Tensor)], x: Option<&Tensor>) -> Result<Tensor> {
        if codes.is_empty() {
            return Err(config("decoding", "needs at least one (layer, code) pair"));
        }
        let mut fed: Vec<&dyn Layer> = Vec::with_capacity(codes.len());
        for (layer, z) in codes {
            let l = self.layer(layer)?;
            if fed.iter().any(|f| f.name() == l.name()) {
                return Err(config(
                    format!("decoding from layer `{}`", l.name()),
                    "the layer is given two codes",
                ));
            }
            if z.rank() != 2 || z.shape()[1] != l.size() || z.shape()[0] != codes[0].1.shape()[0] {
                return Err(Error::Data {
                    what: format!("code for layer `{}`", l.name()),
                    problem: format!(
                        "decoding expects a matrix of shape [{}, {}], got shape {:?}",
                        codes[0].1.shape().first().copied().unwrap_or(0),
                        l.size(),
                        z.shape()
                    ),
                });
            }
            fed.push(l);
        }
        let fed: Vec<String> = fed.iter().map(|l| l.name().to_string()).collect();
        let what = || format!("decoding from `{}`", fed.join("`, `"));
        let reads = self.decoder_reads_input(&fed)?;
        let mut args: Vec<tape::TensorView<'_>> = codes.iter().map(|(_, z)| z.view()).collect();
        if !reads.is_empty() {
            let x = x.ok_or_else(|| {
                config(
                    what(),
                    format!(
                        "{}, computed from the network input: give codes for those outputs too, \
                         or the input x",
                        reads.join(", ")
                    ),
                )
            })?;
            self.check_x(x)?;
            if x.shape()[0] != codes[0].1.shape()[0] {
                return Err(Error::Data {
                    what: format!("input layer `{}`", self.layers[0].name()),
                    problem: format!(
                        "decoding needs as many input rows as code rows ({}), got {}",
                        codes[0].1.shape()[0],
                        x.shape()[0]
                    ),
                });
            }
            args.push(x.view());
        }
        let key = format!("decode {} with x: {}", fed.join(","), !reads.is_empty());
        Ok(self
            .run_cached(&key, &args, |net| net.decoder(&fed, !reads.is_empty()))?
            .remove(0))
    }

    /// What makes the decoder read the network input when the layers `fed` get codes: "layer
    /// `a` reads `b:out`" for each read that joins a value computed from a code with one
    /// computed from the input (empty when the codes suffice).
    fn decoder_reads_input(&self, fed: &[String]) -> Result<Vec<String>> {
        let last = self.layers.len() - 1;
        let is_fed = |layer: &str| fed.iter().any(|f| f == layer);
        // Each layer's reads as (index of the layer read, full name, whether a code gives it).
        let mut reads: Vec<Vec<(usize, String, bool)>> = Vec::with_capacity(last + 1);
        for l in &self.layers {
            let mut r = Vec::new();
            for (input, _) in l.inputs() {
                let (layer, output) = input.split_once(':').unwrap_or((input, "out"));
                let Some(j) = self.layers.iter().position(|m| m.name() == layer) else {
                    continue;
                };
                if is_fed(layer) && output != "out" {
                    return Err(config(
                        format!("decoding from `{layer}`"),
                        format!(
                            "layer `{}` reads `{input}`, which a code for `{layer}` (its \
                             default output) does not give",
                            l.name()
                        ),
                    ));
                }
                r.push((j, input.clone(), is_fed(layer)));
            }
            reads.push(r);
        }
        // Layers only read earlier ones: one backward sweep marks every layer still computed.
        let mut needed = vec![false; last + 1];
        needed[last] = !is_fed(self.layers[last].name());
        for i in (1..=last).rev() {
            if needed[i] {
                for (j, _, given) in &reads[i] {
                    needed[*j] |= !*given;
                }
            }
        }
        if !needed[0] {
            return Ok(Vec::new());
        }
        // Forward: which computed layers depend on the input, which on a code.
        let mut from_input = vec![false; last + 1];
        let mut from_code = vec![false; last + 1];
        from_input[0] = true;
        for i in 1..=last {
            if needed[i] {
                from_input[i] = reads[i]
                    .iter()
                    .any(|(j, _, given)| !given && from_input[*j]);
                from_code[i] = reads[i].iter().any(|(j, _, given)| *given || from_code[*j]);
            }
        }
        let mut crossing: Vec<String> = (1..=last)
            .filter(|&i| needed[i] && from_code[i])
            .flat_map(|i| {
                reads[i]
                    .iter()
                    .filter(|(j, _, given)| !given && from_input[*j])
                    .map(move |(_, input, _)| {
                        format!("layer `{}` reads `{input}`", self.layers[i].name())
                    })
            })
            .collect();
        if crossing.is_empty() {
            // The codes do not reach the output at all.
            crossing.push(format!(
                "the output layer `{}` does not depend on the codes",
                self.layers[last].name()
            ));
        }
        Ok(crossing)
    }

    /// The decoder's inputs (the codes in order, then `x` if `with_x`) and its output.
    fn decoder(&self, fed: &[String], with_x: bool) -> Result<(Vec<Expr>, Vec<Expr>)> {
        let feeds: Vec<(String, Expr)> = fed
            .iter()
            .map(|name| {
                let size = self.layer(name).map(|l| l.size())?;
                let full = format!("{name}:out");
                let e = Expr::input_with_dims(&full, &[None, Some(size)]);
                Ok((full, e))
            })
            .collect::<Result<_>>()?;
        let x = Expr::input_with_dims(self.layers[0].name(), &[None, Some(self.input_size())]);
        let outputs = self.connect(&x, &feeds, &Regularizers::default())?;
        let last = format!("{}:out", self.layers[self.layers.len() - 1].name());
        let out = outputs
            .into_iter()
            .find(|(n, _)| *n == last)
            .map(|(_, e)| e)
            .ok_or_else(|| config("decoding", format!("the graph has no `{last}`")))?;
        let mut inputs: Vec<Expr> = feeds.into_iter().map(|(_, e)| e).collect();
        if with_x {
            inputs.push(x);
        }
        Ok((inputs, vec![out]))
    }

    /// How many compiled functions the network keeps (one per distinct prediction, output or
    /// decoding request); repeated requests reuse them.
    pub fn compiled_functions(&self) -> usize {
        self.compiled.requests()
    }

    /// How many compiled instances the network holds for predictions, outputs and decoding,
    /// over all requests: one per request while a single thread uses the network, more when
    /// threads predict at once, at most [`POOL_SIZE`](crate::network::POOL_SIZE) per request
    /// (and one for a request with dropout or noise, whose random stream stays one sequence).
    pub fn pooled_functions(&self) -> usize {
        self.compiled.instances()
    }

    /// The loss and monitors (`loss`, `err`, `acc` for classifiers, and the model's own
    /// monitors) on a data set given as arrays in training order (`[x]`, `[x, y]`, `[x, w]`
    /// or `[x, y, w]`), without training. `loss` includes the penalties of `regs`; pass
    /// `Regularizers::default()` for the bare loss. Noise and dropout in `regs` are applied, as
    /// they are during training. Values are means over rows, computed in batches of
    /// [`EVALUATE_BATCH`] rows by a function compiled once per set of regularizers.
    ///
    /// A recurrent network takes its data in its own order (see [`crate::recurrent`]) and is
    /// evaluated in one batch, so that its values are means over the real (unmasked) steps of
    /// all sequences together; a model with stateful layers, in batches of their batch size
    /// (each starting from the state carried now, which it keeps; values weighted by rows).
    ///
    /// ```
    /// use nets::{Classifier, Regularizers};
    /// use nets::tape::Tensor;
    /// let net = Classifier::new(&[2, 3, 2])?;
    /// let x = Tensor::new(&[2, 2], vec![0.0, 1.0, 1.0, 0.0])?;
    /// let y = Tensor::vector(&[0.0, 1.0]);
    /// let m = net.evaluate(&[x, y], &Regularizers::default())?;
    /// assert_eq!(m.loss(), m.get("err").unwrap()); // no penalty asked for
    /// assert!((0.0..=1.0).contains(&m.get("acc").unwrap()));
    /// # Ok::<(), nets::Error>(())
    /// ```
    pub fn evaluate(&self, data: &[Tensor], regs: &Regularizers) -> Result<Monitors> {
        self.check_data(data)?;
        let mut evaluator = self.evaluators.lease(&format!("{regs:?}"), || {
            let g = self.graph(regs)?;
            let mut outputs = vec![g.loss.clone()];
            outputs.extend(g.monitors.iter().map(|(_, e)| e.clone()));
            let names = std::iter::once("loss".to_string())
                .chain(g.monitors.iter().map(|(n, _)| n.clone()))
                .collect();
            let f = Function::compile(&g.inputs, &outputs)?;
            Ok(Evaluator { names, f })
        })?;
        let Evaluator { names, f } = &mut *evaluator;
        let rows = data[0].shape()[0];
        // A batch's mean over real steps does not combine by rows, and a stateful layer takes
        // one batch size only: sequences go in one batch.
        let batch = match self.sequence {
            Some(_) => crate::recurrent::graph::stateful_batch(self).unwrap_or(rows),
            None => EVALUATE_BATCH,
        };
        let mut sums = vec![0.0f64; names.len()];
        let mut start = 0;
        while start < rows {
            let end = rows.min(start + batch);
            let shapes: Vec<Vec<usize>> = data
                .iter()
                .map(|t| {
                    let mut s = t.shape().to_vec();
                    s[0] = end - start;
                    s
                })
                .collect();
            let views = data
                .iter()
                .zip(&shapes)
                .map(|(t, shape)| {
                    let width: usize = t.shape()[1..].iter().product();
                    TensorView::new(shape, &t.data()[start * width..end * width])
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            f.run(&views).map_err(|e| self.data_error(e))?;
            for (k, s) in sums.iter_mut().enumerate() {
                *s += (end - start) as f64 * f64::from(f.output(k)?.data()[0]);
            }
            start = end;
        }
        Ok(Monitors(
            names
                .iter()
                .cloned()
                .zip(sums.iter().map(|s| (s / rows as f64) as f32))
                .collect(),
        ))
    }

    /// The loss (with the penalties of `regs`) on `data`; see [`Network::evaluate`].
    pub fn loss(&self, data: &[Tensor], regs: &Regularizers) -> Result<f32> {
        Ok(self.evaluate(data, regs)?.loss())
    }
}

/// Rows per batch in [`Network::evaluate`]: large enough to keep the products efficient, small
/// enough that the intermediate values of a wide network stay modest.
pub const EVALUATE_BATCH: usize = 1024;
