//! Layers: the [`Layer`] trait (a layer owns named parameters and turns named input expressions
//! into named output expressions) and the built-in layers. Layers are made from [`LayerSpec`]s by
//! the model, which resolves names, inputs, sizes and tied partners first.

use crate::activations::Activation;
use crate::error::{config, Result};
use crate::init::{random_matrix, random_vector, BiasInit, WeightInit};
use tape::{Expr, Param, Rng};

/// A layer of a network.
///
/// A layer reads the outputs named in [`Layer::inputs`] (`"hid1:out"`, with their widths), owns
/// its parameters (named `"{layer}.{param}"`), and produces named outputs; the first one it
/// returns from [`Layer::connect`] is its default output, `"{layer}:out"`. Custom layers
/// implement this trait with `tape` expressions and plug into a model with
/// [`LayerSpec::custom`].
pub trait Layer: Send + Sync {
    /// The layer's name, e.g. `hid1`.
    fn name(&self) -> &str;
    /// The width of its default output.
    fn size(&self) -> usize;
    /// The outputs it reads, as `"layer:output"` names with their widths, in the order
    /// [`Layer::connect`] receives them.
    fn inputs(&self) -> &[(String, usize)];
    /// Its parameters, including those of a parametric activation.
    fn params(&self) -> Vec<Param>;
    /// Its outputs given its inputs' expressions: `(local name, expression)` pairs, default
    /// output (`out`) first, each name once. The network checks this after every call and
    /// reports a breach as an error naming the layer.
    fn connect(&self, inputs: &[Expr]) -> Result<Vec<(String, Expr)>>;
    /// A one-line description for model summaries.
    fn describe(&self) -> String {
        format!("{} {}", self.name(), self.size())
    }
    /// The name of the activation applied to the default output, if the layer has one
    /// (`"softmax"` lets a classifier compute cross-entropy from the `pre` logits).
    fn activation(&self) -> Option<&str> {
        None
    }
    /// Whether the layer borrows its weights from a partner (tied layers count when partners
    /// are found by position).
    fn is_tied(&self) -> bool {
        false
    }
    /// For a layer whose default output is `f(pre)` with `pre = u·W + b` (its `pre` output) for
    /// its single input `u`, and `f` acting on each unit alone: the matrix `W` (input width ×
    /// units). The contractive penalty then uses the closed form ‖∂out/∂u‖²_F =
    /// Σ_j f′(pre_j)²·‖W[:, j]‖² per sample, one backward pass in all instead of one per unit.
    /// `None` (the default) keeps the general computation, which is exact for any layer.
    fn elementwise_weights(&self) -> Option<Expr> {
        None
    }
    /// [`Layer::connect`] for `(batch, time, …)` sequences with a `(batch, time)` mask (0 at
    /// padding) that recurrent layers pass to their scan. Layers acting on each step alone
    /// ignore the mask (the default), since the loss weights leave padded steps out.
    fn connect_masked(&self, inputs: &[Expr], mask: Option<&Expr>) -> Result<Vec<(String, Expr)>> {
        let _ = mask;
        self.connect(inputs)
    }
    /// A stateful layer's carried states: each non-trained tensor with the local name of the
    /// output whose value replaces it after every prediction call (empty by default).
    fn carried_states(&self) -> Vec<(Param, String)> {
        Vec::new()
    }
}

/// The kinds of built-in layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Form {
    /// The data entering the network.
    Input,
    /// `act(Σᵢ xᵢ·Wᵢ + b)` over one or several inputs.
    Feedforward,
    /// A feedforward layer with softmax output (its `pre` output holds the logits).
    Classifier,
    /// `act(x·Wₚᵀ + b)`, sharing the partner layer's weights transposed, with its own bias.
    Tied,
    /// The elementwise product of its inputs.
    Product,
    /// Its inputs joined along the last axis.
    Concatenate,
    /// Everything after the batch axis flattened into one.
    Flatten,
    /// The batch axis kept, the rest reshaped to the given dims.
    Reshape(Vec<usize>),
    /// A recurrent layer over `(batch, time, dim)` sequences (see [`crate::recurrent`]).
    Recurrent(crate::recurrent::Cell),
}

