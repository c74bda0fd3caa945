//! Snapshots as byte streams: `export` writes one, `import` recreates the
//! snapshot from one, on this host or another.
//!
//! A stream is a tar stream ([`crate::copy::tar`]), compressed or not:
//!
//! ```text
//! lxc-snap/manifest.json   what the snapshot is (Manifest), first
//! lxc-snap/config          its LXC config
//! tree, tree/...           the captured tree, whole (a layer flattened)
//! lxc-snap/digest          SHA-256 of every byte of the tar stream before it
//! ```
//!
//! The manifest names each lower layer (the base) by container and records
//! a digest of its tree (names, types, owners, modes, sizes, times,
//! attributes: [`tree_digest`]). Without the base in the stream, import
//! requires a container of that name in its lxcpath whose tree has the same
//! digest. With it (`export --with-base`), each lower comes before the tree
//! as `lxc-snap/base/N/config` and `base/N/...`, and import creates the
//! containers that are missing (and uses those that match).
//!
//! Import builds the snapshot in a staging directory of the snapdir and
//! publishes it with one rename, as `snap` does: a stream that is cut,
//! corrupt, refused or whose digest does not match leaves nothing behind.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::require_root;
use crate::copy::pack::{pack, PackOptions, UnpackLimits, Unpacker};
use crate::copy::tar::{Header, Kind, Reader, TarError, Writer};
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::config::{random_mac, Retarget};
use crate::lxc::container::{bases_of_lowers, MAX_CONFIG};
use crate::lxc::{LxcConfig, Rootfs};
use crate::names::{host_name_for, ContainerName, SnapshotName};
use crate::store::{
    self, Backing, Metadata, Snapshot, Store, TreeFingerprint, WHOLE_FORMAT_VERSION,
};

/// What a stream says it is, in `lxc-snap/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`STREAM_FORMAT`].
    pub format: String,
    pub version: u32,
    pub container: String,
    pub number: u64,
    /// RFC 3339, as the snapshot's metadata has it.
    pub created: String,
    pub comment: Option<String>,
    pub pinned: bool,
    pub expires_at: Option<String>,
    pub backing: Backing,
    pub rootfs_key: String,
    pub rootfs_prefix: String,
    /// The snapshot's directory where it was exported, which its config
    /// names.
    pub source_dir: PathBuf,
    /// The lower layers, top first.
    pub lowers: Vec<LowerRef>,
    /// The tree holds device nodes (whiteouts aside).
    pub device_nodes: bool,
    /// The lowers are in the stream, each with its container's config.
    #[serde(default)]
    pub with_base: bool,
    /// The tree is only what changed since this snapshot (a layer over
    /// it, as `snap` stores one): an incremental stream.
    #[serde(default)]
    pub since: Option<Since>,
    pub files: u64,
    pub bytes: u64,
}

/// The snapshot an incremental stream's tree is a layer over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    pub number: u64,
    pub created: String,
    /// `sha256:HEX` of its captured tree ([`tree_digest`]).
    pub digest: String,
    /// Entries of its tree the new one no longer has (whited out in the
    /// layer, dropped when it is applied).
    pub removed: Vec<PathBuf>,
}

/// A lower layer of a streamed snapshot: `<lxcpath>/<container>/<dir>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowerRef {
    pub container: String,
    /// `rootfs`, `delta` or `overlay/delta`.
    pub dir: String,
    /// The container's directory where the stream was made, which its
    /// config names.
    pub source_dir: PathBuf,
    /// `sha256:HEX` of the tree ([`tree_digest`]).
    pub digest: String,
}

pub const STREAM_FORMAT: &str = "lxc-snap-stream";
pub const STREAM_VERSION: u32 = 1;
const MANIFEST: &str = "lxc-snap/manifest.json";
const CONFIG: &str = "lxc-snap/config";
const DIGEST: &str = "lxc-snap/digest";
const TREE: &str = "tree";
/// Where a lower layer may be in its container's directory.
const LOWER_DIRS: [&str; 3] = ["rootfs", "delta", "overlay/delta"];
/// Largest manifest accepted.
const MAX_MANIFEST: u64 = 1 << 20;

/// How a stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    pub snapshot: SnapshotName,
    pub compression: Compression,
    /// The compression level (zstd 1-19, gzip 1-9); the codec's default
    /// when not given.
    pub level: Option<i32>,
    /// Put the lower layers in the stream, with their containers' configs.
    pub with_base: bool,
    /// Only what changed since this snapshot of the same container.
    pub since: Option<SnapshotName>,
}

