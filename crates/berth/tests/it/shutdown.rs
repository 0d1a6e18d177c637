//! Shutdown: on SIGTERM the server stops accepting, lets open connections finish, waits
//! for every task it spawned (the background loops, the load balancer configuration, the
//! connections) and exits with status 0, promptly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::berth;

/// How long the server may take to exit after SIGTERM when nothing holds it up: well
/// below the drain and task timeouts together, so a task that ignores the shutdown fails
/// the test.
const EXIT_DEADLINE: Duration = Duration::from_secs(8);

#[tokio::test]
async fn sigterm_waits_for_every_task_and_exits_promptly() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("demo").send().await.unwrap();
    // A kept-alive connection, idle at the signal: its task must end too.
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/_berth/health", b.endpoint)).send().await.unwrap();
    assert!(health.status().is_success());

    let data_dir = b.data_dir().to_path_buf();
    let (exited, exit) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut b = b;
        let clean = b.terminate();
        let _ = exited.send(());
        (clean, b)
    });
    let in_time = exit.recv_timeout(EXIT_DEADLINE).is_ok();
    if !in_time {
        // Nothing may be left running; the waiter then returns too.
        kill_server_of(&data_dir);
    }
    let (clean, b) = waiter.join().expect("the waiting thread");
    assert!(in_time, "berth did not exit within {EXIT_DEADLINE:?} of SIGTERM");
    assert!(clean, "berth did not exit with status 0 on SIGTERM");

    let log = std::fs::read_to_string(b.data_dir().join("server.log")).unwrap();
    let ended = log.find("every background task has ended");
    let stopped = log.find("berth stopped");
    assert!(ended.is_some(), "the log does not say that every background task has ended");
    assert!(ended < stopped, "berth stopped before its tasks had ended");
    assert!(!log.contains("did not end in time"), "a task did not end in time");
    assert!(!log.contains("panicked"), "a task panicked");
}

/// Kills the `berth up` process serving `data_dir` with SIGKILL, found by its command line.
fn kill_server_of(data_dir: &Path) {
    let dir = data_dir.to_string_lossy();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a == "up") && args.iter().any(|a| *a == dir) {
            let _ = Command::new("kill").args(["-KILL", &entry.file_name().to_string_lossy()]).status();
        }
    }
}
