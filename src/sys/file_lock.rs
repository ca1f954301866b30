//! Advisory whole-file locks (flock), released when the guard drops.

use std::fs::File;
use std::io;

use nix::fcntl::{Flock, FlockArg};

/// An exclusive flock on a file, held until dropped.
///
/// flock locks belong to the open file description, which a duplicated descriptor shares: the guard locks a
/// dup of the caller's handle, so the caller keeps its `File` and every other open() of the file is excluded.
/// For the same reason a second guard on the same `File` does not wait, and dropping either unlocks both: take
/// one guard per critical section.
#[derive(Debug)]
pub struct FileLock {
    _held: Flock<File>,
}

impl FileLock {
    /// Block until this process holds the file exclusively.
    pub fn exclusive(f: &File) -> io::Result<FileLock> {
        Self::lock(f, FlockArg::LockExclusive)
    }

    /// Take the lock only if nobody holds it: `Ok(None)` when another open file description has it.
    pub fn try_exclusive(f: &File) -> io::Result<Option<FileLock>> {
        match Self::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lock(f: &File, how: FlockArg) -> io::Result<FileLock> {
        loop {
            match Flock::lock(f.try_clone()?, how) {
                Ok(l) => return Ok(FileLock { _held: l }),
                // A blocking flock is interrupted by signals (Ctrl-C sets a flag and returns): wait again.
                Err((_, nix::errno::Errno::EINTR)) => continue,
                Err((_, e)) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_another_handle_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        let held = FileLock::exclusive(&a).unwrap();
        assert!(FileLock::try_exclusive(&b).unwrap().is_none());
        drop(held);
        let got = FileLock::try_exclusive(&b).unwrap();
        assert!(got.is_some());
        assert!(FileLock::try_exclusive(&a).unwrap().is_none());
        drop(got);
        assert!(FileLock::try_exclusive(&a).unwrap().is_some());
    }
}
