//! `berth logs tail`, the built binary against a real server: interleaved streams in each
//! format, `--since`, the filters, every page of a large group, a closed pipe, and
//! `--follow` printing each new event exactly once until Ctrl-C.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use testkit::Berth;

use crate::berth;
use crate::logs_api::{event, logs, now_ms, put};

async fn group(c: &Client, g: &str, streams: &[&str]) {
    c.create_log_group().log_group_name(g).send().await.unwrap();
    for s in streams {
        c.create_log_stream().log_group_name(g).log_stream_name(*s).send().await.unwrap();
    }
}

/// `berth logs tail ARGS` against the server's data dir: its lines.
fn tail(b: &Berth, args: &[&str]) -> Vec<String> {
    let args: Vec<&str> = ["logs", "tail"].iter().chain(args).copied().collect();
    b.command(&args).lines().map(str::to_string).collect()
}

/// A time as the detailed format prints it, computed apart from the command's code.
fn detailed(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]");
    format!("{}+00:00", t.format(f).unwrap())
}

fn short(ms: i64) -> String {
    detailed(ms)[..19].to_string()
}

#[tokio::test]
async fn logs_tail_interleaves_streams_in_time_order_in_each_format() {
    let b = berth().await;
    let c = logs(&b).await;
    group(&c, "/ecs/web", &["web/1", "web/2"]).await;
    // Whole seconds plus 250 ms, so the fraction shows; some seconds ago, so within 10m.
    let t = (now_ms() / 1000 - 30) * 1000 + 250;
    let json = r#"{"level":"info","path":"/","ms":[3,4]}"#;
    put(&c, "/ecs/web", "web/1", vec![event(t, "GET / 200"), event(t + 2000, "GET /b 404  ")]).await;
    put(&c, "/ecs/web", "web/2", vec![event(t + 1000, json), event(t + 3000, "POST /c 201")]).await;
    put(&c, "/ecs/web", "web/2", vec![event(t - 20 * 60_000, "too old for the default")]).await;

    let want = [
        format!("{} web/1 GET / 200", detailed(t)),
        format!("{} web/2 {json}", detailed(t + 1000)),
        format!("{} web/1 GET /b 404", detailed(t + 2000)),
        format!("{} web/2 POST /c 201", detailed(t + 3000)),
    ];
    assert_eq!(tail(&b, &["/ecs/web"]), want);
    assert_eq!(tail(&b, &["/ecs/web", "--format", "detailed"]), want);
    assert_eq!(
        tail(&b, &["/ecs/web", "--format", "short"]),
        [
            format!("{} GET / 200", short(t)),
            format!("{} {json}", short(t + 1000)),
            format!("{} GET /b 404", short(t + 2000)),
            format!("{} POST /c 201", short(t + 3000)),
        ]
    );
    assert_eq!(
        tail(&b, &["/ecs/web", "--format", "json"]),
        [
            format!("{} web/1 GET / 200", detailed(t)),
            format!("{} web/2 ", detailed(t + 1000)),
            "{".into(),
            "    \"level\": \"info\",".into(),
            "    \"path\": \"/\",".into(),
            "    \"ms\": [".into(),
            "        3,".into(),
            "        4".into(),
            "    ]".into(),
            "}".into(),
            format!("{} web/1 GET /b 404", detailed(t + 2000)),
            format!("{} web/2 POST /c 201", detailed(t + 3000)),
        ]
    );

    // --since: a time ago, or a point in time.
    let old = format!("{} web/2 too old for the default", detailed(t - 20 * 60_000));
    assert_eq!(tail(&b, &["/ecs/web", "--since", "1h"]).first(), Some(&old));
    assert_eq!(tail(&b, &["/ecs/web", "--since", "1h"]).len(), 5);
    let iso = format!("{}Z", &detailed(t + 1500)[..23]);
    assert_eq!(tail(&b, &["/ecs/web", "--since", &iso]), want[2..]);
    let secs = ((t + 2500) / 1000 + 1).to_string();
    assert_eq!(tail(&b, &["/ecs/web", "--since", &secs]), want[3..]);

    // The filters.
    assert_eq!(tail(&b, &["/ecs/web", "--filter-pattern", "GET"]), [want[0].clone(), want[2].clone()]);
    assert_eq!(tail(&b, &["/ecs/web", "--filter-pattern", "\"GET /b\""]), want[2..3]);
    assert_eq!(tail(&b, &["/ecs/web", "--log-stream-name-prefix", "web/2"]), [want[1].clone(), want[3].clone()]);
    assert_eq!(tail(&b, &["/ecs/web", "--log-stream-names", "web/1"]), [want[0].clone(), want[2].clone()]);

    // Errors say what to do.
    let e = b.try_command(&["logs", "tail", "/ecs/nope"]).unwrap_err();
    assert!(e.contains("ResourceNotFoundException: "), "{e}");
    assert!(e.contains("aws logs describe-log-groups"), "{e}");
    let e = b.try_command(&["logs", "tail", "/ecs/web", "--filter-pattern", "\"unclosed"]).unwrap_err();
    assert!(e.contains("InvalidParameterException: ") && e.contains("--filter-pattern"), "{e}");
    let e = b.try_command(&["logs", "tail", "/ecs/web", "--since", "5h30m"]).unwrap_err();
    assert!(e.contains("10m"), "{e}");
}

