//! Files only the operator may read: journals, locks, exports and logs hold commands, hosts
//! and output from an incident. Directories are 0700 and files 0600, set explicitly (never
//! left to the umask), and a new file's directory entry is synced so a crash right after
//! creating it cannot lose it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) as 0700. An existing directory owned by this user is
/// narrowed to 0700; one owned by someone else is left alone (and not trusted: see
/// [`ensure_owned_private_dir`]).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // Never follow a symlink to narrow (or trust) what it points at.
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symlink: refusing to use it for private files",
            dir.display()
        )));
    }
    if std::os::unix::fs::MetadataExt::uid(&meta) == nix::unistd::getuid().as_raw()
        && meta.permissions().mode() & 0o777 != DIR_MODE
    {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Like [`private_dir`], but refuses a directory that another user owns or that others can
/// write: whoever controls it controls what opsdeck reads back from it.
pub fn ensure_owned_private_dir(dir: &Path) -> io::Result<()> {
    private_dir(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    let me = nix::unistd::getuid().as_raw();
    let uid = std::os::unix::fs::MetadataExt::uid(&meta);
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory (a symlink?): refusing to use it",
            dir.display()
        )));
    }
    if uid != me {
        return Err(io::Error::other(format!(
            "{} is owned by uid {uid}, not by you (uid {me}): refusing to use it",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} can be written by other users (mode {:o}): refusing to use it",
            dir.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

/// Opens `path` for appending, creating it 0600 (and narrowing an existing file to 0600).
pub fn open_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// Creates a new file 0600 (fails if it exists) and syncs its directory entry.
pub fn create_new(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    sync_parent(path)?;
    Ok(f)
}

/// Opens (creating 0600 if missing) for reading and writing without truncating: lock files.
pub fn open_rw(path: &Path) -> io::Result<File> {
    let existed = path.exists();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    narrow(&f)?;
    if !existed {
        sync_parent(path)?;
    }
    Ok(f)
}

/// Writes `bytes` to `path` as a 0600 file, atomically (temp file, sync, rename, sync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        narrow(&f)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

fn narrow(f: &File) -> io::Result<()> {
    let mode = f.metadata()?.permissions().mode() & 0o777;
    if mode != FILE_MODE {
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Syncs the directory holding `path`, so a newly created entry survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn files_and_dirs_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o000));
        let dir = tmp.path().join("a/b");
        private_dir(&dir).expect("dir");
        let journal = dir.join("x.jsonl");
        drop(create_new(&journal).expect("create"));
        let log = dir.join("y.log");
        drop(open_append(&log).expect("append"));
        let export = dir.join("z.md");
        write_atomic(&export, b"hello").expect("write");
        nix::sys::stat::umask(old);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&journal), 0o600);
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(&export), 0o600);
        assert_eq!(std::fs::read(&export).expect("read"), b"hello");
    }

    #[test]
    fn a_symlinked_dir_is_refused_and_its_target_left_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(private_dir(&link).is_err());
        assert_eq!(mode(&target), 0o755, "the target was not narrowed");
    }

    #[test]
    fn a_world_writable_dir_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("shared");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        // private_dir narrows a directory we own, so ensure_owned_private_dir accepts it after.
        ensure_owned_private_dir(&d).expect("narrowed and accepted");
        assert_eq!(mode(&d), 0o700);
    }
}
