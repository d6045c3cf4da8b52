//! How much memory this process may still use: `MemAvailable` from /proc/meminfo, lowered by
//! the cgroup limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) minus what the cgroup
//! already uses, where reclaimable page cache (`inactive_file`) counts as free, as container
//! runtimes count it. `TORCHLESS_MEM_AVAILABLE` (bytes, or with a K/M/G suffix) overrides the
//! measurement, for tests and for users who want to reserve memory for something else.

use std::path::{Path, PathBuf};

/// Memory at hand and where the figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    pub bytes: u64,
    /// e.g. "MemAvailable", "cgroup v2 memory.max", "TORCHLESS_MEM_AVAILABLE".
    pub source: String,
}

pub const OVERRIDE_ENV: &str = "TORCHLESS_MEM_AVAILABLE";

/// Parses "123", "512M", "1.5G", "64KiB" into bytes (binary multiples).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

/// `MemAvailable` in bytes from the text of /proc/meminfo.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A cgroup's limit and usage, with the reclaimable page cache it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupMemory {
    pub limit: u64,
    pub usage: u64,
    pub inactive_file: u64,
}

impl CgroupMemory {
    pub fn headroom(&self) -> u64 {
        self.limit
            .saturating_sub(self.usage.saturating_sub(self.inactive_file))
    }
}

/// Limits at or above this are "no limit" (v1 reports a page-rounded i64::MAX).
const UNLIMITED: u64 = 1 << 60;

fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// Reads a cgroup's memory files through `read` (a path relative to the cgroup directory
/// → its contents). v2 when `memory.max` exists, else v1.
pub fn cgroup_memory(read: impl Fn(&str) -> Option<String>) -> Option<CgroupMemory> {
    let (limit, usage, stat_key, stat) = if let Some(max) = read("memory.max") {
        let max = max.trim();
        if max == "max" {
            return None;
        }
        (
            max.parse::<u64>().ok()?,
            read("memory.current")?.trim().parse::<u64>().ok()?,
            "inactive_file",
            read("memory.stat"),
        )
    } else {
        (
            read("memory.limit_in_bytes")?.trim().parse::<u64>().ok()?,
            read("memory.usage_in_bytes")?.trim().parse::<u64>().ok()?,
            "total_inactive_file",
            read("memory.stat"),
        )
    };
    if limit >= UNLIMITED {
        return None;
    }
    let inactive_file = stat
        .as_deref()
        .and_then(|s| stat_value(s, stat_key))
        .unwrap_or(0);
    Some(CgroupMemory {
        limit,
        usage,
        inactive_file,
    })
}

/// Directories that may hold this process's memory cgroup, most specific first, from the
/// text of /proc/self/cgroup.
pub fn cgroup_dirs(proc_self_cgroup: &str, root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if ctrl.is_empty() {
            dirs.push(root.join(rel));
            dirs.push(root.join("unified").join(rel));
        } else if ctrl.split(',').any(|c| c == "memory") {
            dirs.push(root.join("memory").join(rel));
            // Inside a container the hierarchy is often mounted at the cgroup itself.
            dirs.push(root.join("memory"));
        }
    }
    dirs
}

/// Combines the measurements: the smaller of MemAvailable and the cgroup headroom.
pub fn combine(
    meminfo: Option<u64>,
    cgroup: Option<CgroupMemory>,
    cgroup_version: &str,
) -> Option<Available> {
    let host = meminfo.map(|b| Available {
        bytes: b,
        source: "MemAvailable".into(),
    });
    let cg = cgroup.map(|c| Available {
        bytes: c.headroom(),
        source: format!(
            "cgroup {cgroup_version} limit {}",
            crate::memory::fmt_bytes(c.limit)
        ),
    });
    match (host, cg) {
        (Some(h), Some(c)) => Some(if c.bytes < h.bytes { c } else { h }),
        (h, c) => h.or(c),
    }
}

/// The memory this process can count on now.
pub fn available_memory() -> Option<Available> {
    if let Ok(v) = std::env::var(OVERRIDE_ENV) {
        return parse_size(&v).map(|bytes| Available {
            bytes,
            source: OVERRIDE_ENV.into(),
        });
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t));
    let mut cgroup = None;
    let mut version = "";
    if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") {
        for dir in cgroup_dirs(&text, Path::new("/sys/fs/cgroup")) {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            if let Some(c) = cgroup_memory(read) {
                version = if dir.join("memory.max").exists() {
                    "v2"
                } else {
                    "v1"
                };
                cgroup = Some(c);
                break;
            }
        }
    }
    combine(meminfo, cgroup, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("64 kb"), Some(64 << 10));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("12Q"), None);
    }

    #[test]
    fn meminfo_gives_mem_available() {
        let text = "MemTotal:       24684080 kB\nMemFree:        12458772 kB\n\
                    MemAvailable:   23084032 kB\nBuffers:          123 kB\n";
        assert_eq!(parse_meminfo(text), Some(23_084_032 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    fn files<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |f| {
            list.iter()
                .find(|(k, _)| *k == f)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn cgroup_v2_limit_minus_usage_plus_inactive_cache() {
        let f = [
            ("memory.max", "1073741824\n"),
            ("memory.current", "536870912\n"),
            (
                "memory.stat",
                "anon 1000\nfile 300000000\ninactive_file 268435456\n",
            ),
        ];
        let c = cgroup_memory(files(&f)).unwrap();
        assert_eq!(c.limit, 1 << 30);
        assert_eq!(c.headroom(), (1 << 30) - (1 << 29) + (1 << 28));
        let unlimited = [("memory.max", "max\n"), ("memory.current", "5\n")];
        assert_eq!(cgroup_memory(files(&unlimited)), None);
    }

    #[test]
    fn cgroup_v1_and_its_unlimited_value() {
        let f = [
            ("memory.limit_in_bytes", "2147483648"),
            ("memory.usage_in_bytes", "1073741824"),
            ("memory.stat", "cache 5\ntotal_inactive_file 1024\n"),
        ];
        assert_eq!(
            cgroup_memory(files(&f)).unwrap().headroom(),
            (1 << 30) + 1024
        );
        let unlimited = [
            ("memory.limit_in_bytes", "9223372036854771712"),
            ("memory.usage_in_bytes", "1"),
        ];
        assert_eq!(cgroup_memory(files(&unlimited)), None);
    }

    #[test]
    fn cgroup_paths_from_proc_self_cgroup() {
        let text = "4:memory:/job/42\n1:cpu:/x\n0::/user.slice\n";
        let dirs = cgroup_dirs(text, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/job/42"),
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/user.slice"),
                PathBuf::from("/sys/fs/cgroup/unified/user.slice"),
            ]
        );
    }

    #[test]
    fn this_machine_reports_some_memory() {
        if std::env::var_os(OVERRIDE_ENV).is_some() {
            return;
        }
        let a = available_memory().expect("/proc/meminfo on Linux");
        let total = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kib: u64 = total
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(a.bytes > 0 && a.bytes <= total_kib * 1024, "{a:?}");
    }

    #[test]
    fn the_tighter_of_host_and_cgroup_wins() {
        let cg = CgroupMemory {
            limit: 1000,
            usage: 400,
            inactive_file: 0,
        };
        let a = combine(Some(5000), Some(cg), "v2").unwrap();
        assert_eq!(a.bytes, 600);
        assert!(a.source.starts_with("cgroup v2"), "{}", a.source);
        let a = combine(Some(500), Some(cg), "v2").unwrap();
        assert_eq!((a.bytes, a.source.as_str()), (500, "MemAvailable"));
        assert_eq!(combine(None, None, ""), None);
    }
}
