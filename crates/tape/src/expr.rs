//! Symbolic expressions: [`Expr`] handles to graph nodes, the leaves ([`Expr::input`],
//! [`Expr::constant`], [`Param`]) and the methods and operators that build new nodes.
//!
//! Building never fails: a node whose operands do not fit records the error (with the caller's
//! source line) and every node built on it carries that error on, until `grad` or `compile`
//! returns it.

use crate::error::{Error, Loc, Result, ValueRole, ValueShape};
use crate::kernels::{Binary, Unary};
use crate::op::{reduce_name, DType, Dims, Op, ReduceKind, SoftmaxKind, Type};
use crate::tensor::Tensor;
use smallvec::SmallVec;
use std::fmt;
use std::ops;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A node of an expression graph: cheap to clone (one `Arc`), immutable, `Send + Sync`.
///
/// ```
/// use tape::{Expr, Param, Tensor};
/// let x = Expr::input("x", 2);
/// let w = Param::new("w", Tensor::zeros(&[3, 2]));
/// let y = x.matmul(&w.expr()).relu().sum();
/// assert_eq!(y.rank(), 0);
/// ```
#[derive(Clone)]
pub struct Expr(pub(crate) Arc<Node>);

pub(crate) struct Node {
    pub(crate) id: usize,
    pub(crate) op: Op,
    pub(crate) inputs: Vec<Expr>,
    pub(crate) ty: Result<Type>,
    pub(crate) at: Loc,
}

/// Dropping the last handle to a long chain would otherwise recurse once per node (each node
/// drops its inputs' `Arc`s inside its own drop) and overflow the stack; instead the inputs this
/// node owns alone are moved onto a worklist and emptied one at a time, like graph.rs walks them.
impl Drop for Node {
    fn drop(&mut self) {
        let mut work: Vec<Expr> = std::mem::take(&mut self.inputs);
        while let Some(e) = work.pop() {
            // Only a node nobody else holds is taken apart; a shared one just loses a count.
            if let Ok(mut node) = Arc::try_unwrap(e.0) {
                work.append(&mut node.inputs);
            }
        }
    }
}

impl Expr {
    /// Makes a node applying `op` to `inputs`, inferring its type (or recording why it has none).
    /// This is the one door every node goes through, including custom ops'.
    #[track_caller]
    pub fn apply(op: Op, inputs: &[Expr]) -> Expr {
        Expr::make(op, inputs.to_vec(), Location::caller())
    }

    pub(crate) fn make(op: Op, inputs: Vec<Expr>, at: Loc) -> Expr {
        let ty = match inputs.iter().find_map(|e| e.0.ty.as_ref().err()) {
            Some(err) => Err(err.clone()),
            None => {
                let types: Vec<&Type> = inputs.iter().map(|e| e.ty_ok()).collect();
                op.infer(&types).map_err(|expected| Error::Shape {
                    op: op.name(),
                    shapes: types.iter().map(|t| t.dims.clone()).collect(),
                    expected,
                    at,
                })
            }
        };
        Expr(Arc::new(Node {
            id: next_id(),
            op,
            inputs,
            ty,
            at,
        }))
    }

    fn leaf(op: Op, ty: Type, at: Loc) -> Expr {
        Expr(Arc::new(Node {
            id: next_id(),
            op,
            inputs: Vec::new(),
            ty: Ok(ty),
            at,
        }))
    }

    /// A stand-in for a value that is only known inside a scan's step (a sequence's slice, a
    /// state, a non-sequence, an incoming gradient): an input leaf of the given type.
    pub(crate) fn placeholder(name: &str, ty: Type, at: Loc) -> Expr {
        Expr::leaf(Op::Input(name.to_string()), ty, at)
    }

