//! Following a container's log on disk (Docker's `local` or `json-file` format), across
//! Docker's rotations, until the container has exited and its log is read to the end.
//!
//! Docker writes each entry with one `write` and rotates by renaming the file to
//! `<log>.1` (the older `.1` removed) and beginning a new one. The follower keeps the
//! file it reads open, so a renamed file is finished before the new one is begun; at the
//! end of the file it looks at the path once: another file there means a rotation
//! (and a `.1` that is not the file being read, a second one the follower missed, which
//! it reads first). Otherwise it sleeps [`POLL`] or until the container exits: Docker has
//! written and closed the log of a container before its wait answers, so after the exit
//! one more read to the end takes everything.
//!
//! The file is read with plain blocking reads in the shipper's task: it was just written,
//! so it is in the page cache, and each read takes a fraction of a millisecond.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::localfile;

/// How long the follower sleeps at the end of the file before looking again: the bound
/// on the delay it adds to a line printed by a quiet container.
pub const POLL: Duration = Duration::from_millis(10);
/// How much is read at once.
const CHUNK: usize = 256 * 1024;
/// A line longer than this is not Docker's (an entry holds at most 16 KiB of output,
/// six bytes per byte escaped at worst): it is dropped rather than held.
const MAX_LINE: usize = 1024 * 1024;

/// How the file's entries are written, which says where a whole one ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `json-file`: a JSON object per line.
    JsonFile,
    /// `local`: length-framed protobuf messages (`localfile`).
    Local,
}

impl Format {
    /// How many bytes at the start of `buf` are whole entries (or damage skipped).
    fn whole(self, buf: &[u8]) -> usize {
        match self {
            Format::JsonFile => memchr::memrchr(b'\n', buf).map_or(0, |last| last + 1),
            Format::Local => {
                let mut frames = localfile::Frames::new(buf);
                frames.by_ref().for_each(drop);
                frames.consumed()
            }
        }
    }

    /// The most held waiting for an entry's end: past it, what is held is no entry of
    /// Docker's and is dropped.
    fn max_held(self) -> usize {
        match self {
            Format::JsonFile => MAX_LINE,
            Format::Local => 2 * localfile::MAX_FRAME,
        }
    }
}

/// Resolves once the container has exited (or its wait failed: the caller then looks).
pub type ExitSignal = BoxFuture<'static, ()>;

/// A file's identity, which a rename keeps and a new file does not.
type FileId = (u64, u64);

pub struct Follower {
    path: PathBuf,
    format: Format,
    /// The files to read, oldest first; the last is the one at `path` when last looked.
    files: VecDeque<(File, FileId)>,
    /// Bytes read and not yet handed out: the start of a line whose end is not written yet.
    partial: Vec<u8>,
    exit: Option<ExitSignal>,
    /// The exit has been seen (kept here: the caller may drop a `next_block` in progress).
    exited: bool,
}

