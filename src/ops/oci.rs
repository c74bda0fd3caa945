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
use crate::copy::pack::{pack, PackOptions};
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
    for (role, tree) in &trees {
        let (blob, diff_id) = layout.layer(tree, store)?;
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
        device_nodes: true,
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

    /// Writes `tree` as a layer blob; its blob and its diff ID (the digest
    /// of the uncompressed tar).
    fn layer(&self, tree: &Dir, store: &Store) -> Result<(Blob, String)> {
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
            pack(
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
            Ok((Blob { digest, size }, diff_id))
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