    /// A float argument of the given rank, sizes known only when a function is called
    /// (like Theano's `T.matrix('x')` for rank 2).
    #[track_caller]
    pub fn input(name: &str, rank: usize) -> Expr {
        let ty = Type {
            dims: (0..rank).map(|_| None).collect(),
            dtype: DType::Float,
        };
        Expr::leaf(Op::Input(name.to_string()), ty, Location::caller())
    }

    /// A float argument whose dims are partly known: `None` for a dim that varies (the batch).
    /// Calls with other sizes for the known dims are refused with an error naming the input.
    #[track_caller]
    pub fn input_with_dims(name: &str, dims: &[Option<usize>]) -> Expr {
        let ty = Type {
            dims: dims.iter().copied().collect(),
            dtype: DType::Float,
        };
        Expr::leaf(Op::Input(name.to_string()), ty, Location::caller())
    }

    /// A vector argument of integer class labels (one per row). It has no gradient.
    #[track_caller]
    pub fn labels(name: &str) -> Expr {
        let ty = Type {
            dims: Dims::from([None]),
            dtype: DType::Label,
        };
        Expr::leaf(Op::Input(name.to_string()), ty, Location::caller())
    }

    /// A fixed tensor.
    #[track_caller]
    pub fn constant(t: Tensor) -> Expr {
        let ty = Type::known(t.shape());
        Expr::leaf(Op::Constant(Arc::new(t)), ty, Location::caller())
    }

    /// A fixed rank-0 value.
    #[track_caller]
    pub fn scalar(v: f32) -> Expr {
        Expr::constant(Tensor::scalar(v))
    }

    /// The node's op.
    pub fn op(&self) -> &Op {
        &self.0.op
    }

    /// The node's operands.
    pub fn inputs(&self) -> &[Expr] {
        &self.0.inputs
    }

    /// The node's static type, or the error that was recorded while building it.
    pub fn ty(&self) -> Result<&Type> {
        self.0.ty.as_ref().map_err(Clone::clone)
    }

    /// The static dims (empty if the node is in error).
    pub fn dims(&self) -> Dims {
        self.0
            .ty
            .as_ref()
            .map(|t| t.dims.clone())
            .unwrap_or_default()
    }

    /// The number of axes (0 if the node is in error).
    pub fn rank(&self) -> usize {
        self.0.ty.as_ref().map(|t| t.rank()).unwrap_or(0)
    }

    /// Where the node was built.
    pub fn location(&self) -> Loc {
        self.0.at
    }

    /// A number unique to this node within the process (graph identity).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// Only for nodes known to be well typed.
    fn ty_ok(&self) -> &Type {
        match &self.0.ty {
            Ok(t) => t,
            Err(_) => unreachable!("callers check for errors first"),
        }
    }

    /// The elementwise function `u` of this expression (every [`Unary`] also has a method of
    /// its own name, e.g. [`Expr::tanh`]).
    #[track_caller]
    pub fn unary(&self, u: Unary) -> Expr {
        Expr::apply(Op::Unary(u), std::slice::from_ref(self))
    }

    #[track_caller]
    fn binary(&self, b: Binary, other: &Expr) -> Expr {
        Expr::apply(Op::Binary(b), &[self.clone(), other.clone()])
    }