#[tokio::test]
async fn logs_tail_prints_every_page_and_ends_quietly_when_its_reader_goes() {
    let b = berth().await;
    let c = logs(&b).await;
    group(&c, "big", &["s"]).await;
    // More than one FilterLogEvents page (10,000 events) and far more than a pipe holds.
    let t = now_ms() - 60_000;
    const N: i64 = 10_500;
    for chunk in (0..N).collect::<Vec<_>>().chunks(5000) {
        put(&c, "big", "s", chunk.iter().map(|i| event(t + i, &format!("m{i}"))).collect()).await;
    }
    let lines = tail(&b, &["big", "--format", "short"]);
    assert_eq!(lines.len(), N as usize);
    assert!(lines.iter().enumerate().all(|(i, l)| l.ends_with(&format!(" m{i}"))), "in time order, each once");

    // `| head -n 1`: the command finds its output closed and ends with success, silently.
    let script = format!(
        "set -o pipefail; '{}' logs tail big --data-dir '{}' 2>err | head -n 1",
        env!("CARGO_BIN_EXE_berth"),
        b.data_dir().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(dir.path()).output().unwrap();
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert_eq!(err, "");
}

/// A running `berth logs tail --follow` whose lines arrive on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(b: &Berth, args: &[&str]) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["logs", "tail", "--follow"])
            .args(args)
            .arg("--data-dir")
            .arg(b.data_dir())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The lines up to and including the first that ends with `last`.
    fn until(&self, last: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.ends_with(last);
                    got.push(line);
                    if done {
                        return got;
                    }
                }
                Err(e) => panic!("no line ending with {last:?} ({e}); got {got:?}"),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn logs_tail_follow_prints_new_events_once_each_until_ctrl_c() {
    let b = berth().await;
    let c = logs(&b).await;
    group(&c, "app", &["a", "b"]).await;
    let t = now_ms() - 5000;
    put(&c, "app", "a", vec![event(t, "before")]).await;
    let mut f = Follower::start(&b, &["app", "--format", "short"]);
    assert_eq!(f.until(" before"), [format!("{} before", short(t))]);

    // Each step waits for its own event, so every poll that could repeat an earlier one
    // has answered before it: a repeat would show among the lines.
    let u = now_ms();
    put(&c, "app", "a", vec![event(u, "first")]).await;
    assert_eq!(f.until(" first"), [format!("{} first", short(u))]);
    // Same timestamp as the newest already printed, in another stream: still new.
    put(&c, "app", "b", vec![event(u, "same time")]).await;
    assert_eq!(f.until(" same time"), [format!("{} same time", short(u))]);
    put(&c, "app", "a", vec![event(u, "same time again")]).await;
    assert_eq!(f.until(" same time again"), [format!("{} same time again", short(u))]);
    put(&c, "app", "b", vec![event(u + 1, "later")]).await;
    assert_eq!(f.until(" later"), [format!("{} later", short(u + 1))]);
    put(&c, "app", "a", vec![event(u + 2, "end")]).await;
    assert_eq!(f.until(" end"), [format!("{} end", short(u + 2))]);

    // Ctrl-C ends it quietly, with success.
    let pid = f.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = f.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tail --follow did not stop on SIGINT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