/// A description of one layer, as a model's constructor receives it. Sizes alone also convert
/// into specs (`64.into()`), as in `Classifier::new(&[64, 100, 10])`.
///
/// ```
/// use nets::LayerSpec;
/// let hidden = LayerSpec::dense(50).name("a").activation("relu+norm:z");
/// let out = LayerSpec::dense(10).inputs(&["a", "in"]);
/// # let _ = (hidden, out);
/// ```
#[derive(Clone)]
pub struct LayerSpec {
    pub(crate) form: Form,
    pub(crate) size: Option<usize>,
    pub(crate) name: Option<String>,
    pub(crate) activation: Option<String>,
    pub(crate) inputs: Vec<String>,
    pub(crate) partner: Option<String>,
    pub(crate) weights: WeightInit,
    pub(crate) bias: BiasInit,
    pub(crate) custom: Option<MakeLayer>,
    /// The name a custom layer's constructor is registered under (see [`crate::file::Registry`]),
    /// which is what a model file records in place of the closure.
    pub(crate) registered: Option<String>,
    /// Direction, BPTT limit, initial states and stateful mode of a recurrent layer.
    pub(crate) recurrent: crate::recurrent::RecurrentOptions,
}

/// How a custom layer is made from its resolved context.
pub(crate) type MakeLayer =
    std::sync::Arc<dyn Fn(&LayerContext) -> Result<Box<dyn Layer>> + Send + Sync>;

impl std::fmt::Debug for LayerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerSpec")
            .field("form", &self.form)
            .field("size", &self.size)
            .field("name", &self.name)
            .field("activation", &self.activation)
            .field("inputs", &self.inputs)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl From<usize> for LayerSpec {
    fn from(size: usize) -> LayerSpec {
        LayerSpec::dense(size)
    }
}

impl LayerSpec {
    fn with_form(form: Form, size: Option<usize>) -> LayerSpec {
        LayerSpec {
            form,
            size,
            name: None,
            activation: None,
            inputs: Vec::new(),
            partner: None,
            weights: WeightInit::default(),
            bias: BiasInit::default(),
            custom: None,
            registered: None,
            recurrent: Default::default(),
        }
    }

