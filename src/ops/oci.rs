//! Snapshots as OCI images: `export --format oci` writes an image layout
//! (image-spec 1.1), `push` sends it to a registry and `pull` brings an
//! image from one, with skopeo as the transport.
//!
//! An image of a snapshot has one layer for each lower layer (the base),
//! lowest first, then the snapshot's tree: for a layer, the anchor's tree
//! and the layer as two more. Layers are tar streams of
//! [`crate::copy::pack`] in its OCI mode (no access times, overlay
//! whiteouts as `.wh.NAME`, opaque directories as `.wh..wh..opq`), gzip
//! compressed with fixed settings: the same tree makes the same bytes and
//! the same digest every time, so a registry keeps a base once for every
//! snapshot and host. The manifest's annotations carry what lxc-snap knows
//! of the snapshot (container, number, time, comment, its config, the
//! stream manifest with the base's digests).
//!
//! Skopeo, not a registry client of our own: it speaks every registry's
//! authentication and protocol versions, checks blobs the registry has
//! before sending them (so only new layers travel), and is a Debian
//! package.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::stream::{exported_snapshot, lower_refs, Hashing, Manifest};
use crate::copy::pack::{pack, PackOptions, Unpacker};
use crate::copy::tar::Writer;
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::names::SnapshotName;
use crate::store::Store;

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The annotation that holds the stream manifest of an image lxc-snap made.
pub const STREAM_ANNOTATION: &str = "io.lxc-snap.stream-manifest";

/// What `export --format oci` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciExported {
    pub snapshot: String,
    /// The image's name in the layout (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `sha256:HEX` of the image manifest.
    pub digest: String,
    /// Each layer's digest, lowest first.
    pub layers: Vec<String>,
}

/// A blob written into a layout.
struct Blob {
    digest: String,
    size: u64,
}

/// Writes `name` as an image of the OCI layout `dir` (created if missing;
/// an existing layout keeps its other images and blobs), named `tag`.
pub fn export_oci(
    store: &Store,
    name: &SnapshotName,
    dir: &Path,
    tag: &str,
) -> Result<OciExported> {
    let (_lock, snapshot) = exported_snapshot(store, name)?;
    let lowers = lower_refs(store, &snapshot, true)?;
    let layout = Layout::open(dir)?;
    let work = store.work_dir("oci")?;
    let mut trees: Vec<(String, Dir)> = Vec::new();
    for (i, (_, lower, _)) in lowers.iter().enumerate().rev() {
        trees.push((format!("base/{i}"), lower.try_clone()?));
    }
    let mut removed = Vec::new();
    match (&snapshot.meta.layer, store.anchor_tree_dir(&snapshot)?) {
        (Some(layer), Some(anchor)) => {
            trees.push(("anchor".to_string(), anchor));
            trees.push(("layer".to_string(), store.tree_dir(&snapshot)?));
            removed = layer.removed.clone();
        }
        _ => trees.push(("tree".to_string(), store.tree_dir(&snapshot)?)),
    }
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    let mut devices = 0;
    for (role, tree) in &trees {
        let (blob, diff_id, tree_devices) = layout.layer(tree, store)?;
        devices += tree_devices;
        layers.push(json!({
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": blob.digest,
            "size": blob.size,
            "annotations": {"io.lxc-snap.layer": role},
        }));
        diff_ids.push(diff_id);
        history.push(json!({
            "created": snapshot.meta.created,
            "created_by": format!("lxc-snap {role}"),
        }));
    }
    drop(work);
    let created = crate::ops::utc_text(snapshot.meta.created_time()?);
    let config = json!({
        "created": created,
        "architecture": oci_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let config_blob = layout.json_blob(&config)?;
    let comment = store.comment(&snapshot)?;
    let snapshot_config = store.snapshot_dir(&snapshot)?.read_file(
        "config",
        crate::lxc::container::MAX_CONFIG,
        "config",
    )?;
    let stream_manifest = Manifest {
        format: super::stream::STREAM_FORMAT.to_string(),
        version: super::stream::STREAM_VERSION,
        container: snapshot.name.container().to_string(),
        number: snapshot.name.number(),
        created: snapshot.meta.created.clone(),
        comment: comment.clone(),
        pinned: snapshot.meta.pinned,
        expires_at: snapshot.meta.expires_at.clone(),
        backing: snapshot.meta.backing,
        rootfs_key: snapshot.meta.rootfs_key.clone(),
        rootfs_prefix: snapshot.meta.rootfs_prefix.clone(),
        source_dir: snapshot.dir.clone(),
        lowers: lowers.iter().map(|(l, _, _)| l.clone()).collect(),
        device_nodes: devices > 0,
        with_base: true,
        since: None,
        files: snapshot.meta.files,
        bytes: snapshot.meta.bytes,
    };
    let mut annotations = serde_json::Map::new();
    let mut note = |k: &str, v: String| {
        annotations.insert(k.to_string(), Value::String(v));
    };
    note("org.opencontainers.image.created", created.clone());
    note("org.opencontainers.image.ref.name", tag.to_string());
    note(
        "io.lxc-snap.container",
        snapshot.name.container().to_string(),
    );
    note("io.lxc-snap.number", snapshot.name.number().to_string());
    note("io.lxc-snap.created", snapshot.meta.created.clone());
    if let Some(c) = &comment {
        note("io.lxc-snap.comment", c.clone());
    }
    note(
        "io.lxc-snap.config",
        String::from_utf8_lossy(&snapshot_config).into_owned(),
    );
    for (i, (_, _, base_config)) in lowers.iter().enumerate() {
        if let Some(c) = base_config {
            note(
                &format!("io.lxc-snap.base.{i}.config"),
                String::from_utf8_lossy(c).into_owned(),
            );
        }
    }
    note(
        "io.lxc-snap.removed",
        serde_json::to_string(&removed).unwrap_or_default(),
    );
    note(
        STREAM_ANNOTATION,
        serde_json::to_string(&stream_manifest).unwrap_or_default(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_blob.digest, "size": config_blob.size},
        "layers": layers,
        "annotations": annotations,
    });
    let manifest_blob = layout.json_blob(&manifest)?;
    layout.tag(tag, &manifest_blob)?;
    Ok(OciExported {
        snapshot: snapshot.name.to_string(),
        tag: tag.to_string(),
        digest: manifest_blob.digest,
        layers: layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap_or_default().to_string())
            .collect(),
    })
}

