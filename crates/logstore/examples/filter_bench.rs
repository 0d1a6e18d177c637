//! The filtered-read benchmark of the log store: fills a store with access-log lines
//! (0.1% of them holding a rare term), then times finding that term over the whole time
//! range and over a 10% window, the way `FilterLogEvents` did before `LogStore::scan`
//! (decode every event of the window, then match) and with `LogStore::scan`.
//!
//! ```text
//! cargo run --release -p logstore --example filter_bench -- DIR [EVENTS] [STREAMS] [BATCH]
//! ```
//!
//! DIR is filled once (a `filled` marker records the figures it was filled with) and
//! reused by later runs. Defaults: 10,000,000 events, 10 streams, 7,000-event batches
//! (the most `PutLogEvents` takes of ~120-byte messages within its 1 MB). The page cache
//! is warm (the fill just wrote the files or a previous run read them): the figures are
//! CPU, not disk. Prints wall time, this process's CPU time (user + system, from
//! `/proc/self/stat`) and the bytes it read (`rchar` of `/proc/self/io`) for each case.
#![allow(clippy::print_stdout)] // Printing its figures is what a benchmark is for.

use std::path::Path;
use std::time::Instant;

use logstore::{Bound, Event, LogStore, Query, Scan, StreamId};

const TERM: &str = "upstream_reset";
const T0: i64 = 1_780_000_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: filter_bench DIR [EVENTS] [STREAMS] [BATCH]");
        std::process::exit(2);
    };
    let arg = |i: usize, d: u64| args.get(i).map_or(d, |a| a.parse().expect("a number"));
    let (events, streams, batch) = (arg(2, 10_000_000), arg(3, 10), arg(4, 7_000));
    let dir = Path::new(dir);
    fill(dir, events, streams, batch);
    let store = LogStore::open(dir).expect("open the store");
    let ids: Vec<StreamId> = (0..streams).map(|s| StreamId(s as u128 + 1)).collect();
    // Opening reads every stream's indexes; not part of a query.
    for id in &ids {
        store.stats(*id).expect("stats");
    }
    let last = T0 + events as i64;
    let window = (T0 + events as i64 * 45 / 100, T0 + events as i64 * 55 / 100);
    println!("{events} events in {streams} streams, term {TERM:?} in 0.1% of them");
    for (name, range) in [("whole range", (T0, last)), ("10% window", window)] {
        for run in 0..2 {
            let label = format!("{name}, decode then match (before)");
            let n = measure(&label, run, range, || {
                let mut n = 0;
                for id in &ids {
                    let q = Query { start: Some(range.0), end: Some(range.1), bound: Bound::Head, limit: usize::MAX };
                    n += store.read(*id, &q).expect("read").iter().filter(|(_, e)| e.message.contains(TERM)).count();
                }
                n
            });
            let label = format!("{name}, LogStore::scan (after)");
            let m = measure(&label, run, range, || {
                let mut n = 0;
                for id in &ids {
                    let scan = Scan {
                        start: Some(range.0),
                        end: Some(range.1),
                        after: None,
                        limit: usize::MAX,
                        required: &[TERM],
                    };
                    n += store.scan(*id, &scan, &mut |m| m.contains(TERM)).expect("scan").0.len();
                }
                n
            });
            assert_eq!(n, m, "both ways find the same events");
        }
    }
    // One page, as FilterLogEvents asks for it: the first 10,000 matches of each stream.
    let page = measure("whole range, first page (10,000 per stream)", 0, (T0, last), || {
        let mut n = 0;
        for id in &ids {
            let scan = Scan { start: None, end: None, after: None, limit: 10_001, required: &[TERM] };
            n += store.scan(*id, &scan, &mut |m| m.contains(TERM)).expect("scan").0.len();
        }
        n
    });
    println!("first page: {page} events");
}

/// Runs `f`, prints its figures; answers what it found.
fn measure(label: &str, run: usize, range: (i64, i64), f: impl FnOnce() -> usize) -> usize {
    let (cpu0, read0) = (cpu_seconds(), bytes_read());
    let t = Instant::now();
    let found = f();
    let wall = t.elapsed().as_secs_f64();
    let (cpu, read) = (cpu_seconds() - cpu0, bytes_read() - read0);
    let in_range = (range.1 - range.0) as f64;
    println!(
        "{label:<48} run {run}: {found:>6} found, wall {wall:6.3} s, cpu {cpu:6.2} s, read {:7.1} MB, {:6.1} M events/s",
        read as f64 / 1e6,
        in_range / wall / 1e6
    );
    found
}

/// The stored events: event g (0..events) is stream g % streams's, at T0 + g ms, so every
/// stream's events span the whole time range; each stream takes them in batches.
fn fill(dir: &Path, events: u64, streams: u64, batch: u64) {
    let marker = dir.join("filled");
    let want = format!("{events} {streams} {batch}\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == want) {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let store = LogStore::open(dir).expect("open the store");
    let t = Instant::now();
    let mut bytes = 0;
    let per_stream = events / streams;
    let mut pending: Vec<Vec<Event>> = vec![Vec::new(); streams as usize];
    for g in 0..per_stream * streams {
        let s = (g % streams) as usize;
        let message = access_line(g);
        bytes += message.len();
        pending[s].push(Event { timestamp: T0 + g as i64, ingestion_time: T0 + g as i64, message });
        if pending[s].len() as u64 == batch {
            store.append(StreamId(s as u128 + 1), &pending[s]).expect("append");
            pending[s].clear();
        }
    }
    for (s, rest) in pending.iter().enumerate() {
        store.append(StreamId(s as u128 + 1), rest).expect("append");
    }
    std::fs::write(&marker, want).expect("write the marker");
    println!(
        "filled {events} events ({:.0} MB of messages, {:.0} bytes each) in {:.1} s",
        bytes as f64 / 1e6,
        bytes as f64 / events as f64,
        t.elapsed().as_secs_f64()
    );
}

/// A combined-log-format line, varied by a hash of `g`; every 1000th holds [`TERM`].
fn access_line(g: u64) -> String {
    let r = g.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (g >> 7);
    let r = r ^ (r >> 29);
    let paths = ["/api/v1/orders", "/api/v1/items", "/static/app.js", "/api/v1/users", "/healthz"];
    let agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "okhttp/4.12.0", "Go-http-client/1.1"];
    let (status, note) =
        if g % 1000 == 500 { (502, " upstream_reset") } else { ([200, 200, 304, 404][(r % 4) as usize], "") };
    format!(
        "10.{}.{}.{} - - [06/Dec/2026:17:{:02}:{:02} +0000] \"GET {}/{} HTTP/1.1\" {status} {} \"{}\" rt={}.{:03}{note}",
        r % 256,
        (r >> 8) % 256,
        (r >> 16) % 256,
        (g / 60_000) % 60,
        (g / 1000) % 60,
        paths[((r >> 24) % 5) as usize],
        (r >> 32) % 100_000,
        (r >> 40) % 50_000,
        agents[((r >> 48) % 4) as usize],
        (r >> 52) % 3,
        (r >> 20) % 1000,
    )
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces): utime and stime are the 12th and
    // 13th of them, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}
