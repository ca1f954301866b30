//! One way out: every CSV file the tool writes (summary, latency, messages, trace, link counts, backlog) is an
//! [`Export`]: a header whose first column is `schema_version`, and rows written to any `Write`. The functions
//! here put them on disk so that a process killed at any moment leaves whole rows only: a file written at
//! once is written under a temporary name and renamed over the old one, and appended rows go out in one write
//! each.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A CSV file's content.
pub trait Export {
    /// Column names, `schema_version` first.
    fn header(&self) -> Vec<&'static str>;
    /// The rows, without the header; each begins with the file's schema version.
    fn write_rows(&self, w: &mut dyn Write) -> anyhow::Result<()>;
}

/// A CSV writer over any `Write`, with the crate's settings (no automatic header: exporters write their own).
pub fn csv_writer(w: &mut dyn Write) -> csv::Writer<&mut dyn Write> {
    csv::WriterBuilder::new().has_headers(false).from_writer(w)
}

/// Header and rows, to `w`.
pub fn write(e: &dyn Export, w: &mut dyn Write) -> anyhow::Result<()> {
    csv_writer(w).write_record(e.header())?;
    e.write_rows(w)
}

/// The rows alone, as bytes (so they can go out in one write).
pub fn rows_bytes(e: &dyn Export) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    e.write_rows(&mut buf)?;
    Ok(buf)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Write the whole file, replacing any old one atomically: a reader (or a kill) sees the old file or the new
/// one, never a torn one.
pub fn write_file(path: &Path, e: &dyn Export) -> anyhow::Result<()> {
    let tmp = temp_name(path);
    let result = (|| -> anyhow::Result<()> {
        let mut buf = Vec::new();
        write(e, &mut buf)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.flush()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// A file that grows by whole rows: created with its header, then each `append` is one write of whole rows,
/// so a kill between writes leaves a file that ends at a row boundary.
pub struct Appender {
    path: PathBuf,
    file: File,
}

impl Appender {
    /// Create (truncate) `path` and write `header`.
    pub fn create(path: &Path, header: &[&str]) -> anyhow::Result<Appender> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut buf = Vec::new();
        csv_writer(&mut buf).write_record(header)?;
        file.write_all(&buf)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Appender {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append the rows of `e` in one write.
    pub fn append(&mut self, e: &dyn Export) -> anyhow::Result<()> {
        let buf = rows_bytes(e)?;
        self.file
            .write_all(&buf)
            .with_context(|| format!("cannot append to {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;
    impl Export for Two {
        fn header(&self) -> Vec<&'static str> {
            vec!["schema_version", "x"]
        }
        fn write_rows(&self, w: &mut dyn Write) -> anyhow::Result<()> {
            let mut c = csv_writer(w);
            c.write_record(["1", "a,b"])?;
            c.write_record(["1", "c"])?;
            Ok(())
        }
    }

    #[test]
    fn files_are_written_whole_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        write_file(&p, &Two).unwrap();
        write_file(&p, &Two).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "schema_version,x\n1,\"a,b\"\n1,c\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        let mut a = Appender::create(&dir.path().join("a.csv"), &["schema_version", "x"]).unwrap();
        a.append(&Two).unwrap();
        a.append(&Two).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.csv"))
                .unwrap()
                .lines()
                .count(),
            5
        );
        assert!(write_file(&dir.path().join("no/such/dir.csv"), &Two).is_err());
    }
}