    /// The input layer, `size` values per sample.
    pub fn input(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Input, Some(size))
    }

    /// A fully connected (feedforward) layer. In first position it becomes the input layer.
    pub fn dense(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Feedforward, Some(size))
    }

    /// A feedforward layer with softmax output.
    pub fn classifier(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Classifier, Some(size))
    }

    /// A layer tied to an earlier one (found as theanets does unless [`LayerSpec::partner`]
    /// names it): its weights are the partner's, transposed.
    pub fn tied() -> LayerSpec {
        LayerSpec::with_form(Form::Tied, None)
    }

    /// The elementwise product of the named inputs.
    pub fn product(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Product, Some(size))
    }

    /// The named inputs joined along the last axis (`size` = the sum of their widths).
    pub fn concatenate(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Concatenate, Some(size))
    }

    /// The input flattened to `size` values per sample.
    pub fn flatten(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Flatten, Some(size))
    }

    /// The input reshaped to `(batch,) + dims`; its size is the last dim.
    pub fn reshape(dims: &[usize]) -> LayerSpec {
        LayerSpec::with_form(Form::Reshape(dims.to_vec()), dims.last().copied())
    }

    /// A simple recurrent layer over `(batch, time, dim)` sequences: `h_t = act(x_t·W_xh +
    /// h_{t−1}·W_hh + b)` (activation default `tanh`); outputs `out`, `pre`, `final`.
    pub fn rnn(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Recurrent(crate::recurrent::Cell::Rnn), Some(size))
    }

    /// An LSTM layer with peepholes (theanets' form; its activation is ignored, the gates use
    /// the logistic and tanh); outputs `out`, `cell`, `final`, `final_cell`. Its bias `[i, f, c,
    /// o]` starts as theanets' N(2, 1) for every gate, unless [`LayerSpec::forget_bias`] is set
    /// or [`LayerSpec::bias`] asks for anything but the default mean 0, std 0.
    pub fn lstm(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Recurrent(crate::recurrent::Cell::Lstm), Some(size))
    }

    /// A GRU layer (theanets' form, activation default `tanh`); outputs `out`, `pre`, `hid`,
    /// `rate`, `final`.
    pub fn gru(size: usize) -> LayerSpec {
        LayerSpec::with_form(Form::Recurrent(crate::recurrent::Cell::Gru), Some(size))
    }

    /// Recurrent layers: scan from the last step to the first (outputs stay in time order).
    pub fn backward(mut self) -> LayerSpec {
        self.recurrent.backward = true;
        self
    }

    /// Recurrent layers: backpropagate through the last `steps` steps only.
    pub fn bptt_limit(mut self, steps: usize) -> LayerSpec {
        self.recurrent.bptt_limit = Some(steps);
        self
    }

    /// Recurrent layers: the initial hidden state is the output of the named input layer,
    /// `(batch, size)`, which the data then carries after the sequence.
    pub fn h_0(mut self, input: &str) -> LayerSpec {
        self.recurrent.h_0 = Some(input.to_string());
        self
    }

    /// LSTM layers: the initial cell is the output of the named input layer, `(batch, size)`.
    pub fn c_0(mut self, input: &str) -> LayerSpec {
        self.recurrent.c_0 = Some(input.to_string());
        self
    }

    /// Recurrent layers: carry the final state of each prediction call into the next, for
    /// batches of exactly `batch` sequences, until the model's `reset_state`.
    pub fn stateful(mut self, batch: usize) -> LayerSpec {
        self.recurrent.stateful = Some(batch);
        self
    }

    /// LSTM layers: start the forget gate's bias at `value` and the other gates' at 0, instead
    /// of theanets' N(2, 1) for every gate.
    pub fn forget_bias(mut self, value: f32) -> LayerSpec {
        self.recurrent.forget_bias = Some(value);
        self
    }

    /// A user-defined layer: `make` receives the resolved name, size, inputs and a seeded random
    /// stream, and returns the layer.
    pub fn custom(
        size: usize,
        make: impl Fn(&LayerContext) -> Result<Box<dyn Layer>> + Send + Sync + 'static,
    ) -> LayerSpec {
        let mut s = LayerSpec::with_form(Form::Feedforward, Some(size));
        s.custom = Some(std::sync::Arc::new(make));
        s
    }

    /// The layer's name (default `in`, `hid1`, …, `out` by position).
    pub fn name(mut self, name: &str) -> LayerSpec {
        self.name = Some(name.to_string());
        self
    }

    /// The activation, by name (`relu`, `tanh`, `relu+norm:z`, `maxout:4`, …).
    pub fn activation(mut self, activation: &str) -> LayerSpec {
        self.activation = Some(activation.to_string());
        self
    }

    /// The layers (or `layer:output`s) this layer reads; default: the previous layer.
    pub fn inputs(mut self, inputs: &[&str]) -> LayerSpec {
        self.inputs = inputs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The partner of a tied layer.
    pub fn partner(mut self, partner: &str) -> LayerSpec {
        self.partner = Some(partner.to_string());
        self
    }

    /// Mean of the initial weights (default 0).
    pub fn mean(mut self, mean: f32) -> LayerSpec {
        self.weights.mean = mean;
        self
    }

    /// Standard deviation of the initial weights (default Glorot: `1/√(nin + nout)`).
    pub fn std(mut self, std: f32) -> LayerSpec {
        self.weights.std = Some(std);
        self
    }

    /// Fraction of initial weights set to zero.
    pub fn sparsity(mut self, sparsity: f32) -> LayerSpec {
        self.weights.sparsity = sparsity;
        self
    }

    /// Initialise the weights to `value` times the identity instead.
    pub fn diagonal(mut self, value: f32) -> LayerSpec {
        self.weights.diagonal = value;
        self
    }

    /// Rescale the initial weights so their largest singular value is `radius`.
    pub fn radius(mut self, radius: f32) -> LayerSpec {
        self.weights.radius = radius;
        self
    }

    /// Mean and standard deviation of the initial biases (default 0 and 0).
    pub fn bias(mut self, mean: f32, std: f32) -> LayerSpec {
        self.bias = BiasInit { mean, std };
        self
    }
}

/// What a custom layer's constructor is told about its place in the model.
pub struct LayerContext {
    /// The resolved name.
    pub name: String,
    /// The layer's width.
    pub size: usize,
    /// The resolved inputs (`"layer:output"`, width).
    pub inputs: Vec<(String, usize)>,
    /// The activation's name (default `relu` for hidden layers).
    pub activation: String,
    /// The layer's own random stream (derived from the model seed and the layer name).
    pub rng: std::sync::Mutex<Rng>,
}