/// What `export` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exported {
    pub snapshot: String,
    pub entries: u64,
    pub bytes: u64,
    /// What tar cannot hold and was left out (sockets, mount points).
    pub skipped: Vec<PathBuf>,
}

/// `sha256:HEX` of a tree's metadata: what [`pack`] writes of it without
/// file contents or access times.
pub fn tree_digest(dir: &Dir) -> Result<String> {
    let mut w = Writer::new(Hashing::new(io::sink()));
    let opts = PackOptions {
        no_contents: true,
        ..PackOptions::default()
    };
    pack(dir, TREE, &mut w, &opts)?;
    let hashing = w
        .finish()
        .map_err(|e| Error::io("fingerprinting", dir.path(), e))?;
    Ok(hashing.digest())
}

/// Writes `opts.snapshot` as a stream into `out`.
pub fn export(store: &Store, opts: &ExportOptions, out: impl Write) -> Result<Exported> {
    let (_lock, snapshot) = exported_snapshot(store, &opts.snapshot)?;
    let lowers = lower_refs(store, &snapshot, opts.with_base)?;
    let snapshot_dir = store.snapshot_dir(&snapshot)?;
    let config = snapshot_dir.read_file("config", MAX_CONFIG, "config")?;
    let mut manifest = Manifest {
        format: STREAM_FORMAT.to_string(),
        version: STREAM_VERSION,
        container: snapshot.name.container().to_string(),
        number: snapshot.name.number(),
        created: snapshot.meta.created.clone(),
        comment: store.comment(&snapshot)?,
        pinned: snapshot.meta.pinned,
        expires_at: snapshot.meta.expires_at.clone(),
        backing: snapshot.meta.backing,
        rootfs_key: snapshot.meta.rootfs_key.clone(),
        rootfs_prefix: snapshot.meta.rootfs_prefix.clone(),
        source_dir: snapshot.dir.clone(),
        lowers: lowers.iter().map(|(l, _, _)| l.clone()).collect(),
        device_nodes: false,
        with_base: opts.with_base,
        since: None,
        files: snapshot.meta.files,
        bytes: snapshot.meta.bytes,
    };
    // A layer goes whole: its anchor's tree with it applied.
    let work = store.work_dir("export")?;
    let mut tree = whole_tree(store, &snapshot, work.dir(), "tree")?;
    if let Some(since) = &opts.since {
        if since.container() != snapshot.name.container() || *since == snapshot.name {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "export --since {since}: give another snapshot of {}",
                    snapshot.name.container()
                ),
            ));
        }
        let older = store.get(since)?;
        older.ensure_complete()?;
        let older_tree = whole_tree(store, &older, work.dir(), "older")?;
        let lower_dirs: Vec<Dir> = lowers
            .iter()
            .map(|(_, d, _)| d.try_clone())
            .collect::<Result<_>>()?;
        let plan = match crate::copy::plan_layer_at(
            &tree,
            &older_tree,
            &lower_dirs,
            crate::copy::Compare::QuickCheck,
            None,
            None,
            Some(store.cancel()),
        )? {
            crate::copy::Plan::Layer(plan) => plan,
            crate::copy::Plan::Full(why) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("export --since {since}: the changes cannot be a layer: {why}"),
                )
                .with_hint("export the whole snapshot"))
            }
        };
        crate::copy::make_layer_at(
            &tree,
            work.dir(),
            "layer".as_ref(),
            &plan,
            &crate::copy::CopyOptions::default(),
        )?;
        manifest.since = Some(Since {
            number: older.name.number(),
            created: older.meta.created.clone(),
            digest: tree_digest(&older_tree)?,
            removed: plan.removed.clone(),
        });
        tree = work.dir().open_dir("layer")?;
    }
    // Devices are counted in a first pass, so that the manifest (first in
    // the stream) can say whether there are any.
    let count_devices = |dir: &Dir| -> Result<u64> {
        let mut w = Writer::new(io::sink());
        let opts = PackOptions {
            no_contents: true,
            ..PackOptions::default()
        };
        Ok(pack(dir, TREE, &mut w, &opts)?.devices)
    };
    let mut devices = count_devices(&tree)?;
    if opts.with_base {
        for (_, dir, _) in &lowers {
            devices += count_devices(dir)?;
        }
    }
    manifest.device_nodes = devices > 0;
    let write_err = |e: io::Error| {
        Error::io("writing the stream of", &snapshot.dir, e)
            .with_hint("check the space where the stream goes")
    };
    let compressed = Compressor::new(out, opts.compression, opts.level).map_err(write_err)?;
    let mut w = Writer::new(Hashing::new(compressed));
    let manifest_text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::new(ErrorKind::Other, format!("writing the manifest: {e}")))?;
    small_file(&mut w, MANIFEST, &manifest_text).map_err(write_err)?;
    small_file(&mut w, CONFIG, &config).map_err(write_err)?;
    let full = PackOptions {
        atimes: true,
        no_contents: false,
        oci: false,
        cancel: Some(store.cancel()),
    };
    for (i, (_, dir, base_config)) in lowers.iter().enumerate() {
        if let Some(base_config) = base_config {
            small_file(&mut w, &format!("lxc-snap/base/{i}/config"), base_config)
                .map_err(write_err)?;
            pack(dir, &format!("base/{i}"), &mut w, &full)?;
        }
    }
    let stats = pack(
        &tree,
        TREE,
        &mut w,
        &PackOptions {
            atimes: true,
            no_contents: false,
            oci: false,
            cancel: Some(store.cancel()),
        },
    )?;
    let digest = w.out_mut().digest();
    small_file(&mut w, DIGEST, digest.as_bytes()).map_err(write_err)?;
    w.finish()
        .map_err(write_err)?
        .into_inner()
        .finish()
        .map_err(write_err)?;
    Ok(Exported {
        snapshot: snapshot.name.to_string(),
        entries: stats.entries,
        bytes: stats.bytes,
        skipped: stats.skipped,
    })
}

