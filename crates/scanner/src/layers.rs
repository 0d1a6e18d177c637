//! Flattening an image's layers into the few files a scan reads.
//!
//! Each layer is a tar stream, gzip- or zstd-compressed or plain (recognised by its first
//! bytes, not by a media type a client may have got wrong). Layers are applied in order:
//! a later layer's `.wh.<name>` removes `<name>` (and everything under it) from the layers
//! below, and `.wh..wh..opq` empties its directory of what the layers below put there, as
//! the OCI image spec says. Only wanted files are kept, so a layer is streamed and never
//! held in memory.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

/// The largest single file kept; package databases of large images are a few MiB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Symbolic links followed when resolving a kept path.
const MAX_LINK_HOPS: usize = 8;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Why a layer could not be read; the scan of its image fails.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer {layer} is not a readable tar stream: {source}")]
    Corrupt { layer: usize, source: io::Error },
    #[error("layer {layer} holds {path}, which is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { layer: usize, path: String },
}

/// What a kept path is in the flattened filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Symlink(String),
}

/// The wanted files of an image after all its layers, keyed by path relative to the root
/// (`etc/os-release`).
#[derive(Debug, Default, Clone)]
pub struct Filesystem {
    nodes: BTreeMap<String, Node>,
    layers: usize,
}

impl Filesystem {
    /// Applies layers, lowest first. `wanted` says which paths to keep.
    pub fn flatten<R: Read>(
        layers: impl IntoIterator<Item = R>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Filesystem, LayerError> {
        let mut fs = Filesystem::default();
        for layer in layers {
            fs.apply(layer, &wanted)?;
        }
        Ok(fs)
    }

    /// Applies one more layer on top.
    pub fn apply<R: Read>(&mut self, layer: R, wanted: impl Fn(&str) -> bool) -> Result<(), LayerError> {
        let index = self.layers;
        self.layers += 1;
        let corrupt = |source| LayerError::Corrupt { layer: index, source };
        let changes = read_layer(layer, &wanted).map_err(|e| match e {
            ReadError::Io(e) => corrupt(e),
            ReadError::TooLarge(path) => LayerError::TooLarge { layer: index, path },
        })?;
        // Whiteouts hide what the layers below have; what this layer adds stays, wherever
        // its entries came in the tar stream.
        for dir in &changes.opaque {
            self.remove_under(dir);
        }
        for path in &changes.whiteouts {
            self.nodes.remove(path);
            self.remove_under(path);
        }
        for path in &changes.replaced {
            self.nodes.remove(path);
        }
        for (path, node) in changes.added {
            self.nodes.insert(path, node);
        }
        Ok(())
    }

    fn remove_under(&mut self, dir: &str) {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// The content of a regular file, following symbolic links between kept paths.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        let mut path = normalize(path)?;
        for _ in 0..=MAX_LINK_HOPS {
            match self.nodes.get(&path)? {
                Node::File(bytes) => return Some(bytes),
                Node::Symlink(target) => path = resolve_link(&path, target)?,
            }
        }
        None
    }

    /// The regular files (links followed) directly inside `dir`, by name.
    pub fn files_in(&self, dir: &str) -> Vec<(String, &[u8])> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .filter_map(|(k, _)| Some((k[prefix.len()..].to_owned(), self.read(k)?)))
            .collect()
    }

    /// Every kept path, for tests and diagnostics.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }
}

/// What one layer does to the layers below it.
#[derive(Default)]
struct Changes {
    whiteouts: Vec<String>,
    opaque: Vec<String>,
    /// Wanted paths this layer puts something unwanted at (a directory, a device): what was
    /// there below is gone.
    replaced: Vec<String>,
    added: BTreeMap<String, Node>,
}

