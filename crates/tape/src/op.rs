//! The closed set of primitive ops, with their names and their shape rules. Shape inference works
//! on [`Type`]s whose dims may be unknown (`None`) at build time; at plan time the same rule runs
//! on fully known dims, so build-time and run-time checks can never disagree.

use crate::custom::CustomOp;
pub use crate::dims::Dims;
use crate::expr::Param;
use crate::kernels::{broadcast_shape, Binary, Unary};
pub use crate::scan_body::ScanBody;
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};
use std::fmt;
use std::sync::Arc;

/// What kind of values a node carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// Real values: differentiable.
    Float,
    /// Integer class labels stored as floats: never differentiated.
    Label,
}

/// The static type of a node: its rank, the dims known at build time, and its kind of values.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    /// One entry per axis; `None` where the size is only known at run time.
    pub dims: Dims,
    /// Float or label data.
    pub dtype: DType,
}

impl Type {
    /// A float type from fully known dims.
    pub fn known(dims: &[usize]) -> Type {
        Type {
            dims: Dims::known(dims),
            dtype: DType::Float,
        }
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The concrete dims if all are known.
    pub fn concrete(&self) -> Option<SmallVec<[usize; 4]>> {
        self.dims.iter().copied().collect()
    }

    fn float(dims: Dims) -> Type {
        Type {
            dims,
            dtype: DType::Float,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.dims.fmt(f)
    }
}

pub use crate::kernels::{ReduceKind, SoftmaxKind};

/// A primitive op. Graph nodes hold one of these plus their input expressions.
///
/// Ops marked *compiler-only* are created by [`crate::Function::compile`]'s rewrites and never by
/// differentiation, so they need no gradient rule.
#[derive(Clone)]
pub enum Op {
    /// A named argument of compiled functions, with its rank and kind fixed by the node's type.
    Input(String),
    /// A fixed tensor.
    Constant(Arc<Tensor>),
    /// A shared variable.
    Param(Param),
    /// An elementwise function of one operand.
    Unary(Unary),
    /// An elementwise function of two operands, with numpy broadcasting.
    Binary(Binary),
    /// `cond ? a : b` elementwise, with broadcasting of all three.
    Select,
    /// Clamp into `[lo, hi]`; the rule refuses `lo > hi` and NaN bounds.
    Clip {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// Matrix product of two rank-2 operands, each optionally transposed (no copy is made).
    MatMul {
        /// Use the first operand transposed.
        ta: bool,
        /// Use the second operand transposed.
        tb: bool,
    },
    /// *Compiler-only*: `matmul(a, b) + bias`, then `relu` when `relu` is set, with the bias row
    /// and the activation applied by the product's epilogue to each finished block.
    GemmBias {
        /// Use the first operand transposed.
        ta: bool,
        /// Use the second operand transposed.
        tb: bool,
        /// Apply `relu` to the biased product.
        relu: bool,
    },
    /// *Compiler-only*: `a + alpha · b` (with broadcasting) in one pass, from `a ± b·c` with a scalar
    /// constant `c`; the shape of parameter updates `p − lr·g`.
    Axpy {
        /// The factor of the second operand.
        alpha: f32,
    },
    /// *Compiler-only*: `[g, x]`: `g · (x > 0)` in one pass, from the ReLU gradient's multiply by
    /// the comparison mask; both operands have the result's shape.
    ReluGrad,
    /// Swap the two axes of a matrix.
    Transpose,
    /// Same values, new dims; one dim may be `-1` (inferred).
    Reshape(SmallVec<[isize; 4]>),
    /// `[x, like]`: x's values with like's shape.
    ReshapeLike,
    /// Insert a size-1 axis at the given position.
    Unsqueeze(usize),
    /// Sum, mean or max over one axis (`Some`) or over everything (`None`). Summing nothing gives
    /// 0; the mean and the max of nothing are refused by the rule (rather than NaN and −∞).
    Reduce {
        /// Which reduction.
        kind: ReduceKind,
        /// The axis, or `None` for all.
        axis: Option<usize>,
        /// Keep the reduced axis with size 1.
        keepdims: bool,
    },
    /// `[x, like]`: x broadcast to like's shape; with `mean`, also divided by the stretch factor.
    BroadcastLike {
        /// Divide by `numel(like) / numel(x)` (the gradient of a mean).
        mean: bool,
    },
    /// `[g, like]`: g summed down to like's shape (the adjoint of broadcasting).
    SumLike {
        /// Divide by `numel(g) / numel(like)`.
        mean: bool,
    },
    /// 1 at the first maximum along the axis, 0 elsewhere.
    MaxMask(usize),
    /// Softmax, log-softmax or logsumexp over the last axis.
    Softmax(SoftmaxKind),
    /// Index of the first maximum along the last axis (labels).
    Argmax,
    /// Join operands along an axis.
    Concat(usize),
    /// `len` entries from `start` along an axis.
    Slice {
        /// The axis.
        axis: usize,
        /// First index taken.
        start: usize,
        /// Number of indices taken.
        len: usize,
    },
    /// `[g, like]`: zeros of like's shape with g placed at `start` along `axis` (adjoint of slice).
    /// g has like's dims except along `axis`, where `start + g's dim` may not pass like's.
    SliceGrad {
        /// The axis.
        axis: usize,
        /// Where g goes.
        start: usize,
    },
    /// `[x, labels]`: `x[i, labels[i]]` for each row i.
    Pick,
    /// `[g, labels, like]`: zeros of like's shape with `g[i]` at `[i, labels[i]]`; g and labels
    /// have one entry per row of the matrix like.
    Scatter,
    /// *Compiler-only*: `[p, g, labels]`: the gradient of softmax cross-entropy with respect to the
    /// logits, `scatter(g, labels) − p · g` row by row, with `p` the softmax of the logits; made
    /// from the log-softmax gradient so that it reads the softmax the forward pass computed.
    SoftmaxXentGrad,
    /// `[labels]`: one-hot rows with this many classes.
    OneHot(usize),
    /// `[like]`: a fresh dropout mask of like's shape per call: 0 with probability `p`, else `1/(1-p)`.
    Dropout {
        /// Drop probability.
        p: f32,
        /// Seed of this node's random stream.
        seed: u64,
    },
    /// `[like]`: fresh Gaussian noise of like's shape per call, mean 0.
    Noise {
        /// Standard deviation.
        std: f32,
        /// Seed of this node's random stream.
        seed: u64,
    },
    /// A user-defined op.
    Custom(Arc<dyn CustomOp>),
    /// `[sequences…, initial states…, non-sequences…]`: a symbolic loop over the time axis
    /// running the body once per step (made by `tape::scan`). Its value packs all its
    /// results into one vector; [`Op::ScanPart`] nodes read them out.
    Scan(Arc<ScanBody>),
    /// `[scan, the scan's operands…]`: one result of a scan (the operands give its shape).
    ScanPart {
        /// The scan's body.
        body: Arc<ScanBody>,
        /// Which result.
        part: usize,
    },
}

impl Op {
    /// The op's name as shown in errors and graph dumps.
    pub fn name(&self) -> String {
        match self {
            Op::Input(name) => format!("input `{name}`"),
            Op::Constant(t) => match t.item() {
                Some(v) if t.rank() == 0 => format!("const {v}"),
                _ => format!("const{:?}", t.shape()),
            },
            Op::Param(p) => format!("param `{}`", p.name()),
            Op::Unary(u) => format!("{u:?}").to_lowercase(),
            Op::Binary(b) => format!("{b:?}").to_lowercase(),
            Op::Select => "select".into(),
            Op::Clip { lo, hi } => format!("clip({lo}, {hi})"),
            Op::MatMul { ta, tb } => format!("matmul{}", trans_suffix(*ta, *tb)),
            Op::GemmBias { ta, tb, relu } => format!(
                "gemm_bias{}{}",
                if *relu { "_relu" } else { "" },
                trans_suffix(*ta, *tb)
            ),
            Op::Axpy { alpha } => format!("axpy({alpha})"),
            Op::ReluGrad => "relu_grad".into(),
            Op::Transpose => "transpose".into(),
            Op::Reshape(d) => format!("reshape{:?}", d.as_slice()),
            Op::ReshapeLike => "reshape_like".into(),
            Op::Unsqueeze(a) => format!("unsqueeze({a})"),
            Op::Reduce {
                kind,
                axis,
                keepdims,
            } => reduce_name(*kind, *axis, *keepdims),
            Op::BroadcastLike { mean } => if *mean {
                "broadcast_mean_like"
            } else {
                "broadcast_like"
            }
            .into(),
            Op::SumLike { mean } => if *mean { "mean_like" } else { "sum_like" }.into(),
            Op::MaxMask(a) => format!("max_mask(axis={a})"),
            Op::Softmax(k) => match k {
                SoftmaxKind::Softmax => "softmax",
                SoftmaxKind::LogSoftmax => "log_softmax",
                SoftmaxKind::LogSumExp => "logsumexp",
            }
            .into(),
            Op::Argmax => "argmax".into(),
            Op::Concat(a) => format!("concat(axis={a})"),
            Op::Slice { axis, start, len } => match start.checked_add(*len) {
                Some(end) => format!("slice(axis={axis}, {start}..{end})"),
                // An end past usize::MAX is refused by the rule, but its error still needs a name.
                None => format!("slice(axis={axis}, {start}..+{len})"),
            },
            Op::SliceGrad { axis, start } => format!("slice_grad(axis={axis}, at={start})"),
            Op::Pick => "pick".into(),
            Op::Scatter => "scatter".into(),
            Op::SoftmaxXentGrad => "softmax_xent_grad".into(),
            Op::OneHot(k) => format!("one_hot({k})"),
            Op::Dropout { p, .. } => format!("dropout_mask(p={p})"),
            Op::Noise { std, .. } => format!("noise(std={std})"),
            Op::Custom(c) => c.name().to_string(),
            Op::Scan(body) => body.name(),
            Op::ScanPart { body, part } => body.part_name(*part),
        }
    }

    /// Whether the op draws random numbers (never merged, folded or reordered).
    pub fn is_random(&self) -> bool {
        match self {
            Op::Dropout { .. } | Op::Noise { .. } => true,
            Op::Scan(body) => body.random,
            _ => false,
        }
    }

    /// Whether the op's output is the same buffer as its first input read another way (no work).
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape(_) | Op::ReshapeLike | Op::Unsqueeze(_))
    }

    /// The static type of the op's output, or a sentence saying what the operands should have been.
    pub fn infer(&self, ins: &[&Type]) -> Result<Type, String> {
        let n_expected = self.arity();
        if let Some(n) = n_expected {
            if ins.len() != n {
                return Err(format!("takes {n} operands, got {}", ins.len()));
            }
        }
        let float = |dims: Dims| Ok(Type::float(dims));
        match self {
            Op::Constant(t) => Ok(Type::known(t.shape())),
            Op::Param(p) => Ok(Type::known(&p.shape())),
            Op::Input(_) => Err("input types are set when the input is made".into()),
            Op::Unary(_) => float(ins[0].dims.clone()),
            Op::Clip { lo, hi } => {
                // NaN bounds compare as neither ordered nor equal, so they are refused too.
                if lo.partial_cmp(hi).is_none_or(|o| o.is_gt()) {
                    return Err(format!("bounds with lo <= hi, got lo = {lo}, hi = {hi}"));
                }
                float(ins[0].dims.clone())
            }
            Op::Binary(_) | Op::Axpy { .. } | Op::ReluGrad => {
                let dims = broadcast_dims(&ins[0].dims, &ins[1].dims)
                    .ok_or_else(|| "shapes that broadcast together".to_string())?;
                float(dims)
            }
            Op::Select => {
                let ab = broadcast_dims(&ins[1].dims, &ins[2].dims);
                let dims = ab
                    .and_then(|d| broadcast_dims(&ins[0].dims, &d))
                    .ok_or_else(|| {
                        "condition and both branches broadcasting together".to_string()
                    })?;
                float(dims)
            }
            Op::MatMul { ta, tb } | Op::GemmBias { ta, tb, .. } => {
                if ins[0].rank() != 2 || ins[1].rank() != 2 {
                    return Err("two matrices (rank 2)".into());
                }
                let (m, ka) = if *ta {
                    (ins[0].dims[1], ins[0].dims[0])
                } else {
                    (ins[0].dims[0], ins[0].dims[1])
                };
                let (kb, n) = if *tb {
                    (ins[1].dims[1], ins[1].dims[0])
                } else {
                    (ins[1].dims[0], ins[1].dims[1])
                };
                if let (Some(a), Some(b)) = (ka, kb) {
                    if a != b {
                        return Err(format!("inner dimensions to agree ({a} vs {b})"));
                    }
                }
                if matches!(self, Op::GemmBias { .. }) {
                    let bias = &ins[2].dims;
                    let ok = match bias.len() {
                        1 => compatible(bias[0], n),
                        2 => bias[0] == Some(1) && compatible(bias[1], n),
                        _ => false,
                    };
                    if !ok {
                        return Err("a bias row as wide as the product".into());
                    }
                }
                float(Dims::from([m, n]))
            }
            Op::Transpose => {
                if ins[0].rank() != 2 {
                    return Err("a matrix (rank 2)".into());
                }
                float(Dims::from([ins[0].dims[1], ins[0].dims[0]]))
            }
            Op::Reshape(target) => reshape_dims(&ins[0].dims, target).map(|d| Type {
                dims: d,
                dtype: ins[0].dtype,
            }),
            Op::ReshapeLike => {
                if let (Some(a), Some(b)) = (numel(&ins[0].dims)?, numel(&ins[1].dims)?) {
                    if a != b {
                        return Err(format!("the same number of elements ({a} vs {b})"));
                    }
                }
                Ok(Type {
                    dims: ins[1].dims.clone(),
                    dtype: ins[0].dtype,
                })
            }
            Op::Unsqueeze(axis) => {
                if *axis > ins[0].rank() {
                    return Err(format!("an axis at most {} (the rank)", ins[0].rank()));
                }
                let mut dims = ins[0].dims.clone();
                dims.insert(*axis, Some(1));
                Ok(Type {
                    dims,
                    dtype: ins[0].dtype,
                })
            }
            Op::Reduce {
                axis,
                keepdims,
                kind,
            } => {
                let dims = &ins[0].dims;
                let undefined_on_empty = matches!(kind, ReduceKind::Max | ReduceKind::Mean);
                match axis {
                    None => {
                        if undefined_on_empty && numel(dims)? == Some(0) {
                            return Err(
                                "a non-empty operand (max and mean of nothing are undefined)"
                                    .into(),
                            );
                        }
                        let kept = if *keepdims { dims.len() } else { 0 };
                        float((0..kept).map(|_| Some(1)).collect())
                    }
                    Some(a) if *a >= dims.len() => {
                        Err(format!("an axis below the rank {}", dims.len()))
                    }
                    Some(a) => {
                        if undefined_on_empty && dims[*a] == Some(0) {
                            return Err(format!(
                                "a non-empty axis {a} (max and mean of nothing are undefined)"
                            ));
                        }
                        let mut d = dims.clone();
                        if *keepdims {
                            d[*a] = Some(1);
                        } else {
                            d.remove(*a);
                        }
                        float(d)
                    }
                }
            }
            Op::BroadcastLike { .. } => {
                if !broadcasts_to(&ins[0].dims, &ins[1].dims) {
                    return Err("an operand that broadcasts to the target".into());
                }
                float(ins[1].dims.clone())
            }
            Op::SumLike { .. } => {
                if !broadcasts_to(&ins[1].dims, &ins[0].dims) {
                    return Err("a target that broadcasts to the summed operand".into());
                }
                float(ins[1].dims.clone())
            }
            Op::MaxMask(axis) => {
                if *axis >= ins[0].rank() {
                    return Err(format!("an axis below the rank {}", ins[0].rank()));
                }
                float(ins[0].dims.clone())
            }
            Op::Softmax(kind) => {
                if ins[0].rank() == 0 {
                    return Err("at least one axis".into());
                }
                let mut d = ins[0].dims.clone();
                if *kind == SoftmaxKind::LogSumExp {
                    d.pop();
                }
                float(d)
            }
            Op::Argmax => {
                let d = &ins[0].dims;
                if d.is_empty() || d[d.len() - 1] == Some(0) {
                    return Err("a non-empty last axis".into());
                }
                Ok(Type {
                    dims: d[..d.len() - 1].into(),
                    dtype: DType::Label,
                })
            }
            Op::Concat(axis) => {
                if ins.is_empty() {
                    return Err("at least one operand".into());
                }
                let r = ins[0].rank();
                if *axis >= r {
                    return Err(format!("an axis below the rank {r}"));
                }
                let mut dims = ins[0].dims.clone();
                let mut total = Some(0usize);
                for t in ins {
                    if t.rank() != r {
                        return Err("operands of one rank".into());
                    }
                    for (i, (a, b)) in dims.iter_mut().zip(&t.dims).enumerate() {
                        if i == *axis {
                            continue;
                        }
                        if !compatible(*a, *b) {
                            return Err(format!("equal sizes off axis {axis}"));
                        }
                        *a = a.or(*b);
                    }
                    total = match (total, t.dims[*axis]) {
                        (Some(s), Some(d)) => Some(s.checked_add(d).ok_or_else(too_many)?),
                        _ => None,
                    };
                }
                dims[*axis] = total;
                float(dims)
            }
            Op::Slice { axis, start, len } => {
                let d = &ins[0].dims;
                if *axis >= d.len() {
                    return Err(format!("an axis below the rank {}", d.len()));
                }
                // No axis is longer than usize::MAX, so an end past it never fits.
                let end = start.checked_add(*len);
                match (end, d[*axis]) {
                    (Some(end), Some(size)) if end > size => {
                        return Err(format!("{start}..{end} to lie within 0..{size}"));
                    }
                    (None, Some(size)) => {
                        return Err(format!("{start}+{len} to lie within 0..{size}"));
                    }
                    (None, None) => return Err(format!("{start}+{len} to lie within the axis")),
                    _ => {}
                }
                let mut dims = d.clone();
                dims[*axis] = Some(*len);
                float(dims)
            }
            Op::SliceGrad { axis, start } => {
                let (g, like) = (&ins[0].dims, &ins[1].dims);
                if g.len() != like.len() || *axis >= g.len() {
                    return Err("a slice of the target's rank".into());
                }
                let off_axis_agree = (0..g.len())
                    .filter(|i| i != axis)
                    .all(|i| compatible(g[i], like[i]));
                // The slice's end `start + len` must not pass the target's dim (nor overflow).
                let fits = match (g[*axis], like[*axis]) {
                    (Some(len), Some(size)) => start.checked_add(len).is_some_and(|e| e <= size),
                    (None, Some(size)) => *start <= size,
                    (_, None) => true,
                };
                if !(off_axis_agree && fits) {
                    return Err(format!(
                        "a slice with the target's dims off axis {axis} that fits the target along it"
                    ));
                }
                float(like.clone())
            }
            Op::Pick => {
                let (x, l) = (&ins[0].dims, &ins[1].dims);
                if x.len() != 2 || l.len() != 1 || !compatible(x[0], l[0]) {
                    return Err("a matrix (rows × classes) and one label per row".into());
                }
                float(Dims::from([x[0].or(l[0])]))
            }
            Op::Scatter => {
                let (g, l, like) = (&ins[0].dims, &ins[1].dims, &ins[2].dims);
                let ranks = g.len() == 1 && l.len() == 1 && like.len() == 2;
                if !(ranks && compatible(g[0], like[0]) && compatible(l[0], like[0])) {
                    return Err("one value and one label per row of the target matrix".into());
                }
                float(like.clone())
            }
            Op::SoftmaxXentGrad => {
                let (p, g, l) = (&ins[0].dims, &ins[1].dims, &ins[2].dims);
                let ranks = p.len() == 2 && g.len() == 1 && l.len() == 1;
                if !(ranks && compatible(g[0], p[0]) && compatible(l[0], p[0])) {
                    return Err(
                        "probabilities (rows × classes), one value and one label per row".into(),
                    );
                }
                float(p.clone())
            }
            Op::OneHot(k) => {
                if ins[0].rank() != 1 {
                    return Err("a vector of labels".into());
                }
                float(Dims::from([ins[0].dims[0], Some(*k)]))
            }
            Op::Dropout { p, .. } => {
                if !(0.0..1.0).contains(p) {
                    return Err(format!("a drop probability in [0, 1), got {p}"));
                }
                float(ins[0].dims.clone())
            }
            Op::Noise { std, .. } => {
                if !(std.is_finite() && *std >= 0.0) {
                    return Err(format!(
                        "a finite, non-negative standard deviation, got {std}"
                    ));
                }
                float(ins[0].dims.clone())
            }
            Op::Custom(c) => {
                let owned: Vec<Type> = ins.iter().map(|t| (*t).clone()).collect();
                c.output_type(&owned)
            }
            Op::Scan(body) => body.packed_type(ins),
            Op::ScanPart { body, part } => {
                if ins.is_empty() {
                    return Err("the scan as first operand".into());
                }
                let mut parts = body.part_types(&ins[1..])?;
                if *part >= parts.len() {
                    return Err(format!("a part below {}", parts.len()));
                }
                Ok(parts.swap_remove(*part))
            }
        }
    }

    /// The fixed number of operands, if the op has one.
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input(_) | Op::Constant(_) | Op::Param(_) => 0,
            Op::Unary(_) | Op::Clip { .. } | Op::Transpose | Op::Reshape(_) | Op::Unsqueeze(_) => 1,
            Op::Reduce { .. } | Op::MaxMask(_) | Op::Softmax(_) | Op::Argmax | Op::Slice { .. } => {
                1
            }
            Op::OneHot(_) | Op::Dropout { .. } | Op::Noise { .. } => 1,
            Op::Binary(_)
            | Op::Axpy { .. }
            | Op::ReluGrad
            | Op::MatMul { .. }
            | Op::ReshapeLike
            | Op::BroadcastLike { .. } => 2,
            Op::SumLike { .. } | Op::SliceGrad { .. } | Op::Pick => 2,
            Op::Select | Op::GemmBias { .. } | Op::Scatter | Op::SoftmaxXentGrad => 3,
            Op::Concat(_) | Op::Custom(_) | Op::Scan(_) | Op::ScanPart { .. } => return None,
        })
    }

    /// A key under which two nodes with equal keys and equal inputs compute the same value, for
    /// common-subexpression elimination; `None` for nodes that must stay distinct (leaves that
    /// are arguments or parameters, random ops, constants of more than one element).
    pub fn cse_key(&self) -> Option<CseKey> {
        let props: SmallVec<[u64; 4]> = match self {
            Op::Input(_) | Op::Param(_) | Op::Dropout { .. } | Op::Noise { .. } => return None,
            Op::Constant(t) => {
                // Only one-element constants are compared by value; larger ones stay distinct.
                let v = t.item()?;
                let mut props: SmallVec<[u64; 4]> = t.shape().iter().map(|&d| d as u64).collect();
                props.push(u64::from(v.to_bits()));
                props
            }
            Op::Custom(c) => smallvec![Arc::as_ptr(c) as *const u8 as usize as u64],
            // A random body must run once per node, so its scans are never merged.
            Op::Scan(body) if body.random => return None,
            Op::Scan(body) => smallvec![Arc::as_ptr(body) as usize as u64],
            Op::ScanPart { body, part } => {
                smallvec![Arc::as_ptr(body) as usize as u64, *part as u64]
            }
            Op::Unary(u) => smallvec![*u as u64],
            Op::Binary(b) => smallvec![*b as u64],
            Op::Select
            | Op::ReluGrad
            | Op::Transpose
            | Op::ReshapeLike
            | Op::Argmax
            | Op::Pick
            | Op::Scatter
            | Op::SoftmaxXentGrad => SmallVec::new(),
            Op::Clip { lo, hi } => smallvec![u64::from(lo.to_bits()), u64::from(hi.to_bits())],
            Op::MatMul { ta, tb } => smallvec![*ta as u64, *tb as u64],
            Op::GemmBias { ta, tb, relu } => smallvec![*ta as u64, *tb as u64, *relu as u64],
            Op::Axpy { alpha } => smallvec![u64::from(alpha.to_bits())],
            Op::Reshape(dims) => dims.iter().map(|&d| d as u64).collect(),
            Op::Unsqueeze(axis) | Op::MaxMask(axis) | Op::Concat(axis) | Op::OneHot(axis) => {
                smallvec![*axis as u64]
            }
            Op::Reduce {
                kind,
                axis,
                keepdims,
            } => smallvec![
                *kind as u64,
                axis.map_or(u64::MAX, |a| a as u64),
                *keepdims as u64
            ],
            Op::BroadcastLike { mean } | Op::SumLike { mean } => smallvec![*mean as u64],
            Op::Softmax(kind) => smallvec![*kind as u64],
            Op::Slice { axis, start, len } => smallvec![*axis as u64, *start as u64, *len as u64],
            Op::SliceGrad { axis, start } => smallvec![*axis as u64, *start as u64],
        };
        Some(CseKey {
            op: std::mem::discriminant(self),
            props,
        })
    }
}