/// The snapshot `name`, complete and of ours, with its container's lock
/// held so that it stays while it is read.
pub(super) fn exported_snapshot(
    store: &Store,
    name: &SnapshotName,
) -> Result<(store::NameLock, Snapshot)> {
    require_root("exporting a snapshot")?;
    let snapshot = store.get(name)?;
    if snapshot.is_legacy() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{name} is a snapshot of the original lxc-snap, which export does not read"),
        )
        .with_hint(format!(
            "adopt it first: lxc-snap adopt {}",
            name.container()
        )));
    }
    let lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
    snapshot.ensure_complete()?;
    Ok((lock, snapshot))
}

/// A lower layer being exported: what the manifest says of it, its tree,
/// and its container's config when the base goes too.
pub(super) type Lower = (LowerRef, Dir, Option<Vec<u8>>);

/// Each lower layer of `snapshot`, top first: what the manifest says of it,
/// its tree, and (`with_configs`) its container's config.
pub(super) fn lower_refs(
    store: &Store,
    snapshot: &Snapshot,
    with_configs: bool,
) -> Result<Vec<Lower>> {
    let opts_snapshot = &snapshot.name;
    let lxcpath = store.lxcpath()?;
    let mut lowers = Vec::new();
    for (path, dir) in snapshot
        .meta
        .lowers
        .iter()
        .zip(store.open_lowers(&snapshot.meta.lowers)?)
    {
        let refused = || {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "exporting {}: its lower layer {} is not the rootfs or delta of a container in {}",
                    opts_snapshot,
                    path.display(),
                    lxcpath.path().display()
                ),
            )
        };
        let rel = lxcpath.inside(path).ok_or_else(refused)?;
        let parts = crate::dir::plain_components(&rel).ok_or_else(refused)?;
        let Some((container, tree)) = parts.split_first() else {
            return Err(refused());
        };
        let container = container.to_str().ok_or_else(refused)?;
        let tree = Path::new("").join(tree.iter().collect::<PathBuf>());
        let tree = tree.to_str().ok_or_else(refused)?;
        if !LOWER_DIRS.contains(&tree) {
            return Err(refused());
        }
        let base_config = match with_configs {
            true => Some(
                lxcpath
                    .dir()
                    .open_dir(container)?
                    .read_file("config", MAX_CONFIG, "config")?,
            ),
            false => None,
        };
        lowers.push((
            LowerRef {
                container: container.to_string(),
                dir: tree.to_string(),
                source_dir: lxcpath.path().join(container),
                digest: tree_digest(&dir)?,
            },
            dir,
            base_config,
        ));
    }
    Ok(lowers)
}

/// What `snapshot` captured, as one tree: its own, or for a layer a copy
/// of it applied to its anchor's, made as `name` in `work`.
fn whole_tree(store: &Store, snapshot: &Snapshot, work: &Dir, name: &str) -> Result<Dir> {
    match &snapshot.meta.layer {
        None => store.tree_dir(snapshot),
        Some(_) => {
            super::copying::copy_snapshot_tree(store, snapshot, work, name)?;
            work.open_dir(name)
        }
    }
}

