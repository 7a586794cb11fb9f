//! The recurrent layers `rnn`, `lstm` and `gru` over `(batch, time, dim)` inputs, each one
//! [`tape::scan`] over time.
//!
//! The input projection `x_t·W_x + b` of every step is one matrix product over all steps,
//! computed before the loop: only the recurrent product `h_{t−1}·W_h` runs per step. Parameters
//! are named as in theanets (`xh`, `hh`, `b`, peepholes `ci`, `cf`, `co`; the GRU's `xh`, `xr`,
//! `xz`, `hh`, `hr`, `hz`, `bh`, `br`, `bz`), so saved models and `find("hid1", "xh")` read as
//! theanets users expect. The LSTM's and the GRU's gate matrices are concatenated inside the
//! graph where that saves products.

use crate::activations::Activation;
use crate::error::{config, Result};
use crate::init::{random_matrix, random_vector, BiasInit, WeightInit};
use crate::layers::{param_stream, Layer};
use tape::scan::{scan, Scan};
use tape::{Expr, Op, Param, Tensor};

/// Which recurrent cell a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `h_t = act(x_t·W_xh + h_{t−1}·W_hh + b)`; outputs `out`, `pre`.
    Rnn,
    /// The LSTM with peepholes (theanets' form); outputs `out`, `cell`.
    Lstm,
    /// The gated recurrent unit (theanets' form); outputs `out`, `pre`, `hid`, `rate`.
    Gru,
}

impl Cell {
    /// The name used in summaries and model files.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Rnn => "rnn",
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
        }
    }
}

/// The options of a recurrent layer beyond size and activation.
///
/// Defaults: forward in time, full backpropagation through time, zero initial states, not
/// stateful, theanets' LSTM bias (every gate's bias drawn from N(2, 1)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecurrentOptions {
    /// Run from the last step to the first (theanets' `direction='backward'`). Outputs stay in
    /// time order.
    pub backward: bool,
    /// Backpropagate through the last `k` steps of each sequence only (truncated BPTT).
    pub bptt_limit: Option<usize>,
    /// The name of an input layer giving the initial hidden state `(batch, size)` (issue th#81).
    pub h_0: Option<String>,
    /// The name of an input layer giving an LSTM's initial cell `(batch, size)`.
    pub c_0: Option<String>,
    /// Carry the final state of each call into the next, for batches of exactly this many
    /// sequences, until the model's `reset_state` (issue th#132).
    pub stateful: Option<usize>,
    /// LSTM only: initialise the bias deterministically, the forget gate's to this value and the
    /// other gates' to 0 (Jozefowicz et al. 2015, PyTorch users' usual choice with 1.0) instead
    /// of theanets' N(2, 1) for every gate.
    pub forget_bias: Option<f32>,
}

/// A recurrent layer: one of the [`Cell`]s, scanned over the time axis of its first input.
pub struct Recurrent {
    name: String,
    size: usize,
    cell: Cell,
    inputs: Vec<(String, usize)>,
    options: RecurrentOptions,
    /// `xh` (and the GRU's `xr`, `xz`).
    input_weights: Vec<Param>,
    /// `hh` (and the GRU's `hr`, `hz`).
    hidden_weights: Vec<Param>,
    /// `b` (the GRU's `bh`, `br`, `bz`).
    biases: Vec<Param>,
    /// The LSTM's `ci`, `cf`, `co`.
    peepholes: Vec<Param>,
    activation: Activation,
    /// Stateful mode: the carried hidden state (and an LSTM's cell), `(batch, size)`, not trained.
    carried: Vec<Param>,
}

