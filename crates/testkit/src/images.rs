//! Docker images that tests build for themselves, since nothing can be pulled from the
//! internet here: `berth-test/simplehttp:latest` holds the static `simplehttp` binary of
//! the `testimage` crate in a `FROM scratch` image; `berth-test/sdk-probe:latest` holds
//! testkit's `sdk-probe` (a program built on the official AWS SDK) with the shared
//! libraries it links, as a root filesystem given to `docker import`.
//!
//! Many test processes (nextest runs one per test) ask for the image at once, so the build
//! runs under a file lock, and is skipped while the image's `berth.source-hash` label
//! matches a hash of the crate's sources.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// The tag of the test image.
pub const SIMPLEHTTP_IMAGE: &str = "berth-test/simplehttp:latest";
const HASH_LABEL: &str = "berth.source-hash";
const TARGET: &str = "x86_64-unknown-linux-gnu";
const DOCKERFILE: &str = "FROM scratch\nCOPY simplehttp /simplehttp\nENTRYPOINT [\"/simplehttp\"]\n";

/// Makes sure `berth-test/simplehttp:latest` exists and is built from the current sources,
/// and returns its name. Panics (failing the test) when it cannot be built.
pub fn simplehttp_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if let Err(e) = ensure_simplehttp() {
            panic!("cannot build the test image {SIMPLEHTTP_IMAGE}: {e:#}");
        }
    });
    SIMPLEHTTP_IMAGE
}

/// The tag of the image of `sdk-probe` (see `src/bin/sdk-probe.rs`).
pub const SDK_PROBE_IMAGE: &str = "berth-test/sdk-probe:latest";

/// Makes sure `berth-test/sdk-probe:latest` holds the current `sdk-probe` binary and
/// returns its name. Panics (failing the test) when it cannot be built.
pub fn sdk_probe_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if let Err(e) = ensure_sdk_probe() {
            panic!("cannot build the test image {SDK_PROBE_IMAGE}: {e:#}");
        }
    });
    SDK_PROBE_IMAGE
}

/// Force-removes every container carrying the label `key=value`, with its anonymous
/// volumes, and then every volume with that label. Cleanup after a test; errors are ignored
/// because a test must not fail for what it leaves behind.
pub fn remove_containers_with_label(key: &str, value: &str) {
    let filter = format!("label={key}={value}");
    // A create an agent sent just before it was killed can still complete in the engine
    // after the first listing (a container then stayed behind, Created): look again.
    for pass in 0..2 {
        if pass == 1 {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let ids = docker_lines(&["ps", "-aq", "--filter", &filter]);
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).stdout(Stdio::null()).status();
        }
    }
    let volumes = docker_lines(&["volume", "ls", "-q", "--filter", &filter]);
    if !volumes.is_empty() {
        let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).stdout(Stdio::null()).status();
    }
}