/// What makes two ops the same computation: the variant and its properties, compared and hashed
/// as data (see [`Op::cse_key`]). Every variant lists its properties in one exhaustive match, so
/// a new op cannot be merged by accident on a partial description.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CseKey {
    op: std::mem::Discriminant<Op>,
    props: SmallVec<[u64; 4]>,
}

/// A reduction's name, `sum(axis=1, keepdims)`; generic over the axis so that an error can name
/// the axis as the user wrote it (`-5`) rather than as resolved.
pub(crate) fn reduce_name<A: fmt::Display>(
    kind: ReduceKind,
    axis: Option<A>,
    keepdims: bool,
) -> String {
    let k = format!("{kind:?}").to_lowercase();
    match axis {
        Some(a) => format!("{k}(axis={a}{})", if keepdims { ", keepdims" } else { "" }),
        None => k,
    }
}

fn trans_suffix(ta: bool, tb: bool) -> &'static str {
    match (ta, tb) {
        (false, false) => "",
        (true, false) => "(Aᵀ)",
        (false, true) => "(Bᵀ)",
        (true, true) => "(Aᵀ, Bᵀ)",
    }
}

fn compatible(a: Option<usize>, b: Option<usize>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Why an op is refused when an element count does not fit in `usize`.
fn too_many() -> String {
    "an operand whose element count fits in memory".into()
}

/// The number of elements if every dim is known; an error if the known dims alone already
/// overflow `usize` (no tensor can have that many). A zero dim makes the count 0 whatever the rest.
fn numel(dims: &Dims) -> Result<Option<usize>, String> {
    if dims.contains(&Some(0)) {
        return Ok(Some(0));
    }
    let mut count = Some(1usize);
    let mut known = 1usize;
    for d in dims.iter() {
        match d {
            Some(d) => known = known.checked_mul(*d).ok_or_else(too_many)?,
            None => count = None,
        }
    }
    Ok(count.map(|_| known))
}

/// Whether `from` broadcasts *to* `to` (numpy's rule in one direction): it has no more axes, and
/// each of its dims, aligned from the right, is 1 or equals `to`'s. Unknown dims are assumed to
/// fit; the rule runs again on the known dims when a plan is made.
fn broadcasts_to(from: &Dims, to: &Dims) -> bool {
    from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(f, t)| *f == Some(1) || compatible(*f, *t))
}