    /// `-x`.
    #[track_caller]
    pub fn neg(&self) -> Expr {
        self.unary(Unary::Neg)
    }
    /// `eˣ`.
    #[track_caller]
    pub fn exp(&self) -> Expr {
        self.unary(Unary::Exp)
    }
    /// Natural logarithm.
    #[track_caller]
    pub fn log(&self) -> Expr {
        self.unary(Unary::Log)
    }
    /// Square root.
    #[track_caller]
    pub fn sqrt(&self) -> Expr {
        self.unary(Unary::Sqrt)
    }
    /// `|x|`; its derivative at 0 is taken as 0.
    #[track_caller]
    pub fn abs(&self) -> Expr {
        self.unary(Unary::Abs)
    }
    /// −1, 0 or 1; no gradient flows through it.
    #[track_caller]
    pub fn sign(&self) -> Expr {
        self.unary(Unary::Sign)
    }
    /// `x²`.
    #[track_caller]
    pub fn square(&self) -> Expr {
        self.unary(Unary::Square)
    }
    /// `1/x`.
    #[track_caller]
    pub fn recip(&self) -> Expr {
        self.unary(Unary::Recip)
    }
    /// Logistic sigmoid `1/(1+e⁻ˣ)`.
    #[track_caller]
    pub fn sigmoid(&self) -> Expr {
        self.unary(Unary::Sigmoid)
    }
    /// Hyperbolic tangent.
    #[track_caller]
    pub fn tanh(&self) -> Expr {
        self.unary(Unary::Tanh)
    }
    /// `max(x, 0)`; its derivative at 0 is taken as 0.
    #[track_caller]
    pub fn relu(&self) -> Expr {
        self.unary(Unary::Relu)
    }
    /// `ln(1 + eˣ)`, computed stably.
    #[track_caller]
    pub fn softplus(&self) -> Expr {
        self.unary(Unary::Softplus)
    }
    /// `x / (1 + |x|)`.
    #[track_caller]
    pub fn softsign(&self) -> Expr {
        self.unary(Unary::Softsign)
    }
    /// `xᵉ` elementwise (with broadcasting).
    #[track_caller]
    pub fn pow(&self, e: &Expr) -> Expr {
        self.binary(Binary::Pow, e)
    }
    /// `xᵖ` for a fixed exponent.
    #[track_caller]
    pub fn powf(&self, p: f32) -> Expr {
        self.binary(Binary::Pow, &Expr::scalar(p))
    }
    /// Elementwise larger of two values (gradient to the first operand on ties).
    #[track_caller]
    pub fn maximum(&self, other: &Expr) -> Expr {
        self.binary(Binary::Maximum, other)
    }
    /// Elementwise smaller of two values (gradient to the first operand on ties).
    #[track_caller]
    pub fn minimum(&self, other: &Expr) -> Expr {
        self.binary(Binary::Minimum, other)
    }
    /// 1 where `self > other`, else 0 (no gradient).
    #[track_caller]
    pub fn gt(&self, other: &Expr) -> Expr {
        self.binary(Binary::Gt, other)
    }
    /// 1 where `self >= other`, else 0 (no gradient).
    #[track_caller]
    pub fn ge(&self, other: &Expr) -> Expr {
        self.binary(Binary::Ge, other)
    }
    /// 1 where `self < other`, else 0 (no gradient).
    #[track_caller]
    pub fn lt(&self, other: &Expr) -> Expr {
        self.binary(Binary::Lt, other)
    }
    /// 1 where `self <= other`, else 0 (no gradient).
    #[track_caller]
    pub fn le(&self, other: &Expr) -> Expr {
        self.binary(Binary::Le, other)
    }
    /// 1 where equal, else 0 (no gradient).
    #[track_caller]
    pub fn eq(&self, other: &Expr) -> Expr {
        self.binary(Binary::Eq, other)
    }
    /// 1 where different, else 0 (no gradient).
    #[track_caller]
    pub fn ne(&self, other: &Expr) -> Expr {
        self.binary(Binary::Ne, other)
    }
    /// `self` (a 0/1 condition) chooses between `a` where nonzero and `b` elsewhere.
    #[track_caller]
    pub fn select(&self, a: &Expr, b: &Expr) -> Expr {
        Expr::apply(Op::Select, &[self.clone(), a.clone(), b.clone()])
    }
    /// Clamps into `[lo, hi]`; the gradient is 0 outside the range. Bounds with `lo > hi` or a
    /// NaN bound are a shape error (reported by `grad` or `compile`, like any bad node).
    #[track_caller]
    pub fn clip(&self, lo: f32, hi: f32) -> Expr {
        Expr::apply(Op::Clip { lo, hi }, std::slice::from_ref(self))
    }

