//! Importance matrices (`--imatrix FILE`), read as llama-quantize reads them: llama.cpp's
//! imatrix GGUF (`NAME.in_sum2` and `NAME.counts` tensors per weight, `imatrix.*` metadata)
//! or the legacy `.dat` file. Each weight's entry becomes the mean squared activation per
//! input column (per expert for stacked experts), which the quantizers use as weights.

use std::collections::HashMap;
use std::path::Path;

use gguf::{GgmlType, GgufFile};

use crate::QuantizeError;

/// An importance matrix, normalised: weight name → `ne0 * n_expert` column weights.
#[derive(Clone, Debug, Default)]
pub struct Imatrix {
    pub entries: HashMap<String, Vec<f32>>,
    /// The texts it was computed on (`imatrix.datasets`).
    pub datasets: Vec<String>,
    /// Chunks it was computed on (0 when the file does not say).
    pub chunk_count: u32,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Invalid(format!("imatrix {}: {why}", path.display()))
}

impl Imatrix {
    /// Reads `path` (GGUF, else the legacy format), as llama-quantize's `load_imatrix`.
    pub fn load(path: &Path) -> Result<Imatrix, QuantizeError> {
        let bytes = std::fs::read(path).map_err(|source| QuantizeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let m = if bytes.starts_with(b"GGUF") {
            Self::from_gguf(path)?
        } else {
            Self::from_legacy(path, &bytes)?
        };
        for (name, e) in &m.entries {
            if let Some(v) = e.iter().find(|v| !v.is_finite()) {
                return Err(bad(
                    path,
                    format!("entry {name} holds the non-finite value {v}"),
                ));
            }
        }
        Ok(m)
    }

    fn from_gguf(path: &Path) -> Result<Imatrix, QuantizeError> {
        let f = GgufFile::open(path)?;
        let md = f.metadata();
        let datasets = md
            .get_str_array("imatrix.datasets")
            .ok()
            .map(|d| d.into_iter().map(str::to_string).collect::<Vec<_>>());
        let chunk_count = md.get_u32("imatrix.chunk_count").ok();
        let chunk_size = md.get_u32("imatrix.chunk_size").ok();
        let (Some(datasets), Some(chunk_count), Some(_)) = (datasets, chunk_count, chunk_size)
        else {
            return Err(bad(
                path,
                "missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)",
            ));
        };
        let mut sums: HashMap<&str, &gguf::TensorInfo> = HashMap::new();
        let mut counts: HashMap<&str, &gguf::TensorInfo> = HashMap::new();
        for t in f.tensors() {
            if let Some(n) = t.name.strip_suffix(".in_sum2") {
                sums.insert(n, t);
            } else if let Some(n) = t.name.strip_suffix(".counts") {
                counts.insert(n, t);
            }
        }
        if sums.is_empty() {
            return Err(bad(path, "no data (no .in_sum2 tensors)"));
        }
        let f32s = |t: &gguf::TensorInfo| -> Result<Vec<f32>, QuantizeError> {
            if t.ty != GgmlType::F32 {
                return Err(bad(path, format!("tensor {} is {}, not F32", t.name, t.ty)));
            }
            Ok(f.tensor_data(t)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut entries = HashMap::new();
        for (name, st) in sums {
            let Some(ct) = counts.get(name) else {
                return Err(bad(path, format!("{name} has sums but no counts")));
            };
            let (s, c) = (f32s(st)?, f32s(ct)?);
            if c.is_empty() || s.len() % c.len() != 0 {
                return Err(bad(
                    path,
                    format!(
                        "{name}: {} sums do not split into {} counts",
                        s.len(),
                        c.len()
                    ),
                ));
            }
            // Per expert: sums over its count of tokens (counts are stored rounded).
            let ne0 = s.len() / c.len();
            let mut e = vec![0f32; s.len()];
            for (j, &count) in c.iter().enumerate() {
                let count = count.round() as i64 as f32;
                for i in 0..ne0 {
                    e[j * ne0 + i] = if count > 0.0 {
                        s[j * ne0 + i] / count
                    } else {
                        1.0
                    };
                }
            }
            entries.insert(name.to_string(), e);
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
        })
    }

    fn from_legacy(path: &Path, b: &[u8]) -> Result<Imatrix, QuantizeError> {
        let mut c = Cursor { b, at: 0 };
        let n_entries = c.i32().ok_or_else(|| bad(path, "empty file"))?;
        if n_entries < 1 {
            return Err(bad(path, "no data in the file (not an imatrix?)"));
        }
        let mut entries = HashMap::new();
        for i in 0..n_entries {
            let truncated = || bad(path, format!("truncated in entry {}", i + 1));
            let len = c.i32().ok_or_else(truncated)?;
            let name = c.bytes(len).ok_or_else(truncated)?;
            let name = String::from_utf8_lossy(name).into_owned();
            let ncall = c.i32().ok_or_else(truncated)?;
            let nval = c.i32().ok_or_else(truncated)?;
            if nval < 1 {
                return Err(bad(path, format!("entry {name}: {nval} values")));
            }
            let data = c
                .bytes(nval.saturating_mul(4))
                .ok_or_else(|| bad(path, format!("entry {name}: {nval} values do not fit")))?;
            // Stored as (sum / count) * ncall: divide by ncall.
            let e = data
                .chunks_exact(4)
                .map(|q| {
                    let v = f32::from_le_bytes([q[0], q[1], q[2], q[3]]);
                    if ncall > 0 {
                        v / ncall as f32
                    } else {
                        v
                    }
                })
                .collect();
            entries.insert(name, e);
        }
        // Optional trailer: chunk count and dataset name.
        let chunk_count = c.i32().unwrap_or(0) as u32;
        let mut datasets = Vec::new();
        if let Some(name) = c.i32().filter(|&l| l > 0).and_then(|l| c.bytes(l)) {
            let name = name.split(|&q| q == 0).next().unwrap_or(name);
            datasets.push(String::from_utf8_lossy(name).into_owned());
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
        })
    }

    /// Keeps only the entries whose names contain one of `include` (if any), then drops those
    /// containing one of `exclude` (`--include-weights` / `--exclude-weights`).
    pub fn filter(&mut self, include: &[String], exclude: &[String]) {
        if !exclude.is_empty() {
            self.entries
                .retain(|name, _| !exclude.iter().any(|x| name.contains(x.as_str())));
        }
        if !include.is_empty() {
            self.entries
                .retain(|name, _| include.iter().any(|x| name.contains(x.as_str())));
        }
    }
}

/// A reader over the legacy format's little-endian fields.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn i32(&mut self) -> Option<i32> {
        let v = self.bytes(4)?;
        Some(i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }

