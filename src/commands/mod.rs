//! One file per command. Each takes the parsed [`Command`] fields and a
//! [`Context`] and talks to the store, the copier and the LXC layer.

mod comment;
mod completions;
mod delete;
mod diff;
mod info;
mod list;
mod mount;
mod pin;
mod prune;
mod restore;
mod rollback;
mod snap;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::OnceLock;

use crate::cli::{Command, CommentSource, Globals};
use crate::dir::{self, Below, Dir};
use crate::durable;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::{DependencyEntry, Lxcpath};
use crate::store::{self, Store};
use crate::ui::Ui;

/// LXC's compiled-in default, used when `lxc-config` cannot tell.
const DEFAULT_LXCPATH: &str = "/var/lib/lxc";

/// What every command gets: where things are and how loud to be.
pub struct Context {
    pub store: Store,
    pub ui: Ui,
    lxcpath_given: Option<PathBuf>,
    lxcpath: OnceLock<Lxcpath>,
    allow_lowers: Vec<PathBuf>,
}

impl Context {
    pub fn new(globals: Globals) -> Context {
        Context {
            store: Store::new(globals.snapdir),
            ui: Ui {
                quiet: globals.quiet,
            },
            lxcpath_given: globals.lxcpath,
            lxcpath: OnceLock::new(),
            allow_lowers: globals.allow_lowers,
        }
    }

    /// `-P`, else what `lxc-config lxc.lxcpath` prints, else /var/lib/lxc.
    pub fn lxcpath_path(&self) -> PathBuf {
        if let Some(p) = &self.lxcpath_given {
            return p.clone();
        }
        Process::new("lxc-config")
            .arg("lxc.lxcpath")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| s.starts_with('/'))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LXCPATH))
    }

    /// The lxcpath, opened (and, as root, checked) on first use.
    pub fn lxcpath(&self) -> Result<&Lxcpath> {
        if let Some(l) = self.lxcpath.get() {
            return Ok(l);
        }
        let opened = Lxcpath::open(&self.lxcpath_path())?;
        Ok(self.lxcpath.get_or_init(|| opened))
    }

    /// Where dependency files may be written: the lxcpath and the snapdir.
    fn places(&self) -> Result<[&Dir; 2]> {
        Ok([self.lxcpath()?.dir(), self.store.root()?])
    }

    /// Opens a lower layer that a config or a snapshot's metadata names.
    /// A path from there is data, so only these are used: the rootfs
    /// directory of a container in the lxcpath (`<lxcpath>/<name>/rootfs`,
    /// or the directory its config names inside its own directory), a
    /// snapshot's captured tree in the snapdir, or a path the admin allowed
    /// with `--allow-lower`. Every directory on the way must be root's alone.
    fn open_lower(&self, path: &Path) -> Result<Dir> {
        if self.allow_lowers.iter().any(|a| a == path) {
            return Dir::open_trusted_parents(path, "lower layer");
        }
        let lxcpath = self.lxcpath()?;
        if let Some(rel) = lxcpath.inside(path) {
            if let Some(dir) = self.container_rootfs(lxcpath, &rel)? {
                return Ok(dir);
            }
        }
        let snapdir = self.store.root()?;
        if let Some(rel) =
            dir::inside(path, snapdir.path()).or_else(|| dir::inside(path, self.store.dir()))
        {
            let parts = dir::plain_components(rel).unwrap_or_default();
            if let [snap, private, tree] = parts.as_slice() {
                let known = snap
                    .to_str()
                    .and_then(crate::names::SnapshotName::try_parse)
                    .is_some_and(|n| self.store.get_with_held(&n).is_ok());
                if known && *private == "private" && (*tree == "delta" || *tree == "rootfs") {
                    return snapdir.open_below(rel, Below::Nothing);
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing the lower layer {}: it is neither a container's rootfs in {} nor a snapshot in {}",
                path.display(),
                lxcpath.path().display(),
                self.store.dir().display()
            ),
        )
        .with_hint(format!(
            "if it is a base you trust, allow it: --allow-lower {}",
            path.display()
        )))
    }

    /// Every read-only layer of what `snapshot` captured, top first and
    /// held open: its tree, the anchor's for a layer, then its lowers (the
    /// ones lxc-snap accepts, see [`Context::open_lower`]).
    fn snapshot_layers(&self, snapshot: &store::Snapshot) -> Result<Vec<Dir>> {
        snapshot.ensure_complete()?;
        let mut layers = vec![self.store.tree_dir(snapshot)?];
        layers.extend(self.store.anchor_tree_dir(snapshot)?);
        for lower in &snapshot.meta.lowers {
            layers.push(self.open_lower(lower)?);
        }
        Ok(layers)
    }

    /// The rootfs of the container `rel` (below the lxcpath) names, if it
    /// is one: `NAME/rootfs`, or the directory NAME's config names inside
    /// its own directory.
    fn container_rootfs(&self, lxcpath: &Lxcpath, rel: &Path) -> Result<Option<Dir>> {
        let parts = dir::plain_components(rel).unwrap_or_default();
        let Some(name) = parts
            .first()
            .and_then(|n| n.to_str())
            .and_then(|n| crate::names::ContainerName::parse(n).ok())
        else {
            return Ok(None);
        };
        let Ok(container) = crate::lxc::Container::open(lxcpath, &name) else {
            return Ok(None);
        };
        let inner: PathBuf = parts[1..].iter().collect();
        let own_rootfs = match container.config.rootfs() {
            Ok(crate::lxc::Rootfs::Dir { path, .. }) => container.inside(&path),
            _ => None,
        };
        if inner != Path::new("rootfs") && Some(&inner) != own_rootfs.as_ref() {
            return Ok(None);
        }
        container.dir().open_below(&inner, Below::Parents).map(Some)
    }
}