fn small_file<W: Write>(w: &mut Writer<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = Header::new(name.as_bytes().to_vec(), Kind::File);
    h.mode = 0o644;
    h.size = data.len() as u64;
    w.header(&h)?;
    w.data(data)?;
    w.pad()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The container the snapshot is of here (else the stream's).
    pub container: Option<ContainerName>,
    /// Bytes of files the stream may create at most.
    pub max_size: u64,
    /// Accept config keys that act on the host (hooks, host files and
    /// mounts); otherwise such a config is refused.
    pub trust_config: bool,
}

/// The default of [`ImportOptions::max_size`]: 256 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 256 << 30;

/// What `import` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub snapshot: String,
    /// The snapshot it was exported as.
    pub from: String,
    pub entries: u64,
    pub bytes: u64,
}

/// Recreates the snapshot a stream holds.
pub fn import(store: &Store, opts: &ImportOptions, input: impl Read) -> Result<Imported> {
    require_root("importing a snapshot")?;
    let mut r = Reader::new(Hashing::new(decompressed(input)?));
    let bad = |e: TarError| Error::new(ErrorKind::Other, format!("importing: {e}"));
    let manifest_bytes = expect_file(&mut r, MANIFEST, MAX_MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("importing: the stream's manifest does not parse: {e}"),
        )
    })?;
    let (from, created, expires_at) = checked_manifest(&manifest)?;
    let config = checked_config(expect_file(&mut r, CONFIG, MAX_CONFIG)?, opts.trust_config)?;
    let base_configs = match manifest.with_base {
        true => (0..manifest.lowers.len())
            .map(|i| {
                let bytes = expect_file(&mut r, &format!("lxc-snap/base/{i}/config"), MAX_CONFIG)?;
                checked_config(bytes, opts.trust_config).map(Some)
            })
            .collect::<Result<Vec<_>>>()?,
        false => vec![None; manifest.lowers.len()],
    };
    let limits = UnpackLimits {
        max_bytes: opts.max_size,
        max_entries: u64::MAX,
        devices: manifest.device_nodes,
    };
    let (lowers, mut bases) = bases_for(store, &manifest, &from, base_configs, |i, at| {
        Unpacker::new(at, &format!("base/{i}"), limits)
    })?;
    let lxcpath = store.lxcpath()?;
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
    let tree_name = store::tree_rel(manifest.backing)
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    // An incremental stream's layer is unpacked aside and applied to the
    // snapshot it is over; a whole one straight into place.
    let work = store.work_dir("import")?;
    let older = match &manifest.since {
        Some(since) => Some(find_since(store, &container, since, work.dir())?),
        None => None,
    };
    let tree = match older {
        Some(_) => work.dir().mkdir("layer", 0o700)?,
        None => private.mkdir(&tree_name, 0o700)?,
    };
    let mut unpacker = Unpacker::new(&tree, TREE, limits)?;
    let mut digest_ok = false;
    loop {
        r.skip_entry().map_err(bad)?;
        let before = r.input_ref().digest();
        let Some(h) = r.next_header().map_err(bad)? else {
            break;
        };
        if h.path == DIGEST.as_bytes() {
            let got = read_small(&mut r, &h, 128)?;
            if got != before.as_bytes() {
                return Err(Error::new(
                    ErrorKind::Other,
                    "importing: the stream's digest does not match its contents: it was changed or damaged",
                ));
            }
            digest_ok = true;
            if r.next_header().map_err(bad)?.is_some() {
                return Err(Error::new(
                    ErrorKind::Other,
                    "importing: entries after the stream's digest",
                ));
            }
            break;
        }
        if store.cancel().is_cancelled() {
            return Err(crate::progress::cancelled());
        }
        if unpacker.below(&h.path).is_some() {
            unpacker.entry(&h, &mut r)?;
        } else if let Some(i) =
            base_section(&h.path).filter(|&i| i < bases.len() && manifest.with_base)
        {
            // A base that is here already is read past.
            if let Some(base) = &mut bases[i] {
                base.unpacker.entry(&h, &mut r)?;
            }
        } else {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "importing: an entry {} that is no part of a snapshot stream",
                    String::from_utf8_lossy(&h.path)
                ),
            ));
        }
        let total = unpacker.bytes()
            + bases
                .iter()
                .flatten()
                .map(|b| b.unpacker.bytes())
                .sum::<u64>();
        if total > opts.max_size {
            return Err(Error::new(
                ErrorKind::Unsafe,
                format!(
                    "importing: the stream's files add up to more than the {} bytes allowed",
                    opts.max_size
                ),
            ));
        }
    }
    if !digest_ok {
        return Err(Error::new(
            ErrorKind::Other,
            "importing: the stream has no digest at its end: it is cut short",
        ));
    }
    // The bases the stream brought, the lowest first: each one's config
    // names those below it.
    for (i, base) in bases.into_iter().enumerate().rev() {
        if let Some(base) = base {
            base.finish(store, lxcpath, &manifest.lowers[i], &lowers[i + 1..])?;
        }
    }
    let mut stats = unpacker.finish()?;
    if let (Some(older), Some(since)) = (&older, &manifest.since) {
        let copied = super::copying::copying(
            store,
            super::copying::References::default(),
            crate::copy::Compare::QuickCheck,
            None,
            |opts| {
                crate::copy::flatten_at(
                    &tree,
                    older,
                    &since.removed,
                    &private,
                    tree_name.as_os_str(),
                    opts,
                )
            },
        )?;
        stats.entries = copied.entries;
        stats.bytes = copied.bytes;
        stats.allocated = copied.created_bytes;
    }

    publish(
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
    )
}