enum ReadError {
    Io(io::Error),
    TooLarge(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn read_layer<R: Read>(layer: R, wanted: &impl Fn(&str) -> bool) -> Result<Changes, ReadError> {
    let mut input = BufReader::with_capacity(64 << 10, layer);
    let magic = input.fill_buf()?.to_vec();
    let stream: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(input)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        Box::new(decoder)
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(stream);
    let mut changes = Changes::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let Some(path) = normalize(&raw) else { continue };
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_owned(), n),
            None => (String::new(), path.as_str()),
        };
        if name == OPAQUE_WHITEOUT {
            changes.opaque.push(dir);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let hidden = if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
            changes.whiteouts.push(hidden);
            continue;
        }
        if !wanted(&path) {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_file() {
            if entry.size() > MAX_FILE_BYTES {
                return Err(ReadError::TooLarge(path));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            changes.added.insert(path, Node::File(bytes));
        } else if kind.is_symlink() {
            match entry.link_name()? {
                Some(target) => {
                    changes.added.insert(path, Node::Symlink(target.to_string_lossy().into_owned()));
                }
                None => changes.replaced.push(path),
            }
        } else if kind.is_hard_link() {
            // A hard link names another path of the same archive; keep a copy if that one
            // was kept (it comes earlier in the stream). A link to an unkept file cannot be
            // followed, so the path counts as absent.
            let target = entry.link_name()?.and_then(|t| normalize(&t.to_string_lossy()));
            match target.and_then(|t| changes.added.get(&t).cloned()) {
                Some(node) => {
                    changes.added.insert(path, node);
                }
                None => changes.replaced.push(path),
            }
        } else {
            changes.replaced.push(path);
        }
    }
    Ok(changes)
}

/// `./etc//os-release` → `etc/os-release`; `None` for paths that climb out of the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The path a symbolic link at `link` points to, relative to the image's root.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return normalize(target);
    }
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    // `..` above the root stays at the root, as the kernel resolves it.
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of a test layer.
    pub enum E<'a> {
        File(&'a str, &'a str),
        Dir(&'a str),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    /// A plain tar of `entries`, in order.
    pub fn tar(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match e {
                E::File(p, content) if p.contains("..") => {
                    // The tar crate refuses to write such a path; a hostile layer would not.
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(content.len() as u64);
                    h.as_gnu_mut().unwrap().name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    b.append(&h, content.as_bytes()).unwrap();
                }
                E::File(p, content) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(content.len() as u64);
                    b.append_data(&mut h, p, content.as_bytes()).unwrap();
                }
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                E::Link(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                E::Hard(p, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn all(_: &str) -> bool {
        true
    }

    fn files(fs: &Filesystem) -> Vec<(String, String)> {
        fs.paths().filter_map(|p| Some((p.to_owned(), String::from_utf8(fs.read(p)?.to_vec()).unwrap()))).collect()
    }

    #[test]
    fn later_layers_win_and_whiteouts_hide_lower_files() {
        // (what the case shows, the layers lowest first, the files left)
        type Case<'a> = (&'a str, Vec<Vec<E<'a>>>, Vec<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            (
                "a later layer replaces a file",
                vec![vec![E::File("a", "1")], vec![E::File("./a", "2")]],
                vec![("a", "2")],
            ),
            (
                "a whiteout removes a file",
                vec![vec![E::File("d/a", "1"), E::File("d/b", "1")], vec![E::File("d/.wh.a", "")]],
                vec![("d/b", "1")],
            ),
            (
                "a whiteout of a directory removes everything under it",
                vec![vec![E::File("d/x/a", "1"), E::File("d/xy", "1")], vec![E::File("d/.wh.x", "")]],
                vec![("d/xy", "1")],
            ),
            (
                "an opaque directory hides lower content but keeps its own, in any order",
                vec![
                    vec![E::File("d/a", "1"), E::File("e/a", "1")],
                    vec![E::File("d/b", "2"), E::File("d/.wh..wh..opq", ""), E::File("d/c", "2")],
                ],
                vec![("d/b", "2"), ("d/c", "2"), ("e/a", "1")],
            ),
            (
                "a whiteout does not hide a file of its own layer",
                vec![vec![E::File("a", "1")], vec![E::File("a", "2"), E::File(".wh.a", "")]],
                vec![("a", "2")],
            ),
            (
                "a file deleted and added again comes back",
                vec![vec![E::File("a", "1")], vec![E::File(".wh.a", "")], vec![E::File("a", "3")]],
                vec![("a", "3")],
            ),
            ("a directory replacing a file removes it", vec![vec![E::File("a", "1")], vec![E::Dir("a")]], vec![]),
            (
                "symbolic links are followed, relative and absolute",
                vec![vec![
                    E::File("usr/lib/os-release", "ID=debian"),
                    E::Link("etc/os-release", "../usr/lib/os-release"),
                    E::Link("etc/abs", "/usr/lib/os-release"),
                ]],
                vec![("etc/abs", "ID=debian"), ("etc/os-release", "ID=debian"), ("usr/lib/os-release", "ID=debian")],
            ),
            (
                "hard links copy a kept file",
                vec![vec![E::File("a", "1"), E::Hard("b", "a")]],
                vec![("a", "1"), ("b", "1")],
            ),
            ("paths climbing out of the root are ignored", vec![vec![E::File("../x", "1")]], vec![]),
        ];
        for (name, layers, want) in cases {
            let blobs: Vec<Vec<u8>> = layers.iter().map(|l| tar(l)).collect();
            let fs = Filesystem::flatten(blobs.iter().map(|b| &b[..]), all).unwrap();
            let want: Vec<(String, String)> = want.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
            assert_eq!(files(&fs), want, "{name}");
        }
    }

    #[test]
    fn compressed_layers_are_recognised_by_their_first_bytes() {
        let plain = tar(&[E::File("etc/os-release", "ID=alpine")]);
        let gz = gzip(&plain);
        let mut zst = Vec::new();
        ruzstd::encoding::compress(&plain[..], &mut zst, ruzstd::encoding::CompressionLevel::Fastest);
        for (name, blob) in [("plain", plain.clone()), ("gzip", gz), ("zstd", zst)] {
            let fs = Filesystem::flatten([&blob[..]], all).unwrap();
            assert_eq!(fs.read("etc/os-release"), Some(&b"ID=alpine"[..]), "{name}");
        }
    }

    #[test]
    fn unwanted_files_are_not_kept() {
        let blob = tar(&[E::File("etc/os-release", "ID=alpine"), E::File("bin/sh", "ELF")]);
        let fs = Filesystem::flatten([&blob[..]], |p| p.starts_with("etc/")).unwrap();
        assert_eq!(fs.paths().collect::<Vec<_>>(), vec!["etc/os-release"]);
        assert_eq!(fs.files_in("etc").len(), 1);
    }

    #[test]
    fn a_broken_layer_is_an_error_naming_it() {
        let good = tar(&[E::File("a", "1")]);
        let mut bad = gzip(&good);
        bad.truncate(bad.len() / 2);
        let err = Filesystem::flatten([&good[..], &bad[..]], all).unwrap_err();
        assert!(matches!(err, LayerError::Corrupt { layer: 1, .. }), "{err}");
    }
}
