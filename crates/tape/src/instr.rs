//! Instructions and plans: the compiler's output for one set of argument shapes. A [`Plan`] is a
//! list of [`Instr`]s over numbered workspace buffers, with every size, broadcast layout and
//! buffer already resolved, so running it is a loop with one `match` per instruction.

use crate::custom::CustomCall;
use crate::kernels::{
    ArgmaxCall, AxpyCall, BinaryCall, BroadcastCall, ClipCall, ConcatCall, CopyCall, GemmCall,
    MaxMaskCall, OneHotCall, PackBCall, PickCall, ReduceCall, ReluGradCall, ScatterCall,
    SelectCall, Shape, SliceCall, SliceGradCall, SoftmaxCall, SumToCall, TransposeCall, UnaryCall,
    XentGradCall,
};
use crate::rng::{DropoutCall, NoiseCall, Rng};
use crate::scan_exec::ScanCall;
use crate::tensor::TensorView;
use std::fmt;

/// Where an instruction reads a value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    /// The n-th argument of the call.
    Arg(usize),
    /// The n-th parameter of the function.
    Param(usize),
    /// The n-th constant.
    Const(usize),
    /// Workspace buffer n.
    Work(usize),
    /// `len` values of workspace buffer `buf` from `offset`: one result of a scan, read in
    /// place from the scan's packed output rather than copied out of it.
    Part {
        buf: usize,
        offset: usize,
        len: usize,
    },
}

/// One step of a plan: a kernel call with its operands and sizes resolved, writing workspace
/// buffer `out`. Each call type lives next to its kernel (`kernels/*.rs`, `rng.rs`, `custom.rs`)
/// with its `run` and `describe`; this enum only dispatches.
#[derive(Clone)]
pub(crate) struct Instr {
    pub(crate) call: Call,
    pub(crate) out: usize,
}

/// The kernel calls a plan is made of.
#[derive(Clone)]
pub(crate) enum Call {
    Gemm(GemmCall<Src>),
    /// Packs a scan step's loop-invariant B once for the products that read it.
    PackB(PackBCall<Src>),
    Unary(UnaryCall<Src>),
    Binary(BinaryCall<Src>),
    Axpy(AxpyCall<Src>),
    ReluGrad(ReluGradCall<Src>),
    Select(SelectCall<Src>),
    Clip(ClipCall<Src>),
    Copy(CopyCall<Src>),
    Transpose(TransposeCall<Src>),
    Reduce(ReduceCall<Src>),
    MaxMask(MaxMaskCall<Src>),
    Broadcast(BroadcastCall<Src>),
    SumTo(SumToCall<Src>),
    Softmax(SoftmaxCall<Src>),
    Argmax(ArgmaxCall<Src>),
    Concat(ConcatCall<Src>),
    Slice(SliceCall<Src>),
    SliceGrad(SliceGradCall<Src>),
    Pick(PickCall<Src>),
    Scatter(ScatterCall<Src>),
    XentGrad(XentGradCall<Src>),
    OneHot(OneHotCall<Src>),
    Dropout(DropoutCall),
    Noise(NoiseCall),
    Custom(CustomCall<Src>),
    /// Run by the interpreter itself: the loop runs a nested plan.
    Scan(ScanCall<Src>),
}

/// Why a call failed: data it checks on every run (labels), or a user's op's own message.
pub(crate) enum Failure {
    /// A label that is not an integer in `0..classes`, at `row`.
    Label {
        row: usize,
        value: f32,
        classes: usize,
    },
    /// A custom op's message.
    Op(String),
}

impl Call {
    /// Runs the kernel, reading operands through `get` and writing `out` (which holds the
    /// overwritten operand of an in-place call).
    pub(crate) fn run<'a>(
        &self,
        get: impl Fn(&Src) -> &'a [f32],
        rngs: &mut [Rng],
        out: &mut [f32],
    ) -> Result<(), Failure> {
        let label = |classes: usize| {
            move |(row, value)| Failure::Label {
                row,
                value,
                classes,
            }
        };
        match self {
            Call::Gemm(c) => c.run(get, out),
            Call::PackB(c) => c.run(get, out),
            Call::Unary(c) => c.run(get, out),
            Call::Binary(c) => c.run(get, out),
            Call::Axpy(c) => c.run(get, out),
            Call::ReluGrad(c) => c.run(get, out),
            Call::Select(c) => c.run(get, out),
            Call::Clip(c) => c.run(get, out),
            Call::Copy(c) => c.run(get, out),
            Call::Transpose(c) => c.run(get, out),
            Call::Reduce(c) => c.run(get, out),
            Call::MaxMask(c) => c.run(get, out),
            Call::Broadcast(c) => c.run(get, out),
            Call::SumTo(c) => c.run(get, out),
            Call::Softmax(c) => c.run(get, out),
            Call::Argmax(c) => c.run(get, out),
            Call::Concat(c) => c.run(get, out),
            Call::Slice(c) => c.run(get, out),
            Call::SliceGrad(c) => c.run(get, out),
            Call::Pick(c) => c.run(get, out).map_err(label(c.cols))?,
            Call::Scatter(c) => c.run(get, out).map_err(label(c.cols))?,
            Call::XentGrad(c) => c.run(get, out).map_err(label(c.cols))?,
            Call::OneHot(c) => c.run(get, out).map_err(label(c.classes))?,
            Call::Dropout(c) => c.run(rngs, out),
            Call::Noise(c) => c.run(rngs, out),
            Call::Custom(c) => c.run(get, out).map_err(Failure::Op)?,
            Call::Scan(_) => unreachable!("the interpreter runs scans with their nested plans"),
        }
        Ok(())
    }

    /// What the call computes from which operands, each rendered by `name`.
    pub(crate) fn describe(&self, name: &dyn Fn(&Src) -> String) -> String {
        match self {
            Call::Gemm(c) => c.describe(name),
            Call::PackB(c) => c.describe(name),
            Call::Unary(c) => c.describe(name),
            Call::Binary(c) => c.describe(name),
            Call::Axpy(c) => c.describe(name),
            Call::ReluGrad(c) => c.describe(name),
            Call::Select(c) => c.describe(name),
            Call::Clip(c) => c.describe(name),
            Call::Copy(c) => c.describe(name),
            Call::Transpose(c) => c.describe(name),
            Call::Reduce(c) => c.describe(name),
            Call::MaxMask(c) => c.describe(name),
            Call::Broadcast(c) => c.describe(name),
            Call::SumTo(c) => c.describe(name),
            Call::Softmax(c) => c.describe(name),
            Call::Argmax(c) => c.describe(name),
            Call::Concat(c) => c.describe(name),
            Call::Slice(c) => c.describe(name),
            Call::SliceGrad(c) => c.describe(name),
            Call::Pick(c) => c.describe(name),
            Call::Scatter(c) => c.describe(name),
            Call::XentGrad(c) => c.describe(name),
            Call::OneHot(c) => c.describe(name),
            Call::Dropout(c) => c.describe(),
            Call::Noise(c) => c.describe(),
            Call::Custom(c) => c.describe(name),
            Call::Scan(c) => c.describe(name),
        }
    }
}

