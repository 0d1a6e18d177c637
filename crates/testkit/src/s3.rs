//! Throwaway S3-compatible servers for tests: `s3s-fs` (from crates.io, installed by
//! `scripts/install-test-deps.sh`) serving a temporary directory on a free loopback port,
//! with one bucket, stopped and removed on drop.
//!
//! A real S3 implementation rather than a fake: requests are SigV4-checked with the
//! server's one access key, and objects are files under `<dir>/<bucket>/<key>`, which lets
//! a test see what landed where. The bucket is made as s3s-fs keeps buckets, a directory.
//!
//! No orphan servers: the server is an [`OwnedChild`] that lives as long as the
//! [`TestS3`], so it dies with the test process however that ends.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::owned::OwnedChild;

/// How long the server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// The bucket every server gets.
pub const BUCKET: &str = "berth-blobs";
/// The server's one key.
pub const ACCESS_KEY: &str = "berth-test-access";
pub const SECRET_KEY: &str = "berth-test-secret-key-0123456789";

/// An S3-compatible server of a test.
#[derive(Debug)]
pub struct TestS3 {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<OwnedChild>,
}

impl TestS3 {
    /// Starts a server with the bucket [`BUCKET`].
    pub fn start() -> TestS3 {
        let s3 = TestS3::start_without_bucket();
        std::fs::create_dir(s3.dir.path().join("data").join(BUCKET)).expect("create the bucket");
        s3
    }

    /// Starts a server that has no bucket yet.
    pub fn start_without_bucket() -> TestS3 {
        let dir = tempfile::Builder::new().prefix("berth-s3").tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("data")).expect("create the data dir");
        let mut s3 = TestS3 { dir, port: crate::free_port(), server: None };
        s3.start_server();
        s3
    }

    /// The server's URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `--blobs` URL of the bucket.
    pub fn blobs_url(&self) -> String {
        format!("s3://{BUCKET}?endpoint={}", self.endpoint())
    }

    /// The environment that gives the AWS SDK the server's key.
    pub fn credentials_env(&self) -> [(&'static str, &'static str); 2] {
        [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)]
    }

    /// Where the object `key` of the bucket is on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.bucket_dir().join(key)
    }

    /// The bucket's directory.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join("data").join(BUCKET)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the test S3 server is already running");
        let bin = std::env::var_os("BERTH_TEST_S3S_FS").map_or_else(|| PathBuf::from("s3s-fs"), PathBuf::from);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("s3s-fs.log"))
            .expect("s3s-fs log");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        let server = OwnedChild::spawn(cmd, |child| {
            let _ = child.kill();
            let _ = child.wait();
        })
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/install-test-deps.sh", bin.display()));
        self.server = Some(server);
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline || !self.server.as_ref().is_some_and(OwnedChild::alive) {
                panic!(
                    "s3s-fs did not start (is it installed? scripts/install-test-deps.sh); its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGKILL: an object store that goes away).
    pub fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop_server();
    }
}
