//! `summary.csv`: one row per session, appended. The header is written once, by whoever finds the file
//! empty, under an exclusive lock so concurrent writers (a sender and a receiver sharing a directory, two
//! sweeps) never interleave or duplicate it. A file with another header is refused, never mixed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{columns, SessionReport};
use crate::error::usage;
use crate::sys::FileLock;

pub const FILE_NAME: &str = "summary.csv";

pub struct SummaryCsv {
    path: PathBuf,
    file: File,
}

impl SummaryCsv {
    /// Open (creating the directory) before any traffic, so a bad path fails before the run, not after it.
    pub fn open(dir: &Path) -> anyhow::Result<SummaryCsv> {
        std::fs::create_dir_all(dir).map_err(|e| {
            usage(format!(
                "cannot create the output directory {} ({e}): choose another --out",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| {
                usage(format!(
                    "cannot write {} ({e}): choose another --out",
                    path.display()
                ))
            })?;
        let me = SummaryCsv { path, file };
        me.check_header()?;
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header_line() -> String {
        columns().join(",")
    }

    fn check_header(&self) -> anyhow::Result<()> {
        let _lock = FileLock::exclusive(&self.file)?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))?;
        let mut first = String::new();
        let mut buf = [0u8; 4096];
        let n = f.read(&mut buf)?;
        first.push_str(&String::from_utf8_lossy(&buf[..n]));
        let line = first.lines().next().unwrap_or("");
        if n > 0 && line != Self::header_line() {
            return Err(usage(format!(
                "{} has a different header (another sockbench schema or another file): move it away or choose another --out",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Append rows (and the header, if the file is empty) in one write under the lock.
    pub fn append(&mut self, rows: &[&SessionReport]) -> anyhow::Result<()> {
        let _lock = FileLock::exclusive(&self.file)?;
        let empty = self.file.metadata()?.len() == 0;
        let mut w = csv::WriterBuilder::new()
            .has_headers(empty)
            .from_writer(vec![]);
        for r in rows {
            w.serialize(r)?;
        }
        let bytes = w.into_inner().context("csv buffer")?;
        let mut f = &self.file;
        f.write_all(&bytes)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        f.flush()?;
        Ok(())
    }
}
