//! Files replaced whole: written to a temporary file beside the target,
//! synced, then renamed over it, so a reader (or the next boot) sees the
//! old file or the new one, never half of either.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

/// Replaces `path` with `bytes`, created with permissions `mode`; creates
/// the directory if needed.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(temporary(&name, std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// The temporary file of process `pid`'s write to the file `name`.
fn temporary(name: &str, pid: u32) -> String {
    format!("{}{pid}", temporaries(name))
}

/// What the temporary files of writes to the file `name` begin with.
fn temporaries(name: &str) -> String {
    format!(".{name}.")
}

/// Removes what writes to `path` that never finished left beside it (a
/// writer killed between creating its temporary file and renaming it):
/// for a file whose writer is gone, or is the caller.
pub fn remove_leftovers(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = temporaries(&name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_string_lossy()
            .strip_prefix(&prefix)
            .map(str::parse::<u32>);
        if let Some(Ok(_)) = pid {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode() {
        let dir = std::env::temp_dir().join(format!("guard-atomic-{}", std::process::id()));
        let path = dir.join("sub/file.toml");
        write(&path, b"one", 0o600).unwrap();
        write(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A write's temporary file, left by a writer killed before its
    /// rename, goes; other files beside it stay.
    #[test]
    fn a_killed_writers_temporary_file_is_removed() {
        let dir = std::env::temp_dir().join(format!("guard-leftovers-{}", std::process::id()));
        let path = dir.join("status.json");
        write(&path, b"{}", 0o644).unwrap();
        let keep = [
            ".status.json.tmp",
            ".status.jsonx.12",
            ".other.json.12",
            "status.json",
        ];
        for name in [".status.json.4242"].iter().chain(&keep) {
            fs::write(dir.join(name), b"").unwrap();
        }
        remove_leftovers(&path);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort_unstable();
        let mut want: Vec<String> = keep.iter().map(|&n| n.to_owned()).collect();
        want.sort_unstable();
        assert_eq!(left, want);
        fs::remove_dir_all(&dir).unwrap();
    }
}