impl Recurrent {
    /// Builds the layer with fresh parameters. `inputs` is the sequence first, then the inputs
    /// named by `h_0` and `c_0` (in that order, when given). Each parameter draws from its own
    /// stream under `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        size: usize,
        cell: Cell,
        inputs: &[(String, usize)],
        activation: &str,
        weights: &WeightInit,
        bias: &BiasInit,
        options: RecurrentOptions,
        seed: u64,
    ) -> Result<Recurrent> {
        let what = || format!("layer `{name}`");
        check_inputs(name, size, cell, inputs, &options)?;
        if size == 0 {
            return Err(config(
                what(),
                "a recurrent layer needs a size of at least 1",
            ));
        }
        let nin = inputs[0].1;
        // theanets treats only square blocks as recurrent matrices (radius, diagonal); the
        // input matrix gets the plain options.
        let plain = WeightInit {
            radius: 0.0,
            diagonal: 0.0,
            ..weights.clone()
        };
        let matrix =
            |short: &str, rows: usize, blocks: usize, init: &WeightInit| {
                let pname = format!("{name}.{short}");
                let mut rng = param_stream(seed, &pname);
                let mut parts = Vec::with_capacity(blocks);
                for _ in 0..blocks {
                    parts.push(random_matrix(rows, size, init, &mut rng).map_err(|e| {
                        e.context(format!("layer `{name}`: initialising `{pname}`"))
                    })?);
                }
                Ok::<Param, crate::Error>(Param::new(&pname, concat_columns(&parts, rows)?))
            };
        let vector = |short: &str, init: &BiasInit, n: usize| {
            let pname = format!("{name}.{short}");
            let v = random_vector(n, init, &mut param_stream(seed, &pname))
                .map_err(|e| e.context(format!("layer `{name}`: initialising `{pname}`")))?;
            Ok::<Param, crate::Error>(Param::new(&pname, v))
        };
        let (input_weights, hidden_weights, biases, peepholes) = match cell {
            Cell::Rnn => (
                vec![matrix("xh", nin, 1, &plain)?],
                vec![matrix("hh", size, 1, weights)?],
                vec![vector("b", bias, size)?],
                vec![],
            ),
            Cell::Lstm => {
                let b = match options.forget_bias {
                    Some(f) => {
                        let mut v = vec![0.0; 4 * size];
                        v[size..2 * size].iter_mut().for_each(|x| *x = f);
                        Param::new(&format!("{name}.b"), Tensor::vector(&v))
                    }
                    None if *bias == BiasInit::default() => vector(
                        "b",
                        &BiasInit {
                            mean: 2.0,
                            std: 1.0,
                        },
                        4 * size,
                    )?,
                    None => vector("b", bias, 4 * size)?,
                };
                let peep = BiasInit {
                    mean: 0.0,
                    std: 1.0,
                };
                (
                    // Four gates [i, f, c, o] side by side; `hh` is four square blocks.
                    vec![matrix("xh", nin, 4, &plain)?],
                    vec![matrix("hh", size, 4, weights)?],
                    vec![b],
                    vec![
                        vector("ci", &peep, size)?,
                        vector("cf", &peep, size)?,
                        vector("co", &peep, size)?,
                    ],
                )
            }
            Cell::Gru => (
                vec![
                    matrix("xh", nin, 1, &plain)?,
                    matrix("xr", nin, 1, &plain)?,
                    matrix("xz", nin, 1, &plain)?,
                ],
                vec![
                    matrix("hh", size, 1, weights)?,
                    matrix("hr", size, 1, weights)?,
                    matrix("hz", size, 1, weights)?,
                ],
                vec![
                    vector("bh", bias, size)?,
                    vector("br", bias, size)?,
                    vector("bz", bias, size)?,
                ],
                vec![],
            ),
        };
        let carried = match options.stateful {
            None => vec![],
            Some(batch) => {
                let mut c = vec![Param::new(
                    &format!("{name}.state_h"),
                    Tensor::zeros(&[batch, size]),
                )];
                if cell == Cell::Lstm {
                    c.push(Param::new(
                        &format!("{name}.state_c"),
                        Tensor::zeros(&[batch, size]),
                    ));
                }
                c
            }
        };
        Ok(Recurrent {
            name: name.to_string(),
            size,
            cell,
            inputs: inputs.to_vec(),
            options,
            input_weights,
            hidden_weights,
            biases,
            peepholes,
            activation: Activation::build(activation, name, size)?,
            carried,
        })
    }

    /// The non-trained state tensors of a stateful layer, `(batch, size)` each: the hidden state
    /// and, for an LSTM, the cell. Empty unless stateful.
    pub fn carried(&self) -> &[Param] {
        &self.carried
    }

    /// The initial states: the carried tensors in stateful mode, the named inputs, or zeros
    /// shaped `(batch, size)` from the sequence.
    fn initial_states(&self, inputs: &[Expr], zeros: &Expr) -> Vec<Expr> {
        let n_states = if self.cell == Cell::Lstm { 2 } else { 1 };
        if !self.carried.is_empty() {
            return self.carried.iter().map(Param::expr).collect();
        }
        let mut given = inputs[1..].iter();
        let h = match &self.options.h_0 {
            Some(_) => given.next().cloned().unwrap_or_else(|| zeros.clone()),
            None => zeros.clone(),
        };
        let mut states = vec![h];
        if n_states == 2 {
            states.push(match &self.options.c_0 {
                Some(_) => given.next().cloned().unwrap_or_else(|| zeros.clone()),
                None => zeros.clone(),
            });
        }
        states
    }

    /// The layer's outputs for the sequence `inputs[0]` `(batch, time, nin)`, with an optional
    /// `(batch, time)` mask.
    pub fn connect_sequence(
        &self,
        inputs: &[Expr],
        mask: Option<&Expr>,
    ) -> Result<Vec<(String, Expr)>> {
        let what = || format!("layer `{}`", self.name);
        if inputs.len() != self.inputs.len() {
            return Err(config(
                what(),
                format!(
                    "expects {} input(s), but was connected to {}",
                    self.inputs.len(),
                    inputs.len()
                ),
            ));
        }
        let x = &inputs[0];
        if x.rank() != 3 {
            return Err(config(
                what(),
                format!(
                    "a recurrent layer reads (batch, time, dim) sequences, but its input `{}` has dims {}",
                    self.inputs[0].0,
                    x.dims()
                ),
            ));
        }
        // Zeros (batch, size) from the first step's input: the default initial state.
        let zeros = x.slice(1, 0, 1).slice(2, 0, 1).reshape(&[-1, 1])
            * Expr::constant(Tensor::zeros(&[self.size]));
        let states = self.initial_states(inputs, &zeros);
        let spec = |seq: &[Expr], states: &[Expr], non: &[Expr]| ScanArgs {
            seqs: seq.to_vec(),
            states: states.to_vec(),
            non: non.to_vec(),
        };
        let (mut outs, finals) = match self.cell {
            Cell::Rnn => {
                let xw =
                    project(x, &self.input_weights[0].expr(), self.size) + self.biases[0].expr();
                let args = spec(&[xw], &states, &[self.hidden_weights[0].expr()]);
                self.run(args, mask, |s| {
                    let [x_t, h, hh] = s else {
                        unreachable!("1 sequence, 1 state, 1 weight")
                    };
                    let pre = x_t + h.matmul(hh);
                    Ok(vec![self.activation.apply(&pre), pre])
                })
                .map(|(st, out, fin)| {
                    (
                        vec![
                            ("out".to_string(), st[0].clone()),
                            ("pre".into(), out[0].clone()),
                        ],
                        fin,
                    )
                })?
            }
            Cell::Lstm => self.connect_lstm(x, states, mask, spec)?,
            Cell::Gru => self.connect_gru(x, states, mask, spec)?,
        };
        outs.push(("final".into(), finals[0].clone()));
        if self.cell == Cell::Lstm {
            outs.push(("final_cell".into(), finals[1].clone()));
        }
        Ok(outs)
    }

    #[allow(clippy::type_complexity)]
    fn connect_lstm(
        &self,
        x: &Expr,
        states: Vec<Expr>,
        mask: Option<&Expr>,
        spec: impl Fn(&[Expr], &[Expr], &[Expr]) -> ScanArgs,
    ) -> Result<(Vec<(String, Expr)>, Vec<Expr>)> {
        let n = self.size;
        let xw = project(x, &self.input_weights[0].expr(), 4 * n) + self.biases[0].expr();
        let non: Vec<Expr> = [&self.hidden_weights[0]]
            .into_iter()
            .chain(&self.peepholes)
            .map(Param::expr)
            .collect();
        let (st, _, fin) = self.run(spec(&[xw], &states, &non), mask, |s| {
            let [x_t, h, c, hh, ci, cf, co] = s else {
                unreachable!("1 sequence, 2 states, 4 weights")
            };
            let z = x_t + h.matmul(hh);
            let parts = z.split(1, &[n, n, n, n]);
            let i = (&parts[0] + c * ci).sigmoid();
            let f = (&parts[1] + c * cf).sigmoid();
            let c_t = f * c + i * parts[2].tanh();
            let o = (&parts[3] + &c_t * co).sigmoid();
            let h_t = o * c_t.tanh();
            Ok(vec![h_t, c_t])
        })?;
        Ok((
            vec![
                ("out".into(), st[0].clone()),
                ("cell".into(), st[1].clone()),
            ],
            fin,
        ))
    }

    #[allow(clippy::type_complexity)]
    fn connect_gru(
        &self,
        x: &Expr,
        states: Vec<Expr>,
        mask: Option<&Expr>,
        spec: impl Fn(&[Expr], &[Expr], &[Expr]) -> ScanArgs,
    ) -> Result<(Vec<(String, Expr)>, Vec<Expr>)> {
        let n = self.size;
        let exprs = |ps: &[Param]| ps.iter().map(Param::expr).collect::<Vec<_>>();
        // One product for the three input projections, one per step for both gates.
        let w_x = Expr::concat(&exprs(&self.input_weights), 1);
        let b = Expr::concat(&exprs(&self.biases), 0);
        let xw = project(x, &w_x, 3 * n) + b;
        let w_rz = Expr::concat(&exprs(&self.hidden_weights[1..]), 1);
        let non = [self.hidden_weights[0].expr(), w_rz];
        let (st, out, fin) = self.run(spec(&[xw], &states, &non), mask, |s| {
            let [x_t, h, hh, w_rz] = s else {
                unreachable!("1 sequence, 1 state, 2 weights")
            };
            let xs = x_t.split(1, &[n, n, n]);
            let gates = h.matmul(w_rz).split(1, &[n, n]);
            let r = (&xs[1] + &gates[0]).sigmoid();
            let z = (&xs[2] + &gates[1]).sigmoid();
            let pre = &xs[0] + (r * h).matmul(hh);
            let hid = self.activation.apply(&pre);
            let h_t = h + &z * (&hid - h);
            Ok(vec![h_t, pre, hid, z])
        })?;
        Ok((
            vec![
                ("out".into(), st[0].clone()),
                ("pre".into(), out[0].clone()),
                ("hid".into(), out[1].clone()),
                ("rate".into(), out[2].clone()),
            ],
            fin,
        ))
    }

    /// Runs the scan with the layer's direction, BPTT limit and the mask: (states after each
    /// step, the step's extra outputs stacked, final states).
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        args: ScanArgs,
        mask: Option<&Expr>,
        step: impl FnOnce(&[Expr]) -> tape::Result<Vec<Expr>>,
    ) -> Result<(Vec<Expr>, Vec<Expr>, Vec<Expr>)> {
        let out = scan(
            Scan {
                sequences: &args.seqs,
                states: &args.states,
                non_sequences: &args.non,
                reverse: self.options.backward,
                mask,
                bptt_limit: self.options.bptt_limit,
            },
            step,
        )?;
        Ok((out.states, out.outputs, out.finals))
    }
}