/// The input layer: it has no parameters; the model feeds the data in as its output.
pub struct Input {
    name: String,
    size: usize,
}

impl Input {
    /// An input layer.
    pub fn new(name: &str, size: usize) -> Input {
        Input {
            name: name.to_string(),
            size,
        }
    }
}

impl Layer for Input {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> usize {
        self.size
    }
    fn inputs(&self) -> &[(String, usize)] {
        &[]
    }
    fn params(&self) -> Vec<Param> {
        Vec::new()
    }
    fn connect(&self, inputs: &[Expr]) -> Result<Vec<(String, Expr)>> {
        let x = inputs.first().ok_or_else(|| {
            config(
                format!("layer `{}`", self.name),
                "the input layer is fed by the model",
            )
        })?;
        Ok(vec![("out".into(), x.clone())])
    }
    fn describe(&self) -> String {
        format!("{}: input, {} values", self.name, self.size)
    }
}

/// `act(Σᵢ xᵢ·Wᵢ + b)`: the fully connected layer (also the classifier output layer, with softmax).
pub struct Feedforward {
    name: String,
    size: usize,
    inputs: Vec<(String, usize)>,
    weights: Vec<Param>,
    bias: Param,
    activation: Activation,
}

impl Feedforward {
    /// Builds the layer with fresh parameters: `{name}.w` for one input, `{name}.w_{input}` for
    /// several; `{name}.b`. Each parameter draws from its own stream, `init.{parameter}` under
    /// `seed`, so changing one parameter's options never changes another's values.
    pub fn new(
        name: &str,
        size: usize,
        inputs: &[(String, usize)],
        activation: &str,
        weights: &WeightInit,
        bias: &BiasInit,
        seed: u64,
    ) -> Result<Feedforward> {
        if inputs.is_empty() {
            return Err(config(
                format!("layer `{name}`"),
                "a feedforward layer needs at least one input",
            ));
        }
        // One weight matrix per input, named after it: an input listed twice would make two
        // parameters of one name, which a model file cannot tell apart.
        if let Some((dup, _)) = inputs
            .iter()
            .enumerate()
            .find_map(|(i, a)| inputs[..i].iter().find(|b| b.0 == a.0))
        {
            return Err(config(
                format!("layer `{name}`"),
                format!(
                    "input `{dup}` is listed twice; a feedforward layer has one weight matrix \
                     per input (to use it twice, concatenate it with itself first)"
                ),
            ));
        }
        let single = inputs.len() == 1;
        let mut ws = Vec::with_capacity(inputs.len());
        for (input, nin) in inputs {
            let pname = if single {
                format!("{name}.w")
            } else {
                format!("{name}.w_{input}")
            };
            let mut rng = param_stream(seed, &pname);
            let w = random_matrix(*nin, size, weights, &mut rng)
                .map_err(|e| e.context(init_context(name, &pname)))?;
            ws.push(Param::new(&pname, w));
        }
        let bname = format!("{name}.b");
        let b = Param::new(&bname, init_bias(name, &bname, size, bias, seed)?);
        let activation = Activation::build(activation, name, size)?;
        Ok(Feedforward {
            name: name.to_string(),
            size,
            inputs: inputs.to_vec(),
            weights: ws,
            bias: b,
            activation,
        })
    }
}

impl Layer for Feedforward {
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
        let mut p = self.weights.clone();
        p.push(self.bias.clone());
        p.extend(self.activation.params().iter().cloned());
        p
    }
    fn connect(&self, inputs: &[Expr]) -> Result<Vec<(String, Expr)>> {
        expect_inputs(&self.name, &self.inputs, inputs.len())?;
        let mut pre: Option<Expr> = None;
        for (x, w) in inputs.iter().zip(&self.weights) {
            // Sequences `(batch, time, dim)` are projected step by step over the last axis.
            let term = crate::recurrent::project(x, &w.expr(), self.size);
            pre = Some(match pre {
                Some(p) => p + term,
                None => term,
            });
        }
        let pre = pre.ok_or_else(|| config(format!("layer `{}`", self.name), "no inputs"))?
            + self.bias.expr();
        let out = self.activation.apply(&pre);
        Ok(vec![("out".into(), out), ("pre".into(), pre)])
    }
    fn activation(&self) -> Option<&str> {
        Some(self.activation.name())
    }
    fn elementwise_weights(&self) -> Option<Expr> {
        match self.weights.as_slice() {
            [w] if self.activation.is_elementwise() => Some(w.expr()),
            _ => None,
        }
    }
    fn describe(&self) -> String {
        let ins: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
        format!(
            "{}: feedforward {} ← {}, {}",
            self.name,
            self.size,
            ins.join(" + "),
            self.activation.name()
        )
    }
}

