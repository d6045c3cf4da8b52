//! Models split over several files (`gguf-split`): `<prefix>-00001-of-00003.gguf`, ...
//! Each part is a complete GGUF file; the first holds the model metadata, every part holds
//! `split.no` (0-based) and `split.count`.

use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result, SplitError};
use crate::value::Metadata;
use crate::{open_part, GgufFile};

pub(crate) const COUNT_KEY: &str = "split.count";
pub(crate) const NO_KEY: &str = "split.no";
pub(crate) const TENSORS_COUNT_KEY: &str = "split.tensors.count";

/// The file name of part `no` (0-based) of `count`, as llama.cpp's `gguf-split` names it.
pub fn split_path(prefix: impl AsRef<Path>, no: u32, count: u32) -> PathBuf {
    let mut s = prefix.as_ref().as_os_str().to_owned();
    s.push(format!("-{:05}-of-{:05}.gguf", no + 1, count));
    PathBuf::from(s)
}

fn split_error(path: &Path, kind: SplitError) -> GgufError {
    GgufError::Split {
        path: path.to_path_buf(),
        kind,
    }
}

/// Reads a `split.*` key, attaching the file name to type errors (metadata errors alone do
/// not know which file they come from).
fn split_key(path: &Path, md: &Metadata, key: &str) -> Result<Option<u32>> {
    md.opt_u32(key).map_err(|e| {
        split_error(
            path,
            SplitError::BadMetadata {
                detail: e.to_string(),
            },
        )
    })
}

/// `(count, prefix)` when `path` is the first part of a model split in several files.
pub(crate) fn split_info(path: &Path, md: &Metadata) -> Result<Option<(u32, PathBuf)>> {
    let count = split_key(path, md, COUNT_KEY)?.unwrap_or(1);
    if count <= 1 {
        return Ok(None);
    }
    let no = split_key(path, md, NO_KEY)?.unwrap_or(0);
    if no != 0 {
        return Err(split_error(path, SplitError::NotFirst { no }));
    }
    let suffix = format!("-{:05}-of-{:05}.gguf", 1, count);
    let prefix = path
        .to_str()
        .and_then(|s| s.strip_suffix(&suffix))
        .ok_or_else(|| split_error(path, SplitError::UnrecognisedName { count }))?;
    Ok(Some((count, PathBuf::from(prefix))))
}

/// Maps parts 2..=count and appends their tensors to `file`.
pub(crate) fn attach_splits(file: &mut GgufFile, count: u32, prefix: &Path) -> Result<()> {
    for no in 1..count {
        let path = split_path(prefix, no, count);
        if !path.exists() {
            return Err(split_error(
                &file.path,
                SplitError::MissingPart { part: path },
            ));
        }
        let (part, parsed) = open_part(&path)?;
        let found_count = split_key(&path, &parsed.metadata, COUNT_KEY)?.unwrap_or(1);
        if found_count != count {
            return Err(split_error(
                &path,
                SplitError::CountMismatch {
                    expected: count,
                    found: found_count,
                },
            ));
        }
        let found_no = split_key(&path, &parsed.metadata, NO_KEY)?.unwrap_or(0);
        if found_no != no {
            return Err(split_error(
                &path,
                SplitError::NumberMismatch {
                    expected: no,
                    found: found_no,
                },
            ));
        }
        let split = file.parts.len();
        for mut t in parsed.tensors {
            if let Some(&prev) = file.index.get(&t.name) {
                let kind = SplitError::DuplicateTensor {
                    tensor: t.name,
                    first_split: file.tensors[prev].split,
                    second_split: split,
                };
                return Err(split_error(&path, kind));
            }
            t.split = split;
            file.index.insert(t.name.clone(), file.tensors.len());
            file.tensors.push(t);
        }
        file.parts.push(part);
    }
    let expected = file.metadata.opt_u64(TENSORS_COUNT_KEY).map_err(|e| {
        split_error(
            &file.path,
            SplitError::BadMetadata {
                detail: e.to_string(),
            },
        )
    })?;
    if let Some(expected) = expected {
        let found = file.tensors.len() as u64;
        if expected != found {
            return Err(split_error(
                &file.path,
                SplitError::TensorCountMismatch { expected, found },
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_follow_gguf_split() {
        assert_eq!(
            split_path("/m/x", 0, 3),
            PathBuf::from("/m/x-00001-of-00003.gguf")
        );
        assert_eq!(
            split_path("x", 11, 12),
            PathBuf::from("x-00012-of-00012.gguf")
        );
    }
}
