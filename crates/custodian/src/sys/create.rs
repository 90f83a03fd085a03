//! Exclusive creation of a temp file or temp dir *relative to a directory fd*.
//!
//! Invariants:
//! - the new object is created with `openat`/`mkdirat` relative to the directory fd the
//!   caller holds (the temp root's), so a root renamed or swapped for a symlink after the
//!   caller's check cannot redirect the creation elsewhere;
//! - creation is exclusive (`O_EXCL`, `mkdir`) and never follows a symlink: an existing
//!   name, whatever it is, makes the attempt pick another random name;
//! - the mode is set with `fchmod` after creation, so a file is exactly 0600 and a dir
//!   exactly 0700 whatever the process umask (which can only clear bits) or a default ACL;
//! - on any failure after the name was created, the name is removed again (by fd-relative
//!   `unlinkat`) before the error is returned: nothing is left behind.
//!
//! Names are `<prefix><16 hex digits from getrandom><suffix>`; the prefix and suffix are
//! name fragments, validated here (no `/`, no NUL).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::FileId;

/// Random names tried before giving up with `AlreadyExists`. With 64 random bits a
/// collision is already unlikely; more than a few in a row means something is wrong.
const NAME_ATTEMPTS: usize = 16;

/// Random bytes in a name (shown as twice as many hex digits).
const RANDOM_BYTES: usize = 8;

/// What [`create_file_at`] and [`create_dir_at`] made.
#[derive(Debug)]
pub(crate) struct Created {
    /// The new name inside the directory.
    pub(crate) name: OsString,
    /// The open object: a read-write file, or the directory opened read-only.
    pub(crate) fd: OwnedFd,
    /// Its device and inode, for the removal's identity check.
    pub(crate) id: FileId,
}

/// Checks that `prefix` and `suffix` are name fragments: a `/` would create the object
/// outside the directory, a NUL would truncate the name. (A whole name can never be `.`
/// or `..`: it always holds the random hex digits.)
pub(crate) fn check_affixes(prefix: &str, suffix: &str) -> io::Result<()> {
    if prefix.contains(['/', '\0']) || suffix.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a temp name prefix or suffix contains a path separator or NUL",
        ));
    }
    Ok(())
}

/// Creates a new file `<prefix><random><suffix>` in `dir`: read-write, close-on-exec,
/// mode exactly 0600.
///
/// # Errors
///
/// `InvalidInput` for a bad prefix or suffix, `AlreadyExists` if every random name was
/// taken, or the system call's error (`StorageFull`, too many open files...).
pub(crate) fn create_file_at(
    dir: BorrowedFd<'_>,
    prefix: &str,
    suffix: &str,
) -> io::Result<Created> {
    create_at(dir, prefix, suffix, |name| {
        rustix::fs::openat(
            dir,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(Fresh::Taken)
    })
    .and_then(|(name, fd)| finish(dir, name, fd, Mode::RUSR | Mode::WUSR, AtFlags::empty()))
}

/// Creates a new directory `<prefix><random><suffix>` in `dir` with mode exactly 0700,
/// and opens it (`O_DIRECTORY|O_NOFOLLOW`).
///
/// # Errors
///
/// As [`create_file_at`].
pub(crate) fn create_dir_at(
    dir: BorrowedFd<'_>,
    prefix: &str,
    suffix: &str,
) -> io::Result<Created> {
    create_at(dir, prefix, suffix, |name| {
        rustix::fs::mkdirat(dir, name, Mode::RWXU).map_err(Fresh::Taken)?;
        rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Fresh::Made(e, AtFlags::REMOVEDIR))
    })
    .and_then(|(name, fd)| finish(dir, name, fd, Mode::RWXU, AtFlags::REMOVEDIR))
}

/// How one creation attempt failed.
enum Fresh {
    /// Nothing was created (the name was taken, or the call failed outright).
    Taken(Errno),
    /// The name was created, then opening it failed: it must be removed with these flags.
    Made(Errno, AtFlags),
}