    /// Matrix product of two rank-2 expressions.
    #[track_caller]
    pub fn matmul(&self, other: &Expr) -> Expr {
        Expr::apply(
            Op::MatMul {
                ta: false,
                tb: false,
            },
            &[self.clone(), other.clone()],
        )
    }
    /// Matrix transpose.
    #[track_caller]
    pub fn t(&self) -> Expr {
        Expr::apply(Op::Transpose, std::slice::from_ref(self))
    }
    /// Same values in new dims; at most one dim may be `-1`, inferred from the others.
    #[track_caller]
    pub fn reshape(&self, dims: &[isize]) -> Expr {
        Expr::apply(Op::Reshape(dims.into()), std::slice::from_ref(self))
    }
    /// Inserts an axis of size 1 at `axis`.
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Expr {
        Expr::apply(Op::Unsqueeze(axis), std::slice::from_ref(self))
    }
    /// Broadcasts to the shape of `like`: every dim of `self` (aligned from the right) must be 1
    /// or equal `like`'s, and `self` may not have more axes.
    #[track_caller]
    pub fn broadcast_like(&self, like: &Expr) -> Expr {
        Expr::apply(
            Op::BroadcastLike { mean: false },
            &[self.clone(), like.clone()],
        )
    }
    /// Sums down to the shape of `like` (the adjoint of broadcasting): `like` must broadcast to
    /// `self`'s shape.
    #[track_caller]
    pub fn sum_like(&self, like: &Expr) -> Expr {
        Expr::apply(Op::SumLike { mean: false }, &[self.clone(), like.clone()])
    }

    #[track_caller]
    fn reduce(&self, kind: ReduceKind, axis: Option<isize>, keepdims: bool) -> Expr {
        let op = |axis| Op::Reduce {
            kind,
            axis,
            keepdims,
        };
        match axis.map(|a| self.resolve_axis(a)) {
            None => Expr::apply(op(None), std::slice::from_ref(self)),
            Some(Ok(a)) => Expr::apply(op(Some(a)), std::slice::from_ref(self)),
            Some(Err(expected)) => {
                // The error names the axis as the user wrote it; the node's op never runs (a
                // node in error cannot be compiled), so its axis is only a placeholder.
                let name = reduce_name(kind, axis, keepdims);
                Expr::refused(op(Some(usize::MAX)), name, self, expected)
            }
        }
    }

    /// The axis `axis` of this expression counted from the front: negative axes count from the
    /// end, numpy's way. Out of range, the sentence an error should end with.
    fn resolve_axis(&self, axis: isize) -> Result<usize, String> {
        let rank = self.rank();
        let resolved = if axis < 0 {
            rank.checked_sub(axis.unsigned_abs())
        } else {
            Some(axis.unsigned_abs())
        };
        match resolved {
            Some(a) if a < rank => Ok(a),
            _ if rank == 0 => Err("an operand with at least one axis (it has rank 0)".into()),
            _ => Err(format!("an axis in -{rank}..{rank} (the rank is {rank})")),
        }
    }

