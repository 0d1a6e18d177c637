//! How far a container's logs are shipped, kept in the agent's data dir so that a
//! restarted agent resumes where shipping stopped: nothing lost, nothing sent twice.
//!
//! One small file per container, `<ECS_DATADIR>/awslogs/<container id>.json`, replaced
//! atomically (written, then renamed over the old one; not synced, see
//! [`CursorFile::save`]). It is written once per batch, *before* the batch is sent, and
//! then names the batch as an [`Intent`]; the next batch is only sent
//! after this one was acknowledged, so a newer file implies the older intent landed.
//! After a crash, an intent may or may not have landed: [`Cursor::settle`] asks the
//! stream (the events at the batch's newest timestamp are counted) and either takes the
//! intent as shipped or sends it again.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::assemble::Mark;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Per source (stdout, stderr): the last entry stored in the stream.
    pub shipped: [Mark; 2],
    /// The newest event timestamp stored so far, and how many stored events have it.
    pub newest: Newest,
    /// A batch that was being sent when this file was written.
    pub intent: Option<Intent>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Newest {
    pub ts_ms: i64,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// `shipped` once the batch is stored.
    pub shipped: [Mark; 2],
    /// `newest` once the batch is stored.
    pub newest: Newest,
}

impl Cursor {
    /// The cursor after a batch whose events end at `shipped` and whose timestamps are
    /// `timestamps` has been stored.
    pub fn after(&self, shipped: [Mark; 2], timestamps: impl Iterator<Item = i64>) -> Intent {
        let mut newest = self.newest;
        for ts in timestamps {
            if ts > newest.ts_ms {
                newest = Newest { ts_ms: ts, count: 1 };
            } else if ts == newest.ts_ms {
                newest.count += 1;
            }
        }
        let mut marks = self.shipped;
        for (m, s) in marks.iter_mut().zip(shipped) {
            *m = (*m).max(s);
        }
        Intent { shipped: marks, newest }
    }

    /// Takes the intent as shipped.
    pub fn commit(&mut self, intent: Intent) {
        self.shipped = intent.shipped;
        self.newest = intent.newest;
        self.intent = None;
    }

    /// Decides an intent left by a crash, given how many events the stream holds at the
    /// intent's newest timestamp. An intent that did not raise the count there cannot be
    /// told apart from one that failed; it is sent again (a duplicate rather than a loss).
    pub fn settle(&mut self, stored_at_newest: u64) {
        let Some(intent) = self.intent else { return };
        let raised = intent.newest != self.newest;
        if raised && stored_at_newest >= intent.newest.count {
            self.commit(intent);
        } else {
            self.intent = None;
        }
    }
}

/// Where a container's cursor lives.
#[derive(Debug, Clone)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(dir: &Path, container_id: &str) -> CursorFile {
        // Docker ids are hex; anything else never reaches a file name.
        let safe: String = container_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        CursorFile { path: dir.join(format!("{safe}.json")) }
    }

    /// The saved cursor; a missing or unreadable file starts from the beginning.
    pub fn load(&self) -> Cursor {
        std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn save(&self, cursor: &Cursor) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(cursor).map_err(std::io::Error::other)?)?;
        // Written, not synced: what guards against an agent killed mid-batch is in the
        // page cache, which outlives the process. An fsync per batch (8 ms here, with the
        // next batch waiting on it) would only guard against the host going down, which
        // takes the container with it; the cursor then found is an earlier one (the rename
        // is atomic), so the lines after it are sent again rather than lost.
        std::fs::rename(&tmp, &self.path)
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_counts_the_events_at_the_newest_timestamp() {
        let c = Cursor { newest: Newest { ts_ms: 5, count: 2 }, ..Default::default() };
        let i = c.after([Mark { ts_ns: 7, rank: 1 }, Mark::default()], [4, 5, 5].into_iter());
        assert_eq!(i.newest, Newest { ts_ms: 5, count: 4 });
        let j = c.after([Mark::default(); 2], [6, 6].into_iter());
        assert_eq!(j.newest, Newest { ts_ms: 6, count: 2 });
    }

    #[test]
    fn a_landed_intent_is_kept_and_a_lost_one_sent_again() {
        let base = Cursor { newest: Newest { ts_ms: 5, count: 2 }, ..Default::default() };
        let intent = base.after([Mark { ts_ns: 9, rank: 1 }, Mark::default()], [5, 6].into_iter());
        let mut landed = Cursor { intent: Some(intent), ..base.clone() };
        landed.settle(1);
        assert_eq!(landed.shipped[0].ts_ns, 9);
        let mut lost = Cursor { intent: Some(intent), ..base.clone() };
        lost.settle(0);
        assert_eq!((lost.shipped[0].ts_ns, lost.intent), (0, None));
    }

    #[test]
    fn the_file_round_trips_and_a_damaged_one_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let f = CursorFile::new(dir.path(), "abc123");
        assert_eq!(f.load(), Cursor::default());
        let c = Cursor { shipped: [Mark { ts_ns: 3, rank: 2 }, Mark::default()], ..Default::default() };
        f.save(&c).unwrap();
        assert_eq!(f.load(), c);
        std::fs::write(dir.path().join("abc123.json"), b"{bad").unwrap();
        assert_eq!(f.load(), Cursor::default());
        assert_eq!(CursorFile::new(dir.path(), "../x").path, dir.path().join("x.json"));
    }
}