/// The OCI name of this machine's architecture.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An OCI image layout on disk.
pub(super) struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens the layout `dir`, creating it (and its `oci-layout`) if it
    /// is missing or empty.
    pub(super) fn open(dir: &Path) -> Result<Layout> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io("creating", &blobs, e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_whole(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    pub(super) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("reading the image: a digest {digest:?} that is not sha256"),
                )
            })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// Writes `tree` as a layer blob; its blob, its diff ID (the digest
    /// of the uncompressed tar) and how many device nodes it holds.
    fn layer(&self, tree: &Dir, store: &Store) -> Result<(Blob, String, u64)> {
        let temp = self
            .dir
            .join(format!("blobs/sha256/.lxc-snap-tmp.{}", std::process::id()));
        let file = fs::File::create(&temp).map_err(|e| Error::io("creating", &temp, e))?;
        let done = (|| {
            let compressed = Hashing::new(io::BufWriter::with_capacity(1 << 20, &file));
            let gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(compressed, flate2::Compression::new(6));
            let mut w = Writer::new(Hashing::new(gz));
            let stats = pack(
                tree,
                ".",
                &mut w,
                &PackOptions {
                    oci: true,
                    cancel: Some(store.cancel()),
                    ..PackOptions::default()
                },
            )?;
            let err = |e: io::Error| Error::io("writing", &temp, e);
            let tar = w.finish().map_err(err)?;
            let diff_id = tar.digest();
            let mut compressed = tar.into_inner().finish().map_err(err)?;
            compressed.flush().map_err(err)?;
            let digest = compressed.digest();
            drop(compressed);
            file.sync_all().map_err(err)?;
            let size = fs::metadata(&temp).map_err(err)?.len();
            let path = self.blob_path(&digest)?;
            fs::rename(&temp, &path).map_err(|e| Error::io("renaming into place", &path, e))?;
            Ok((Blob { digest, size }, diff_id, stats.devices))
        })();
        if done.is_err() {
            let _ = fs::remove_file(&temp);
        }
        done
    }

    fn json_blob(&self, value: &Value) -> Result<Blob> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::new(ErrorKind::Other, format!("writing the image: {e}")))?;
        let mut h = Hashing::new(io::sink());
        let _ = h.write_all(&bytes);
        let digest = h.digest();
        write_whole(&self.blob_path(&digest)?, &bytes)?;
        Ok(Blob {
            digest,
            size: bytes.len() as u64,
        })
    }

    /// Names the manifest `blob` `tag` in `index.json`, in place of an
    /// image of that name.
    fn tag(&self, tag: &str, blob: &Blob) -> Result<()> {
        let path = self.dir.join("index.json");
        let mut index: Value = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(ErrorKind::Other, format!("reading {}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []})
            }
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        let mut manifests: Vec<Value> = index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag)
            .collect();
        manifests.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": blob.digest,
            "size": blob.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        index["manifests"] = Value::Array(manifests);
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| Error::new(ErrorKind::Other, format!("writing the image: {e}")))?;
        write_whole(&path, &bytes)
    }
}

