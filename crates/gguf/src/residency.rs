//! Where tensor bytes live: in the memory map (the default, and lazy loading) or in a heap
//! copy (eager loading).
//!
//! Eager loading reads the data sections with plain `pread`s in large chunks rather than
//! pre-faulting and `mlock`ing the map: the copy is anonymous memory the kernel cannot evict
//! behind our back, needs no `RLIMIT_MEMLOCK` (8 MiB by default for unprivileged users, far
//! below a model), reports progress chunk by chunk, and never has the mapped and copied pages
//! resident at once (the file is read through the page cache, which is not charged to RSS).
//!
//! Lazy loading keeps the map, and the CPU kernels hand each slice of weights back through
//! [`quant::Residency`] once an operation is done with it: `MADV_DONTNEED` on a private read-only file
//! mapping drops the pages from this process while the page cache keeps them, so the next
//! token re-maps them cheaply and resident memory stays near one matrix of weights.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{GgufError, Result};
use crate::{Backing, GgufFile, TensorInfo};

/// Bytes read per `pread` while loading into memory.
const READ_CHUNK: usize = 64 << 20;

/// The largest page-cache folio a fault can map at once on x86-64 (PMD order). When the file
/// sits in the page cache as large folios (after large buffered reads, such as an eager load's
/// `pread`s), touching one byte maps the whole folio into the process: a 4-byte norm read then
/// costs up to 2 MiB of resident memory. Measured on SmolLM2 after an eager run: lazy peak
/// 90 MiB (the norm vectors' folios, mapped at load) against 48 MiB with a cold cache.
const MAX_FOLIO: usize = 2 << 20;

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl GgufFile {
    /// Copies the tensor data of every memory-mapped split into the heap (64-byte aligned, as
    /// tensor data is in the map) and drops the maps. `progress(done, total)` is called after
    /// every chunk. Afterwards [`GgufFile::tensor_data`] borrows from the copy.
    pub fn load_into_memory(&mut self, mut progress: impl FnMut(u64, u64)) -> Result<()> {
        let total: u64 = self
            .parts
            .iter()
            .filter(|p| matches!(p.backing, Backing::Mmap(_)))
            .map(|p| p.file_len - p.data_offset)
            .sum();
        let mut done = 0u64;
        progress(0, total);
        for part in &mut self.parts {
            if !matches!(part.backing, Backing::Mmap(_)) {
                continue;
            }
            let io = |io| GgufError::Io {
                path: part.path.clone(),
                io,
            };
            let file = File::open(&part.path).map_err(io)?;
            let len = (part.file_len - part.data_offset) as usize;
            let mut heap = Backing::zeroed(len);
            let buf = heap.bytes_mut();
            for (i, chunk) in buf.chunks_mut(READ_CHUNK).enumerate() {
                let at = part.data_offset + (i * READ_CHUNK) as u64;
                file.read_exact_at(chunk, at).map_err(io)?;
                done += chunk.len() as u64;
                progress(done, total);
            }
            part.backing = heap;
            part.data_start = 0;
        }
        Ok(())
    }

    /// The bytes of tensor `name` for rewriting in place (a layout change made once at load
    /// time), or `None` when they are memory-mapped (read-only) or there is no such tensor.
    pub fn tensor_data_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let t = self.tensor(name)?.clone();
        let part = self.parts.get_mut(t.split)?;
        if matches!(part.backing, Backing::Mmap(_)) {
            return None;
        }
        let start = (part.data_start + t.offset) as usize;
        part.backing
            .bytes_mut()
            .get_mut(start..start + t.size as usize)
    }

    /// Whether every tensor's bytes are in the heap (eager) rather than mapped.
    pub fn is_in_memory(&self) -> bool {
        self.parts
            .iter()
            .all(|p| !matches!(p.backing, Backing::Mmap(_)))
    }

    /// Turns lazy paging on or off: when on, [`GgufFile::release`] gives mapped pages back
    /// to the kernel, and turning it on gives back the header pages at once (the metadata has
    /// been parsed into owned values).
    pub fn set_release_pages(&mut self, on: bool) {
        self.release_pages = on;
        if on {
            for part in &self.parts {
                let end = (part.data_offset as usize).next_multiple_of(MAX_FOLIO);
                release_range(&part.backing, 0, end);
            }
        }
    }

    pub fn releases_pages(&self) -> bool {
        self.release_pages
    }

    /// Tells the kernel this process is done with `t`'s bytes for now. With lazy paging on
    /// and the tensor memory-mapped, its whole pages leave the process's resident set (the
    /// page cache keeps them; the next access maps them again). Otherwise a no-op. Borrowed
    /// slices stay valid either way.
    pub fn release(&self, t: &TensorInfo) {
        self.release_bytes(t, 0, t.size);
    }

    /// [`GgufFile::release`] for several tensors at once: neighbours in the file (gaps up to
    /// 64 KiB, e.g. norm vectors between a layer's matrices) are merged into one range, so a
    /// layer costs one `madvise` instead of one per tensor.
    pub fn release_all(&self, ts: &[&TensorInfo]) {
        if !self.release_pages {
            return;
        }
        const GAP: u64 = 64 << 10;
        let mut spans: Vec<(usize, u64, u64)> = ts
            .iter()
            .map(|t| (t.split, t.offset, t.offset + t.size))
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, u64, u64)> = Vec::with_capacity(spans.len());
        for (split, a, b) in spans {
            match merged.last_mut() {
                Some(m) if m.0 == split && a <= m.2 + GAP => m.2 = m.2.max(b),
                _ => merged.push((split, a, b)),
            }
        }
        for (split, a, b) in merged {
            if let Some(part) = self.parts.get(split) {
                let base = part.data_start;
                release_range(&part.backing, (base + a) as usize, (base + b) as usize);
            }
        }
    }

    /// [`GgufFile::release`] for `len` bytes of `t` starting `start` bytes into it.
    pub fn release_bytes(&self, t: &TensorInfo, start: u64, len: u64) {
        if !self.release_pages {
            return;
        }
        let Some(part) = self.parts.get(t.split) else {
            return;
        };
        let len = len.min(t.size.saturating_sub(start));
        let begin = part.data_start + t.offset + start;
        release_range(&part.backing, begin as usize, (begin + len) as usize);
    }
}

