//! `bench --json-schema`: what a JSON Schema costs during generation. The same chat prompt
//! (asking for JSON of that schema) is answered greedily with and without the schema; both
//! rows report generated tokens/s, the schema row also the time llguidance spent computing
//! token masks per token. Sampling runs here, unlike `tg` (which only times forward calls),
//! because the mask sits between the logits and the sampler.

use anyhow::{bail, Result};
use engine::{ConstraintSpec, GenerateOptions, LoadedModel, SamplingParams, SessionOptions};
use serde_json::json;

/// One configuration's repetitions.
struct Row {
    label: &'static str,
    tps: Vec<f64>,
    tokens: usize,
    /// Mean mask time per token in milliseconds (schema row only).
    mask_ms: Option<f64>,
}

impl Row {
    fn mean(&self) -> f64 {
        self.tps.iter().sum::<f64>() / self.tps.len() as f64
    }
}

pub struct Setup<'a> {
    pub lm: &'a LoadedModel,
    pub schema: &'a ConstraintSpec,
    pub n_gen: usize,
    pub reps: usize,
    pub session: SessionOptions,
}

fn measure(s: &Setup, label: &'static str, constrained: bool) -> Result<Row> {
    let ConstraintSpec::JsonSchema(schema) = s.schema else {
        bail!("bench takes a JSON schema");
    };
    let ask = format!("Reply with JSON matching this schema: {schema}");
    let text = s.lm.chat_prompt(&ask)?.unwrap_or(ask);
    let ids = s.lm.tokenize(&text, true, true)?;
    let opts = GenerateOptions {
        max_tokens: Some(s.n_gen),
        sampling: SamplingParams::greedy(),
        constraint: if constrained {
            Some(s.lm.compile_constraint(s.schema)?)
        } else {
            None
        },
        ..Default::default()
    };
    let mut row = Row {
        label,
        tps: Vec::new(),
        tokens: 0,
        mask_ms: None,
    };
    let (mut mask_secs, mut masks) = (0.0, 0);
    for rep in 0..=s.reps {
        let what = if rep == 0 {
            "warm-up".to_string()
        } else {
            format!("run {rep}/{}", s.reps)
        };
        eprintln!("bench: {label} {what}");
        let mut session = s.lm.new_session(&s.session)?;
        let st = session.generate_with(&ids, &opts, |_| {})?;
        if rep > 0 {
            row.tps.push(st.gen_tps());
            row.tokens = st.generated_tokens;
            if let Some((t, n)) = st.constraint_masks {
                mask_secs += t.as_secs_f64();
                masks += n;
            }
        }
    }
    if constrained && masks > 0 {
        row.mask_ms = Some(mask_secs * 1e3 / masks as f64);
    }
    Ok(row)
}

/// Runs both rows and prints them (a table, or JSON with `json`).
pub fn run(s: &Setup, model_name: &str, json: bool) -> Result<()> {
    let rows = [measure(s, "free", false)?, measure(s, "json-schema", true)?];
    if json {
        let obj = json!({
            "model_name": model_name,
            "n_vocab": s.lm.n_vocab(),
            "rows": rows.iter().map(|r| json!({
                "test": r.label,
                "generated_tokens": r.tokens,
                "runs_tps": r.tps,
                "mean_tps": r.mean(),
                "mask_ms_per_token": r.mask_ms,
            })).collect::<Vec<_>>(),
        });
        return super::print_stdout(&format!("{obj}\n"));
    }
    let mut out = String::from(
        "| model | test | tokens | t/s | mask ms/token |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    for r in &rows {
        let mask = r.mask_ms.map_or("-".to_string(), |m| format!("{m:.3}"));
        out.push_str(&format!(
            "| {model_name} | {} | {} | {:.2} | {mask} |\n",
            r.label,
            r.tokens,
            r.mean()
        ));
    }
    super::print_stdout(&out)
}
