//! `simplehttp`: the one program inside the agent tests' Docker image (`FROM scratch`).
//!
//! Every behaviour a test needs from a container is a mode chosen by arguments, so one
//! small static binary stands in for web servers, batch jobs, misbehaving processes and
//! health checks:
//!
//! ```text
//! simplehttp serve [--port 8080]            HTTP: / names host and $GREETING; /health; /env/NAME; /file/PATH;
//!                                           /slow/MS answers as / after MS milliseconds
//! simplehttp exit <code> [--after-ms N]     exit with <code>, optionally after N ms
//! simplehttp sleep [--ignore-sigterm]       print "sleeping" (signal handling is set up), run until stopped
//! simplehttp oom                            allocate and touch memory until the kernel kills it
//! simplehttp check [--port 8080]            exit 0 if GET http://127.0.0.1:port/health answers 200, else 1
//! simplehttp touch <path>                   create a file (and its parent directories), exit 0
//! simplehttp wait-file <path>               exit 0 once <path> exists
//! simplehttp print <count> [--every-ms N] [--stderr] [--trace] [--then-sleep]
//!                                           print "line 1" .. "line <count>" (0: without end), each
//!                                           followed by two "  at frame" lines with --trace
//! simplehttp flood <bytes>                  print <bytes> of 'x' without a newline, exit 0
//! simplehttp fetch <url | VAR[/path]> [--out path]
//!                                           GET the URL, or the task endpoint URI in $VAR (a
//!                                           relative one on http://169.254.170.2) with /path
//!                                           appended; print the body (or write it to path);
//!                                           exit 0 on 200, 1 otherwise
//! ```
//!
//! On SIGTERM it exits with code 0 (a graceful shutdown), unless `--ignore-sigterm` is given;
//! a process killed by Docker's SIGKILL therefore shows 137 and a stopped one 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: simplehttp serve [--port N] | exit <code> [--after-ms N] | sleep [--ignore-sigterm] | oom \
                     | check [--port N] | touch <path> | wait-file <path> \
                     | print <count> [--every-ms N] [--stderr] [--trace] [--then-sleep] | flood <bytes> \
                     | fetch <url | VAR[/path]> [--out path] | env <VAR>...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ignore_sigterm = args.iter().any(|a| a == "--ignore-sigterm");
    signals::on_sigterm(if ignore_sigterm { signals::Action::Ignore } else { signals::Action::Exit0 });
    let mode = args.first().map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(1)..];
    match mode {
        "serve" => serve(port(rest)),
        "exit" => {
            let Some(code) = rest.first().and_then(|c| c.parse::<u8>().ok()) else {
                return usage();
            };
            if let Some(ms) = flag(rest, "--after-ms").and_then(|v| v.parse().ok()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
            ExitCode::from(code)
        }
        "sleep" => {
            // Tests wait for this line before they stop the container: a SIGTERM that
            // arrives before the handler exists is ignored, as PID 1 ignores every signal
            // it has no handler for.
            println!("sleeping");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "oom" => oom(),
        "print" => match rest.first().and_then(|c| c.parse::<u64>().ok()) {
            Some(count) => print(count, rest),
            None => usage(),
        },
        "flood" => match rest.first().and_then(|c| c.parse::<usize>().ok()) {
            Some(bytes) => flood(bytes),
            None => usage(),
        },
        "check" => check(port(rest)),
        "fetch" => match rest.first() {
            Some(target) => fetch(target, flag(rest, "--out")),
            None => usage(),
        },
        // `env A B`: prints `A=<value>` for each variable it has, for tests of what a
        // container's environment holds.
        "env" => {
            for name in rest {
                if let Ok(value) = std::env::var(name) {
                    println!("{name}={value}");
                }
            }
            ExitCode::SUCCESS
        }
        "touch" => match rest.first() {
            Some(path) => touch(path),
            None => usage(),
        },
        "wait-file" => match rest.first() {
            Some(path) => {
                // Polling is fine here: this is the test program, not the agent.
                while !std::path::Path::new(path).exists() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                ExitCode::SUCCESS
            }
            None => usage(),
        },
        _ => usage(),
    }
}

/// Numbered lines, as fast as the pipe takes them or paced; the numbers let a test see
/// every line arrive exactly once.
fn print(count: u64, args: &[String]) -> ExitCode {
    let every = flag(args, "--every-ms").and_then(|v| v.parse().ok()).map(Duration::from_millis);
    let trace = args.iter().any(|a| a == "--trace");
    let mut out: Box<dyn Write> = if args.iter().any(|a| a == "--stderr") {
        Box::new(std::io::BufWriter::new(std::io::stderr()))
    } else {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    };
    let mut i = 0u64;
    while count == 0 || i < count {
        i += 1;
        let written =
            if trace { writeln!(out, "line {i}\n  at frame one\n  at frame two") } else { writeln!(out, "line {i}") };
        if written.is_err() {
            return ExitCode::from(1);
        }
        if let Some(pause) = every {
            let _ = out.flush();
            std::thread::sleep(pause);
        }
    }
    let _ = out.flush();
    if args.iter().any(|a| a == "--then-sleep") {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    ExitCode::SUCCESS
}

/// One line that never ends: `bytes` of 'x'.
fn flood(bytes: usize) -> ExitCode {
    let chunk = vec![b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if out.write_all(&chunk[..n]).is_err() {
            return ExitCode::from(1);
        }
        left -= n;
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn port(args: &[String]) -> u16 {
    flag(args, "--port").and_then(|p| p.parse().ok()).unwrap_or(8080)
}

fn serve(port: u16) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("simplehttp: cannot listen on port {port}: {e}");
            return ExitCode::from(3);
        }
    };
    println!("simplehttp: serving on port {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = answer(stream);
        });
    }
    ExitCode::SUCCESS
}