pub fn run(command: Command, ctx: &Context) -> Result<()> {
    match command {
        Command::Snap {
            container,
            comment,
            increment,
        } => snap::run(ctx, &container, comment.as_ref(), increment),
        Command::List { container, json } => list::run(ctx, container.as_ref(), json),
        Command::Restore { snapshot, new_name } => restore::run(ctx, &snapshot, &new_name),
        Command::Comment { snapshot, set } => comment::run(ctx, &snapshot, set.as_ref()),
        Command::Completions { shell } => completions::run(shell),
        Command::CompleteNames { words } => completions::names(ctx, &words),
        Command::Delete { targets, force } => delete::run(ctx, &targets, force),
        Command::Pin { snapshot, pinned } => pin::run(ctx, &snapshot, pinned),
        Command::Info { snapshot, json } => info::run(ctx, &snapshot, json),
        Command::Rollback { snapshot, backup } => rollback::run(ctx, &snapshot, backup),
        Command::Mount { snapshot, dir } => mount::mount_snapshot(ctx, &snapshot, &dir),
        Command::Umount { dir } => mount::umount_snapshot(ctx, &dir),
        Command::Prune {
            container,
            policy,
            dry_run,
            json,
        } => prune::run(ctx, container.as_ref(), &policy, dry_run, json),
        Command::Diff {
            old,
            new,
            content,
            json,
        } => diff::run(ctx, &old, new.as_ref(), content, json),
    }
}

/// Refuses to go on without root, before anything touches the disk.
fn require_root(what: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Other, format!("{what} needs root"))
            .with_hint("run it with sudo"))
    }
}

/// Reads and checks a comment from the command line, a file or stdin.
fn read_comment(source: &CommentSource) -> Result<String> {
    match source {
        CommentSource::Text(text) => {
            store::validate_comment(text.clone().into_bytes(), "the command line")
        }
        CommentSource::File(path) => {
            let bytes = durable::read_untrusted(path, store::MAX_COMMENT, "comment file")?;
            let source = if path.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                path.display().to_string()
            };
            store::validate_comment(bytes, &source)
        }
    }
}

/// Copies a tree as `dst_name` in `dst_parent`, linking files unchanged
/// since `reference` (a previous snapshot's tree) when one is given; see
/// [`copying`].
fn copy_tree(
    ctx: &Context,
    src: &Dir,
    dst_parent: &Dir,
    dst_name: &str,
    reference: Option<&Dir>,
    compare: crate::copy::Compare,
) -> Result<crate::copy::CopyStats> {
    copying(ctx, reference, compare, |opts| {
        crate::copy::copy_dir(src, dst_parent, dst_name.as_ref(), opts)
    })
}

