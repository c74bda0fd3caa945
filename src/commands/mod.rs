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

use std::path::PathBuf;
use std::process::Command as Process;

use crate::cli::{Command, CommentSource, Globals};
use crate::durable;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{self, Store};
use crate::ui::Ui;

/// LXC's compiled-in default, used when `lxc-config` cannot tell.
const DEFAULT_LXCPATH: &str = "/var/lib/lxc";

/// What every command gets: where things are and how loud to be.
pub struct Context {
    pub store: Store,
    pub ui: Ui,
    lxcpath: Option<PathBuf>,
}

impl Context {
    pub fn new(globals: Globals) -> Context {
        Context {
            store: Store::new(globals.snapdir),
            ui: Ui {
                quiet: globals.quiet,
            },
            lxcpath: globals.lxcpath,
        }
    }

    /// `-P`, else what `lxc-config lxc.lxcpath` prints, else /var/lib/lxc.
    pub fn lxcpath(&self) -> PathBuf {
        if let Some(p) = &self.lxcpath {
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

/// Copies a container tree, linking files unchanged since `reference` (a
/// previous snapshot's tree) when one is given; see [`copying`].
fn copy_tree(
    ctx: &Context,
    src: &std::path::Path,
    dst: &std::path::Path,
    reference: Option<&std::path::Path>,
    compare: crate::copy::Compare,
) -> Result<crate::copy::CopyStats> {
    copying(ctx, reference, compare, |opts| {
        crate::copy::copy_tree_with(src, dst, opts)
    })
}

/// Copies what `snapshot` captured to `dst` as one independent tree: its
/// tree, or for a layer the anchor's tree with the layer applied.
fn copy_snapshot_tree(
    ctx: &Context,
    snapshot: &crate::store::Snapshot,
    dst: &std::path::Path,
) -> Result<crate::copy::CopyStats> {
    snapshot.ensure_complete()?;
    let (Some(layer), Some(anchor)) = (&snapshot.meta.layer, snapshot.anchor_tree()) else {
        return copy_tree(
            ctx,
            &snapshot.tree(),
            dst,
            None,
            crate::copy::Compare::QuickCheck,
        );
    };
    copying(ctx, None, crate::copy::Compare::QuickCheck, |opts| {
        crate::copy::flatten(
            &snapshot.tree(),
            &anchor,
            &layer.removed,
            dst,
            opts.progress,
        )
    })
}

/// Runs `copy` with a progress line on a terminal for copies that take
/// more than a second; warns about every mount point below the source that
/// was not crossed.
fn copying(
    ctx: &Context,
    reference: Option<&std::path::Path>,
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

/// Copies the files a retargeted config refers to (fstab, hook scripts)
/// into the staging directory that will become `final_dir`.
fn copy_config_files(
    files: &[crate::lxc::config::FileToCopy],
    final_dir: &std::path::Path,
    staging: &std::path::Path,
) -> Result<()> {
    for f in files {
        let rel = f.to.strip_prefix(final_dir).map_err(|_| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "copying {}: target {} is outside {}",
                    f.from.display(),
                    f.to.display(),
                    final_dir.display()
                ),
            )
        })?;
        durable::copy_small_file(&f.from, &staging.join(rel))?;
    }
    Ok(())
}

/// Takes back what a run that died registered with base containers for
/// `<parent>/<name>` (it registers just before its final rename), unless a
/// complete `<parent>/<name>` exists after all. Best effort: a base that
/// cannot be updated keeps a stale entry, which only makes lxc-destroy
/// more careful.
fn forget_registrations(leftover: &std::path::Path, parent: &std::path::Path, name: &str) {
    if std::fs::symlink_metadata(parent.join(name)).is_ok() {
        return;
    }
    let Ok(bases) = crate::lxc::container::read_dependency_file(&leftover.join("lxc_rdepends"))
    else {
        return;
    };
    let dependent = crate::lxc::container::DependencyEntry {
        lxcpath: parent.to_path_buf(),
        name: name.to_string(),
    };
    for base in &bases {
        let _ = crate::lxc::container::update_dependents(base, &dependent, false);
    }
}

/// The last steps before a new container directory (a snapshot or a
/// restored container, still under its staging name) is renamed into
/// place: its `lxc_rdepends` and config, then its registration with its
/// bases as `dependent`, taken back if the caller fails before keeping it.
fn finish_container_dir(
    dir: &std::path::Path,
    config: &crate::lxc::LxcConfig,
    bases: &[crate::lxc::container::DependencyEntry],
    dependent: crate::lxc::container::DependencyEntry,
) -> Result<Registrations> {
    crate::lxc::container::write_rdepends(dir, bases)?;
    durable::write_atomic(&dir.join("config"), config.render().as_bytes(), 0o640)?;
    Registrations::register(bases, dependent)
}

/// Entries added to base containers' `lxc_snapshots`, taken back on drop
/// unless kept, so that a failed run leaves the bases as they were.
struct Registrations {
    done: Vec<(
        crate::lxc::container::DependencyEntry,
        crate::lxc::container::DependencyEntry,
    )>,
    keep: bool,
}

impl Registrations {
    fn register(
        bases: &[crate::lxc::container::DependencyEntry],
        dependent: crate::lxc::container::DependencyEntry,
    ) -> Result<Registrations> {
        let mut r = Registrations {
            done: Vec::new(),
            keep: false,
        };
        for base in bases {
            crate::lxc::container::update_dependents(base, &dependent, true)?;
            r.done.push((base.clone(), dependent.clone()));
        }
        Ok(r)
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Registrations {
    fn drop(&mut self) {
        if !self.keep {
            for (base, dependent) in &self.done {
                // Best effort: the failure that got us here is what gets reported.
                let _ = crate::lxc::container::update_dependents(base, dependent, false);
            }
        }
    }
}
