//! Files the node writes beside its store (the dev genesis, the kept mempool, key and genesis
//! files of the tooling), written so that a crash or a disk that fails mid-way leaves the old
//! file or the whole new one, never an empty or partial one: the bytes are synced before the
//! name points at them, and the directory is synced so the name itself survives.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` whole: a temporary file beside it, synced, renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    sync_dir(path)
}

/// Syncs the directory that holds `path`, so a file created or renamed there survives a crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev-genesis.json");
        replace(&path, b"first").expect("write");
        replace(&path, b"second, longer").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second, longer");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|entry| entry.expect("entry").file_name()).collect();
        assert_eq!(names, ["dev-genesis.json"]);
    }
}
