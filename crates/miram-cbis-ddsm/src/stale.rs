//! Temporary files left behind by a killed process: the crop cache and the saved index are
//! written to `<name>.tmp<pid>` and renamed, so a process killed mid-write leaves its
//! temporary file. They are removed when their folder is next opened, only those whose
//! writer is gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old a temporary file must be to count as abandoned where process ids cannot be
/// checked (no `/proc`).
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The temporary name of `path` for this process: `<path without extension>.tmp<pid>` when
/// `keep_extension` is false, `<path>.tmp<pid>` otherwise.
pub(crate) fn temp_name(path: &Path, keep_extension: bool) -> PathBuf {
    let pid = std::process::id();
    if keep_extension {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".tmp{pid}"));
        PathBuf::from(s)
    } else {
        path.with_extension(format!("tmp{pid}"))
    }
}

/// The process id in a temporary file name `<prefix>.tmp<pid>`, if `name` is one.
fn temp_pid(name: &str, prefix: &dyn Fn(&str) -> bool) -> Option<u32> {
    let (head, pid) = name.rsplit_once(".tmp")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || !prefix(head) {
        return None;
    }
    pid.parse().ok()
}

/// Whether the process that writes a temporary file may still be running: `/proc/<pid>`
/// exists (Linux), or, without `/proc`, the file was modified within the last day. This
/// process's own files count as live.
fn writer_alive(pid: u32, path: &Path) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    if proc_root.join("self").exists() {
        return proc_root.join(pid.to_string()).exists();
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_none_or(|age| age < ABANDONED_AFTER)
}

/// Removes the temporary files `<head>.tmp<pid>` in `dir` whose `head` passes `is_ours` and
/// whose writer is gone; returns the files removed. Nothing else is touched, and a folder
/// that cannot be listed removes nothing.
pub(crate) fn remove_stale_temps(dir: &Path, is_ours: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| temp_pid(n, is_ours)) else {
            continue;
        };
        let path = entry.path();
        if !writer_alive(pid, &path) && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let crops = |h: &str| h.starts_with("crops-") && h.ends_with(".bin");
        assert_eq!(temp_pid("crops-0123abcd.bin.tmp42", &crops), Some(42));
        assert_eq!(temp_pid("crops-0123abcd.bin", &crops), None);
        assert_eq!(temp_pid("crops-0123abcd.bin.tmp", &crops), None);
        assert_eq!(temp_pid("crops-0123abcd.bin.tmp4x", &crops), None);
        assert_eq!(temp_pid("notes.bin.tmp42", &crops), None);
        let p = temp_name(Path::new("/a/crops-1.bin"), true);
        assert_eq!(
            p,
            PathBuf::from(format!("/a/crops-1.bin.tmp{}", std::process::id()))
        );
        let p = temp_name(Path::new("/a/index.json"), false);
        assert_eq!(
            p,
            PathBuf::from(format!("/a/index.tmp{}", std::process::id()))
        );
    }
}