fn create_at(
    dir: BorrowedFd<'_>,
    prefix: &str,
    suffix: &str,
    mut make: impl FnMut(&OsStr) -> Result<OwnedFd, Fresh>,
) -> io::Result<(OsString, OwnedFd)> {
    check_affixes(prefix, suffix)?;
    for _ in 0..NAME_ATTEMPTS {
        let name = OsString::from(format!("{prefix}{}{suffix}", random_hex(RANDOM_BYTES)?));
        match make(&name) {
            Ok(fd) => return Ok((name, fd)),
            Err(Fresh::Taken(Errno::EXIST)) => continue,
            Err(Fresh::Taken(e)) => return Err(e.into()),
            Err(Fresh::Made(e, flags)) => {
                let _ = rustix::fs::unlinkat(dir, &name, flags);
                return Err(e.into());
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every random temp name tried was already taken",
    ))
}

/// Sets the exact mode and records the identity; removes the name on failure.
fn finish(
    dir: BorrowedFd<'_>,
    name: OsString,
    fd: OwnedFd,
    mode: Mode,
    unlink: AtFlags,
) -> io::Result<Created> {
    let done = (|| {
        // The umask can only clear bits; set the mode explicitly so it is exact.
        rustix::fs::fchmod(&fd, mode)?;
        FileId::of_fd(fd.as_fd())
    })();
    match done {
        Ok(id) => Ok(Created { name, fd, id }),
        Err(e) => {
            drop(fd);
            let _ = rustix::fs::unlinkat(dir, &name, unlink);
            Err(e)
        }
    }
}

/// `bytes` bytes from the kernel's random source, in hex (twice as many digits).
pub(crate) fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < buf.len() {
        filled +=
            rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    // One digit table instead of a `format!` per byte: this runs for every temp file, and
    // the formatting machinery cost more than the rest of a creation's CPU work.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes);
    for b in buf {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_lowercase_hex_of_twice_the_length_and_varies() {
        let a = random_hex(RANDOM_BYTES).unwrap();
        assert_eq!(a.len(), 2 * RANDOM_BYTES);
        assert!(
            a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{a}"
        );
        assert_ne!(a, random_hex(RANDOM_BYTES).unwrap());
        assert_eq!(random_hex(0).unwrap(), "");
    }
    use std::os::unix::fs::PermissionsExt;

    fn scratch() -> (std::path::PathBuf, OwnedFd) {
        let dir = std::env::temp_dir().join(format!(
            "custodian-create-unit-{}-{}",
            std::process::id(),
            random_hex(RANDOM_BYTES).unwrap()
        ));
        std::fs::create_dir(&dir).unwrap();
        let fd = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    #[test]
    fn files_and_dirs_get_exact_modes_names_and_identities() {
        let (dir, fd) = scratch();
        let f = create_file_at(fd.as_fd(), "pre-", ".wav").unwrap();
        let d = create_dir_at(fd.as_fd(), "", "").unwrap();
        let name = f.name.to_str().unwrap();
        assert!(name.starts_with("pre-") && name.ends_with(".wav"), "{name}");
        assert_eq!(name.len(), 4 + 2 * RANDOM_BYTES + 4);
        let fm = std::fs::symlink_metadata(dir.join(&f.name)).unwrap();
        let dm = std::fs::symlink_metadata(dir.join(&d.name)).unwrap();
        assert!(fm.is_file() && dm.is_dir());
        assert_eq!(fm.permissions().mode() & 0o7777, 0o600);
        assert_eq!(dm.permissions().mode() & 0o7777, 0o700);
        assert_eq!(FileId::of_fd(&f.fd).unwrap(), f.id);
        assert_eq!(FileId::of_fd(&d.fd).unwrap(), d.id);
        // The fds are close-on-exec, the file's is writable.
        for fd in [&f.fd, &d.fd] {
            assert!(
                rustix::io::fcntl_getfd(fd)
                    .unwrap()
                    .contains(rustix::io::FdFlags::CLOEXEC)
            );
        }
        assert_eq!(rustix::io::write(&f.fd, b"x").unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_affixes_are_invalid_input_and_create_nothing() {
        let (dir, fd) = scratch();
        for (p, s) in [("../x", ""), ("", "/y"), ("a\0", ""), ("", "\0")] {
            let e = create_file_at(fd.as_fd(), p, s).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{p:?} {s:?}");
            let e = create_dir_at(fd.as_fd(), p, s).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{p:?} {s:?}");
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_name_too_long_is_an_error_that_leaves_nothing() {
        let (dir, fd) = scratch();
        let long = "x".repeat(300);
        assert!(create_file_at(fd.as_fd(), &long, "").is_err());
        assert!(create_dir_at(fd.as_fd(), "", &long).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