    /// A node whose arguments were refused before its op could be formed: it records a shape
    /// error under `name` (unless its operand already carries one, which it passes on).
    #[track_caller]
    fn refused(op: Op, name: String, operand: &Expr, expected: String) -> Expr {
        let at = Location::caller();
        let ty = match &operand.0.ty {
            Err(e) => Err(e.clone()),
            Ok(t) => Err(Error::Shape {
                op: name,
                shapes: vec![t.dims.clone()],
                expected,
                at,
            }),
        };
        Expr(Arc::new(Node {
            id: next_id(),
            op,
            inputs: vec![operand.clone()],
            ty,
            at,
        }))
    }
    /// Sum of all elements (rank 0); 0 for an empty operand.
    #[track_caller]
    pub fn sum(&self) -> Expr {
        self.reduce(ReduceKind::Sum, None, false)
    }
    /// Mean of all elements (rank 0). An empty operand has no mean: it is a shape error (at
    /// build time if its dims are known, else when the function is called), not NaN.
    #[track_caller]
    pub fn mean(&self) -> Expr {
        self.reduce(ReduceKind::Mean, None, false)
    }
    /// Largest element (rank 0). An empty operand has no maximum: it is a shape error (at build
    /// time if its dims are known, else when the function is called), not −∞.
    #[track_caller]
    pub fn max(&self) -> Expr {
        self.reduce(ReduceKind::Max, None, false)
    }
    /// Sum over one axis (negative counts from the end); 0 where the axis is empty.
    #[track_caller]
    pub fn sum_axis(&self, axis: isize, keepdims: bool) -> Expr {
        self.reduce(ReduceKind::Sum, Some(axis), keepdims)
    }
    /// Mean over one axis (negative counts from the end); an empty axis is a shape error, as
    /// for [`Expr::mean`].
    #[track_caller]
    pub fn mean_axis(&self, axis: isize, keepdims: bool) -> Expr {
        self.reduce(ReduceKind::Mean, Some(axis), keepdims)
    }
    /// Maximum over one axis (negative counts from the end); gradient to the first maximum. An
    /// empty axis is a shape error, as for [`Expr::max`].
    #[track_caller]
    pub fn max_axis(&self, axis: isize, keepdims: bool) -> Expr {
        self.reduce(ReduceKind::Max, Some(axis), keepdims)
    }
    /// `sum(self * other)`: the inner product of two same-shaped expressions.
    #[track_caller]
    pub fn dot(&self, other: &Expr) -> Expr {
        (self * other).sum()
    }

    /// Softmax over the last axis.
    #[track_caller]
    pub fn softmax(&self) -> Expr {
        Expr::apply(
            Op::Softmax(SoftmaxKind::Softmax),
            std::slice::from_ref(self),
        )
    }
    /// Log-softmax over the last axis (stable).
    #[track_caller]
    pub fn log_softmax(&self) -> Expr {
        Expr::apply(
            Op::Softmax(SoftmaxKind::LogSoftmax),
            std::slice::from_ref(self),
        )
    }
    /// `log(sum(exp(x)))` over the last axis, which is dropped (stable).
    #[track_caller]
    pub fn logsumexp(&self) -> Expr {
        Expr::apply(
            Op::Softmax(SoftmaxKind::LogSumExp),
            std::slice::from_ref(self),
        )
    }
    /// Index of the first maximum along the last axis, as labels (no gradient).
    #[track_caller]
    pub fn argmax(&self) -> Expr {
        Expr::apply(Op::Argmax, std::slice::from_ref(self))
    }

    /// Joins expressions along `axis`.
    #[track_caller]
    pub fn concat(parts: &[Expr], axis: usize) -> Expr {
        Expr::apply(Op::Concat(axis), parts)
    }
    /// `len` entries from `start` along `axis`; `start + len` past the axis (or past `usize::MAX`)
    /// is a shape error.
    #[track_caller]
    pub fn slice(&self, axis: usize, start: usize, len: usize) -> Expr {
        Expr::apply(Op::Slice { axis, start, len }, std::slice::from_ref(self))
    }
    /// Cuts `axis` into consecutive pieces of the given sizes.
    #[track_caller]
    pub fn split(&self, axis: usize, sizes: &[usize]) -> Vec<Expr> {
        let mut start = 0;
        let at = Location::caller();
        sizes
            .iter()
            .map(|&len| {
                let e = Expr::make(Op::Slice { axis, start, len }, vec![self.clone()], at);
                // Saturating: once the sizes pass usize::MAX, every later piece starts at
                // usize::MAX, which its slice rule refuses instead of the sum wrapping around.
                start = start.saturating_add(len);
                e
            })
            .collect()
    }