/// Writes `path` whole or not at all (beside it, flushed, renamed).
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension(format!("lxc-snap-tmp.{}", std::process::id()));
    let done = (|| {
        let mut f = fs::File::create(&temp).map_err(|e| Error::io("creating", &temp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("writing", &temp, e))?;
        fs::rename(&temp, path).map_err(|e| Error::io("renaming into place", path, e))
    })();
    if done.is_err() {
        let _ = fs::remove_file(&temp);
    }
    done
}

/// `skopeo copy SRC DST`, without TLS checks when `insecure` (a registry
/// on localhost over plain HTTP).
fn skopeo_copy(src: &str, dst: &str, insecure: bool) -> Result<()> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["copy", "--quiet"]);
    if insecure {
        cmd.args(["--src-tls-verify=false", "--dest-tls-verify=false"]);
    }
    cmd.args([src, dst]);
    let out = cmd.output().map_err(|e| {
        Error::new(ErrorKind::Unsupported, format!("running skopeo: {e}"))
            .with_hint("install skopeo (apt-get install skopeo)")
    })?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "skopeo copy {src} {dst}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// A registry reference as given (`HOST[:PORT]/REPO[:TAG|@DIGEST]`), as
/// skopeo's `docker://` names it.
fn docker_ref(reference: &str) -> Result<String> {
    let bad = || {
        Error::new(
            ErrorKind::Usage,
            format!("{reference:?} is not a registry reference such as registry.example.com/web:3"),
        )
    };
    let r = reference.strip_prefix("docker://").unwrap_or(reference);
    if r.is_empty()
        || r.starts_with('-')
        || r.len() > 1024
        || r.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(format!("docker://{r}"))
}

/// What `push` sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    pub snapshot: String,
    pub reference: String,
    pub digest: String,
    pub layers: Vec<String>,
}

