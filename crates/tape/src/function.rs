//! Compiled functions, the public face of the compiler. Compiling flattens the graph
//! (`ir`), rewrites it once (`rewrite`: common subexpressions merged, constants
//! folded, stable forms substituted, bias-adds fused into the matrix product); each distinct set
//! of argument shapes then gets a plan (`plan` → `instr`) that the interpreter
//! (`exec`) runs. A call on shapes seen before allocates nothing.

use crate::error::{Error, Result, ValueRole, ValueShape};
use crate::expr::{Expr, Param};
use crate::instr::Plan;
use crate::ir::Program;
use crate::kernels::Shape;
use crate::op::DType;
use crate::rng::Rng;
use crate::tensor::{Tensor, TensorView};

/// A compiled function of some input expressions to some output expressions, optionally updating
/// parameters in place after each call (like `theano.function(inputs, outputs, updates=...)`).
///
/// ```
/// use tape::{Expr, Function, Param, Tensor};
/// // One step of gradient descent on f(w) = Σ (w - x)², written as an update.
/// let x = Expr::input("x", 1);
/// let w = Param::new("w", Tensor::zeros(&[2]));
/// let diff = &w.expr() - &x;
/// let loss = (&diff * &diff).sum();
/// let g = tape::grad(&loss, &[w.expr()])?.remove(0);
/// let step = &w.expr() - &(&g * 0.25);
/// let mut f = Function::compile_with_updates(&[x], &[loss], &[(w.clone(), step)])?;
/// let target = Tensor::vector(&[2.0, -4.0]);
/// let before = f.call(&[&target])?[0].item().unwrap();
/// assert_eq!(before, 20.0);
/// assert_eq!(w.value().data(), &[1.0, -2.0]); // moved half-way
/// # Ok::<(), tape::Error>(())
/// ```
#[derive(Clone)]
pub struct Function {
    program: Program,
    rngs: Vec<Rng>,
    plans: Vec<Plan>,
    last: Option<usize>,
    check_finite: bool,
}

impl Function {
    /// Compiles a function from `inputs` (each made by [`Expr::input`] or [`Expr::labels`]) to
    /// `outputs`.
    pub fn compile(inputs: &[Expr], outputs: &[Expr]) -> Result<Function> {
        Function::compile_with_updates(inputs, outputs, &[])
    }

    /// Compiles a function that also replaces each listed parameter by the value of its
    /// expression after every call. All updates see the parameters' values from before the call.
    pub fn compile_with_updates(
        inputs: &[Expr],
        outputs: &[Expr],
        updates: &[(Param, Expr)],
    ) -> Result<Function> {
        let mut roots: Vec<Expr> = outputs.to_vec();
        roots.extend(updates.iter().map(|(_, e)| e.clone()));
        let (input_specs, nodes, root_ids) = crate::ir::flatten(inputs, &roots)?;
        let (nodes, root_ids) = crate::rewrite::optimize(nodes, root_ids)?;
        let (out_ids, update_ids) = root_ids.split_at(outputs.len());
        let updates: Vec<(Param, usize)> = updates
            .iter()
            .map(|(p, _)| p.clone())
            .zip(update_ids.iter().copied())
            .collect();
        let program = Program::new(input_specs, nodes, out_ids.to_vec(), &updates)?;
        Ok(Function {
            rngs: program.new_rngs(),
            program,
            plans: Vec::new(),
            last: None,
            check_finite: true,
        })
    }

    /// Turns the check that float arguments are finite on or off (on by default).
    pub fn set_check_finite(&mut self, on: bool) {
        self.check_finite = on;
    }

    /// The inputs' names, in call order.
    pub fn input_names(&self) -> Vec<&str> {
        self.program
            .inputs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The parameters the function reads or updates.
    pub fn params(&self) -> &[Param] {
        &self.program.params
    }

    /// Runs the function on borrowed arguments. Outputs stay in the function's workspace, read
    /// them with [`Function::output`]. On shapes seen before this allocates nothing.
    pub fn run(&mut self, args: &[TensorView<'_>]) -> Result<()> {
        self.check_args(args)?;
        let p = match self.plans.iter().position(|p| p.fits(args)) {
            Some(p) => p,
            None => {
                let shapes: Vec<Shape> =
                    args.iter().map(|a| Shape::from_slice(a.shape())).collect();
                let plan = crate::plan::build(&self.program, shapes)?;
                self.plans.push(plan);
                self.plans.len() - 1
            }
        };
        self.last = None;
        crate::exec::run(&self.program, &mut self.plans[p], &mut self.rngs, args)?;
        self.last = Some(p);
        Ok(())
    }

    /// Runs the function and returns copies of its outputs.
    pub fn call(&mut self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        let views: Vec<TensorView<'_>> = args.iter().map(|t| t.view()).collect();
        self.run(&views)?;
        Ok((0..self.program.outputs.len())
            .map(|i| self.output(i).to_tensor())
            .collect())
    }

    /// The `i`-th output of the last successful [`Function::run`]. Panics if there has been none
    /// or `i` is out of range (both are programming errors, not data errors).
    pub fn output(&self, i: usize) -> TensorView<'_> {
        self.plans[self.last.expect("Function::output before a successful run")].output(i)
    }

    /// The number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.program.outputs.len()
    }

    /// The states of the function's random streams (dropout, noise), in graph order.
    pub fn rng_states(&self) -> Vec<[u64; 4]> {
        self.rngs.iter().map(Rng::state).collect()
    }

    /// Restores states saved by [`Function::rng_states`].
    pub fn set_rng_states(&mut self, states: &[[u64; 4]]) -> Result<()> {
        if states.len() != self.rngs.len() {
            return Err(Error::Input {
                input: "rng states".into(),
                expected: format!("{} states", self.rngs.len()),
                found: format!("{}", states.len()),
            });
        }
        self.rngs = states.iter().map(|s| Rng::from_state(*s)).collect();
        Ok(())
    }

    /// A listing of the rewritten graph, one node per line.
    pub fn debug_graph(&self) -> String {
        crate::print::ir(&self.program.nodes, &self.program.outputs)
    }

    /// A listing of the most recently used plan (or the first), one instruction per line with the
    /// buffers it reads and writes; empty before the first call.
    pub fn debug_plan(&self) -> String {
        match self
            .last
            .or(if self.plans.is_empty() { None } else { Some(0) })
        {
            Some(p) => crate::print::plan(&self.program, &self.plans[p]),
            None => String::new(),
        }
    }

    fn check_args(&self, args: &[TensorView<'_>]) -> Result<()> {
        let inputs = &self.program.inputs;
        if args.len() != inputs.len() {
            let names: Vec<&str> = self.input_names();
            return Err(Error::Input {
                input: "arguments".into(),
                expected: format!("{} ({})", inputs.len(), names.join(", ")),
                found: format!("{}", args.len()),
            });
        }
        for ((name, ty), a) in inputs.iter().zip(args) {
            let fits = a.shape().len() == ty.rank()
                && ty
                    .dims
                    .iter()
                    .zip(a.shape())
                    .all(|(d, &s)| d.is_none_or(|d| d == s));
            if !fits {
                return Err(ValueShape::error(
                    name.clone(),
                    ValueRole::Argument,
                    ty.dims.clone(),
                    a.shape(),
                ));
            }
            if self.check_finite && ty.dtype == DType::Float {
                if let Some((index, value)) = a.first_non_finite() {
                    return Err(Error::NonFinite {
                        input: name.clone(),
                        index,
                        value,
                    });
                }
            }
        }
        Ok(())
    }
}
