//! `--json-schema`, `--json-object` and `--grammar`: the structured-output flags `run`, `chat`
//! and `bench` share. The files are read before the model loads so a typo fails fast; the
//! schema or grammar itself is compiled against the model's vocabulary once it is loaded.

use anyhow::Result;
use engine::{Constraint, ConstraintSpec, LoadedModel};

#[derive(clap::Args, Debug, Clone, Default)]
#[group(multiple = false)]
pub struct StructuredArgs {
    /// Output must be JSON matching this JSON Schema: a file, or the schema itself inline
    /// (an argument starting with `{`)
    #[arg(long, value_name = "FILE_OR_JSON")]
    pub json_schema: Option<String>,
    /// Output must be a JSON object (any keys; OpenAI's json_object mode). Not `run --json`,
    /// which prints the result as JSON
    #[arg(long)]
    pub json_object: bool,
    /// Output must match the Lark grammar in FILE (llguidance's Lark dialect; GBNF is not
    /// accepted)
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<String>,
}

impl StructuredArgs {
    /// What the flags ask for, with files read and JSON parsed; `None` without a flag.
    pub fn spec(&self) -> Result<Option<ConstraintSpec>> {
        Ok(if let Some(s) = &self.json_schema {
            Some(ConstraintSpec::json_schema_arg(s)?)
        } else if self.json_object {
            Some(ConstraintSpec::JsonObject)
        } else if let Some(g) = &self.grammar {
            Some(ConstraintSpec::lark_file(g)?)
        } else {
            None
        })
    }
}

/// Compiles `spec` for `lm`; `None` stays unconstrained.
pub fn compile(lm: &LoadedModel, spec: Option<&ConstraintSpec>) -> Result<Option<Constraint>> {
    Ok(spec.map(|s| lm.compile_constraint(s)).transpose()?)
}
