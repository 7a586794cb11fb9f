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
use crate::staged::Hook;
pub use crate::staged::Stage;
use crate::tensor::{Tensor, TensorView};
use smallvec::SmallVec;

/// A compiled function of some input expressions to some output expressions, optionally updating
/// parameters in place after each call (like `theano.function(inputs, outputs, updates=...)`).
///
/// # Threads
///
/// `Send` and `Sync`. Running takes `&mut self`, because a run writes the function's workspace
/// (its cached plans) and advances its random streams, so one function serves one call at a
/// time; what `&Function` allows (reading the last outputs, the parameters, the listings) only
/// reads. To run one computation on several threads at once, give each thread its own clone:
/// clones share the compiled program's constants and the parameters, and have their own
/// workspaces. A clone also copies the random streams' states, so clones of a function with
/// dropout or noise draw the same values; re-seed them with [`Function::set_rng_states`] if they
/// must differ. Kernels give the same bits on any thread.
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
    /// Plans by argument shapes, most recently used first, at most
    /// [`Function::PLAN_CACHE_SIZE`] of them.
    plans: Vec<Plan>,
    /// Whether `plans[0]` holds the outputs of the last run, i.e. the last run succeeded.
    last_ok: bool,
    check_finite: bool,
}

impl Function {
    /// How many plans (one per distinct set of argument shapes, each with its own workspace) a
    /// function keeps. The least recently used one is dropped beyond this, so that a server
    /// seeing many batch sizes keeps its memory bounded, while training, which alternates
    /// between a few shapes (full batches, the last partial batch, validation), never rebuilds.
    pub const PLAN_CACHE_SIZE: usize = 8;

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
        let mut program = Program::new(input_specs, nodes, out_ids.to_vec(), &updates)?;
        attach_bodies(&mut program)?;
        Ok(Function {
            rngs: program.new_rngs(),
            program,
            plans: Vec::with_capacity(Function::PLAN_CACHE_SIZE),
            last_ok: false,
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
    /// them with [`Function::output`]. On shapes seen before (among the last
    /// [`Function::PLAN_CACHE_SIZE`] distinct ones) this allocates nothing.
    pub fn run(&mut self, args: &[TensorView<'_>]) -> Result<()> {
        // Any failure below, even of the argument check, leaves no outputs to read: a caller
        // must never mistake an earlier run's values for this one's.
        self.last_ok = false;
        self.check_args(args)?;
        self.use_plan_for(args)?;
        crate::exec::run(&self.program, &mut self.plans[0], &mut self.rngs, args)?;
        self.last_ok = true;
        Ok(())
    }

    /// [`Function::run`], handing each of `stages` to `ready` as soon as it is final, in the
    /// middle of the run: `ready(s, views)` gets the stage's index and its outputs (in the
    /// order of [`Stage::outputs`]) once every one of them is written, the parameter it
    /// overwrites is read by no remaining instruction, and no remaining instruction can fail
    /// on the data. `ready` may then overwrite that parameter (and no other one the function
    /// reads: the run holds those). Stages ready at the same point come in the order given.
    /// The outputs stay readable with [`Function::output`] after a successful run.
    ///
    /// A trainer uses this to apply each parameter's update while the rest of the backward
    /// pass still runs; the results are those of [`Function::run`] followed by the updates.
    ///
    /// Errors (running nothing) when a stage names an output index out of range or overwrites
    /// a parameter the function itself updates (see [`Function::compile_with_updates`]).
    pub fn run_staged(
        &mut self,
        args: &[TensorView<'_>],
        stages: &[Stage],
        ready: &mut dyn FnMut(usize, &[TensorView<'_>]),
    ) -> Result<()> {
        self.last_ok = false;
        self.check_args(args)?;
        let release = self.stage_slots(stages)?;
        self.use_plan_for(args)?;
        let plan = &mut self.plans[0];
        let schedule = plan
            .schedule
            .take()
            .unwrap_or_else(|| crate::staged::schedule(&self.program, plan));
        let at: SmallVec<[usize; 16]> = stages
            .iter()
            .zip(&release)
            .map(|(s, &slot)| crate::staged::ready_at(&schedule, plan, &s.outputs, slot))
            .collect();
        plan.schedule = Some(schedule);
        let mut hook = Hook {
            at: &at,
            release: &release,
            stages,
            ready,
        };
        crate::exec::run_with(&self.program, plan, &mut self.rngs, args, Some(&mut hook))?;
        self.last_ok = true;
        Ok(())
    }

    /// The parameter slot each stage overwrites (`None` for one the function does not read),
    /// after checking the stages' outputs and parameters.
    fn stage_slots(&self, stages: &[Stage]) -> Result<SmallVec<[Option<usize>; 16]>> {
        let n = self.num_outputs();
        stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if let Some(&o) = s.outputs.iter().find(|&&o| o >= n) {
                    return Err(Error::Input {
                        input: format!("Function::run_staged: stage {i}"),
                        expected: format!("output indices below {n}"),
                        found: format!("{o}"),
                    });
                }
                let Some(p) = &s.overwrites else {
                    return Ok(None);
                };
                let slot = self.program.params.iter().position(|q| q == p);
                if slot.is_some_and(|slot| self.program.updates.iter().any(|u| u.0 == slot)) {
                    return Err(Error::Input {
                        input: format!("Function::run_staged: stage {i}"),
                        expected: "a parameter the function does not update itself".into(),
                        found: format!("`{}`, which the function updates", p.name()),
                    });
                }
                Ok(slot)
            })
            .collect()
    }

    /// Moves the plan for these arguments' shapes to the front of the cache, building it (and
    /// dropping the least recently used plan when the cache is full) if there is none.
    fn use_plan_for(&mut self, args: &[TensorView<'_>]) -> Result<()> {
        match self.plans.iter().position(|p| p.fits(args)) {
            // Rotating in place keeps the repeated-shape path allocation-free.
            Some(p) => self.plans[..=p].rotate_right(1),
            None => {
                let shapes: Vec<Shape> =
                    args.iter().map(|a| Shape::from_slice(a.shape())).collect();
                let plan = crate::plan::build(&self.program, shapes)?;
                self.plans.truncate(Function::PLAN_CACHE_SIZE - 1);
                self.plans.insert(0, plan);
            }
        }
        Ok(())
    }

    /// The number of plans currently cached (at most [`Function::PLAN_CACHE_SIZE`]).
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }

    /// Runs the function and returns copies of its outputs.
    pub fn call(&mut self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        let views: Vec<TensorView<'_>> = args.iter().map(|t| t.view()).collect();
        self.run(&views)?;
        (0..self.program.outputs.len())
            .map(|i| self.output(i).map(|v| v.to_tensor()))
            .collect()
    }

    /// The `i`-th output of the last run. One rule: outputs are there only right after a
    /// successful [`Function::run`] (or [`Function::call`]); before any run, after any failed
    /// one (even one refused for its arguments) and for `i` out of range this is an error.
    pub fn output(&self, i: usize) -> Result<TensorView<'_>> {
        let n = self.num_outputs();
        if !self.last_ok {
            return Err(Error::Input {
                input: "Function::output".into(),
                expected: "a successful run before reading outputs".into(),
                found: if self.plans.is_empty() {
                    "no successful run yet".into()
                } else {
                    "the last run failed".into()
                },
            });
        }
        if i >= n {
            return Err(Error::Input {
                input: "Function::output".into(),
                expected: format!("an output index below {n}"),
                found: format!("{i}"),
            });
        }
        Ok(self.plans[0].output(i))
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
        crate::print::ir(&self.program)
    }

    /// A listing of the most recently used plan, one instruction per line with the
    /// buffers it reads and writes; empty before the first call.
    pub fn debug_plan(&self) -> String {
        match self.plans.first() {
            Some(p) => crate::print::plan(&self.program, p),
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

/// Compiles the step body of every scan node of `program` into a program of its own (rewritten
/// like any function's graph), recursively for scans inside bodies.
fn attach_bodies(program: &mut Program) -> Result<()> {
    for i in 0..program.nodes.len() {
        if let crate::op::Op::Scan(body) = &program.nodes[i].op {
            let (specs, nodes, roots) = crate::ir::flatten_body(&body.inputs, &body.roots)?;
            let (nodes, roots) = crate::rewrite::optimize(nodes, roots)?;
            let mut compiled = Program::new(specs, nodes, roots, &[])?;
            attach_bodies(&mut compiled)?;
            program.bodies.push((i, compiled));
        }
    }
    Ok(())
}