/// The operands of one scan.
struct ScanArgs {
    seqs: Vec<Expr>,
    states: Vec<Expr>,
    non: Vec<Expr>,
}

/// `x·w` over the last axis of `x`, `(…, nin) → (…, width)`: rank 2 directly, higher ranks
/// flattened to rows and reshaped back, so dense layers act per step on `(batch, time, dim)`.
pub fn project(x: &Expr, w: &Expr, width: usize) -> Expr {
    if x.rank() <= 2 {
        return x.matmul(w);
    }
    let r = x.rank();
    let nin = x.dims()[r - 1].map_or(-1, |d| d as isize);
    let rows = x.reshape(&[-1, nin]).matmul(w);
    // The result's shape: x's leading axes and `width` (a zero tensor the size of the output,
    // from one column of x; cheap next to the product, and it carries no gradient).
    let like = x.slice(r - 1, 0, 1) * Expr::constant(Tensor::zeros(&[width]));
    Expr::apply(Op::ReshapeLike, &[rows, like])
}

/// Blocks of `rows` rows side by side.
fn concat_columns(parts: &[Tensor], rows: usize) -> Result<Tensor> {
    let cols: usize = parts.iter().map(|p| p.shape()[1]).sum();
    let mut data = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for p in parts {
            let w = p.shape()[1];
            data.extend_from_slice(&p.data()[r * w..(r + 1) * w]);
        }
    }
    Ok(Tensor::new(&[rows, cols], data)?)
}

