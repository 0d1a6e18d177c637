//! Throwaway PostgreSQL servers for tests: `initdb` in a temporary directory, `postgres`
//! on a free loopback port, stopped and removed on drop.
//!
//! Decision: each test gets its own cluster (about 1.5 s to create and start). Nextest
//! runs every test in a process of its own, so a cluster shared through a static would be
//! started per test anyway, and would never be stopped (statics are not dropped).
//!
//! No orphan servers: `postgres` is an [`OwnedChild`], which lives exactly as long as the
//! [`TestPostgres`]; if the test process dies however it dies, the kernel kills the
//! postmaster, and its backends exit when they see it gone. `initdb` and `postgres` refuse to run as root, so as root they
//! run as the `postgres` user that Debian's package creates.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::owned::OwnedChild;

/// How long a server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a fast shutdown may take before the server is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// The database every cluster gets, and its superuser.
pub const DATABASE: &str = "berth";
pub const USER: &str = "postgres";

/// A PostgreSQL cluster of a test.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The running postmaster.
    server: Option<OwnedChild>,
    /// Addresses listened on besides loopback's (see [`TestPostgres::listen_also`]).
    also: Vec<String>,
}

impl TestPostgres {
    /// Creates a cluster with the database [`DATABASE`] and starts it.
    pub fn start() -> TestPostgres {
        let mut pg = TestPostgres::create();
        pg.start_server();
        pg.psql("postgres", &format!("CREATE DATABASE {DATABASE}"));
        pg
    }

    /// Creates a cluster without starting it (for tests of a server that is down): its URL
    /// is known, nothing listens there yet. [`TestPostgres::start_server`] starts it and
    /// [`TestPostgres::create_database`] then makes the database.
    pub fn create() -> TestPostgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("berth-pg").tempdir().expect("temp dir");
        if as_root() {
            let pg = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(pg.0), Some(pg.1)).expect("chown the cluster's dir to postgres");
        }
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", USER, "--auth=trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        // Clients may come from any loopback address (a test cuts one of them off).
        let hba = dir.path().join("data").join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        rules.push_str("\nhost all all 127.0.0.0/8 trust\n");
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        let port = crate::free_port();
        TestPostgres { dir, bin, port, server: None, also: Vec::new() }
    }

    /// Listens at `address` too from the next start on, for clients of `clients` (a
    /// CIDR block), e.g. hosts of a `testkit::netns::Net` at its gateway.
    pub fn listen_also(&mut self, address: &str, clients: &str) {
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        rules.push_str(&format!("host all all {clients} trust\n"));
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        self.also.push(address.to_string());
    }

    /// The URL of the test database.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// The URL of the test database at `host`, one of the addresses the server listens on
    /// (127.0.0.1, and 127.0.0.2 for clients a test cuts off).
    pub fn url_at(&self, host: &str) -> String {
        format!("postgres://{USER}@{host}:{}/{DATABASE}", self.port)
    }

    /// The URL of database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_of(name)
    }

    /// Runs `sql` in database `db` with psql and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts the server (again) on the cluster's port with `fsync=on`, and waits until it
    /// accepts connections.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the test server is already running");
        let mut cmd = as_postgres(&self.bin.join("postgres"));
        cmd.arg("-D").arg(self.dir.path().join("data")).args(["-p", &self.port.to_string()]);
        // The second address is one a test can cut off alone (`Partition`).
        let listen = ["127.0.0.1", "127.0.0.2"].into_iter().chain(self.also.iter().map(String::as_str));
        let listen = format!("listen_addresses={}", listen.collect::<Vec<_>>().join(","));
        for setting in
            [listen.as_str(), "unix_socket_directories=", "fsync=on", "synchronous_commit=on", "max_connections=200"]
        {
            cmd.args(["-c", setting]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("postgres log");
        cmd.stdout(Stdio::null()).stderr(log);
        let server = OwnedChild::spawn(cmd, stop_child).expect("spawn postgres");
        let alive = |s: &Option<OwnedChild>| s.as_ref().is_some_and(OwnedChild::alive);
        self.server = Some(server);
        let deadline = Instant::now() + START_DEADLINE;
        while !self.ready() {
            if Instant::now() > deadline || !alive(&self.server) {
                panic!("postgres did not start; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the server (a fast shutdown: sessions are ended, nothing committed is lost).
    pub fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Asks the postmaster for a fast shutdown and waits for it, killing it past the deadline.
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let deadline = Instant::now() + STOP_DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A command that runs `program` as the `postgres` user when this is root, and dies with
/// the thread that spawns it.
fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    if as_root() {
        cmd.args(["--reuid", USER, "--regid", USER, "--init-groups"]);
    }
    cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
    cmd
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let id = |flag| {
        let out = Command::new("id").args([flag, USER]).output().expect("run id");
        assert!(out.status.success(), "there is no postgres user; run scripts/install-test-deps.sh");
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// PostgreSQL's server binaries: `BERTH_TEST_PG_BIN`, or the newest version under
/// /usr/lib/postgresql (Debian's layout).
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed; run scripts/install-test-deps.sh")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server under /usr/lib/postgresql; run scripts/install-test-deps.sh").1
}

/// A network partition between the clients of one address of the server (see
/// [`TestPostgres::url_at`]) and the server, made with iptables: every packet to or from
/// that address and port is dropped, both ways, as a cut cable drops them; neither end is
/// told, and each finds out by its own timeouts and keepalives. Healed when dropped.
#[derive(Debug)]
pub struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    /// Cuts `host:port` off (root and iptables needed).
    pub fn cut(host: &str, port: u16) -> Partition {
        let port = port.to_string();
        let rules = vec![
            vec!["OUTPUT", "-p", "tcp", "-d", host, "--dport", &port, "-j", "DROP"],
            vec!["OUTPUT", "-p", "tcp", "-s", host, "--sport", &port, "-j", "DROP"],
        ];
        let rules: Vec<Vec<String>> = rules.into_iter().map(|r| r.into_iter().map(String::from).collect()).collect();
        for rule in &rules {
            let status = std::process::Command::new("iptables").arg("-I").args(rule).status().expect("run iptables");
            assert!(status.success(), "iptables -I {rule:?} failed (the partition tests need root and iptables)");
        }
        Partition { rules }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = std::process::Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}
