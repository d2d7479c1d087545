//! Files that must survive a power cut whole: written to a temporary file beside them, synced,
//! and renamed (or linked) into place, then the directory synced, so after a crash the name
//! holds the old contents or the new, never a part.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` (mode `mode`).
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let temporary = staged(path, contents, mode)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })?;
    sync_dir(path)
}

/// Creates `path` with `contents` unless it exists (then `AlreadyExists`), as `O_EXCL` would,
/// but never leaving it empty or half-written.
pub fn create_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = staged(path, contents, 0o644)?;
    // A hard link fails if the name exists: the exclusive create, atomic with its contents.
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    linked?;
    sync_dir(path)
}

/// A synced temporary file beside `path` holding `contents`; a dot-name, so a reader of every
/// file in the directory (a runtime's conflist directory) skips it meanwhile.
fn staged(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(temporary),
        Err(err) => {
            let _ = std::fs::remove_file(&temporary);
            Err(err)
        }
    }
}

/// Syncs the directory holding `path`, which makes a rename or link in it durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_and_created_whole_and_exclusively() {
        let dir = std::env::temp_dir().join(format!("sdn-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("conf");
        replace(&path, b"one", 0o600).expect("write");
        replace(&path, b"two", 0o644).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o644);
        let record = dir.join("10.1.0.2");
        create_new(&record, b"pod-a").expect("create");
        let again = create_new(&record, b"pod-b").expect_err("exists");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&record).expect("read"), b"pod-a");
        let names: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file stays: {names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