    /// `self[i, labels[i]]` for each row of a matrix: the gather behind cross-entropy.
    #[track_caller]
    pub fn pick(&self, labels: &Expr) -> Expr {
        Expr::apply(Op::Pick, &[self.clone(), labels.clone()])
    }
    /// One-hot rows of `classes` columns from a vector of labels.
    #[track_caller]
    pub fn one_hot(&self, classes: usize) -> Expr {
        Expr::apply(Op::OneHot(classes), std::slice::from_ref(self))
    }

    /// A fresh dropout mask shaped like `self` at every call: 0 with probability `p`, else
    /// `1/(1-p)`, drawn from the stream seeded with `seed` (see [`crate::rng::stream_seed`]).
    #[track_caller]
    pub fn dropout_mask(&self, p: f32, seed: u64) -> Expr {
        Expr::apply(Op::Dropout { p, seed }, std::slice::from_ref(self))
    }
    /// `self * dropout_mask(p, seed)`: inverted dropout, so expectations are unchanged.
    #[track_caller]
    pub fn dropout(&self, p: f32, seed: u64) -> Expr {
        self * &self.dropout_mask(p, seed)
    }
    /// Fresh zero-mean Gaussian noise shaped like `self` at every call.
    #[track_caller]
    pub fn noise(&self, std: f32, seed: u64) -> Expr {
        Expr::apply(Op::Noise { std, seed }, std::slice::from_ref(self))
    }
    /// `self + noise(std, seed)`.
    #[track_caller]
    pub fn add_noise(&self, std: f32, seed: u64) -> Expr {
        self + &self.noise(std, seed)
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.ty {
            Ok(t) => write!(f, "Expr#{} {} : {}", self.0.id, self.0.op.name(), t),
            Err(e) => write!(f, "Expr#{} {} : error ({e})", self.0.id, self.0.op.name()),
        }
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $kind:ident) => {
        impl ops::$trait<&Expr> for &Expr {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: &Expr) -> Expr {
                self.binary(Binary::$kind, rhs)
            }
        }
        impl ops::$trait<Expr> for Expr {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: Expr) -> Expr {
                self.binary(Binary::$kind, &rhs)
            }
        }
        impl ops::$trait<&Expr> for Expr {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: &Expr) -> Expr {
                self.binary(Binary::$kind, rhs)
            }
        }
        impl ops::$trait<Expr> for &Expr {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: Expr) -> Expr {
                self.binary(Binary::$kind, &rhs)
            }
        }
        impl ops::$trait<f32> for &Expr {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: f32) -> Expr {
                self.binary(Binary::$kind, &Expr::scalar(rhs))
            }
        }
        impl ops::$trait<f32> for Expr {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: f32) -> Expr {
                self.binary(Binary::$kind, &Expr::scalar(rhs))
            }
        }
        impl ops::$trait<&Expr> for f32 {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: &Expr) -> Expr {
                Expr::scalar(self).binary(Binary::$kind, rhs)
            }
        }
        impl ops::$trait<Expr> for f32 {
            type Output = Expr;
            #[track_caller]
            fn $method(self, rhs: Expr) -> Expr {
                Expr::scalar(self).binary(Binary::$kind, &rhs)
            }
        }
    };
}

binary_operator!(Add, add, Add);
binary_operator!(Sub, sub, Sub);
binary_operator!(Mul, mul, Mul);
binary_operator!(Div, div, Div);

impl ops::Neg for &Expr {
    type Output = Expr;
    #[track_caller]
    fn neg(self) -> Expr {
        self.unary(Unary::Neg)
    }
}

impl ops::Neg for Expr {
    type Output = Expr;
    #[track_caller]
    fn neg(self) -> Expr {
        self.unary(Unary::Neg)
    }
}