/// Numpy broadcasting over dims that may be unknown. An unknown dim against a known one > 1 is
/// taken to be that one (checked again at run time).
pub fn broadcast_dims(a: &Dims, b: &Dims) -> Option<Dims> {
    if let (Some(ca), Some(cb)) = (
        a.iter().copied().collect::<Option<SmallVec<[usize; 4]>>>(),
        b.iter().copied().collect::<Option<SmallVec<[usize; 4]>>>(),
    ) {
        return broadcast_shape(&ca, &cb).map(|s| s.iter().map(|&d| Some(d)).collect());
    }
    let r = a.len().max(b.len());
    let mut out = Dims(SmallVec::with_capacity(r));
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            Some(1)
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            Some(1)
        };
        out.push(match (da, db) {
            (Some(1), d) | (d, Some(1)) => d,
            (Some(x), Some(y)) if x == y => Some(x),
            (Some(_), Some(_)) => return None,
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        });
    }
    Some(out)
}

fn reshape_dims(from: &Dims, target: &[isize]) -> Result<Dims, String> {
    let wild = target.iter().filter(|&&d| d == -1).count();
    if wild > 1 || target.iter().any(|&d| d < -1) {
        return Err("target dims that are sizes or a single -1".into());
    }
    // A zero size makes the target empty whatever the others are, as in `numel`.
    let known = if target.contains(&0) {
        0
    } else {
        target
            .iter()
            .filter(|&&d| d >= 0)
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .ok_or_else(too_many)?
    };
    let total = numel(from)?;
    let mut dims: Dims = target
        .iter()
        .map(|&d| (d >= 0).then_some(d as usize))
        .collect();
    match (wild, total) {
        (0, Some(t)) if t != known => Err(format!(
            "{known} elements in the target, the operand has {t}"
        )),
        (1, Some(t)) => {
            if known == 0 || t % known != 0 {
                return Err(format!(
                    "a target whose known dims divide the operand's {t} elements"
                ));
            }
            let i = target.iter().position(|&d| d == -1).unwrap_or(0);
            dims[i] = Some(t / known);
            Ok(dims)
        }
        _ => Ok(dims),
    }
}
