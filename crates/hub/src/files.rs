//! Making sense of a repository's file list: which files are GGUF models, their quantization
//! (read from the file name, as the hub's own UI does) and which files are parts of one split
//! model (`name-00001-of-00003.gguf`).

use crate::error::{HubError, Result};

/// One file of a repository, as listed by the hub's tree API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    /// Path inside the repository (`/`-separated).
    pub path: String,
    /// Size in bytes (of the real file, for LFS files).
    pub size: u64,
    /// sha256 of the content for LFS files: also the blob name in the cache.
    pub sha256: Option<String>,
}

/// Position of a file in a split GGUF model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPart {
    /// 1-based part number.
    pub index: u32,
    pub count: u32,
}

/// A GGUF model in a repository: one file, or every part of a split model in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufModel {
    /// The file to open: the only file, or the first part.
    pub file: String,
    pub quant: Option<String>,
    pub parts: Vec<RepoFile>,
    /// Multimodal projector files are not language models to run on their own.
    pub mmproj: bool,
}

impl GgufModel {
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

/// The quantization named in a GGUF file name (`Q4_K_M`, `Q8_0`, `IQ4_XS`, `F16`, ...),
/// upper-cased, or `None` when the name does not say.
pub fn parse_quant(file_name: &str) -> Option<String> {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let stem = base.strip_suffix(".gguf").unwrap_or(base);
    let stem = match split_part(base) {
        Some((prefix, _)) => prefix.rsplit('/').next().unwrap_or(prefix).to_string(),
        None => stem.to_string(),
    };
    let mut found = None;
    for token in stem.split(['-', '.']) {
        let up = token.to_ascii_uppercase();
        if is_quant(&up) {
            found = Some(up);
            continue;
        }
        // `model_q4_k_m`: the quant follows an underscore inside a longer token.
        if let Some(q) = up
            .match_indices('_')
            .map(|(i, _)| &up[i + 1..])
            .find(|s| is_quant(s))
        {
            found = Some(q.to_string());
        }
    }
    found
}

fn is_quant(t: &str) -> bool {
    if matches!(
        t,
        "F16" | "F32" | "BF16" | "FP16" | "FP32" | "F64" | "MXFP4"
    ) {
        return true;
    }
    let rest = t
        .strip_prefix("IQ")
        .or_else(|| t.strip_prefix("TQ"))
        .or_else(|| t.strip_prefix('Q'));
    let Some(rest) = rest else { return false };
    let mut groups = rest.split('_');
    let bits = groups.next().unwrap_or("");
    let groups: Vec<&str> = groups.collect();
    !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && !groups.is_empty()
        && groups
            .iter()
            .all(|g| !g.is_empty() && g.len() <= 3 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// For `dir/name-00002-of-00005.gguf`: (`dir/name`, part 2 of 5).
pub fn split_part(path: &str) -> Option<(&str, SplitPart)> {
    let stem = path.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(count) || !digits(index) {
        return None;
    }
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index >= 1 && index <= count).then_some((prefix, SplitPart { index, count }))
}

/// The name of part `index` of the split model whose parts start with `prefix`.
pub fn split_name(prefix: &str, index: u32, count: u32) -> String {
    format!("{prefix}-{index:05}-of-{count:05}.gguf")
}

/// Groups a repository's files into GGUF models, sorted by file name. Split models whose parts
/// are not all listed are left out (they could not be opened).
pub fn gguf_models(files: &[RepoFile]) -> Vec<GgufModel> {
    let mut models: Vec<GgufModel> = Vec::new();
    let ggufs = files
        .iter()
        .filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf"));
    for f in ggufs {
        match split_part(&f.path) {
            Some((prefix, part)) if part.index == 1 => {
                let parts: Option<Vec<RepoFile>> = (1..=part.count)
                    .map(|i| {
                        let name = split_name(prefix, i, part.count);
                        files.iter().find(|g| g.path == name).cloned()
                    })
                    .collect();
                if let Some(parts) = parts {
                    models.push(model(f, parts));
                }
            }
            Some(_) => {}
            None => models.push(model(f, vec![f.clone()])),
        }
    }
    models.sort_by(|a, b| a.file.cmp(&b.file));
    models
}

fn model(first: &RepoFile, parts: Vec<RepoFile>) -> GgufModel {
    let base = first
        .path
        .rsplit('/')
        .next()
        .unwrap_or(&first.path)
        .to_ascii_lowercase();
    GgufModel {
        file: first.path.clone(),
        quant: parse_quant(&first.path),
        parts,
        mmproj: base.contains("mmproj"),
    }
}

/// Quantizations tried in order when a repository has several models and none was asked for:
/// the common "good default" first, as ollama and llama.cpp's `-hf` do.
const PREFERRED: &[&str] = &["Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q5_K_M", "Q8_0"];

/// Picks the model to use from `models`: the one with quantization `quant` (case-insensitive),
/// or without `quant` the only model, else the first preferred quantization present.
pub fn select_model<'a>(
    repo: &str,
    models: &'a [GgufModel],
    quant: Option<&str>,
) -> Result<&'a GgufModel> {
    let candidates: Vec<&GgufModel> = models.iter().filter(|m| !m.mmproj).collect();
    if candidates.is_empty() {
        return Err(HubError::NoGguf {
            repo: repo.to_string(),
        });
    }
    let with_quant = |q: &str| {
        candidates.iter().copied().find(|m| {
            m.quant
                .as_deref()
                .is_some_and(|mq| mq.eq_ignore_ascii_case(q))
        })
    };
    match quant {
        Some(q) => with_quant(q).ok_or_else(|| HubError::QuantNotFound {
            repo: repo.to_string(),
            quant: q.to_ascii_uppercase(),
            available: describe_models(models),
        }),
        None if candidates.len() == 1 => Ok(candidates[0]),
        None => PREFERRED
            .iter()
            .find_map(|q| with_quant(q))
            .ok_or_else(|| HubError::Ambiguous {
                repo: repo.to_string(),
                available: describe_models(models),
            }),
    }
}

