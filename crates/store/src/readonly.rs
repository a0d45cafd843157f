//! [`ReadOnlyFs`]: a [`FileSystem`] that reads the real files and silently discards every
//! change (writes, truncations, renames, removals, directory creation). Running recovery over
//! it yields the full [`RecoveryReport`](crate::RecoveryReport) of a directory — what would be
//! skipped, truncated or set aside — without changing a byte: the offline check
//! (`warren --check-data-dir`) and the message counts of quarantined queue directories.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::fs::{DirEntry, FileHandle, FileSystem, StdFs};

/// Reads through [`StdFs`]; every mutation is a successful no-op.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOnlyFs;

/// A handle whose reads go to the real file (if any) and whose writes go nowhere.
#[derive(Debug)]
struct ReadOnlyFile {
    inner: Option<Arc<dyn FileHandle>>,
}

impl FileHandle for ReadOnlyFile {
    fn append(&self, _buf: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.inner {
            Some(h) => h.read_at(buf, offset),
            None => Ok(0),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.as_ref().map_or(Ok(0), |h| h.size())
    }
}

impl FileSystem for ReadOnlyFs {
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        StdFs.open_read(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let inner = if path.exists() {
            Some(StdFs.open_read(path)?)
        } else {
            None
        };
        Ok(Arc::new(ReadOnlyFile { inner }))
    }

    fn create_truncate(&self, _path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        Ok(Arc::new(ReadOnlyFile { inner: None }))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        StdFs.list_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        StdFs.exists(path)
    }

    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}