/// Sends `name` to a registry as the image `reference`; the registry gets
/// only the blobs it does not have.
pub fn push(store: &Store, name: &SnapshotName, reference: &str, insecure: bool) -> Result<Pushed> {
    let dst = docker_ref(reference)?;
    let work = store.work_dir("push")?;
    let layout = work.dir().path().join("layout");
    let made = export_oci(store, name, &layout, "push")?;
    skopeo_copy(&format!("oci:{}:push", layout.display()), &dst, insecure)?;
    Ok(Pushed {
        snapshot: made.snapshot,
        reference: reference.to_string(),
        digest: made.digest,
        layers: made.layers,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    pub reference: String,
    /// For an image of a snapshot: the container it becomes a snapshot of;
    /// for any other image: the container made from it (default: the
    /// repository's last name).
    pub container: Option<crate::names::ContainerName>,
    pub insecure: bool,
    pub max_size: u64,
    pub trust_config: bool,
}

/// What `pull` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "made", rename_all = "snake_case")]
pub enum Pulled {
    /// An image lxc-snap made: the snapshot again.
    Snapshot(super::stream::Imported),
    /// Any other image: a container of its root filesystem.
    Container { container: String, layers: usize },
}

/// A descriptor of a manifest's layer, as read.
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    role: Option<String>,
}

/// Brings the image `opts.reference` from its registry: an image of a
/// snapshot becomes that snapshot again (with its base, if missing);
/// any other becomes a directory-backed container.
pub fn pull(store: &Store, opts: &PullOptions) -> Result<Pulled> {
    super::require_root("pulling an image")?;
    let src = docker_ref(&opts.reference)?;
    let work = store.work_dir("pull")?;
    let layout_dir = work.dir().path().join("layout");
    skopeo_copy(
        &src,
        &format!("oci:{}:pulled", layout_dir.display()),
        opts.insecure,
    )?;
    let layout = Layout {
        dir: layout_dir.clone(),
    };
    let manifest = layout.manifest("pulled")?;
    let layers = descriptors(&manifest)?;
    let annotations = &manifest["annotations"];
    match annotations[STREAM_ANNOTATION].as_str() {
        Some(text) => pull_snapshot(store, opts, &layout, &layers, annotations, text),
        None => pull_container(store, opts, &layout, &layers),
    }
}

fn descriptors(manifest: &Value) -> Result<Vec<Descriptor>> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::Other,
            format!("pulling: the image's manifest {why}"),
        )
    };
    if manifest["schemaVersion"] != 2 {
        return Err(bad("is not of schema version 2"));
    }
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| bad("lists no layers"))?;
    if layers.len() > 1000 {
        return Err(bad("lists more than 1000 layers"));
    }
    layers
        .iter()
        .map(|l| {
            Ok(Descriptor {
                media_type: l["mediaType"]
                    .as_str()
                    .ok_or_else(|| bad("has a layer without a media type"))?
                    .to_string(),
                digest: l["digest"]
                    .as_str()
                    .ok_or_else(|| bad("has a layer without a digest"))?
                    .to_string(),
                size: l["size"]
                    .as_u64()
                    .ok_or_else(|| bad("has a layer without a size"))?,
                role: l["annotations"]["io.lxc-snap.layer"]
                    .as_str()
                    .map(str::to_string),
            })
        })
        .collect()
}

impl Layout {
    /// The manifest of the image named `tag`, its digest checked.
    fn manifest(&self, tag: &str) -> Result<Value> {
        let index: Value =
            serde_json::from_slice(&self.read_bounded(&self.dir.join("index.json"), 1 << 20)?)
                .map_err(|e| {
                    Error::new(ErrorKind::Other, format!("pulling: the image's index: {e}"))
                })?;
        let entry = index["manifests"]
            .as_array()
            .and_then(|m| {
                m.iter()
                    .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    "pulling: the image's index names no manifest",
                )
            })?;
        let digest = entry["digest"].as_str().unwrap_or_default();
        let bytes = self.read_bounded(&self.blob_path(digest)?, 4 << 20)?;
        let mut h = Hashing::new(io::sink());
        let _ = h.write_all(&bytes);
        if h.digest() != digest {
            return Err(Error::new(
                ErrorKind::Other,
                "pulling: the image's manifest does not match its digest",
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("pulling: the image's manifest does not parse: {e}"),
            )
        })
    }

    fn read_bounded(&self, path: &Path, max: u64) -> Result<Vec<u8>> {
        let file = fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        crate::dir::read_bounded(file, max, "image metadata", path)
    }

    /// Applies the layer `desc` with `unpacker`, checking the blob's size
    /// and digest: a layer that does not match fails once it is read, and
    /// what it made is the caller's to drop.
    fn apply(&self, desc: &Descriptor, unpacker: &mut Unpacker) -> Result<()> {
        let path = self.blob_path(&desc.digest)?;
        let file = fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("inspecting", &path, e))?
            .len();
        if len != desc.size {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "pulling: the layer {} is not of the size its manifest says",
                    desc.digest
                ),
            ));
        }
        // Checked whole first: the blob is in a directory only root can
        // write, so what is read next is what was checked.
        let mut hashing = Hashing::new(io::sink());
        io::copy(
            &mut io::BufReader::with_capacity(1 << 20, &file),
            &mut hashing,
        )
        .map_err(|e| Error::io("reading", &path, e))?;
        if hashing.digest() != desc.digest {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "pulling: the layer {} does not match its digest: it was changed or damaged",
                    desc.digest
                ),
            ));
        }
        let file = fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
        let input = io::BufReader::with_capacity(1 << 20, file);
        let bad = |e: crate::copy::tar::TarError| {
            Error::new(
                ErrorKind::Other,
                format!("pulling the layer {}: {e}", desc.digest),
            )
        };
        let read: Box<dyn io::Read> = match desc.media_type.as_str() {
            LAYER_MEDIA_TYPE | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                Box::new(flate2::bufread::MultiGzDecoder::new(input))
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => Box::new(
                zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|e| Error::io("reading", &path, e))?,
            ),
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Box::new(input),
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "pulling: a layer of media type {other:?}, which lxc-snap does not read"
                    ),
                ))
            }
        };
        let mut r = crate::copy::tar::Reader::new(read);
        while let Some(mut h) = r.next_header().map_err(bad)? {
            h.path = in_layer(&h.path);
            if h.kind == crate::copy::tar::Kind::HardLink {
                h.link = h.link.map(|l| in_layer(&l));
            }
            unpacker.entry(&h, &mut r)?;
        }
        unpacker.end_layer()?;
        Ok(())
    }
}