impl GgufFile {
    /// Releases what reading `len` bytes of `t` from `start` may have mapped: the range widened
    /// to `MAX_FOLIO` boundaries, since a fault maps the whole page-cache folio around the
    /// byte read. For scattered small reads (norm vectors at load, one embedding row per
    /// token), which [`GgufFile::release_bytes`] cannot cover because it keeps pages shared
    /// with neighbours. Dropping a neighbour's pages is harmless: they fault back on next use.
    pub fn release_touched(&self, t: &TensorInfo, start: u64, len: u64) {
        if !self.release_pages {
            return;
        }
        let Some(part) = self.parts.get(t.split) else {
            return;
        };
        let begin = (part.data_start + t.offset + start.min(t.size)) as usize;
        let end = begin + len.min(t.size.saturating_sub(start)) as usize;
        let a = begin / MAX_FOLIO * MAX_FOLIO;
        let b = end.next_multiple_of(MAX_FOLIO);
        release_range(&part.backing, a, b);
    }
}

/// Lazy paging as the CPU kernels see it: they hand back each slice of weights they are done
/// with ([`quant::Residency`]), and the pages it touched leave the resident set.
impl quant::Residency for GgufFile {
    /// Releases what reading `bytes` (a slice of a mapped split) may have mapped, widened to
    /// folio boundaries as [`GgufFile::release_touched`] does: the folios around a matrix
    /// belong partly to its neighbours, which would otherwise stay resident when they are not
    /// read again soon (unchosen experts, the norm vectors between matrices). A neighbour
    /// read later faults its pages back from the page cache. A no-op without lazy paging or
    /// for bytes outside the maps.
    fn done_with(&self, bytes: &[u8]) {
        if !self.release_pages || bytes.is_empty() {
            return;
        }
        let p = bytes.as_ptr() as usize;
        for part in &self.parts {
            let Backing::Mmap(map) = &part.backing else {
                continue;
            };
            let base = map.as_ptr() as usize;
            if p >= base && p + bytes.len() <= base + map.len() {
                let a = (p - base) / MAX_FOLIO * MAX_FOLIO;
                let b = (p - base + bytes.len()).next_multiple_of(MAX_FOLIO);
                release_range(&part.backing, a, b);
                return;
            }
        }
    }
}