/// Removes the Docker networks Berth made for subnets (label `berth.managed`) that lie
/// inside the IPv4 block `vpc` (such as `10.123.4.0/22`) and have nothing attached.
pub fn remove_unused_subnet_networks(vpc: &str) {
    let Some(inside) = block(vpc) else { return };
    for id in docker_lines(&["network", "ls", "-q", "--filter", "label=berth.managed=true"]) {
        let format = "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{len .Containers}}";
        let info = docker_lines(&["network", "inspect", &id, "--format", format]);
        let unused = info.first().and_then(|l| l.split_once(' ')).is_some_and(|(subnet, attached)| {
            attached == "0" && block(subnet).is_some_and(|(base, prefix)| prefix >= inside.1 && inside.contains(base))
        });
        if unused {
            let _ = Command::new("docker")
                .args(["network", "rm", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An IPv4 block `a.b.c.d/n` as its base address and prefix length.
fn block(s: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
    Some((u32::from(addr), prefix))
}

trait Contains {
    fn contains(&self, addr: u32) -> bool;
}

impl Contains for (u32, u32) {
    fn contains(&self, addr: u32) -> bool {
        let mask = u32::MAX << (32 - self.1);
        addr & mask == self.0 & mask
    }
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ensure_simplehttp() -> anyhow::Result<()> {
    let root = workspace_root();
    let hash = source_hash(&root.join("crates/testimage"))?;
    if image_hash().as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let dir = root.join("target/testimage");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = File::create(dir.join("image.lock")).context("creating the lock file")?;
    lock.lock().context("locking the image build")?;
    // Another process may have built it while this one waited for the lock.
    if image_hash().as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    build_binary(&root, &dir)?;
    build_image(&dir, &hash)
}

/// A hash over the testimage crate's manifest and sources, and the Dockerfile.
fn source_hash(crate_dir: &Path) -> anyhow::Result<String> {
    let mut files = vec![crate_dir.join("Cargo.toml")];
    let mut pending = vec![crate_dir.join("src")];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    h.update(DOCKERFILE);
    for f in files {
        h.update(f.strip_prefix(crate_dir).unwrap_or(&f).to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
    }
    Ok(hex::encode(h.finalize()))
}

fn image_hash() -> Option<String> {
    label_of(SIMPLEHTTP_IMAGE)
}

fn label_of(image: &str) -> Option<String> {
    let format = format!("{{{{ index .Config.Labels \"{HASH_LABEL}\" }}}}");
    let out = Command::new("docker").args(["image", "inspect", "-f", &format, image]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds `simplehttp` as a static glibc binary, in its own target dir so that its
/// RUSTFLAGS do not invalidate the workspace's build cache.
fn build_binary(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "testimage", "--target", TARGET])
        .env("CARGO_TARGET_DIR", dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("cargo build of testimage failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn build_image(dir: &Path, hash: &str) -> anyhow::Result<()> {
    let context = dir.join("image-context");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context)?;
    std::fs::copy(dir.join(TARGET).join("release/simplehttp"), context.join("simplehttp"))
        .context("copying the simplehttp binary")?;
    std::fs::write(context.join("Dockerfile"), DOCKERFILE)?;
    let out = Command::new("docker")
        .args(["build", "-q", "--label", &format!("{HASH_LABEL}={hash}"), "-t", SIMPLEHTTP_IMAGE])
        .arg(&context)
        .output()
        .context("running docker build")?;
    if !out.status.success() {
        bail!("docker build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The `sdk-probe` binary is the one the workspace build made (a dynamic glibc binary, in
/// the target dir of the running test); it is built here only when missing, since a
/// cargo build of testkit alone selects other features than the workspace's and would
/// rebuild half of the dependencies. It is packed with the libraries `ldd` names, at
/// their own paths; the image is rebuilt when the binary's hash differs from its label.
fn ensure_sdk_probe() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the running program")?;
    let mut profile = exe.parent().context("the running program's directory")?.to_path_buf();
    if profile.ends_with("deps") {
        profile.pop();
    }
    if !profile.join("sdk-probe").exists() {
        let target = profile.parent().context("the target dir")?.to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(workspace_root()).args(["build", "-q", "-p", "testkit", "--bin", "sdk-probe"]);
        if profile.ends_with("release") {
            build.arg("--release");
        }
        let out = build.env("CARGO_TARGET_DIR", &target).output().context("running cargo")?;
        if !out.status.success() {
            bail!("cargo build of sdk-probe failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let bin = profile.join("sdk-probe");
    // The label covers how the root filesystem is made as well as the binary.
    let mut h = Sha256::new();
    h.update(b"sdk-probe rootfs 2: libraries, CA bundle");
    h.update(std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?);
    let hash = hex::encode(h.finalize());
    if label_of(SDK_PROBE_IMAGE).as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let dir = workspace_root().join("target/testimage");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = File::create(dir.join("sdk-probe.lock")).context("creating the lock file")?;
    lock.lock().context("locking the image build")?;
    if label_of(SDK_PROBE_IMAGE).as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let rootfs = tempfile::tempdir().context("a directory for the root filesystem")?;
    std::fs::copy(&bin, rootfs.path().join("sdk-probe")).context("copying sdk-probe")?;
    // Debug symbols are most of a debug binary; the image does not need them.
    let _ = Command::new("strip").arg(rootfs.path().join("sdk-probe")).status();
    for lib in shared_libraries(&bin)? {
        let to = rootfs.path().join(lib.strip_prefix("/").unwrap_or(&lib));
        std::fs::create_dir_all(to.parent().context("a library's directory")?)?;
        std::fs::copy(&lib, &to).with_context(|| format!("copying {}", lib.display()))?;
    }
    // The SDK's HTTP client loads the system's trust store when it starts, even for
    // plain-HTTP endpoints; give it this host's.
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.exists() {
        let to = rootfs.path().join("etc/ssl/certs/ca-certificates.crt");
        std::fs::create_dir_all(to.parent().context("the certificates' directory")?)?;
        std::fs::copy(bundle, &to).context("copying the CA bundle")?;
    }
    let tar = Command::new("tar")
        .args(["-C"])
        .arg(rootfs.path())
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let out = Command::new("docker")
        .args(["import", "--change", "ENTRYPOINT [\"/sdk-probe\"]", "--change"])
        .arg(format!("LABEL {HASH_LABEL}={hash}"))
        .args(["-", SDK_PROBE_IMAGE])
        .stdin(tar.stdout.context("tar's output")?)
        .output()
        .context("running docker import")?;
    if !out.status.success() {
        bail!("docker import failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The shared libraries (and the dynamic loader) `ldd` says `bin` needs.
fn shared_libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}