/// A base container the stream brings, being built in the lxcpath.
pub(super) struct NewBase {
    name: ContainerName,
    staging: crate::durable::Staging,
    config: LxcConfig,
    pub(super) unpacker: Unpacker,
}

impl NewBase {
    fn create(
        lxcpath: &crate::lxc::container::Lxcpath,
        name: ContainerName,
        lower: &LowerRef,
        config: LxcConfig,
        unpacker: impl FnOnce(&Dir) -> Result<Unpacker>,
    ) -> Result<NewBase> {
        let staging = crate::durable::Staging::create(lxcpath.dir(), name.as_str(), 0o770)?;
        let parts: Vec<&str> = lower.dir.split('/').collect();
        let mut at: Option<Dir> = None;
        for (j, part) in parts.iter().enumerate() {
            let mode = if j + 1 == parts.len() { 0o700 } else { 0o755 };
            at = Some(match &at {
                None => staging.dir().mkdir(part, mode)?,
                Some(dir) => dir.mkdir(part, mode)?,
            });
        }
        let at = at.ok_or_else(|| {
            Error::new(ErrorKind::Other, "importing: a base layer without a path")
        })?;
        if lower.dir != "rootfs" {
            // The mount point of an overlay container.
            staging.dir().mkdir("rootfs", 0o755)?;
        }
        let unpacker = unpacker(&at)?;
        Ok(NewBase {
            name,
            staging,
            config,
            unpacker,
        })
    }

    /// Checks the tree is the one the snapshot stands on, writes the
    /// config for this lxcpath and renames the container into place.
    pub(super) fn finish(
        self,
        store: &Store,
        lxcpath: &crate::lxc::container::Lxcpath,
        lower: &LowerRef,
        below: &[PathBuf],
    ) -> Result<()> {
        self.unpacker.finish()?;
        let final_dir = self.staging.final_path();
        let tree = self
            .staging
            .dir()
            .open_below(Path::new(&lower.dir), crate::dir::Below::Nothing)?;
        if tree_digest(&tree)? != lower.digest {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "importing the base {}: its tree is not the one the manifest describes",
                    self.name
                ),
            ));
        }
        let current = self.config.rootfs().unwrap_or(Rootfs::Unsupported {
            kind: String::new(),
        });
        let rootfs = match (lower.dir.as_str(), current) {
            ("rootfs", Rootfs::Dir { prefix, .. }) => Rootfs::Dir {
                prefix,
                path: final_dir.join("rootfs"),
            },
            ("rootfs", _) => Rootfs::Dir {
                prefix: "dir".to_string(),
                path: final_dir.join("rootfs"),
            },
            (dir, current) => Rootfs::Overlay {
                prefix: match current {
                    Rootfs::Overlay { prefix, .. } => prefix,
                    _ => "overlay".to_string(),
                },
                lowers: below.to_vec(),
                upper: final_dir.join(dir),
            },
        };
        let retargeted = self.config.retarget(
            &Retarget {
                old_dirs: &[lower.source_dir.as_path()],
                new_dir: &final_dir,
                new_name: self.name.as_str(),
                host_name: &host_name_for(self.name.as_str()),
                rootfs: &rootfs,
            },
            random_mac,
        );
        let bases = match lower.dir.as_str() {
            "rootfs" => Vec::new(),
            _ => bases_of_lowers(below, lxcpath),
        };
        let registered = store.finish_container_dir(
            self.staging.dir(),
            &retargeted.config,
            &bases,
            crate::lxc::container::DependencyEntry {
                lxcpath: lxcpath.path().to_path_buf(),
                name: self.name.to_string(),
            },
        )?;
        self.staging.commit()?;
        registered.keep();
        Ok(())
    }
}