/// A layer's path as `./PATH` (tools write `PATH` or `./PATH`; an
/// absolute one becomes `.//PATH`, which unpacking refuses).
fn in_layer(path: &[u8]) -> Vec<u8> {
    let p = path.strip_prefix(b"./").unwrap_or(path);
    let p = if p == b"." { b"" } else { p };
    if p.is_empty() {
        b".".to_vec()
    } else {
        [b"./".as_slice(), p].concat()
    }
}

/// An image lxc-snap made: the snapshot it is of, with its base where the
/// base is missing.
fn pull_snapshot(
    store: &Store,
    opts: &PullOptions,
    layout: &Layout,
    layers: &[Descriptor],
    annotations: &Value,
    text: &str,
) -> Result<Pulled> {
    use super::stream::{bases_for, checked_config, checked_manifest, publish, Built};
    use crate::copy::pack::{UnpackLimits, Whiteouts};
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("pulling: the image's lxc-snap manifest does not parse: {e}"),
        )
    })?;
    let (from, created, expires_at) = checked_manifest(&manifest)?;
    let note = |key: &str| -> Result<Vec<u8>> {
        annotations[key]
            .as_str()
            .map(|t| t.as_bytes().to_vec())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("pulling: the image of {from} has no {key} annotation"),
                )
            })
    };
    let config = checked_config(note("io.lxc-snap.config")?, opts.trust_config)?;
    let base_configs = (0..manifest.lowers.len())
        .map(|i| {
            checked_config(
                note(&format!("io.lxc-snap.base.{i}.config"))?,
                opts.trust_config,
            )
            .map(Some)
        })
        .collect::<Result<Vec<_>>>()?;
    let removed: Vec<std::path::PathBuf> = serde_json::from_slice(&note("io.lxc-snap.removed")?)
        .map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("pulling: the image's removals: {e}"),
            )
        })?;
    let removed: std::collections::HashSet<Vec<u8>> = removed
        .into_iter()
        .map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string()))
        .collect();
    let role = |name: &str| {
        layers
            .iter()
            .find(|l| l.role.as_deref() == Some(name))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("pulling: the image of {from} has no {name} layer"),
                )
            })
    };
    let limits = UnpackLimits {
        max_bytes: opts.max_size,
        max_entries: u64::MAX,
        devices: manifest.device_nodes,
    };
    let keep = || Whiteouts::Keep(Default::default());
    let (lowers, mut bases) = bases_for(store, &manifest, &from, base_configs, |_, at| {
        Unpacker::layered(at, ".", limits, keep())
    })?;
    for (i, base) in bases.iter_mut().enumerate() {
        if let Some(base) = base {
            layout.apply(role(&format!("base/{i}"))?, &mut base.unpacker)?;
        }
    }
    let container = opts
        .container
        .clone()
        .unwrap_or_else(|| from.container().clone());
    store.create_root()?;
    let lock = store.lock(&container)?;
    store.remove_leftovers(&lock)?;
    let new = store.begin(&lock)?;
    let private = new.dir().mkdir("private", 0o700)?;
    private.mkdir("scratch", 0o700)?;
    let tree_name = crate::store::tree_rel(manifest.backing)
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    let tree = private.mkdir(&tree_name, 0o700)?;
    let parts: Vec<(&str, Whiteouts)> =
        match layers.iter().any(|l| l.role.as_deref() == Some("layer")) {
            true => vec![("anchor", keep()), ("layer", Whiteouts::Keep(removed))],
            false => vec![("tree", keep())],
        };
    for (name, whiteouts) in parts {
        let mut unpacker = Unpacker::layered(&tree, ".", limits, whiteouts)?;
        layout.apply(role(name)?, &mut unpacker)?;
        unpacker.finish()?;
    }
    let lxcpath = store.lxcpath()?;
    for (i, base) in bases.into_iter().enumerate().rev() {
        if let Some(base) = base {
            base.finish(store, lxcpath, &manifest.lowers[i], &lowers[i + 1..])?;
        }
    }
    let stats = counted(&tree)?;
    let imported = publish(
        store,
        &lock,
        new,
        Built {
            manifest: &manifest,
            from: &from,
            config,
            lowers,
            container,
            created,
            expires_at,
            stats,
        },
    )?;
    Ok(Pulled::Snapshot(imported))
}