/// `act(x·Wₚᵀ + b)`: reuses a partner layer's weight matrix, transposed, with its own bias.
pub struct Tied {
    name: String,
    size: usize,
    inputs: Vec<(String, usize)>,
    partner: Param,
    bias: Param,
    activation: Activation,
}

impl Tied {
    /// Ties to `partner` (a weight matrix `nin × nout`); the layer maps `nout → nin` values.
    pub fn new(
        name: &str,
        input: (String, usize),
        partner: &Param,
        activation: &str,
        bias: &BiasInit,
        seed: u64,
    ) -> Result<Tied> {
        let shape = partner.shape();
        if shape.len() != 2 || shape[1] != input.1 {
            return Err(config(
                format!("layer `{name}`"),
                format!(
                    "its input `{}` has width {}, but the partner weights `{}` have shape {:?}",
                    input.0,
                    input.1,
                    partner.name(),
                    shape.as_slice()
                ),
            ));
        }
        let size = shape[0];
        let bname = format!("{name}.b");
        let bias = Param::new(&bname, init_bias(name, &bname, size, bias, seed)?);
        let activation = Activation::build(activation, name, size)?;
        Ok(Tied {
            name: name.to_string(),
            size,
            inputs: vec![input],
            partner: partner.clone(),
            bias,
            activation,
        })
    }
}

impl Layer for Tied {
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
        // The partner's matrix belongs to the partner; a tied layer owns only its bias.
        let mut p = vec![self.bias.clone()];
        p.extend(self.activation.params().iter().cloned());
        p
    }
    fn connect(&self, inputs: &[Expr]) -> Result<Vec<(String, Expr)>> {
        expect_inputs(&self.name, &self.inputs, inputs.len())?;
        let pre = crate::recurrent::project(&inputs[0], &self.partner.expr().t(), self.size)
            + self.bias.expr();
        Ok(vec![
            ("out".into(), self.activation.apply(&pre)),
            ("pre".into(), pre),
        ])
    }
    fn activation(&self) -> Option<&str> {
        Some(self.activation.name())
    }
    fn is_tied(&self) -> bool {
        true
    }
    fn elementwise_weights(&self) -> Option<Expr> {
        self.activation
            .is_elementwise()
            .then(|| self.partner.expr().t())
    }
    fn describe(&self) -> String {
        format!(
            "{}: tied {} to {}ᵀ, {}",
            self.name,
            self.size,
            self.partner.name(),
            self.activation.name()
        )
    }
}

/// Parameter-free layers: product, concatenation, flatten, reshape.
pub struct Combine {
    name: String,
    size: usize,
    inputs: Vec<(String, usize)>,
    form: Form,
}

impl Combine {
    /// A product, concatenate, flatten or reshape layer; checks the widths fit.
    pub fn new(name: &str, size: usize, inputs: &[(String, usize)], form: Form) -> Result<Combine> {
        let what = format!("layer `{name}`");
        if inputs.is_empty() {
            return Err(config(what, "needs at least one input"));
        }
        match &form {
            Form::Product => {
                if let Some((n, w)) = inputs.iter().find(|(_, w)| *w != size) {
                    return Err(config(
                        what,
                        format!("a product needs inputs of its size {size}; `{n}` has {w}"),
                    ));
                }
            }
            Form::Concatenate => {
                let total: usize = inputs.iter().map(|(_, w)| w).sum();
                if total != size {
                    return Err(config(
                        what,
                        format!("size {size} differs from the inputs' total width {total}"),
                    ));
                }
            }
            Form::Flatten | Form::Reshape(_) => {
                if inputs.len() != 1 {
                    return Err(config(what, "takes exactly one input"));
                }
            }
            other => {
                return Err(config(
                    what,
                    format!("{other:?} is not a parameter-free layer"),
                ))
            }
        }
        Ok(Combine {
            name: name.to_string(),
            size,
            inputs: inputs.to_vec(),
            form,
        })
    }
}