/// One line per model: quant, size, file (and part count): for error messages and listings.
pub fn describe_models(models: &[GgufModel]) -> String {
    let mut out = String::new();
    for m in models {
        let parts = if m.parts.len() > 1 {
            format!(" ({} parts)", m.parts.len())
        } else {
            String::new()
        };
        let mmproj = if m.mmproj {
            " (multimodal projector)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:<8} {:>10}  {}{parts}{mmproj}\n",
            m.quant.as_deref().unwrap_or("?"),
            human_size(m.size()),
            m.file
        ));
    }
    out.trim_end().to_string()
}

/// `1.5 GiB`-style sizes for tables.
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64) -> RepoFile {
        RepoFile {
            path: path.to_string(),
            size,
            sha256: None,
        }
    }

    #[test]
    fn quant_names() {
        let q = |s| parse_quant(s);
        assert_eq!(
            q("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(),
            Some("Q4_1")
        );
        assert_eq!(
            q("smollm2-135m-instruct-q8_0.gguf").as_deref(),
            Some("Q8_0")
        );
        assert_eq!(
            q("Llama-3.2-1B-Instruct-Q4_K_M.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(q("gemma-3-270m-it-IQ4_NL.gguf").as_deref(), Some("IQ4_NL"));
        assert_eq!(q("Qwen3-8B-UD-Q4_K_XL.gguf").as_deref(), Some("Q4_K_XL"));
        assert_eq!(q("model-f16.gguf").as_deref(), Some("F16"));
        assert_eq!(q("model_q5_k_s.gguf").as_deref(), Some("Q5_K_S"));
        assert_eq!(
            q("big/Q4_K_M/big-Q4_K_M-00001-of-00003.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(q("Qwen2.5-0.5B.gguf"), None);
        assert_eq!(q("README.md"), None);
    }

    #[test]
    fn split_names() {
        let (prefix, p) = split_part("d/m-Q8_0-00002-of-00003.gguf").unwrap();
        assert_eq!((prefix, p.index, p.count), ("d/m-Q8_0", 2, 3));
        assert_eq!(split_name(prefix, 3, 3), "d/m-Q8_0-00003-of-00003.gguf");
        assert!(split_part("m-00004-of-00003.gguf").is_none());
        assert!(split_part("m-1-of-3.gguf").is_none());
        assert!(split_part("m.gguf").is_none());
    }

    #[test]
    fn groups_and_selection() {
        let files = [
            f("README.md", 10),
            f("m-Q4_K_M.gguf", 100),
            f("m-Q8_0-00001-of-00002.gguf", 150),
            f("m-Q8_0-00002-of-00002.gguf", 50),
            f("m-F16-00001-of-00002.gguf", 10), // second part missing: left out
            f("mmproj-m-f16.gguf", 5),
        ];
        let models = gguf_models(&files);
        let names: Vec<&str> = models.iter().map(|m| m.file.as_str()).collect();
        assert_eq!(
            names,
            [
                "m-Q4_K_M.gguf",
                "m-Q8_0-00001-of-00002.gguf",
                "mmproj-m-f16.gguf"
            ]
        );
        assert_eq!(models[1].size(), 200);
        assert_eq!(models[1].quant.as_deref(), Some("Q8_0"));
        assert!(models[2].mmproj);
        assert_eq!(
            select_model("r", &models, Some("q8_0")).unwrap().file,
            models[1].file
        );
        assert_eq!(
            select_model("r", &models, None).unwrap().file,
            "m-Q4_K_M.gguf"
        );
        let err = select_model("r", &models, Some("Q2_K"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no Q2_K") && err.contains("m-Q4_K_M.gguf"),
            "{err}"
        );
        let two = gguf_models(&[f("a-Q2_K.gguf", 1), f("a-Q3_K_S.gguf", 1)]);
        assert!(matches!(
            select_model("r", &two, None),
            Err(HubError::Ambiguous { .. })
        ));
        assert!(matches!(
            select_model("r", &[], None),
            Err(HubError::NoGguf { .. })
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(98_362_432), "93.8 MiB");
    }
}