/// Entries, bytes and allocated bytes of a tree, as an unpacking counts
/// them.
fn counted(tree: &Dir) -> Result<crate::copy::pack::UnpackStats> {
    let mut stats = crate::copy::pack::UnpackStats::default();
    let mut seen = std::collections::HashSet::new();
    crate::walk::for_each_entry(tree, |st| {
        stats.entries += 1;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && seen.insert(st.st_ino) {
            stats.bytes += st.st_size as u64;
            stats.allocated += st.st_blocks as u64 * 512;
        }
    })?;
    // The root is no entry below it.
    stats.entries = stats.entries.saturating_sub(1);
    Ok(stats)
}

/// Any other image: a directory-backed container of its layers applied
/// one over the other.
fn pull_container(
    store: &Store,
    opts: &PullOptions,
    layout: &Layout,
    layers: &[Descriptor],
) -> Result<Pulled> {
    use crate::copy::pack::{UnpackLimits, Whiteouts};
    let name = match &opts.container {
        Some(name) => name.clone(),
        None => {
            let repo = opts.reference.rsplit('/').next().unwrap_or_default();
            let repo = repo.split(['@', ':']).next().unwrap_or_default();
            crate::names::ContainerName::parse(repo).map_err(|e| {
                Error::new(ErrorKind::Usage, format!("pulling {}: {e}", opts.reference))
                    .with_hint("name the container with --as NAME")
            })?
        }
    };
    let lxcpath = store.lxcpath()?;
    if store.container_exists(&name) {
        return Err(Error::new(
            ErrorKind::Exists,
            format!(
                "pulling {}: container {name} exists already",
                opts.reference
            ),
        )
        .with_hint("name another with --as NAME"));
    }
    let staging = crate::durable::Staging::create(lxcpath.dir(), name.as_str(), 0o770)?;
    let rootfs = staging.dir().mkdir("rootfs", 0o755)?;
    let limits = UnpackLimits {
        max_bytes: opts.max_size,
        max_entries: u64::MAX,
        devices: true,
    };
    let mut unpacker = Unpacker::layered(&rootfs, ".", limits, Whiteouts::Drop)?;
    for layer in layers {
        layout.apply(layer, &mut unpacker)?;
    }
    unpacker.finish()?;
    let final_dir = staging.final_path();
    let mut config = format!(
        "# Made by lxc-snap pull from {}\n",
        opts.reference.replace(['\n', '\r'], " ")
    );
    let common = Path::new("/usr/share/lxc/config/common.conf");
    if common.exists() {
        config.push_str(&format!("lxc.include = {}\n", common.display()));
    }
    config.push_str(&format!(
        "lxc.arch = {}\nlxc.rootfs.path = dir:{}\nlxc.uts.name = {}\nlxc.net.0.type = empty\nlxc.autodev = 1\n",
        std::env::consts::ARCH,
        final_dir.join("rootfs").display(),
        crate::names::host_name_for(name.as_str()),
    ));
    staging
        .dir()
        .write_file("config", config.as_bytes(), 0o640)?;
    staging.commit()?;
    Ok(Pulled::Container {
        container: name.to_string(),
        layers: layers.len(),
    })
}