impl Combine {
    /// Flatten and reshape keep the batch axis, so the values per row must match exactly;
    /// otherwise the `-1` batch dim silently absorbs the difference and rows multiply.
    fn check_row_values(&self, x: &Expr, wanted: usize) -> Result<()> {
        let have = values_per_row(&self.name, x)?;
        if have != wanted {
            return Err(config(
                format!("layer `{}`", self.name),
                format!(
                    "{:?} needs {wanted} values per row, but its input `{}` has {have} (dims {})",
                    self.form,
                    self.inputs[0].0,
                    x.dims()
                ),
            ));
        }
        Ok(())
    }
}

impl Layer for Combine {
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
        Vec::new()
    }
    fn connect(&self, inputs: &[Expr]) -> Result<Vec<(String, Expr)>> {
        expect_inputs(&self.name, &self.inputs, inputs.len())?;
        let out = match &self.form {
            Form::Product => inputs[1..].iter().fold(inputs[0].clone(), |acc, x| acc * x),
            Form::Concatenate => {
                let axis = inputs[0].rank().saturating_sub(1);
                Expr::concat(inputs, axis)
            }
            Form::Flatten => {
                self.check_row_values(&inputs[0], self.size)?;
                inputs[0].reshape(&[-1, self.size as isize])
            }
            Form::Reshape(dims) => {
                let wanted = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
                let wanted = wanted.ok_or_else(|| {
                    config(
                        format!("layer `{}`", self.name),
                        format!("its dims {dims:?} overflow"),
                    )
                })?;
                self.check_row_values(&inputs[0], wanted)?;
                let mut target = vec![-1isize];
                target.extend(dims.iter().map(|&d| d as isize));
                inputs[0].reshape(&target)
            }
            _ => unreachable!("checked in Combine::new"),
        };
        Ok(vec![("out".into(), out)])
    }
    fn describe(&self) -> String {
        let ins: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
        format!(
            "{}: {:?} {} ← {}",
            self.name,
            self.form,
            self.size,
            ins.join(", ")
        )
    }
}

/// The context line of an initialisation error: the layer and parameter, which the init
/// functions (knowing only shapes and options) cannot name.
fn init_context(layer: &str, param: &str) -> String {
    format!("layer `{layer}`: initialising `{param}`")
}

/// A layer's initial bias vector, with errors naming the layer.
fn init_bias(
    layer: &str,
    param: &str,
    size: usize,
    bias: &BiasInit,
    seed: u64,
) -> Result<tape::Tensor> {
    random_vector(size, bias, &mut param_stream(seed, param))
        .map_err(|e| e.context(init_context(layer, param)))
}

/// Checks a layer receives as many input expressions as it declared inputs, so a missing input
/// is an error naming the layer rather than a dropped weight matrix or an index panic.
fn expect_inputs(name: &str, declared: &[(String, usize)], got: usize) -> Result<()> {
    if got == declared.len() {
        return Ok(());
    }
    let names: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
    Err(config(
        format!("layer `{name}`"),
        format!(
            "expects {} input(s) ({}), but was connected to {got}",
            declared.len(),
            names.join(", ")
        ),
    ))
}

/// The number of values per row of `x` (the product of its dims after the batch axis), or an
/// error naming the layer when some of those dims are unknown or the product overflows.
fn values_per_row(name: &str, x: &Expr) -> Result<usize> {
    let dims = x.dims();
    let what = || format!("layer `{name}`");
    if dims.is_empty() {
        return Err(config(what(), "its input has no batch axis (rank 0)"));
    }
    dims[1..].iter().try_fold(1usize, |acc, d| {
        let d = d.ok_or_else(|| {
            config(
                what(),
                format!("its input's per-row dims {dims} must be known to check its size"),
            )
        })?;
        acc.checked_mul(d)
            .ok_or_else(|| config(what(), format!("its input's per-row dims {dims} overflow")))
    })
}

/// The initialisation stream of one parameter.
pub fn param_stream(seed: u64, param: &str) -> Rng {
    Rng::from_name(seed, &format!("init.{param}"))
}