/// The captured tree (whole) of the snapshot of `container` an
/// incremental stream is over: the one with its number and time, or any
/// other, whose tree has the digest the stream names.
fn find_since(store: &Store, container: &ContainerName, since: &Since, work: &Dir) -> Result<Dir> {
    let mut candidates = store.snapshots_of(container)?;
    candidates.sort_by_key(|s| {
        (
            s.name.number() != since.number,
            s.meta.created != since.created,
        )
    });
    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.ensure_complete().is_err() || candidate.is_legacy() {
            continue;
        }
        let tree = whole_tree(store, candidate, work, &format!("since.{i}"))?;
        if tree_digest(&tree)? == since.digest {
            return Ok(tree);
        }
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "importing: the stream holds only the changes since {}, and no snapshot of {container} here has that tree",
            SnapshotName::new(container.clone(), since.number)
        ),
    )
    .with_hint("import that snapshot first, or export the whole snapshot (without --since)"))
}

/// `N` of an entry `base/N` or `base/N/...`.
fn base_section(path: &[u8]) -> Option<usize> {
    let rest = path.strip_prefix(b"base/")?;
    let n = rest.split(|&b| b == b'/').next()?;
    std::str::from_utf8(n).ok()?.parse().ok()
}
/// Checks what a manifest says of the snapshot: its format, name, times
/// and comment; the snapshot it names, its creation time and expiry.
#[allow(clippy::type_complexity)]
pub(super) fn checked_manifest(
    manifest: &Manifest,
) -> Result<(
    SnapshotName,
    chrono::DateTime<chrono::FixedOffset>,
    Option<chrono::DateTime<chrono::FixedOffset>>,
)> {
    if manifest.format != STREAM_FORMAT || manifest.version > STREAM_VERSION {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "importing: a stream of format {:?} version {}, which this lxc-snap does not read",
                manifest.format, manifest.version
            ),
        ));
    }
    let from = ContainerName::parse(&manifest.container)
        .map(|c| SnapshotName::new(c, manifest.number))
        .map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("importing: the manifest's container: {e}"),
            )
        })?;
    let created = chrono::DateTime::parse_from_rfc3339(&manifest.created).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("importing: the manifest's creation time: {e}"),
        )
    })?;
    if let Some(comment) = &manifest.comment {
        store::validate_comment(comment.as_bytes().to_vec(), "the stream")?;
    }
    let expires_at = match &manifest.expires_at {
        None => None,
        Some(t) => Some(chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("importing: the manifest's expiry: {e}"),
            )
        })?),
    };
    Ok((from, created, expires_at))
}

/// A config from a stream: UTF-8, without lxc-snap's own reset hook (set
/// for this host when published), refused when it acts on the host unless
/// trusted.
pub(super) fn checked_config(bytes: Vec<u8>, trust: bool) -> Result<LxcConfig> {
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::Other, "importing: a config that is not UTF-8"))?;
    let mut config = LxcConfig::parse(&text);
    config.set_reset_hook(None);
    if !trust {
        check_config(&config)?;
    }
    Ok(config)
}

/// The base of an imported snapshot: each lower's path here, and for each
/// one that is not here (and comes with a config) the container being
/// built for it, its tree unpacked by `unpacker(index, dir)`.
#[allow(clippy::type_complexity)]
pub(super) fn bases_for(
    store: &Store,
    manifest: &Manifest,
    from: &SnapshotName,
    base_configs: Vec<Option<LxcConfig>>,
    unpacker: impl Fn(usize, &Dir) -> Result<Unpacker>,
) -> Result<(Vec<PathBuf>, Vec<Option<NewBase>>)> {
    let lxcpath = store.lxcpath()?;
    let mut lowers = Vec::new();
    let mut bases: Vec<Option<NewBase>> = Vec::new();
    for (i, (lower, base_config)) in manifest.lowers.iter().zip(base_configs).enumerate() {
        let name = ContainerName::parse(&lower.container).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("importing: the manifest's base container: {e}"),
            )
        })?;
        if !LOWER_DIRS.contains(&lower.dir.as_str()) {
            return Err(Error::new(
                ErrorKind::Other,
                format!("importing: the manifest's base layer {:?}", lower.dir),
            ));
        }
        let path = lxcpath.path().join(name.as_str()).join(&lower.dir);
        lowers.push(path.clone());
        if !store.container_exists(&name) {
            let Some(config) = base_config else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "importing {from}: it stands on {}, which is not here",
                        path.display()
                    ),
                )
                .with_hint(format!(
                    "create the base container {name} in {} as it is where the stream comes from, or export with --with-base",
                    lxcpath.path().display()
                )));
            };
            bases.push(Some(NewBase::create(lxcpath, name, lower, config, |at| {
                unpacker(i, at)
            })?));
            continue;
        }
        let dir = store.open_lower(&path)?;
        if tree_digest(&dir)? != lower.digest {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "importing {from}: the base {} is not the one it stands on where the stream comes from",
                    path.display()
                ),
            )
            .with_hint("the base container must be the same on both hosts"));
        }
        bases.push(None);
    }
    Ok((lowers, bases))
}