    fn bytes(&mut self, n: i32) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(entries: &[(&str, i32, &[f32])], trailer: Option<(i32, &str)>) -> Vec<u8> {
        let mut b = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, v) in entries {
            b.extend((name.len() as i32).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend(ncall.to_le_bytes());
            b.extend((v.len() as i32).to_le_bytes());
            v.iter().for_each(|x| b.extend(x.to_le_bytes()));
        }
        if let Some((chunks, ds)) = trailer {
            b.extend(chunks.to_le_bytes());
            b.extend((ds.len() as i32).to_le_bytes());
            b.extend(ds.as_bytes());
        }
        b
    }

    fn load_bytes(tag: &str, b: &[u8]) -> Result<Imatrix, QuantizeError> {
        let p = std::env::temp_dir().join(format!(
            "torchless-imatrix-{}-{tag}.dat",
            std::process::id()
        ));
        std::fs::write(&p, b).unwrap();
        let r = Imatrix::load(&p);
        std::fs::remove_file(&p).ok();
        r
    }

    #[test]
    fn legacy_files_are_divided_by_their_call_counts() {
        let b = legacy(
            &[
                ("blk.0.ffn_up.weight", 4, &[8.0, 2.0]),
                ("output.weight", 0, &[3.0]),
            ],
            Some((7, "wiki.train.raw")),
        );
        let m = load_bytes("ok", &b).unwrap();
        assert_eq!(m.entries["blk.0.ffn_up.weight"], vec![2.0, 0.5]);
        assert_eq!(m.entries["output.weight"], vec![3.0]);
        assert_eq!(
            (m.chunk_count, m.datasets.as_slice()),
            (7, &["wiki.train.raw".to_string()][..])
        );
        // Without the optional trailer.
        let m = load_bytes("bare", &legacy(&[("a", 1, &[1.0])], None)).unwrap();
        assert_eq!((m.chunk_count, m.datasets.len()), (0, 0));
    }

    #[test]
    fn broken_files_are_errors_naming_the_problem() {
        let good = legacy(&[("blk.0.attn_q.weight", 2, &[1.0, 2.0, 3.0])], None);
        for cut in [0, 3, 9, 20, good.len() - 1] {
            let e = load_bytes("cut", &good[..cut]).unwrap_err().to_string();
            assert!(e.starts_with("imatrix ") && !e.contains('\n'), "{cut}: {e}");
        }
        let e = load_bytes("nan", &legacy(&[("x", 1, &[f32::NAN])], None)).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        let e = load_bytes("huge", &[1, 0, 0, 0, 255, 255, 255, 127]).unwrap_err();
        assert!(e.to_string().contains("entry 1"), "{e}");
    }

    #[test]
    fn filters_keep_and_drop_by_name_part() {
        let mut m = Imatrix::default();
        for n in [
            "blk.0.ffn_up.weight",
            "blk.0.attn_q.weight",
            "output.weight",
        ] {
            m.entries.insert(n.into(), vec![1.0]);
        }
        m.filter(&["ffn".into(), "output".into()], &[]);
        assert_eq!(m.entries.len(), 2);
        m.filter(&[], &["output".into()]);
        assert!(m.entries.keys().all(|k| k.contains("ffn")));
    }
}
