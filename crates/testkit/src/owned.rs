//! A child process owned by a thread of its own, for the throwaway servers of tests
//! (PostgreSQL, s3s-fs). The command is `setpriv --pdeathsig KILL -- ...`: the parent-death
//! signal follows the thread that forked, so the kernel kills the server when that thread
//! ends, which is when its owner stops it or when the test process dies, however it dies.

use std::io;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread::JoinHandle;

#[derive(Debug)]
pub(crate) struct OwnedChild {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    pid: u32,
}

impl OwnedChild {
    /// Spawns `cmd` from a new thread, which ends it with `stop` once told to.
    pub(crate) fn spawn(mut cmd: Command, stop: fn(&mut Child)) -> io::Result<OwnedChild> {
        let (stop_tx, stop_rx) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let _ = started_tx.send(Ok(child.id()));
            let _ = stop_rx.recv();
            stop(&mut child);
        });
        let pid = started.recv().map_err(|_| io::Error::other("the thread that spawns the server ended"))??;
        Ok(OwnedChild { stop: stop_tx, thread, pid })
    }

    /// Whether the process still exists.
    pub(crate) fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Stops the process and waits for its thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