/// What an import built, to be published.
pub(super) struct Built<'a> {
    pub manifest: &'a Manifest,
    pub from: &'a SnapshotName,
    pub config: LxcConfig,
    pub lowers: Vec<PathBuf>,
    pub container: ContainerName,
    pub created: chrono::DateTime<chrono::FixedOffset>,
    pub expires_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub stats: crate::copy::pack::UnpackStats,
}

/// Writes the config, times, comment and metadata of an imported snapshot
/// and publishes it.
pub(super) fn publish(
    store: &Store,
    lock: &store::NameLock,
    new: store::NewSnapshot,
    built: Built,
) -> Result<Imported> {
    let Built {
        manifest,
        from,
        config,
        lowers,
        container,
        created,
        expires_at,
        stats,
    } = built;
    let lxcpath = store.lxcpath()?;
    // The config: the stream's, for this snapshot's place and layers.
    let final_dir = new.final_path();
    let mut stacked = vec![store::tree_path(&final_dir, manifest.backing)];
    stacked.extend(lowers.iter().cloned());
    let rootfs = Rootfs::Overlay {
        prefix: Rootfs::overlay_prefix_for(&manifest.rootfs_key, &manifest.rootfs_prefix),
        lowers: stacked,
        upper: store::scratch_upper(&final_dir),
    };
    let name = new.name.to_string();
    let retargeted = config.retarget(
        &Retarget {
            old_dirs: &[manifest.source_dir.as_path()],
            new_dir: &final_dir,
            new_name: &name,
            host_name: &host_name_for(&name),
            rootfs: &rootfs,
        },
        random_mac,
    );
    if !retargeted.copy.is_empty() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "importing {from}: its config names files in the snapshot's directory ({}), which streams do not carry",
                retargeted
                    .copy
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut config = retargeted.config;
    let hook = super::take::reset_hook(store).ok();
    config.set_reset_hook(hook.as_deref());
    new.dir()
        .write_file(store::TS_FILE, store::ts_text(&created).as_bytes(), 0o644)?;
    store::write_comment(
        new.dir(),
        manifest.comment.as_deref().filter(|c| !c.is_empty()),
    )?;
    let lower_fingerprints = store
        .open_lowers(&lowers)?
        .iter()
        .map(TreeFingerprint::of)
        .collect::<Result<Vec<_>>>()?;
    let meta = Metadata {
        format_version: WHOLE_FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        container: container.to_string(),
        lxcpath: lxcpath.path().to_path_buf(),
        created: manifest.created.clone(),
        backing: manifest.backing,
        rootfs_key: manifest.rootfs_key.clone(),
        rootfs_prefix: manifest.rootfs_prefix.clone(),
        lowers: lowers.clone(),
        files: stats.entries,
        bytes: stats.bytes,
        refer_bytes: Some(stats.allocated),
        used_bytes: stats.allocated,
        hidden_bytes: None,
        pinned: manifest.pinned,
        expires_at: expires_at.map(store::expiry_text),
        auto: false,
        lower_fingerprints,
        multi_name_inodes: None,
        layer: None,
        held: false,
        legacy: None,
        other: serde_json::Map::new(),
    };
    store::write_metadata(new.dir(), &meta)?;
    let bases = bases_of_lowers(&lowers, lxcpath);
    store.cancel().check()?;
    let registered = store.finish_container_dir_with(
        new.dir(),
        &config,
        &bases,
        &bases,
        store.entry(&new.name),
    )?;
    let snapshot: Snapshot = store.commit(new, lock, stats.allocated)?;
    registered.keep();
    Ok(Imported {
        snapshot: snapshot.name.to_string(),
        from: from.to_string(),
        entries: stats.entries,
        bytes: stats.bytes,
    })
}

