//! [`DefinitionsLog`]: the durable list of topology definitions (declares, binds, deletes) as
//! an append log of opaque records the server encodes. Every append is fsync'd before it
//! returns. The store cannot tell which records are obsolete, so compaction is the caller's:
//! replay the records returned by [`DefinitionsLog::open`], then [`rewrite`] the log with the
//! surviving definitions (temp file, fsync, rename, fsync directory — atomic).
//!
//! The file has the common header (magic `WRNDEFS\0`) and the common record framing (see
//! [`format`](mod@crate::format)); a record body is the caller's bytes. A damaged record (a torn
//! tail or corruption in the middle) costs that record only: it is reported in
//! [`recovery_report`](DefinitionsLog::recovery_report), the original file is kept as
//! `<path>.damaged-<ms>`, and the log rewritten with every good record.
//!
//! [`rewrite`]: DefinitionsLog::rewrite

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{StoreError, io_at};
use crate::format::{self, HeaderCheck, MAGIC_DEFS};
use crate::fs::{FileHandle, FileSystem};
use crate::queue_log::read_all;
use crate::report::{RecoveryReport, Truncation};

/// The definitions append log.
pub struct DefinitionsLog {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    poisoned: bool,
    report: RecoveryReport,
}

impl fmt::Debug for DefinitionsLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefinitionsLog")
            .field("path", &self.path)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl DefinitionsLog {
    /// Opens (creating if needed) the log at `path`; returns it and its records in order.
    /// A file with a foreign header is refused ([`StoreError::Corruption`]) rather than
    /// overwritten.
    pub fn open(path: &Path, fs: Arc<dyn FileSystem>) -> Result<(DefinitionsLog, Vec<Bytes>), StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.create_dir_all(parent)
                .map_err(|e| io_at(parent, "create", e))?;
        }
        let mut report = RecoveryReport::default();
        let mut records = Vec::new();
        let mut needs_rewrite = true;
        if fs.exists(path) {
            let data = read_all(&*fs, path)?;
            match format::check_header(&data, MAGIC_DEFS) {
                HeaderCheck::Ok => {
                    let scan = format::scan(&data, |_| true);
                    for p in &scan.problems {
                        report.warn(path, p.offset, p.reason.clone());
                    }
                    if let Some(at) = scan.torn_at {
                        report.truncated.push(Truncation {
                            file: path.to_path_buf(),
                            offset: at,
                            dropped: data.len() as u64 - at,
                        });
                    }
                    needs_rewrite = !scan.problems.is_empty() || scan.torn_at.is_some();
                    if needs_rewrite {
                        // Never lose the damaged bytes: the original is kept beside the log.
                        let aside = keep_damaged_copy(&*fs, path, &data)?;
                        report.warn(
                            path,
                            0,
                            format!(
                                "{} damaged record(s) dropped, {} good record(s) kept; original kept as {}",
                                scan.problems.len() + usize::from(scan.torn_at.is_some()),
                                scan.records.len(),
                                aside.display()
                            ),
                        );
                    }
                    let whole = Bytes::from(data);
                    records = scan.records.iter().map(|(_, r)| whole.slice(r.clone())).collect();
                }
                HeaderCheck::Incomplete => {}
                HeaderCheck::BadMagic => {
                    return Err(StoreError::Corruption {
                        file: path.to_path_buf(),
                        offset: 0,
                        reason: "not a definitions log (bad header)".into(),
                    });
                }
                HeaderCheck::Version(version) => {
                    return Err(StoreError::UnsupportedVersion {
                        file: path.to_path_buf(),
                        version,
                    });
                }
            }
        }
        let file = if needs_rewrite {
            write_atomically(&*fs, path, &records)?
        } else {
            fs.open_append(path).map_err(|e| io_at(path, "open", e))?
        };
        report.messages = records.len() as u64;
        let log = DefinitionsLog {
            fs,
            path: path.to_path_buf(),
            file,
            poisoned: false,
            report,
        };
        Ok((log, records))
    }

    /// What opening the log found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Appends one record and fsyncs it. A failed write or fsync poisons the log.
    pub fn append(&mut self, rec: &[u8]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if rec.len() > format::MAX_BODY {
            return Err(StoreError::TooLarge {
                len: rec.len() as u64,
                max: format::MAX_BODY as u64,
            });
        }
        let mut buf = Vec::with_capacity(format::FRAME_LEN + rec.len());
        format::put_record(&mut buf, &[rec]);
        let r = self.file.append(&buf).and_then(|()| self.file.sync_data());
        r.map_err(|e| {
            self.poisoned = true;
            io_at(&self.path, "append", e)
        })
    }

    /// Replaces the whole log with `all` atomically (temp file, fsync, rename, fsync of the
    /// directory). A failure before the rename leaves the old log in place; a failed fsync
    /// poisons the log.
    pub fn rewrite(&mut self, all: &[Bytes]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        match write_atomically(&*self.fs, &self.path, all) {
            Ok(file) => {
                self.file = file;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Whether a failure has poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

/// Writes `data` (a damaged log's original bytes) to `<path>.damaged-<ms>`, fsync'd, and
/// returns that path.
fn keep_damaged_copy(fs: &dyn FileSystem, path: &Path, data: &[u8]) -> Result<PathBuf, StoreError> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{ms}"));
    let aside = path.with_file_name(name);
    let h = fs
        .create_truncate(&aside)
        .map_err(|e| io_at(&aside, "create", e))?;
    h.append(data).map_err(|e| io_at(&aside, "write", e))?;
    h.sync_data().map_err(|e| io_at(&aside, "fsync", e))?;
    Ok(aside)
}

fn write_atomically(
    fs: &dyn FileSystem,
    path: &Path,
    records: &[Bytes],
) -> Result<Arc<dyn FileHandle>, StoreError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut buf = Vec::with_capacity(format::HEADER_LEN + records.iter().map(|r| r.len() + 8).sum::<usize>());
    format::put_header(&mut buf, MAGIC_DEFS);
    for r in records {
        if r.len() > format::MAX_BODY {
            return Err(StoreError::TooLarge {
                len: r.len() as u64,
                max: format::MAX_BODY as u64,
            });
        }
        format::put_record(&mut buf, &[r]);
    }
    let h = fs.create_truncate(&tmp).map_err(|e| io_at(&tmp, "create", e))?;
    h.append(&buf).map_err(|e| io_at(&tmp, "write", e))?;
    h.sync_data().map_err(|e| io_at(&tmp, "fsync", e))?;
    drop(h);
    fs.rename(&tmp, path).map_err(|e| io_at(path, "rename", e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs.sync_dir(dir).map_err(|e| io_at(dir, "fsync", e))?;
    fs.open_append(path).map_err(|e| io_at(path, "open", e))
}