impl Instr {
    /// One line: `buf3 <- what it computes from which operands`, with `name` rendering each
    /// operand (so a plan dump can show `arg:x` and `param:hid1.w`).
    pub(crate) fn render(&self, name: &dyn Fn(&Src) -> String) -> String {
        format!("buf{} <- {}", self.out, self.call.describe(name))
    }
}

/// The program for one set of argument shapes: instructions, the workspace they run in, and
/// where the outputs and parameter updates end up.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) key: Vec<Shape>,
    pub(crate) instrs: Vec<Instr>,
    /// For each instruction, the graph node it computes (for dumps and errors).
    pub(crate) nodes: Vec<usize>,
    /// How many leading instructions compute loop-invariant values of a scan's step body: they
    /// run once per scan run, before its first step, and the steps run the rest (0 outside
    /// bodies). Their results stay in buffers no later instruction writes.
    pub(crate) hoisted: usize,
    pub(crate) workspace: Vec<Vec<f32>>,
    pub(crate) outputs: Vec<(usize, Shape)>,
    /// Per update: parameter slot, source, length, and whether the source buffer may be swapped in.
    pub(crate) updates: Vec<(usize, Src, usize, bool)>,
    /// The plans of the scans' step bodies, each with its step buffers, made with this plan.
    pub(crate) nested: Vec<Nested>,
    /// Where values stop changing, found on the first staged run (see `staged`).
    pub(crate) schedule: Option<Schedule>,
}

/// A scan's step body planned for one step's shapes, with the buffers its loop reuses at every
/// step: one per sequence (the step's slice) and one per state (its value carried over).
#[derive(Clone)]
pub(crate) struct Nested {
    pub(crate) plan: Plan,
    pub(crate) rngs: Vec<Rng>,
    pub(crate) bufs: Vec<Vec<f32>>,
    /// The shape of each of the body's inputs at one step.
    pub(crate) shapes: Vec<Shape>,
}

/// Where, in a plan, values stop changing (found by `staged`): positions count instructions run
/// (0: before the first, `j + 1`: right after instruction `j`).
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    /// Per parameter slot: the position after its last reader.
    pub(crate) last_read: Vec<usize>,
    /// Per workspace buffer: the position after its last writer.
    pub(crate) last_write: Vec<usize>,
    /// The position after the last instruction that can fail on the data.
    pub(crate) last_fallible: usize,
}

impl Plan {
    /// Whether this plan was made for arguments of these shapes.
    pub(crate) fn fits(&self, args: &[TensorView<'_>]) -> bool {
        self.key.len() == args.len()
            && self
                .key
                .iter()
                .zip(args)
                .all(|(k, a)| k.as_slice() == a.shape())
    }

    /// The `i`-th output, as left in the workspace by the last run.
    pub(crate) fn output(&self, i: usize) -> TensorView<'_> {
        let (buf, shape) = &self.outputs[i];
        let n: usize = shape.iter().product();
        TensorView::new(shape, &self.workspace[*buf][..n])
            .expect("plan output sizes are consistent")
    }

    /// The size of each workspace buffer.
    pub(crate) fn workspace_sizes(&self) -> Vec<usize> {
        self.workspace.iter().map(Vec::len).collect()
    }
}

impl fmt::Display for Src {
    /// `arg0`, `param1`, `const2`, `buf3`; [`Instr::render`] can name arguments and
    /// parameters instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Src::Arg(i) => write!(f, "arg{i}"),
            Src::Param(i) => write!(f, "param{i}"),
            Src::Const(i) => write!(f, "const{i}"),
            Src::Work(b) => write!(f, "buf{b}"),
            Src::Part { buf, offset, len } => write!(f, "buf{buf}[{offset}..{}]", offset + len),
        }
    }
}

impl fmt::Display for Instr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&|s| s.to_string()))
    }
}
