//! `summary.csv`: one row per session, appended. The header is written once, by whoever finds the file
//! empty, under an exclusive lock so concurrent writers (a sender and a receiver sharing a directory, two
//! sweeps) never interleave or duplicate it. A file with another header is refused, never mixed.
//!
//! The file is created only when there is a row to write: a run that fails before its first session (no
//! receiver, a refused session) leaves no empty summary.csv behind. Whether it could be written is still
//! checked up front, so a bad `--out` fails before the traffic, not after it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{columns, SessionReport};
use crate::error::usage;
use crate::sys::FileLock;

pub const FILE_NAME: &str = "summary.csv";

pub struct SummaryCsv {
    path: PathBuf,
    /// None until the first append when the file did not exist at open.
    file: Option<File>,
}

/// What an existing file looks like, read under the lock.
enum State {
    Empty,
    /// Our header; `newline` is false when the last write was cut short after its last byte (a killed run,
    /// a full disk): the next row must not be glued to that line.
    Ours {
        newline: bool,
    },
}

impl SummaryCsv {
    /// Check before any traffic that the file can be written, so a bad path fails before the run, not after
    /// it; create it only at the first append. The directory is created here: per-session files go there too.
    pub fn open(dir: &Path) -> anyhow::Result<SummaryCsv> {
        std::fs::create_dir_all(dir).map_err(|e| {
            usage(format!(
                "cannot create the output directory {} ({e}): choose another --out",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let cannot = |e: std::io::Error| {
            usage(format!(
                "cannot write {} ({e}): choose another --out",
                path.display()
            ))
        };
        let file = match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                probe_writable(dir).map_err(cannot)?;
                None
            }
            Err(e) => return Err(cannot(e)),
        };
        let me = SummaryCsv { path, file };
        if let Some(f) = &me.file {
            let _lock = FileLock::exclusive(f)?;
            me.state(f)?;
        }
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header_line() -> String {
        columns().join(",")
    }

    fn state(&self, f: &File) -> anyhow::Result<State> {
        let len = f.metadata()?.len();
        if len == 0 {
            return Ok(State::Empty);
        }
        let mut buf = [0u8; 4096];
        let n = f.read_at(&mut buf, 0)?;
        let first = String::from_utf8_lossy(&buf[..n]);
        let line = first.lines().next().unwrap_or("");
        let header = Self::header_line();
        if line != header {
            let why = if len < header.len() as u64 && header.starts_with(&*first) {
                "ends inside its header (a run was cut off while creating it): delete it"
            } else {
                "has a different header (another sockbench schema or another file): move it away"
            };
            return Err(usage(format!(
                "{} {why} or choose another --out",
                self.path.display()
            )));
        }
        let mut last = [0u8; 1];
        f.read_exact_at(&mut last, len - 1)?;
        Ok(State::Ours {
            newline: last[0] == b'\n',
        })
    }

    /// Append rows (and the header, if the file is empty) in one write under the lock.
    pub fn append(&mut self, rows: &[&SessionReport]) -> anyhow::Result<()> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)
                .with_context(|| format!("cannot create {}", self.path.display()))?;
            self.file = Some(f);
        }
        let file = self.file.as_ref().context("summary.csv is not open")?;
        let _lock = FileLock::exclusive(file)?;
        // Read again under the lock: another writer may have created or appended to the file since open.
        let state = self.state(file)?;
        let mut bytes = match state {
            State::Ours { newline: false } => b"\n".to_vec(),
            _ => vec![],
        };
        let mut w = csv::WriterBuilder::new()
            .has_headers(matches!(state, State::Empty))
            .from_writer(vec![]);
        for r in rows {
            w.serialize(r)?;
        }
        bytes.extend(w.into_inner().context("csv buffer")?);
        let mut f = file;
        f.write_all(&bytes)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        f.flush()?;
        Ok(())
    }
}

/// Whether a new file could be created in `dir`, found by creating one and removing it at once: the only
/// answer that covers permissions, ACLs, read-only mounts and root alike.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".{FILE_NAME}.{}.probe", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(path: &Path) -> Vec<csv::StringRecord> {
        let mut r = csv::Reader::from_path(path).unwrap();
        assert_eq!(r.headers().unwrap().len(), columns().len());
        r.records().map(Result::unwrap).collect()
    }

    #[test]
    fn created_only_with_the_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SummaryCsv::open(dir.path()).unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(!path.exists(), "open must not create the file");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probe left behind"
        );
        let row = crate::report::sample_row();
        s.append(&[&row]).unwrap();
        s.append(&[&row]).unwrap();
        assert_eq!(rows_of(&path).len(), 2);
    }

    /// A header (or row) whose final newline never reached the disk: the next row gets its own line
    /// instead of being glued to it and vanishing from every CSV reader.
    #[test]
    fn missing_final_newline_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, SummaryCsv::header_line()).unwrap();
        let row = crate::report::sample_row();
        SummaryCsv::open(dir.path())
            .unwrap()
            .append(&[&row])
            .unwrap();
        assert_eq!(rows_of(&path).len(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_cut_off_header_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "schema_version,run_id,sta").unwrap();
        let err = SummaryCsv::open(dir.path()).err().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("ends inside its header") && text.contains("delete it"),
            "{text}"
        );
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_USAGE);
    }
}
