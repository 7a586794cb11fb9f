//! Instructions and plans: the compiler's output for one set of argument shapes. A [`Plan`] is a
//! list of [`Instr`]s over numbered workspace buffers, with every size, broadcast layout and
//! buffer already resolved, so running it is a loop with one `match` per instruction.

use crate::kernels::{Binary, Layout, Shape, Unary};
use crate::op::{ReduceKind, SoftmaxKind};
use crate::tensor::TensorView;

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
}

/// Which operand an in-place binary instruction overwrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Lhs,
    Rhs,
}

/// One step of a plan, with everything it needs resolved.
#[derive(Clone, Debug)]
pub(crate) enum Instr {
    Gemm {
        m: usize,
        k: usize,
        n: usize,
        a: Src,
        ta: bool,
        b: Src,
        tb: bool,
        bias: Option<Src>,
        out: usize,
    },
    Unary {
        op: Unary,
        x: Src,
        n: usize,
        inplace: bool,
        out: usize,
    },
    Binary {
        op: Binary,
        shape: Shape,
        a: Src,
        la: Layout,
        b: Src,
        lb: Layout,
        inplace: Option<Side>,
        out: usize,
    },
    Axpy {
        alpha: f32,
        shape: Shape,
        a: Src,
        la: Layout,
        b: Src,
        lb: Layout,
        inplace: Option<Side>,
        out: usize,
    },
    Select {
        shape: Shape,
        c: Src,
        lc: Layout,
        a: Src,
        la: Layout,
        b: Src,
        lb: Layout,
        out: usize,
    },
    Clip {
        lo: f32,
        hi: f32,
        x: Src,
        n: usize,
        inplace: bool,
        out: usize,
    },
    Copy {
        x: Src,
        n: usize,
        out: usize,
    },
    Transpose {
        rows: usize,
        cols: usize,
        x: Src,
        out: usize,
    },
    Reduce {
        kind: ReduceKind,
        outer: usize,
        len: usize,
        inner: usize,
        x: Src,
        out: usize,
    },
    MaxMask {
        outer: usize,
        len: usize,
        inner: usize,
        x: Src,
        out: usize,
    },
    Broadcast {
        x: Src,
        layout: Layout,
        shape: Shape,
        scale: Option<f32>,
        out: usize,
    },
    SumTo {
        g: Src,
        layout: Layout,
        shape: Shape,
        n: usize,
        scale: Option<f32>,
        out: usize,
    },
    Softmax {
        kind: SoftmaxKind,
        rows: usize,
        cols: usize,
        x: Src,
        inplace: bool,
        out: usize,
    },
    Argmax {
        rows: usize,
        cols: usize,
        x: Src,
        out: usize,
    },
    Concat {
        parts: Vec<(Src, usize)>,
        outer: usize,
        row: usize,
        out: usize,
    },
    Slice {
        x: Src,
        outer: usize,
        row: usize,
        offset: usize,
        width: usize,
        out: usize,
    },
    SliceGrad {
        g: Src,
        outer: usize,
        row: usize,
        offset: usize,
        width: usize,
        n: usize,
        out: usize,
    },
    Pick {
        x: Src,
        labels: Src,
        rows: usize,
        cols: usize,
        node: usize,
        out: usize,
    },
    Scatter {
        g: Src,
        labels: Src,
        rows: usize,
        cols: usize,
        node: usize,
        out: usize,
    },
    OneHot {
        labels: Src,
        rows: usize,
        classes: usize,
        node: usize,
        out: usize,
    },
    Dropout {
        rng: usize,
        p: f32,
        n: usize,
        out: usize,
    },
    Noise {
        rng: usize,
        std: f32,
        n: usize,
        out: usize,
    },
    Custom {
        node: usize,
        args: Vec<(Src, Shape)>,
        n: usize,
        out: usize,
    },
}

impl Instr {
    pub(crate) fn out(&self) -> usize {
        match self {
            Instr::Gemm { out, .. }
            | Instr::Unary { out, .. }
            | Instr::Binary { out, .. }
            | Instr::Select { out, .. }
            | Instr::Axpy { out, .. }
            | Instr::Clip { out, .. }
            | Instr::Copy { out, .. }
            | Instr::Transpose { out, .. }
            | Instr::Reduce { out, .. }
            | Instr::MaxMask { out, .. }
            | Instr::Broadcast { out, .. }
            | Instr::SumTo { out, .. }
            | Instr::Softmax { out, .. }
            | Instr::Argmax { out, .. }
            | Instr::Concat { out, .. }
            | Instr::Slice { out, .. }
            | Instr::SliceGrad { out, .. }
            | Instr::Pick { out, .. }
            | Instr::Scatter { out, .. }
            | Instr::OneHot { out, .. }
            | Instr::Dropout { out, .. }
            | Instr::Noise { out, .. }
            | Instr::Custom { out, .. } => *out,
        }
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
    pub(crate) workspace: Vec<Vec<f32>>,
    pub(crate) outputs: Vec<(usize, Shape)>,
    /// Per update: parameter slot, source, length, and whether the source buffer may be swapped in.
    pub(crate) updates: Vec<(usize, Src, usize, bool)>,
}

impl Plan {
    /// A plan for arguments of shapes `key`.
    pub(crate) fn new(
        key: Vec<Shape>,
        instrs: Vec<Instr>,
        nodes: Vec<usize>,
        workspace: Vec<Vec<f32>>,
        outputs: Vec<(usize, Shape)>,
        updates: Vec<(usize, Src, usize, bool)>,
    ) -> Plan {
        Plan {
            key,
            instrs,
            nodes,
            workspace,
            outputs,
            updates,
        }
    }

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
