//! Trainers for a network: the `key=value` front door (rule, loop and regularizer options in one
//! namespace, as theanets has them) and the typed one.

use crate::error::Result;
use crate::graph::Graph;
use crate::network::Network;
use crate::regularizers::Regularizers;
use optim::{Algorithm, LoopOptions, RowProblem, RuleOptions, Trainer};
use tape::DType;

impl Network {
    /// A trainer for this network: `algorithm` by name and `settings` as `key=value` pairs for
    /// the update rule, the loop and the regularizers together (one namespace, as in theanets).
    pub fn trainer(&self, algorithm: &str, settings: &[&str]) -> Result<Trainer> {
        let alg: Algorithm = algorithm.parse()?;
        let mut rule = RuleOptions::new(alg);
        let mut lp = LoopOptions {
            seed: self.options.seed,
            ..Default::default()
        };
        let mut regs = Regularizers::default();
        for pair in settings {
            let (k, v) = optim::options::split_pair(pair)?;
            if Regularizers::KEYS.contains(&k) {
                regs.set(k, v)?;
            } else if RuleOptions::keys()
                .chain(LoopOptions::keys())
                .any(|key| key == k)
            {
                optim::options::configure(&mut rule, &mut lp, [*pair])?;
            } else {
                let all: Vec<&str> = RuleOptions::keys()
                    .chain(LoopOptions::keys())
                    .chain(Regularizers::KEYS.iter().copied())
                    .collect();
                return Err(crate::error::unknown_key(k, &all));
            }
        }
        self.trainer_with(rule, lp, &regs)
    }

    /// A trainer from typed options.
    pub fn trainer_with(
        &self,
        rule: RuleOptions,
        lp: LoopOptions,
        regs: &Regularizers,
    ) -> Result<Trainer> {
        let g = self.graph(regs)?;
        let carried = self.carried_updates(&g)?;
        let mut trainer = Trainer::with_carried(
            &g.loss,
            &self.params(),
            &g.inputs,
            &g.monitors,
            &carried,
            rule,
            lp,
        )?;
        if let Some(k) = g
            .inputs
            .iter()
            .position(|e| e.ty().is_ok_and(|t| t.dtype == DType::Label))
        {
            // Checked here, before the graph runs, so that a bad label is reported against the
            // output layer and the data set's row rather than the op that reads it.
            let layer = self.layers[self.layers.len() - 1].name().to_string();
            let classes = self.output_size();
            trainer.check_batches_with(move |batch| {
                let Some(labels) = batch.get(k) else {
                    return Ok(());
                };
                tape::kernels::check_labels(labels.data(), classes).map_err(|(row, value)| {
                    RowProblem {
                        row,
                        problem: format!(
                            "labels for layer `{layer}`: label {value} is not a class in 0..{classes}"
                        ),
                    }
                })
            });
        }
        if regs.rewrites() && !regs.noisy_validation {
            // Validate the model as it will predict: penalties kept, noise and dropout off.
            let clean = self.graph(&regs.without_rewrites())?;
            let carried = self.carried_updates(&clean)?;
            trainer.validate_with_carried(&clean.inputs, &clean.loss, &clean.monitors, &carried)?;
        }
        Ok(trainer)
    }

    /// Each stateful layer's carried tensors with their value after a batch of `g` (the
    /// layer's final state), for the trainer to carry from batch to batch.
    fn carried_updates(&self, g: &Graph) -> Result<Vec<(tape::Param, tape::Expr)>> {
        let mut updates = Vec::new();
        for layer in &self.layers {
            for (param, local) in layer.carried_states() {
                let name = format!("{}:{local}", layer.name());
                let e = g
                    .output(&name)
                    .ok_or_else(|| crate::error::Error::NotFound {
                        what: format!("output `{name}` (the state carried by `{}`)", param.name()),
                        available: crate::graph::names(&g.outputs),
                    })?;
                updates.push((param, e.clone()));
            }
        }
        Ok(updates)
    }
}