/// A shared variable (Theano's `shared`): a named tensor that lives outside any one function.
/// Functions read it when they run and may update it in place; clones share the same value.
/// `Send` and `Sync`: the value sits behind a read-write lock and is read or replaced whole, so
/// a function running on one thread while another updates the parameter sees the old or the
/// new value, never a mix within one parameter.
///
/// ```
/// use tape::{Param, Tensor};
/// let w = Param::new("hid1.w", Tensor::zeros(&[2, 3]));
/// w.set(Tensor::ones(&[2, 3]))?;
/// assert_eq!(w.value().data()[0], 1.0);
/// assert!(w.set(Tensor::ones(&[3, 2])).is_err()); // a parameter keeps its shape
/// # Ok::<(), tape::Error>(())
/// ```
#[derive(Clone)]
pub struct Param(Arc<ParamInner>);

struct ParamInner {
    id: usize,
    name: String,
    value: RwLock<Tensor>,
    /// How many times the value has been written (see [`Param::version`]).
    version: AtomicU64,
}

impl Param {
    /// A new shared variable holding `value`.
    pub fn new(name: &str, value: Tensor) -> Param {
        Param(Arc::new(ParamInner {
            id: next_id(),
            name: name.to_string(),
            value: RwLock::new(value),
            version: AtomicU64::new(0),
        }))
    }

    /// Its name, e.g. `hid1.w`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// A number unique to this parameter within the process.
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The shape, fixed at creation.
    pub fn shape(&self) -> SmallVec<[usize; 4]> {
        SmallVec::from_slice(self.read().shape())
    }

    /// A copy of the current value.
    pub fn value(&self) -> Tensor {
        self.read().clone()
    }

    /// Replaces the value; the shape must stay the same.
    pub fn set(&self, value: Tensor) -> Result<()> {
        let mut guard = self.write();
        if guard.shape() != value.shape() {
            return Err(ValueShape::error(
                self.0.name.clone(),
                ValueRole::NewValue,
                Dims::known(guard.shape()),
                value.shape(),
            ));
        }
        *guard = value;
        Ok(())
    }

    /// Runs `f` on the values in place (for update rules that work on the raw slice).
    pub fn update(&self, f: impl FnOnce(&mut [f32])) {
        let mut guard = self.write();
        f(guard.data_mut());
    }

    /// Exchanges the value's storage with `buf` when the lengths match (no copy); otherwise copies
    /// `buf` in. Used by compiled functions to apply updates.
    pub(crate) fn take_from(&self, buf: &mut Vec<f32>, swap: bool) {
        let mut guard = self.write();
        let storage = guard.storage_mut();
        if swap && storage.len() == buf.len() {
            std::mem::swap(storage, buf);
        } else {
            let n = storage.len();
            storage.copy_from_slice(&buf[..n]);
        }
    }

    /// Write access to the value; every writer goes through here, so the version counts them.
    fn write(&self) -> RwLockWriteGuard<'_, Tensor> {
        let guard = self.0.value.write().unwrap_or_else(|e| e.into_inner());
        self.0.version.fetch_add(1, Ordering::Relaxed);
        guard
    }

    /// How many times the value has been written since the parameter was made: a function that
    /// keeps something derived from the value (its weights packed for the GEMM) reads this under
    /// a [`Param::read`] guard and recomputes it when the number moved. Writers hold the write
    /// lock while they bump it, so under a read guard value and version agree.
    pub(crate) fn version(&self) -> u64 {
        self.0.version.load(Ordering::Relaxed)
    }

    /// Read access to the value (a lock guard: do not hold it across a function call).
    pub fn read(&self) -> RwLockReadGuard<'_, Tensor> {
        self.0.value.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The expression that reads this parameter. Every call denotes the same variable, so
    /// gradients taken with respect to any of them agree.
    #[track_caller]
    pub fn expr(&self) -> Expr {
        let ty = Type::known(self.read().shape());
        Expr::leaf(Op::Param(self.clone()), ty, Location::caller())
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Param({}, {:?})", self.0.name, self.read().shape())
    }
}

impl PartialEq for Param {
    fn eq(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