/// The declared inputs fit the options: a sequence, then one input per initial state named.
fn check_inputs(
    name: &str,
    size: usize,
    cell: Cell,
    inputs: &[(String, usize)],
    options: &RecurrentOptions,
) -> Result<()> {
    let what = || format!("layer `{name}`");
    let named = usize::from(options.h_0.is_some()) + usize::from(options.c_0.is_some());
    if inputs.len() != 1 + named {
        return Err(config(
            what(),
            format!(
                "a recurrent layer reads one sequence (plus one input per initial state it names), \
                 but was given {} input(s)",
                inputs.len()
            ),
        ));
    }
    if options.c_0.is_some() && cell != Cell::Lstm {
        return Err(config(
            what(),
            "`c_0` is the initial cell of an lstm layer only",
        ));
    }
    if options.forget_bias.is_some() && cell != Cell::Lstm {
        return Err(config(
            what(),
            "`forget_bias` applies to an lstm layer only",
        ));
    }
    if let Some((input, w)) = inputs[1..].iter().find(|(_, w)| *w != size) {
        return Err(config(
            what(),
            format!("its initial state `{input}` has width {w}, but the layer has {size} units"),
        ));
    }
    if options.stateful == Some(0) {
        return Err(config(
            what(),
            "a stateful layer needs a batch size of at least 1",
        ));
    }
    if options.stateful.is_some() && named > 0 {
        return Err(config(
            what(),
            "a stateful layer carries its own state; it cannot also read `h_0`/`c_0`",
        ));
    }
    if options.bptt_limit == Some(0) {
        return Err(config(what(), "`bptt_limit` must be at least 1 step"));
    }
    Ok(())
}