/// Copies what `snapshot` captured as `dst_name` in `dst_parent`, as one
/// independent tree: its tree, or for a layer the anchor's tree with the
/// layer applied.
fn copy_snapshot_tree(
    ctx: &Context,
    snapshot: &crate::store::Snapshot,
    dst_parent: &Dir,
    dst_name: &str,
) -> Result<crate::copy::CopyStats> {
    snapshot.ensure_complete()?;
    let tree = ctx.store.tree_dir(snapshot)?;
    let (Some(layer), Some(anchor)) = (&snapshot.meta.layer, ctx.store.anchor_tree_dir(snapshot)?)
    else {
        return copy_tree(
            ctx,
            &tree,
            dst_parent,
            dst_name,
            None,
            crate::copy::Compare::QuickCheck,
        );
    };
    copying(ctx, None, crate::copy::Compare::QuickCheck, |opts| {
        crate::copy::flatten_at(
            &tree,
            &anchor,
            &layer.removed,
            dst_parent,
            dst_name.as_ref(),
            opts.progress,
        )
    })
}

/// Runs `copy` with a progress line on a terminal for copies that take
/// more than a second; warns about every mount point below the source that
/// was not crossed.
fn copying(
    ctx: &Context,
    reference: Option<&Dir>,
    compare: crate::copy::Compare,
    copy: impl FnOnce(&crate::copy::CopyOptions) -> Result<crate::copy::CopyStats>,
) -> Result<crate::copy::CopyStats> {
    let progress = Progress::new(ctx.ui);
    let report = |bytes: u64| progress.update(bytes);
    let opts = crate::copy::CopyOptions {
        reference,
        compare,
        progress: Some(&report),
        ..Default::default()
    };
    let stats = copy(&opts);
    progress.finish();
    let stats = stats?;
    for p in &stats.skipped_mounts {
        ctx.ui.warn(&format!(
            "left out what is mounted at {}: another filesystem, not part of the container's tree",
            p.display()
        ));
    }
    Ok(stats)
}

/// A byte counter on stderr that appears only when stderr is a terminal,
/// `--quiet` is off and the copy has run for more than a second.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: std::time::Instant,
}

impl Progress {
    fn new(ui: crate::ui::Ui) -> Progress {
        use std::io::IsTerminal;
        let bar = (!ui.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::hidden(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} copied {bytes} ({bytes_per_sec}) {elapsed}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            start: std::time::Instant::now(),
        }
    }

    fn update(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            if bar.is_hidden() && self.start.elapsed() > std::time::Duration::from_secs(1) {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_position(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Checks the files a retargeted config refers to and copies those in the
/// old container directory (`from`, whose tree is at `tree_rel`) to the
/// same place in `to`. Root reads or runs them when the new container
/// starts, so each must be root's alone: a file inside the container's own
/// tree (which the container can rewrite) is refused, as is one that
/// someone else could change, there or outside. Copies get their
/// permission bits without write access for group and others, and their
/// directories 0755, whatever the umask.
fn copy_config_files(
    retargeted: &crate::lxc::config::Retargeted,
    from: &Dir,
    tree_rel: &Path,
    to: &Dir,
) -> Result<()> {
    for rel in &retargeted.copy {
        if rel.starts_with(tree_rel) {
            return Err(Error::new(
                ErrorKind::Unsafe,
                format!(
                    "refusing the config of {}: it names {}, inside the container's own tree, which the container can rewrite",
                    from.path().display(),
                    from.join(rel).display()
                ),
            )
            .with_hint("keep fstab and hook files in the container's directory, beside its config"));
        }
        let (Some(name), parent) = (rel.file_name(), rel.parent().unwrap_or(Path::new(""))) else {
            continue;
        };
        let src_dir = if parent.as_os_str().is_empty() {
            from.try_clone()?
        } else {
            from.open_below(parent, Below::All)?
        };
        let path = src_dir.join(name);
        let Some(st) = src_dir.stat_at(name)? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("copying {}: No such file or directory", path.display()),
            ));
        };
        check_root_file(&st, &path)?;
        let data = src_dir.read_file(name, 16 << 20, "config file")?;
        let mut dst = to.try_clone()?;
        for part in parent.iter() {
            dst = match dst.mkdir(part, 0o755) {
                Ok(d) => d,
                Err(e) if e.kind() == ErrorKind::Exists => dst.open_dir(part)?,
                Err(e) => return Err(e),
            };
        }
        dst.write_file(name, &data, st.st_mode & 0o755)?;
    }
    for (key, path) in &retargeted.outside {
        check_outside_file(key, path)?;
    }
    Ok(())
}

/// Refuses a file someone other than root could change.
fn check_root_file(st: &nix::sys::stat::FileStat, path: &Path) -> Result<()> {
    let foreign = st.st_mode & libc::S_IFMT != libc::S_IFREG
        || st.st_uid != 0
        || st.st_mode & 0o002 != 0
        || (st.st_mode & 0o020 != 0 && st.st_gid != 0);
    if foreign && nix::unistd::geteuid().is_root() {
        return Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing {}: root reads or runs it for the container, but it is not a regular file only root can change (owner uid {}, mode {:o})",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777
            ),
        )
        .with_hint(format!("chown root:root {0} && chmod go-w {0}", path.display())));
    }
    Ok(())
}

