//! Rego rules compiled to regorus's bytecode (RVM), with the tree-walking
//! interpreter as the fallback.
//!
//! The interpreter resolves rule paths, builds path strings and allocates on
//! every step; the same rules compiled to RVM bytecode evaluate an admission
//! review in about a fifth of the time. The compiler does not cover all of
//! Rego, so a rule is compiled when its policy is loaded and, if that fails
//! or the compiled rule answers a probe input differently from the
//! interpreter, the interpreter keeps evaluating it.
//!
//! The two differ in one way no probe can rule out: a builtin given a value
//! of the wrong type (`startswith(42, "a")`) is an evaluation error in the
//! interpreter, which the failure policy then decides, while RVM silently
//! fails the rule body it is in. So only Rego written never to pass a builtin
//! a wrong type is compiled: the built-in bundle, which guards every such
//! call (checked with ill-typed objects in the tests). Gatekeeper templates
//! are the company's Rego and keep the interpreter.

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{CompiledPolicy, Engine, Value};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Work units (interpreter loop steps and expressions, RVM instructions) between
/// two looks at the clock. Looking at every unit spent a sixth of a review's time
/// reading the clock; a unit takes well under a microsecond, so the budget is
/// still noticed within a millisecond.
const TIMER_CHECK_INTERVAL: NonZeroU32 = NonZeroU32::new(1024).expect("not zero");

fn timer(budget: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: budget,
        check_interval: TIMER_CHECK_INTERVAL,
    }
}

/// One rule of an engine, evaluated by RVM when it compiles, else by the interpreter.
#[derive(Debug)]
pub(crate) struct Rule {
    /// `data.<package>.<rule>`.
    path: String,
    engine: Engine,
    compiled: Option<Compiled>,
    budget: Option<Duration>,
}

impl Rule {
    /// `path` of `engine` (whose policies and data are loaded), evaluated by the interpreter.
    ///
    /// # Errors
    /// When the interpreter fails on `probe`: the policy cannot be evaluated at all.
    pub fn interpreted(mut engine: Engine, path: String, probe: &Value) -> Result<Rule, String> {
        engine.set_input(probe.clone());
        engine.eval_rule(path.clone()).map_err(|e| e.to_string())?;
        Ok(Rule {
            path,
            engine,
            compiled: None,
            budget: None,
        })
    }

    /// Like [`Rule::interpreted`], but compiled to bytecode when RVM can compile the rule
    /// and the compiled rule answers every probe input as the interpreter does (the same
    /// value, or an error both times). Only for Rego that never passes a builtin a value
    /// of the wrong type (see the module doc).
    ///
    /// # Errors
    /// When the interpreter fails on the first probe.
    pub fn compiled(mut engine: Engine, path: String, probes: &[Value]) -> Result<Rule, String> {
        let mut expected = Vec::with_capacity(probes.len());
        for (i, probe) in probes.iter().enumerate() {
            engine.set_input(probe.clone());
            let answer = engine.eval_rule(path.clone()).map_err(|e| e.to_string());
            if i == 0 {
                expected.push(Some(answer?));
            } else {
                expected.push(answer.ok());
            }
        }
        let compiled = Compiled::new(&engine, &path).and_then(|mut compiled| {
            let agrees = probes.iter().zip(&expected).all(|(probe, expected)| {
                compiled.eval(probe.clone()).ok().as_ref() == expected.as_ref()
            });
            agrees.then_some(compiled)
        });
        Ok(Rule {
            path,
            engine,
            compiled,
            budget: None,
        })
    }

    /// Whether the rule runs as bytecode (otherwise the interpreter evaluates it).
    #[cfg(test)]
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    /// The same rule, evaluated by the interpreter only.
    #[cfg(test)]
    pub fn without_bytecode(&self) -> Rule {
        Rule {
            compiled: None,
            ..self.clone()
        }
    }

    pub fn set_budget(&mut self, budget: Duration) {
        self.budget = Some(budget);
        self.engine.set_execution_timer_config(timer(budget));
        if let Some(compiled) = &mut self.compiled {
            compiled.set_budget(budget);
        }
    }

    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Replaces the rule's `data` document (the policies stay).
    ///
    /// # Errors
    /// When regorus refuses the value (it is not an object).
    pub fn set_data(&mut self, data: Value) -> Result<(), String> {
        self.engine.clear_data();
        self.engine
            .add_data(data.clone())
            .map_err(|e| e.to_string())?;
        if let Some(compiled) = &mut self.compiled {
            compiled
                .vm
                .set_data(data.clone())
                .map_err(|e| e.to_string())?;
            compiled.data = data;
        }
        Ok(())
    }

    /// The rule's value for `input`; the error text is regorus's.
    pub fn eval(&mut self, input: Value) -> Result<Value, String> {
        match &mut self.compiled {
            Some(compiled) => compiled.eval(input),
            None => {
                self.engine.set_input(input);
                self.engine
                    .eval_rule(self.path.clone())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// A rule's bytecode and the machine that runs it.
struct Compiled {
    program: Arc<Program>,
    policy: CompiledPolicy,
    data: Value,
    vm: RegoVM,
    budget: Option<Duration>,
}

impl Compiled {
    /// `None` when RVM cannot compile the rule.
    fn new(engine: &Engine, path: &str) -> Option<Compiled> {
        // Compiling prepares the engine for the entry point; a copy keeps the
        // interpreter's engine as it was.
        let mut scratch = engine.clone();
        let policy = scratch.compile_with_entrypoint(&path.into()).ok()?;
        let program = Compiler::compile_from_policy(&policy, &[path]).ok()?;
        let data = scratch.get_data();
        let vm = machine(&program, &policy, &data, None)?;
        Some(Compiled {
            program,
            policy,
            data,
            vm,
            budget: None,
        })
    }

    fn set_budget(&mut self, budget: Duration) {
        self.budget = Some(budget);
        self.vm.set_execution_timer_config(Some(timer(budget)));
    }

    fn eval(&mut self, input: Value) -> Result<Value, String> {
        self.vm.set_input(input);
        let result = self.vm.execute().map_err(|e| e.to_string());
        // The input is not kept past its review.
        self.vm.set_input(Value::Undefined);
        result
    }
}

/// A machine loaded with `program`. The time budget, not an instruction count,
/// bounds an evaluation, as it does in the interpreter; builtin errors are
/// errors there too.
fn machine(
    program: &Arc<Program>,
    policy: &CompiledPolicy,
    data: &Value,
    budget: Option<Duration>,
) -> Option<RegoVM> {
    let mut vm = RegoVM::new_with_policy(policy.clone());
    vm.load_program(Arc::clone(program));
    vm.set_data(data.clone()).ok()?;
    vm.set_max_instructions(usize::MAX);
    vm.set_strict_builtin_errors(true);
    vm.set_execution_timer_config(budget.map(timer));
    Some(vm)
}

impl Clone for Rule {
    fn clone(&self) -> Rule {
        Rule {
            path: self.path.clone(),
            engine: self.engine.clone(),
            compiled: self.compiled.as_ref().and_then(Compiled::copy),
            budget: self.budget,
        }
    }
}

impl Compiled {
    /// A machine of its own over the shared program (evaluation needs `&mut`);
    /// `None`, leaving the interpreter to evaluate, if the data no longer loads.
    fn copy(&self) -> Option<Compiled> {
        Some(Compiled {
            program: Arc::clone(&self.program),
            policy: self.policy.clone(),
            data: self.data.clone(),
            vm: machine(&self.program, &self.policy, &self.data, self.budget)?,
            budget: self.budget,
        })
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("instructions", &self.program.instructions.len())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