impl Layer for Recurrent {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> usize {
        self.size
    }
    fn inputs(&self) -> &[(String, usize)] {
        &self.inputs
    }
    fn params(&self) -> Vec<Param> {
        let mut p: Vec<Param> = self
            .input_weights
            .iter()
            .chain(&self.hidden_weights)
            .chain(&self.biases)
            .chain(&self.peepholes)
            .cloned()
            .collect();
        p.extend(self.activation.params().iter().cloned());
        p
    }
    fn connect(&self, inputs: &[Expr]) -> Result<Vec<(String, Expr)>> {
        self.connect_sequence(inputs, None)
    }
    fn connect_masked(&self, inputs: &[Expr], mask: Option<&Expr>) -> Result<Vec<(String, Expr)>> {
        self.connect_sequence(inputs, mask)
    }
    fn carried_states(&self) -> Vec<(Param, String)> {
        let names = ["final", "final_cell"];
        self.carried
            .iter()
            .zip(names)
            .map(|(p, n)| (p.clone(), n.to_string()))
            .collect()
    }
    fn activation(&self) -> Option<&str> {
        match self.cell {
            Cell::Lstm => None,
            _ => Some(self.activation.name()),
        }
    }
    fn describe(&self) -> String {
        let dir = if self.options.backward {
            ", backward"
        } else {
            ""
        };
        format!(
            "{}: {} {} ← {}{dir}",
            self.name,
            self.cell.name(),
            self.size,
            self.inputs[0].0
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::recurrent::Regressor;
    use crate::LayerSpec;
    use tape::testing::count_ops;
    use tape::{Function, Tensor};

    /// An LSTM step runs tape's vectorised tanh twice (the cell input and the output) and a
    /// sigmoid per gate: no other pass computes a tanh (`2·σ(2x) − 1` took four passes and five
    /// more in the gradient, when tape's tanh was libm's scalar one).
    #[test]
    fn an_lstm_step_runs_two_tanh_and_three_sigmoids() {
        let net = Regressor::new(vec![
            LayerSpec::input(3),
            LayerSpec::lstm(4),
            LayerSpec::dense(2),
        ])
        .unwrap();
        let g = net.graph(&Default::default()).unwrap();
        let mut f = Function::compile(&g.inputs, std::slice::from_ref(&g.loss)).unwrap();
        let (x, y) = (Tensor::zeros(&[2, 5, 3]), Tensor::zeros(&[2, 5, 2]));
        f.call(&[&x, &y]).unwrap();
        let plan = f.debug_plan();
        assert_eq!(count_ops(plan.lines(), "tanh"), 2, "{plan}");
        assert_eq!(count_ops(plan.lines(), "sigmoid"), 3, "{plan}");
    }
}
