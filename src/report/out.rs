//! Where a run's files go and what names them: the run's identity, the output directory, and the files
//! opened before any traffic (so a bad `--out` fails first).

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::{export, latency, summary::SummaryCsv, SessionReport};
use crate::traffic::Protocol;

/// One run: a run id and start time shared by its sessions (compare runs two).
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub started_utc: String,
}

impl RunInfo {
    pub fn new() -> RunInfo {
        let t = humantime::format_rfc3339_seconds(crate::clock::system()).to_string();
        let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
        RunInfo {
            run_id: format!("{compact}-{:04x}", rand::random::<u16>()),
            started_utc: t,
        }
    }
}

impl Default for RunInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a run's per-session files go: `<dir>/<run_id>_<protocol>_<what>.csv`. Cheap to clone, so a session
/// can run on another thread (or in another network namespace).
#[derive(Debug, Clone)]
pub struct OutDir(PathBuf);

impl OutDir {
    pub fn new(dir: &Path) -> OutDir {
        OutDir(dir.to_path_buf())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, run_id: &str, protocol: Protocol, what: &str) -> PathBuf {
        self.0.join(format!("{run_id}_{protocol}_{what}.csv"))
    }
}

/// A finished session's rows: its summary row and its latency distribution.
pub struct SessionFiles<'a> {
    pub protocol: Protocol,
    pub report: &'a SessionReport,
    pub latency: &'a Histogram<u64>,
}

/// The report files of a run, opened before any traffic so a bad --out fails first.
pub struct Outputs {
    dir: OutDir,
    summary: SummaryCsv,
}

impl Outputs {
    pub fn open(dir: &Path) -> anyhow::Result<Outputs> {
        Ok(Outputs {
            summary: SummaryCsv::open(dir)?,
            dir: OutDir(dir.to_path_buf()),
        })
    }

    pub fn dir(&self) -> &OutDir {
        &self.dir
    }

    /// Append the sessions' rows and write each one's latency distribution.
    pub fn write(&mut self, sessions: &[SessionFiles]) -> anyhow::Result<()> {
        for s in sessions {
            export::write_file(
                &self.dir.file(&s.report.run_id, s.protocol, "latency"),
                &latency::LatencyCsv(s.latency),
            )?;
        }
        let rows: Vec<&SessionReport> = sessions.iter().map(|s| s.report).collect();
        self.summary.append(&rows)
    }

    pub fn summary_path(&self) -> &Path {
        self.summary.path()
    }
}
