//! Instructions and plans: the compiler's output for one set of argument shapes. A [`Plan`] is a
//! list of [`Instr`]s over numbered workspace buffers, with every size, broadcast layout and
//! buffer already resolved, so running it is a loop with one `match` per instruction.

use crate::kernels::{Binary, Layout, Shape, Unary};
use crate::op::{ReduceKind, SoftmaxKind};
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

impl fmt::Display for Src {
    /// `arg0`, `param1`, `const2`, `buf3`; [`Instr::render`] can name arguments and
    /// parameters instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Src::Arg(i) => write!(f, "arg{i}"),
            Src::Param(i) => write!(f, "param{i}"),
            Src::Const(i) => write!(f, "const{i}"),
            Src::Work(b) => write!(f, "buf{b}"),
        }
    }
}

impl fmt::Display for Instr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&|s| s.to_string()))
    }
}

/// ` (layout)` for a broadcast operand, nothing for one read element by element.
fn layout(l: &Layout) -> String {
    match l {
        Layout::Full => String::new(),
        Layout::Scalar => " (scalar)".into(),
        Layout::Row { period } => format!(" (row of {period})"),
        Layout::Col { inner } => format!(" (column, each ×{inner})"),
        Layout::Strided(strides) => format!(" (strides {:?})", strides.as_slice()),
    }
}

fn dims(shape: &Shape) -> String {
    let d: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", d.join("×"))
}

fn in_place(inplace: bool) -> &'static str {
    if inplace {
        " in place"
    } else {
        ""
    }
}

fn scaled(scale: &Option<f32>) -> String {
    scale.map(|s| format!(" ×{s}")).unwrap_or_default()
}

impl Instr {
    /// One line: `buf3 <- what it computes from which operands`, with `name` rendering
    /// each operand (so a plan dump can show `arg:x` and `param:hid1.w`).
    pub(crate) fn render(&self, name: &dyn Fn(&Src) -> String) -> String {
        let what = match self {
            Instr::Gemm {
                m,
                k,
                n,
                a,
                ta,
                b,
                tb,
                bias,
                ..
            } => format!(
                "gemm {m}x{k}x{n} ({}{}, {}{}){}",
                name(a),
                if *ta { "ᵀ" } else { "" },
                name(b),
                if *tb { "ᵀ" } else { "" },
                bias.map(|b| format!(" + bias {}", name(&b)))
                    .unwrap_or_default()
            ),
            Instr::Unary {
                op, x, n, inplace, ..
            } => format!(
                "{} {} [{n}]{}",
                format!("{op:?}").to_lowercase(),
                name(x),
                in_place(*inplace)
            ),
            Instr::Binary {
                op,
                shape,
                a,
                la,
                b,
                lb,
                inplace,
                ..
            } => format!(
                "{} {}{}, {}{} {}{}",
                format!("{op:?}").to_lowercase(),
                name(a),
                layout(la),
                name(b),
                layout(lb),
                dims(shape),
                inplace
                    .map(|s| format!(" in place over {}", format!("{s:?}").to_lowercase()))
                    .unwrap_or_default()
            ),
            Instr::Axpy {
                alpha,
                shape,
                a,
                la,
                b,
                lb,
                inplace,
                ..
            } => format!(
                "axpy {}{} + {alpha}·{}{} {}{}",
                name(a),
                layout(la),
                name(b),
                layout(lb),
                dims(shape),
                inplace
                    .map(|s| format!(" in place over {}", format!("{s:?}").to_lowercase()))
                    .unwrap_or_default()
            ),
            Instr::Select {
                shape,
                c,
                lc,
                a,
                la,
                b,
                lb,
                ..
            } => format!(
                "select {}{} ? {}{} : {}{} {}",
                name(c),
                layout(lc),
                name(a),
                layout(la),
                name(b),
                layout(lb),
                dims(shape)
            ),
            Instr::Clip {
                lo,
                hi,
                x,
                n,
                inplace,
                ..
            } => format!("clip({lo}, {hi}) {} [{n}]{}", name(x), in_place(*inplace)),
            Instr::Copy { x, n, .. } => format!("copy {} [{n}]", name(x)),
            Instr::Transpose { rows, cols, x, .. } => {
                format!("transpose {} [{rows}×{cols}]", name(x))
            }
            Instr::Reduce {
                kind,
                outer,
                len,
                inner,
                x,
                ..
            } => format!(
                "{} {} over the middle of [{outer}×{len}×{inner}]",
                format!("{kind:?}").to_lowercase(),
                name(x)
            ),
            Instr::MaxMask {
                outer,
                len,
                inner,
                x,
                ..
            } => format!(
                "max_mask {} over the middle of [{outer}×{len}×{inner}]",
                name(x)
            ),
            Instr::Broadcast {
                x,
                layout: l,
                shape,
                scale,
                ..
            } => format!(
                "broadcast {}{} to {}{}",
                name(x),
                layout(l),
                dims(shape),
                scaled(scale)
            ),
            Instr::SumTo {
                g,
                layout: l,
                shape,
                n,
                scale,
                ..
            } => format!(
                "sum_to {} {} down to [{n}]{}{}",
                name(g),
                dims(shape),
                layout(l),
                scaled(scale)
            ),
            Instr::Softmax {
                kind,
                rows,
                cols,
                x,
                inplace,
                ..
            } => format!(
                "{} {} [{rows}×{cols}]{}",
                match kind {
                    SoftmaxKind::Softmax => "softmax",
                    SoftmaxKind::LogSoftmax => "log_softmax",
                    SoftmaxKind::LogSumExp => "logsumexp",
                },
                name(x),
                in_place(*inplace)
            ),
            Instr::Argmax { rows, cols, x, .. } => {
                format!("argmax {} [{rows}×{cols}]", name(x))
            }
            Instr::Concat {
                parts, outer, row, ..
            } => {
                let parts: Vec<String> = parts
                    .iter()
                    .map(|(s, w)| format!("{} ({w} wide)", name(s)))
                    .collect();
                format!("concat {} into [{outer}×{row}]", parts.join(", "))
            }
            Instr::Slice {
                x,
                outer,
                row,
                offset,
                width,
                ..
            } => format!(
                "slice {} [{outer}×{row}] columns {offset}..{}",
                name(x),
                offset + width
            ),
            Instr::SliceGrad {
                g,
                outer,
                row,
                offset,
                width,
                ..
            } => format!(
                "slice_grad {} into columns {offset}..{} of [{outer}×{row}]",
                name(g),
                offset + width
            ),
            Instr::Pick {
                x,
                labels,
                rows,
                cols,
                ..
            } => format!("pick {} [{rows}×{cols}] at {}", name(x), name(labels)),
            Instr::Scatter {
                g,
                labels,
                rows,
                cols,
                ..
            } => format!(
                "scatter {} into [{rows}×{cols}] at {}",
                name(g),
                name(labels)
            ),
            Instr::OneHot {
                labels,
                rows,
                classes,
                ..
            } => format!("one_hot {} [{rows}×{classes}]", name(labels)),
            Instr::Dropout { rng, p, n, .. } => format!("dropout mask p={p} [{n}] stream {rng}"),
            Instr::Noise { rng, std, n, .. } => format!("noise σ={std} [{n}] stream {rng}"),
            Instr::Custom { node, args, n, .. } => {
                let args: Vec<String> = args
                    .iter()
                    .map(|(s, shape)| format!("{} {}", name(s), dims(shape)))
                    .collect();
                format!("custom %{node} ({}) [{n}]", args.join(", "))
            }
        };
        format!("buf{} <- {what}", self.out())
    }
}