impl GgufFile {
    /// The residency hook the CPU kernels hand weight slices back to: `Some` when lazy
    /// paging is on ([`GgufFile::set_release_pages`]), `None` when weights stay resident.
    pub fn residency(&self) -> Option<&dyn quant::Residency> {
        if self.release_pages {
            Some(self)
        } else {
            None
        }
    }

    /// Where `t`'s bytes lie, for a backend that keeps borrowing them ([`quant::WeightStore`]).
    pub fn store_range(&self, t: &TensorInfo) -> quant::StoreRange {
        quant::StoreRange {
            part: t.split,
            start: t.offset,
            len: t.size,
        }
    }
}

/// A model's file shared with the backends that run it (behind an `Arc`, so its bytes stay
/// where they are: nothing can load or rewrite it meanwhile).
impl quant::WeightStore for GgufFile {
    fn bytes(&self, r: quant::StoreRange) -> &[u8] {
        let Some(part) = self.parts.get(r.part) else {
            return &[];
        };
        let start = part.data_start.saturating_add(r.start);
        let end = start.saturating_add(r.len);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| part.backing.bytes().get(a..b))
            .unwrap_or(&[])
    }

    fn residency(&self) -> Option<&dyn quant::Residency> {
        GgufFile::residency(self)
    }
}

/// `MADV_DONTNEED` on the whole pages inside `begin..end` of a mapped backing (pages shared
/// with a neighbouring tensor stay).
fn release_range(backing: &Backing, begin: usize, end: usize) {
    let Backing::Mmap(map) = backing else {
        return;
    };
    let page = page_size();
    let a = begin.div_ceil(page) * page;
    let b = (end.min(map.len()) / page) * page;
    if b <= a {
        return;
    }
    // SAFETY: `map` is a read-only private file mapping this process never writes, so its
    // pages are clean copies of the file: dropping them loses nothing, and any later access
    // (through slices handed out by `tensor_data`, which stay valid because the range stays
    // mapped) faults the same bytes back in from the page cache or the file. The range lies
    // inside the map. Failure only means the pages stay resident.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_heap_is_aligned_and_sized() {
        for n in [1usize, 4095, 1 << 20] {
            let mut b = Backing::zeroed(n);
            assert_eq!(b.bytes().len(), n);
            assert_eq!(b.bytes().as_ptr() as usize % 64, 0);
            b.bytes_mut()[n - 1] = 7;
            assert_eq!(b.bytes()[n - 1], 7);
        }
    }

    /// A heap copy of more than 2 MiB reads as zeros, keeps what is written, and (where the
    /// kernel has transparent huge pages) its mapping carries the huge-page hint (`hg`).
    #[test]
    fn large_heap_copy_asks_for_huge_pages() {
        let n = (5 << 20) + 123;
        let mut b = Backing::zeroed(n);
        assert!(b.bytes().iter().all(|&v| v == 0));
        for (i, v) in b.bytes_mut().iter_mut().enumerate().step_by(4093) {
            *v = i as u8 | 1;
        }
        assert!(b
            .bytes()
            .iter()
            .enumerate()
            .all(|(i, &v)| v == if i % 4093 == 0 { i as u8 | 1 } else { 0 }));
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if !cfg!(target_os = "linux") || thp.map_or(true, |s| s.contains("[never]")) {
            return;
        }
        // The VMA holding the middle of the buffer, from /proc/self/smaps.
        let at = b.bytes().as_ptr() as usize + n / 2;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = (lo..hi).contains(&at);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(f) = line.strip_prefix("VmFlags:") {
                    flags = Some(f.to_string());
                }
            }
        }
        let flags = flags.expect("the buffer's mapping is in /proc/self/smaps");
        assert!(
            flags.split_whitespace().any(|f| f == "hg"),
            "no huge-page hint on the heap copy: {flags}"
        );
    }
}
