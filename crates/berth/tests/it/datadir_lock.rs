//! One server per data dir: a second `berth up`/`berth server` on a data dir (or a
//! database) in use is refused at once, a server killed with SIGKILL leaves no lock
//! behind, and the `account`/`key` commands keep working beside the server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::ContainerDefinition;

use crate::berth;

/// How long a refused start may take. Refusing takes a few milliseconds; the rest is room
/// for a loaded machine. A start that is not refused serves until it is killed.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);

/// A second server's attempt to start: how it ended (None if it was still running at the
/// deadline and had to be killed), what it said, and how long it took.
struct Attempt {
    status: Option<std::process::ExitStatus>,
    stderr: String,
    took: Duration,
}

/// Runs `berth <command> --no-agent --data-dir <dir>` on a free port until it exits or
/// the deadline passes.
fn start_another(command: &str, dir: &Path) -> Attempt {
    let began = Instant::now();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([command, "--no-agent", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if began.elapsed() > REFUSAL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Attempt { status, stderr: std::fs::read_to_string(log.path()).unwrap(), took: began.elapsed() }
}

fn assert_refused(a: &Attempt, names: &str, pid: u32) {
    let status = a.status.unwrap_or_else(|| {
        panic!("the second server was still running after {REFUSAL_DEADLINE:?}; it said:\n{}", a.stderr)
    });
    assert!(!status.success(), "the second server exited successfully; it said:\n{}", a.stderr);
    assert!(a.took < Duration::from_secs(5), "refusing took {:?}", a.took);
    for part in [names, &format!("process {pid}"), "stop it, or use another --data-dir"] {
        assert!(a.stderr.contains(part), "the refusal does not say {part:?}:\n{}", a.stderr);
    }
}

#[tokio::test]
async fn a_second_server_on_a_data_dir_in_use_is_refused_at_once() {
    let b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("first").send().await.unwrap();
    let pid = b.pid().unwrap();

    for command in ["up", "server"] {
        let attempt = start_another(command, b.data_dir());
        assert_refused(&attempt, &format!("the data dir {} is in use", b.data_dir().display()), pid);
        assert!(attempt.stderr.contains(&format!("serving {}", b.endpoint)), "{}", attempt.stderr);
    }

    // The first server still serves, and `berth env` still points at it.
    ecs.create_cluster().cluster_name("second").send().await.unwrap();
    let d = ecs.describe_clusters().clusters("first").clusters("second").send().await.unwrap();
    assert_eq!(d.clusters().len(), 2);
    assert!(b.command(&["env"]).contains(&format!("AWS_ENDPOINT_URL={}\n", b.endpoint)));
}

#[tokio::test]
async fn a_second_server_reaching_the_database_by_another_path_is_refused() {
    let b = berth().await;
    let other = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(b.data_dir().join("berth.db"), other.path().join("berth.db")).unwrap();
    let attempt = start_another("server", other.path());
    let db = std::fs::canonicalize(b.data_dir().join("berth.db")).unwrap();
    assert_refused(&attempt, &format!("the database {} is in use", db.display()), b.pid().unwrap());
    b.ecs().await.list_clusters().send().await.unwrap();
}

#[tokio::test]
async fn a_server_killed_with_sigkill_does_not_block_its_restart() {
    let mut b = berth().await;
    let ecs = b.ecs().await;
    ecs.create_cluster().cluster_name("acked").send().await.unwrap();
    let container = ContainerDefinition::builder().name("web").image("simplehttp:latest").memory(64).build();
    ecs.register_task_definition().family("web").container_definitions(container).send().await.unwrap();

    let status = b.command(&["status"]);
    assert!(status.starts_with("one server on SQLite") && status.contains(&b.pid().unwrap().to_string()), "{status}");
    b.kill9();
    assert!(b.command(&["status"]).starts_with("no server runs"), "a killed server's lock is free");
    // `restart` fails the test if the new server exits instead of becoming healthy.
    b.restart().await;
    let ecs = b.ecs().await;
    let d = ecs.describe_clusters().clusters("acked").send().await.unwrap();
    assert_eq!(d.clusters().len(), 1);
    ecs.describe_task_definition().task_definition("web:1").send().await.unwrap();
    let lock = std::fs::read_to_string(b.data_dir().join("berth.lock")).unwrap();
    assert!(lock.starts_with(&format!("pid {}\n", b.pid().unwrap())), "{lock}");
}

#[tokio::test]
async fn account_and_key_commands_write_while_the_server_runs() {
    let b = berth().await;
    let other = b.create_account();
    let key = b.command(&["key", "create", "--account", &other.account]);
    let id = key.lines().find_map(|l| l.strip_prefix("access key id ")).unwrap();
    let secret = key.lines().find_map(|l| l.strip_prefix("secret access key ")).unwrap();
    let listed = b.command(&["account", "list"]);
    assert!(listed.lines().any(|l| l.starts_with(&other.account) && l.contains(&other.id) && l.contains(id)));

    // The server knows both keys at once.
    for key in [other.clone(), testkit::Key { account: other.account.clone(), id: id.into(), secret: secret.into() }] {
        let ecs = b.ecs_as(&key, "us-east-1").await;
        ecs.create_cluster().cluster_name(format!("by-{}", key.id)).send().await.unwrap();
    }
    let ecs = b.ecs_as(&other, "us-east-1").await;
    assert_eq!(ecs.list_clusters().send().await.unwrap().cluster_arns().len(), 2);
}