/// Answers one HTTP/1.x request and closes the connection.
fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers so the client sees a clean close.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = route(path);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn route(path: &str) -> (&'static str, String) {
    const OK: &str = "200 OK";
    const NOT_FOUND: &str = "404 Not Found";
    if path == "/" {
        let greeting = std::env::var("GREETING").unwrap_or_default();
        return (OK, format!("hello from {} greeting={greeting}\n", hostname()));
    }
    if path == "/health" {
        return (OK, "ok\n".into());
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
        // A request that takes a while: in flight when a load balancer drains the task.
        std::thread::sleep(Duration::from_millis(ms));
        return route("/");
    }
    if let Some(name) = path.strip_prefix("/env/") {
        return match std::env::var(name) {
            Ok(v) => (OK, v),
            Err(_) => (NOT_FOUND, format!("no variable {name}\n")),
        };
    }
    if let Some(file) = path.strip_prefix("/file/") {
        return match std::fs::read_to_string(format!("/{file}")) {
            Ok(v) => (OK, v),
            Err(e) => (NOT_FOUND, format!("{e}\n")),
        };
    }
    (NOT_FOUND, "not found\n".into())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn check(port: u16) -> ExitCode {
    let healthy = || -> std::io::Result<bool> {
        let addr = ([127, 0, 0, 1], port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    match healthy() {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The task endpoint's address, where relative URIs (the credentials one) point.
const ENDPOINT: &str = "http://169.254.170.2";

/// GETs `target` (see the usage) with HTTP/1.0 and prints the body. Connections are
/// retried for a while: the endpoint's shared port may be changing hands between agents.
fn fetch(target: &str, out: Option<&str>) -> ExitCode {
    let url = if target.starts_with("http://") {
        target.to_string()
    } else {
        let (var, path) = target.split_once('/').map_or((target, String::new()), |(v, p)| (v, format!("/{p}")));
        match std::env::var(var) {
            Ok(v) if v.starts_with('/') => format!("{ENDPOINT}{v}{path}"),
            Ok(v) => format!("{v}{path}"),
            Err(_) => {
                eprintln!("simplehttp: ${var} is not set");
                return ExitCode::from(2);
            }
        }
    };
    let Some((host, path)) = url
        .strip_prefix("http://")
        .map(|r| r.split_once('/').map_or((r, "/".to_string()), |(h, p)| (h, format!("/{p}"))))
    else {
        eprintln!("simplehttp: only http:// URLs: {url}");
        return ExitCode::from(2);
    };
    let addr = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let response = loop {
        match get(&addr, host, &path) {
            Ok(r) => break r,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("simplehttp: GET {url}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                eprintln!("simplehttp: GET {url}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default();
    eprintln!("simplehttp: GET {url}: {status}");
    let written = match out {
        Some(path) => std::fs::write(path, body),
        None => std::io::stdout().write_all(body.as_bytes()).and_then(|()| std::io::stdout().flush()),
    };
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    if status.split_whitespace().nth(1) == Some("200") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One HTTP/1.0 GET: the whole response, which ends when the server closes.
fn get(addr: &str, host: &str, path: &str) -> std::io::Result<String> {
    use std::net::ToSocketAddrs;
    let target = addr.to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    if response.is_empty() {
        return Err(std::io::Error::other("empty response"));
    }
    Ok(response)
}

fn touch(path: &str) -> ExitCode {
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(path, b"touched\n") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simplehttp: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Grows by touched megabytes until the memory cgroup's OOM killer ends the process.
fn oom() -> ExitCode {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Writing every byte makes the pages resident, so they count against the limit.
        hoard.push(vec![1u8; 1 << 20]);
        if hoard.len().is_multiple_of(64) {
            println!("simplehttp: holding {} MiB", hoard.len());
        }
    }
}

/// The two libc calls std lacks; see the note in Cargo.toml for why this crate allows them.
#[allow(unsafe_code)]
mod signals {
    const SIGTERM: i32 = 15;
    const SIG_IGN: usize = 1;

    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
        fn _exit(code: i32) -> !;
    }

    pub enum Action {
        Ignore,
        Exit0,
    }

    extern "C" fn exit0(_: i32) {
        // SAFETY: _exit is async-signal-safe; nothing else runs in the handler.
        unsafe { _exit(0) }
    }

    pub fn on_sigterm(action: Action) {
        let handler = match action {
            Action::Ignore => SIG_IGN,
            Action::Exit0 => exit0 as extern "C" fn(i32) as usize,
        };
        // SAFETY: installs a handler that only calls an async-signal-safe function.
        unsafe {
            signal(SIGTERM, handler);
        }
    }
}