impl Follower {
    /// Opens the log at `path` and, when there is one, its rotated predecessor `<path>.1`
    /// (read first: a resumed agent may not have shipped all of it).
    pub fn open(path: &Path, format: Format) -> std::io::Result<Follower> {
        let rotated = rotated_path(path);
        // `.1` then the file: if a rotation falls in between, `.1` changes, and the
        // opening is done again so that no file is left out.
        for _ in 0..3 {
            let older = open_with_id(&rotated).ok();
            let current = open_with_id(path)?;
            let older_now = id_of(&rotated);
            if older.as_ref().map(|(_, id)| *id) == older_now {
                let mut files: VecDeque<_> = older.into_iter().collect();
                files.push_back(current);
                return Ok(Follower {
                    path: path.to_path_buf(),
                    format,
                    files,
                    partial: Vec::new(),
                    exit: None,
                    exited: false,
                });
            }
        }
        Err(std::io::Error::other("the log file kept rotating while it was opened"))
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Sets what tells the follower that the container has exited; until it resolves the
    /// follower waits at the end of the file for more.
    pub fn until_exit(&mut self, exit: ExitSignal) {
        self.exit = Some(exit);
        self.exited = false;
    }

    /// The next block of whole entries (lines ending in `\n`, or frames), or `None` once
    /// the container has exited and everything it wrote has been handed out.
    pub async fn next_block(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        loop {
            match self.read_some() {
                Err(e) => return Some(Err(e)),
                Ok(Some(block)) => return Some(Ok(block)),
                Ok(None) => {}
            }
            // At the end of the file being read.
            if self.files.len() > 1 {
                self.finish_front();
                continue;
            }
            if self.look_for_rotation() {
                continue;
            }
            if self.exited {
                if !self.partial.is_empty() {
                    tracing::warn!(path = %self.path.display(), bytes = self.partial.len(), "the container's log ends inside an entry; that part is dropped");
                    self.partial.clear();
                }
                return None;
            }
            match self.exit.as_mut() {
                Some(exit) => {
                    let resolved = tokio::select! {
                        _ = tokio::time::sleep(POLL) => false,
                        _ = exit => true,
                    };
                    if resolved {
                        // Not polled again: a finished future must not be.
                        self.exit = None;
                        self.exited = true;
                    }
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Reads what the front file holds beyond what was read; the whole entries among it,
    /// if any. `None` at its end.
    fn read_some(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some((file, _)) = self.files.front_mut() else { return Ok(None) };
        loop {
            // `read_to_end` into the spare capacity: a `resize` first would zero a chunk
            // on every read (8% of the agent's time when a container floods).
            let len = self.partial.len();
            // Room for a whole chunk first, so that `read_to_end` reads it in one call
            // rather than probing a Vec that `split_off` left without spare capacity.
            self.partial.reserve(CHUNK);
            match file.by_ref().take(CHUNK as u64).read_to_end(&mut self.partial) {
                Ok(_) => {}
                Err(e) if self.partial.len() == len => return Err(e),
                // What was read before the error is kept (the file has moved past it); a
                // lasting error shows on the next read.
                Err(_) => {}
            }
            if self.partial.len() == len {
                return Ok(None);
            }
            match self.format.whole(&self.partial) {
                0 if self.partial.len() > self.format.max_held() => {
                    tracing::warn!(path = %self.path.display(), "an entry of the container's log is too long to be Docker's; it is dropped");
                    self.partial.clear();
                }
                0 => {}
                whole => {
                    let rest = self.partial.split_off(whole);
                    return Ok(Some(std::mem::replace(&mut self.partial, rest)));
                }
            }
        }
    }

    /// Leaves a file read to its end for the next one.
    fn finish_front(&mut self) {
        if !self.partial.is_empty() {
            tracing::warn!(path = %self.path.display(), bytes = self.partial.len(), "a rotated log file ends inside an entry; that part is dropped");
            self.partial.clear();
        }
        self.files.pop_front();
    }

    /// Whether Docker has begun a new file at the path; if so it is queued behind the
    /// one being read (and a rotated file in between, when there is one).
    fn look_for_rotation(&mut self) -> bool {
        let Some(&(_, reading)) = self.files.back() else { return false };
        match id_of(&self.path) {
            // Not there: Docker is between its rename and its create.
            None => false,
            Some(id) if id == reading => false,
            Some(_) => {
                let rotated = rotated_path(&self.path);
                if id_of(&rotated).is_some_and(|id| id != reading) {
                    if let Ok(missed) = open_with_id(&rotated) {
                        tracing::warn!(path = %self.path.display(), "the log rotated twice while it was being read");
                        self.files.push_back(missed);
                    }
                }
                match open_with_id(&self.path) {
                    Ok(next) => {
                        self.files.push_back(next);
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn id_of(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn open_with_id(path: &Path) -> std::io::Result<(File, FileId)> {
    let f = File::open(path)?;
    let m = f.metadata()?;
    Ok((f, (m.dev(), m.ino())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn collect(f: &mut Follower) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = f.next_block().await {
            all.extend(b.unwrap());
        }
        all
    }

    #[tokio::test]
    async fn a_rotation_is_followed_and_a_partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = File::create(&path).unwrap();
        w.write_all(b"one\ntw").unwrap();
        let mut f = Follower::open(&path, Format::JsonFile).unwrap();
        assert_eq!(f.next_block().await.unwrap().unwrap(), b"one\n");
        w.write_all(b"o\nthree\n").unwrap();
        // Docker's rotation: the file renamed to `.1`, a new one begun.
        std::fs::rename(&path, rotated_path(&path)).unwrap();
        w.write_all(b"four\n").unwrap();
        let mut w2 = File::create(&path).unwrap();
        w2.write_all(b"five\n").unwrap();
        f.until_exit(Box::pin(async {}));
        assert_eq!(collect(&mut f).await, b"two\nthree\nfour\nfive\n");
    }

    #[tokio::test]
    async fn opening_reads_the_rotated_file_first_and_waits_for_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        std::fs::write(rotated_path(&path), b"old\n").unwrap();
        std::fs::write(&path, b"new\n").unwrap();
        let mut f = Follower::open(&path, Format::JsonFile).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        f.until_exit(Box::pin(async move {
            let _ = rx.await;
        }));
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(POLL * 5).await;
                std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"later\n").unwrap();
                let _ = tx.send(());
            })
        };
        assert_eq!(collect(&mut f).await, b"old\nnew\nlater\n");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_second_rotation_missed_while_reading_is_read_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        std::fs::write(&path, b"a\n").unwrap();
        let mut f = Follower::open(&path, Format::JsonFile).unwrap();
        assert_eq!(f.next_block().await.unwrap().unwrap(), b"a\n");
        // Two rotations (max-file 2) before the follower looks again.
        std::fs::rename(&path, rotated_path(&path)).unwrap();
        std::fs::write(&path, b"b\n").unwrap();
        std::fs::rename(&path, rotated_path(&path)).unwrap();
        std::fs::write(&path, b"c\n").unwrap();
        f.until_exit(Box::pin(async {}));
        assert_eq!(collect(&mut f).await, b"b\nc\n");
    }

    #[tokio::test]
    async fn local_frames_are_handed_out_whole_across_a_rotation() {
        use crate::awslogs::localfile::tests::frame;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let (a, b, c) =
            (frame("stdout", 1, b"a", false), frame("stderr", 2, b"b", true), frame("stdout", 3, b"c", false));
        let mut w = File::create(&path).unwrap();
        w.write_all(&[&a[..], &b[..3]].concat()).unwrap();
        let mut f = Follower::open(&path, Format::Local).unwrap();
        assert_eq!(f.next_block().await.unwrap().unwrap(), a);
        w.write_all(&b[3..]).unwrap();
        std::fs::rename(&path, rotated_path(&path)).unwrap();
        File::create(&path).unwrap().write_all(&c).unwrap();
        f.until_exit(Box::pin(async {}));
        assert_eq!(collect(&mut f).await, [b, c].concat());
    }
}