/// Config keys a stream may not bring unless trusted: they run programs
/// or read and write files on the host.
fn check_config(config: &LxcConfig) -> Result<()> {
    let mut refused = Vec::new();
    for (key, value) in config.entries() {
        let host_hook =
            key.starts_with("lxc.hook.") && !matches!(key, "lxc.hook.start" | "lxc.hook.version");
        let host_file = matches!(
            key,
            "lxc.log.file"
                | "lxc.console.logfile"
                | "lxc.console.path"
                | "lxc.mount.fstab"
                | "lxc.mount"
                | "lxc.seccomp.profile"
                | "lxc.seccomp"
                | "lxc.apparmor.raw"
        );
        let include =
            matches!(key, "lxc.include") && !value.trim().starts_with("/usr/share/lxc/config/");
        let unconfined = matches!(key, "lxc.apparmor.profile" | "lxc.aa_profile")
            && value.trim() == "unconfined";
        let bind = matches!(key, "lxc.mount.entry") && !safe_mount_entry(value);
        if host_hook || host_file || include || unconfined || bind {
            refused.push(format!("{key} = {value}"));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unsafe,
        format!(
            "importing: the stream's config acts on the host: {}",
            refused.join("; ")
        ),
    )
    .with_hint("if the stream is your own, import it with --trust-config"))
}

/// A mount entry that shows the container nothing of the host's but
/// read-only system directories (or mounts no host path at all).
fn safe_mount_entry(value: &str) -> bool {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let (Some(source), Some(options)) = (fields.first(), fields.get(3)) else {
        return false;
    };
    let binds = options.split(',').any(|o| o == "bind" || o == "rbind");
    if !binds {
        return !source.starts_with('/');
    }
    const SYSTEM: [&str; 8] = [
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/usr/share",
        "/bin",
        "/usr/bin",
        "/sys/kernel/security",
    ];
    let read_only = options.split(',').any(|o| o == "ro");
    read_only && SYSTEM.contains(source)
}

/// Reads the next entry, which must be the regular file `name` of at most
/// `max` bytes.
fn expect_file<R: Read>(r: &mut Reader<R>, name: &str, max: u64) -> Result<Vec<u8>> {
    let bad = |e: TarError| Error::new(ErrorKind::Other, format!("importing: {e}"));
    let h = r.next_header().map_err(bad)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            format!("importing: the stream ends before its {name}"),
        )
    })?;
    if h.path != name.as_bytes() || h.kind != Kind::File {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "importing: not a snapshot stream (its first entries must be {MANIFEST} and {CONFIG})"
            ),
        ));
    }
    read_small(r, &h, max)
}

fn read_small<R: Read>(r: &mut Reader<R>, h: &Header, max: u64) -> Result<Vec<u8>> {
    let bad = |e: TarError| Error::new(ErrorKind::Other, format!("importing: {e}"));
    if h.size > max {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "importing: the stream's {} is larger than {max} bytes",
                String::from_utf8_lossy(&h.path)
            ),
        ));
    }
    let mut data = vec![0u8; h.size as usize];
    let mut at = 0;
    while at < data.len() {
        let n = r.read_data(&mut data[at..]).map_err(bad)?;
        if n == 0 {
            return Err(bad(TarError::Truncated));
        }
        at += n;
    }
    Ok(data)
}

/// A stream's bytes, decompressed as their first bytes say.
fn decompressed<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input
        .fill_buf()
        .map_err(|e| Error::io("reading", Path::new("the stream"), e))?;
    Ok(if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::io("reading", Path::new("the stream"), e))?,
        )
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    })
}

/// A reader or writer that hashes what passes through it.
pub struct Hashing<T> {
    inner: T,
    hash: Sha256,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }

    /// `sha256:HEX` of what passed so far.
    pub fn digest(&self) -> String {
        let sum = self.hash.clone().finalize();
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A stream's compression on the way out.
enum Compressor<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    None(W),
}

impl<W: Write> Compressor<W> {
    fn new(out: W, how: Compression, level: Option<i32>) -> io::Result<Compressor<W>> {
        Ok(match how {
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level.unwrap_or(3))?;
                e.include_checksum(true)?;
                Compressor::Zstd(e)
            }
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.unwrap_or(6).clamp(0, 9) as u32),
            )),
            Compression::None => Compressor::None(out),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Zstd(e) => e.finish(),
            Compressor::Gzip(e) => e.finish(),
            Compressor::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(e) => e.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::None(w) => w.flush(),
        }
    }
}