/// A file outside the container's directory that the config makes root
/// read (fstab) or run (a host hook): kept in the new config only if it and
/// every directory above it are root's alone.
fn check_outside_file(key: &str, path: &Path) -> Result<()> {
    let in_context = |e: Error| e.prefixed(&format!("refusing {key} = {}", path.display()));
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let dir = match Dir::open_trusted(parent, None, "directory") {
        Ok(dir) => dir,
        // A hook that is not there fails LXC's start, not ours; nobody
        // but root can create it in a missing directory of a trusted one.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(in_context(e)),
    };
    match dir.stat_at(name)? {
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => Err(in_context(Error::new(
            ErrorKind::Unsafe,
            format!("{} is a symbolic link", path.display()),
        ))),
        Some(st) => check_root_file(&st, path).map_err(in_context),
        None => Ok(()),
    }
}

/// Takes back what a run that died registered with base containers for
/// `<parent>/<name>` (it registers just before its final rename), unless a
/// complete `<parent>/<name>` exists after all. Best effort: a base that
/// cannot be updated keeps a stale entry, which only makes lxc-destroy
/// more careful.
fn forget_registrations(ctx: &Context, leftover: &Dir, parent: &Dir, name: &str) {
    if parent.stat_at(name).ok().flatten().is_some() {
        return;
    }
    let Ok(bases) = crate::lxc::container::read_dependency_file(leftover, "lxc_rdepends") else {
        return;
    };
    let Ok(places) = ctx.places() else {
        return;
    };
    let dependent = DependencyEntry {
        lxcpath: parent.path().to_path_buf(),
        name: name.to_string(),
    };
    for base in &bases {
        let _ = crate::lxc::container::update_dependents(&places, base, &dependent, false);
    }
}

/// The last steps before a new container directory (a snapshot or a
/// restored container, still under its staging name) is renamed into
/// place: its `lxc_rdepends` and config, then its registration with its
/// bases as `dependent`, taken back if the caller fails before keeping it.
fn finish_container_dir<'c>(
    ctx: &'c Context,
    dir: &Dir,
    config: &crate::lxc::LxcConfig,
    bases: &[DependencyEntry],
    dependent: DependencyEntry,
) -> Result<Registrations<'c>> {
    crate::lxc::container::write_rdepends(dir, bases)?;
    dir.write_file("config", config.render().as_bytes(), 0o640)?;
    Registrations::register(ctx, bases, dependent)
}

/// Entries added to base containers' `lxc_snapshots`, taken back on drop
/// unless kept, so that a failed run leaves the bases as they were.
struct Registrations<'c> {
    ctx: &'c Context,
    done: Vec<(DependencyEntry, DependencyEntry)>,
    keep: bool,
}

impl<'c> Registrations<'c> {
    fn register(
        ctx: &'c Context,
        bases: &[DependencyEntry],
        dependent: DependencyEntry,
    ) -> Result<Registrations<'c>> {
        let mut r = Registrations {
            ctx,
            done: Vec::new(),
            keep: false,
        };
        let places = ctx.places()?;
        for base in bases {
            crate::lxc::container::update_dependents(&places, base, &dependent, true)?;
            r.done.push((base.clone(), dependent.clone()));
        }
        Ok(r)
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Registrations<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let Ok(places) = self.ctx.places() else {
            return;
        };
        for (base, dependent) in &self.done {
            // Best effort: the failure that got us here is what gets reported.
            let _ = crate::lxc::container::update_dependents(&places, base, dependent, false);
        }
    }
}
