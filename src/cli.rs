//! The command line. Both spellings (the original tool's `-l`, `-r`, `-c`
//! and the subcommands) parse into one [`Invocation`]; nothing after this
//! module knows which one the user typed.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, ErrorKind, Result};
use crate::names::{ContainerName, SnapshotName};
pub use crate::ops::{
    Compression, ExecOptions, ExportOptions, ImportOptions, Increment, RebuildOptions, Selection,
    UndoOptions,
};
use crate::prune::{Count, Lifetime, Policy, Within};
use crate::store::LockWait;

/// Where a comment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentSource {
    Text(String),
    /// A file; `-` is standard input.
    File(PathBuf),
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Snap {
        container: ContainerName,
        comment: Option<CommentSource>,
        increment: Increment,
        /// Freeze a running container while its tree is read.
        freeze: bool,
        /// When the new snapshot expires.
        expiry: Option<Expiry>,
        /// Print the new snapshot's record as JSON.
        json: bool,
    },
    List {
        container: Option<ContainerName>,
        json: bool,
        /// Print the table without its header line (and total line).
        no_header: bool,
        /// The table's columns, in order (`-o`); empty: the usual ones.
        columns: Vec<ListColumn>,
    },
    Restore {
        snapshot: SnapshotName,
        new_name: ContainerName,
    },
    /// Linked clones of `snapshot`, one per name.
    Clone {
        snapshot: SnapshotName,
        new_names: Vec<ContainerName>,
    },
    Comment {
        snapshot: SnapshotName,
        set: Option<CommentSource>,
    },
    /// Print the completion script for `shell`.
    Completions {
        shell: Shell,
    },
    /// Print the container or snapshot names that can follow `words` (the
    /// command line being completed, without the program name).
    CompleteNames {
        words: Vec<String>,
    },
    Delete {
        targets: Vec<Selection>,
        force: bool,
        dry_run: bool,
    },
    Pin {
        snapshot: SnapshotName,
        pinned: bool,
    },
    Prune {
        /// `None`: every container with snapshots.
        container: Option<ContainerName>,
        policy: Policy,
        /// Delete expired snapshots too (or only them, without rules).
        expired: bool,
        dry_run: bool,
        json: bool,
    },
    Diff {
        old: SnapshotName,
        /// `None`: the container's current state.
        new: Option<SnapshotName>,
        content: bool,
        json: bool,
    },
    Info {
        snapshot: SnapshotName,
        json: bool,
    },
    Rollback {
        snapshot: SnapshotName,
        backup: bool,
    },
    /// Convert the original lxc-snap's snapshots of `container`, or with
    /// `from_lxc_snapshot` lxc-snapshot's (kept with `keep`).
    Adopt {
        container: ContainerName,
        dry_run: bool,
        from_lxc_snapshot: bool,
        keep: bool,
    },
    /// Empty what the snapshot wrote when started; `starting`: run by
    /// LXC's pre-start hook.
    Reset {
        snapshot: SnapshotName,
        starting: bool,
    },
    Mount {
        snapshot: SnapshotName,
        dir: PathBuf,
    },
    Umount {
        dir: PathBuf,
    },
    /// Set when the snapshot expires; `None`: never.
    Expire {
        snapshot: SnapshotName,
        expiry: Option<Expiry>,
    },
    /// Verify snapshots (`None`: every container's); with `repair`, fix
    /// what can be fixed safely.
    Check {
        container: Option<ContainerName>,
        repair: bool,
        json: bool,
    },
    /// Take and prune what the policies in `policy_dir` say is due.
    Auto {
        policy_dir: PathBuf,
        dry_run: bool,
    },
    /// A directory of a snapshot, or one entry (`path`: raw bytes).
    Ls {
        snapshot: SnapshotName,
        path: Vec<u8>,
        long: bool,
        json: bool,
    },
    Cat {
        snapshot: SnapshotName,
        path: Vec<u8>,
    },
    Cp {
        snapshot: SnapshotName,
        path: Vec<u8>,
        dest: PathBuf,
    },
    /// Put `paths` of the snapshot's (stopped) container back as the
    /// snapshot has them.
    Undo {
        opts: UndoOptions,
        json: bool,
    },
    /// Run a command in a throwaway linked clone.
    Exec {
        opts: Box<ExecOptions>,
    },
    /// Put containers onto another snapshot, keeping their config.
    Rebuild {
        opts: RebuildOptions,
    },
    /// Write a snapshot as one stream, to FILE or standard output.
    Export {
        opts: ExportOptions,
        output: Option<PathBuf>,
    },
    /// Send a snapshot to an OCI registry as the image REF.
    Push {
        snapshot: SnapshotName,
        reference: String,
        insecure: bool,
    },
    /// Bring an image from an OCI registry: a snapshot again, or a container.
    Pull {
        opts: crate::ops::oci::PullOptions,
    },
    /// Write a snapshot as an image of the OCI layout DIR, named TAG.
    ExportOci {
        snapshot: SnapshotName,
        dir: PathBuf,
        tag: String,
    },
    /// Recreate a snapshot from a stream (FILE, or `-`: standard input).
    Import {
        opts: ImportOptions,
        input: PathBuf,
    },
}

/// When a snapshot expires: a while from now, or at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    After(Lifetime),
    At(chrono::DateTime<chrono::FixedOffset>),
}

/// `--expires-at`: RFC 3339, or a local `YYYY-MM-DD[ HH:MM[:SS]]`.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t);
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    naive
        .and_then(|n| chrono::Local.from_local_datetime(&n).earliest())
        .map(|t| t.fixed_offset())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                format!(
                    "{text:?} is no time: give RFC 3339 or YYYY-MM-DD [HH:MM[:SS]] in local time"
                ),
            )
        })
}

/// A shell lxc-snap has a completion script for.
/// `export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Stream,
    Oci,
}

/// `export --compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn increment_from_flags(full: bool, whole: bool, checksum: bool) -> Increment {
    match (full, whole, checksum) {
        (true, _, _) => Increment::Full,
        (false, true, false) => Increment::Whole,
        (false, true, true) => Increment::WholeChecksum,
        (false, false, true) => Increment::Checksum,
        (false, false, false) => Increment::QuickCheck,
    }
}

/// The options every command shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    /// `None`: ask LXC (`lxc-config lxc.lxcpath`).
    pub lxcpath: Option<PathBuf>,
    pub snapdir: PathBuf,
    pub quiet: bool,
    /// Lower layers the admin allows beyond containers' rootfs directories
    /// and snapshots' trees (`--allow-lower`).
    pub allow_lowers: Vec<PathBuf>,
    /// `--wait`, `--no-wait`.
    pub lock_wait: LockWait,
    /// `--bytes`.
    pub exact_bytes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub globals: Globals,
    pub command: Command,
}

const AFTER_HELP: &str = "\
Legacy forms (as the original lxc-snap):
  lxc-snap [-c FILE] NAME       snapshot container NAME
  lxc-snap -l [NAME] [--json]   list containers with snapshots / snapshots of NAME
  lxc-snap -r SNAP NEWNAME      restore snapshot SNAP as new container NEWNAME

Exit status: 0 ok, 1 error, 2 usage, 3 not found, 4 already exists,
5 container running, 6 unsupported backend, 7 refused as unsafe,
130 cancelled (SIGINT; 143 SIGTERM), 141 stdout closed by its reader.";

#[derive(Debug, Parser)]
#[command(
    name = "lxc-snap",
    version,
    about = "Numbered, immutable snapshots of LXC containers",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,

    #[command(subcommand)]
    command: Option<Sub>,

    /// List containers that have snapshots, or the snapshots of NAME
    #[arg(short = 'l', long = "list", conflicts_with_all = ["restore", "comment_file"])]
    list: bool,

    /// Restore snapshot SNAP as a new container NEWNAME
    #[arg(short = 'r', long = "restore", num_args = 2, value_names = ["SNAP", "NEWNAME"], conflicts_with_all = ["comment_file", "name"])]
    restore: Option<Vec<String>>,

    /// Read the snapshot's comment from FILE (- for standard input)
    #[arg(short = 'c', long = "comment-file", value_name = "FILE")]
    comment_file: Option<PathBuf>,

    /// With -l: print JSON instead of a table
    #[arg(long, requires = "list")]
    json: bool,

    /// Copy every file; link nothing to the previous snapshot
    #[arg(long, conflicts_with_all = ["list", "restore", "checksum", "whole"])]
    full: bool,

    /// Store a whole tree, not the changes since an older snapshot
    #[arg(long, conflicts_with_all = ["list", "restore"])]
    whole: bool,

    /// Find unchanged files by their bytes, not their size and mtime
    #[arg(long, conflicts_with_all = ["list", "restore"])]
    checksum: bool,

    /// Container to snapshot (or, with -l, whose snapshots to list)
    #[arg(value_name = "NAME")]
    name: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
struct GlobalArgs {
    /// LXC's container directory [default: `lxc-config lxc.lxcpath`, else /var/lib/lxc]
    #[arg(short = 'P', long, value_name = "PATH", global = true)]
    lxcpath: Option<PathBuf>,

    /// Where snapshots are kept
    #[arg(
        long,
        value_name = "PATH",
        env = "LXC_SNAP_DIR",
        default_value = crate::store::DEFAULT_SNAPDIR,
        global = true
    )]
    snapdir: PathBuf,

    /// Print only errors and the data asked for
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Accept PATH as a lower layer of the container's overlay, though it
    /// is neither a container's rootfs in the lxcpath nor a snapshot's tree
    #[arg(long = "allow-lower", value_name = "PATH", global = true)]
    allow_lowers: Vec<PathBuf>,

    /// While another run holds the container's lock, wait at most DURATION
    /// (90, 30s, 5m, 1h30m) [default: until it is free]
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_wait)]
    wait: Option<Duration>,

    /// Exit at once (status 8) when another run holds the container's lock
    #[arg(long = "no-wait", global = true, conflicts_with = "wait")]
    no_wait: bool,

    /// Print sizes as exact numbers of bytes, not as 1.5 KiB
    #[arg(long = "bytes", global = true)]
    exact_bytes: bool,
}

/// A column of `list`'s tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListColumn {
    /// The snapshot's name.
    Snapshot,
    /// Its number.
    Number,
    /// When it was taken, in local time.
    Created,
    /// What it refers to: the captured tree's allocated bytes.
    Refer,
    /// What deleting it alone frees.
    Used,
    /// The apparent size of its regular files.
    Size,
    /// Entries in the captured tree.
    Files,
    /// `yes` when pinned.
    Pinned,
    /// When it expires, in local time.
    Expires,
    /// What is wrong with it (base changed, base missing, anchor missing,
    /// broken); empty when it is ok.
    State,
    /// `whole`, or `layer over NAME_N`.
    Stored,
    /// The first line of its comment.
    Comment,
    /// A container's name.
    Container,
    /// How many snapshots a container has.
    Snapshots,
    /// When its newest snapshot was taken.
    Newest,
    /// What its snapshots take on disk.
    Disk,
}

/// `90`, `30s`, `5m`, `2h`, `1h30m`: a wait in whole seconds, minutes and
/// hours (plain digits are seconds).
fn parse_wait(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{text:?} is no duration: give seconds (90) or units s, m, h (1h30m)");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut secs: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        secs = n
            .checked_mul(unit)
            .and_then(|v| secs.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Snapshot container NAME as <snapdir>/NAME_N
    Snap {
        /// Read the comment from FILE (- for standard input)
        #[arg(
            short = 'c',
            long = "comment-file",
            value_name = "FILE",
            conflicts_with = "message"
        )]
        comment_file: Option<PathBuf>,
        /// The comment text
        #[arg(short = 'm', long = "message", value_name = "TEXT")]
        message: Option<String>,
        /// Copy every file; link nothing to the previous snapshot
        #[arg(long, conflicts_with_all = ["checksum", "whole"])]
        full: bool,
        /// Store a whole tree, not the changes since an older snapshot
        #[arg(long)]
        whole: bool,
        /// Find unchanged files by their bytes, not their size and mtime
        #[arg(long)]
        checksum: bool,
        /// Snapshot a running container: freeze it while its tree is read
        #[arg(long)]
        freeze: bool,
        /// The snapshot expires after DURATION (30m, 1d12h, 2w, 6mo)
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
        expiry: Option<String>,
        /// The snapshot expires at TIME (RFC 3339, or YYYY-MM-DD [HH:MM[:SS]] local)
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// Print the new snapshot's record as JSON (as list --json has it)
        #[arg(long)]
        json: bool,
        /// Container to snapshot
        name: String,
    },
    /// List containers that have snapshots, or the snapshots of NAME
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Print the table without its header and total lines, for scripts
        #[arg(long, conflicts_with = "json")]
        no_header: bool,
        /// The columns to print, in order, comma-separated (snapshot, number,
        /// created, refer, used, size, files, pinned, stored, comment; for
        /// the containers: container, snapshots, newest, disk)
        #[arg(
            short = 'o',
            long = "output",
            value_name = "COLUMNS",
            value_delimiter = ',',
            conflicts_with = "json"
        )]
        columns: Vec<ListColumn>,
        /// Container whose snapshots to list
        name: Option<String>,
    },
    /// Restore snapshot SNAP as a new container NEWNAME
    Restore {
        /// Snapshot to restore, e.g. mysql_2
        snap: String,
        /// Name of the new container
        newname: String,
    },
    /// Write snapshot SNAP as one stream (tar, zstd-compressed by default)
    Export {
        /// Where the stream goes (- or nothing: standard output, unless a terminal)
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// How the stream is compressed
        #[arg(long, value_enum, default_value = "zstd")]
        compression: CompressionArg,
        /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6)
        #[arg(long, value_name = "N")]
        level: Option<i32>,
        /// Put the base (the lower layers, with their containers' configs) in the stream too
        #[arg(long)]
        with_base: bool,
        /// Only what changed since OLDER, another snapshot of the same container
        #[arg(long, value_name = "OLDER")]
        since: Option<String>,
        /// stream (one tar stream) or oci (an image in the OCI layout DIR)
        #[arg(long, value_enum, default_value = "stream")]
        format: FormatArg,
        /// The image's name in the layout (--format oci; default: SNAP)
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        /// Snapshot to export, e.g. mysql_2
        snap: String,
        /// The OCI layout to write the image into (--format oci)
        dir: Option<PathBuf>,
    },
    /// Send snapshot SNAP to an OCI registry as the image REF (only the layers it lacks)
    Push {
        /// Talk to the registry without TLS checks (plain HTTP on localhost)
        #[arg(long)]
        insecure: bool,
        /// Snapshot to push, e.g. web_3
        snap: String,
        /// The image, e.g. registry.example.com/web:3
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Bring image REF from an OCI registry: a snapshot lxc-snap pushed, or a new container
    Pull {
        /// The container the snapshot is of, or the container to make
        #[arg(long = "as", value_name = "CONTAINER")]
        as_container: Option<String>,
        /// Talk to the registry without TLS checks (plain HTTP on localhost)
        #[arg(long)]
        insecure: bool,
        /// Refuse an image whose files add up to more than SIZE (default 256G)
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Accept config keys that act on the host (hooks, host files, mounts of host paths)
        #[arg(long)]
        trust_config: bool,
        /// The image, e.g. registry.example.com/web:3
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Recreate a snapshot from a stream made by export
    Import {
        /// Make it a snapshot of CONTAINER (default: the stream's container)
        #[arg(long = "as", value_name = "CONTAINER")]
        as_container: Option<String>,
        /// Refuse a stream whose files add up to more than SIZE (e.g. 500G; default 256G)
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Accept config keys that act on the host (hooks, host files, mounts of host paths)
        #[arg(long)]
        trust_config: bool,
        /// The stream: a file, or - for standard input
        file: PathBuf,
    },
    /// Make linked clones of SNAP: containers over its trees, nothing copied
    Clone {
        /// Snapshot to clone, e.g. base_3
        snap: String,
        /// Names of the new containers
        #[arg(required = true, value_name = "NEW")]
        new: Vec<String>,
    },
    /// Delete snapshots (SNAP, a range NAME_A..NAME_B, or --all NAME)
    #[command(visible_alias = "rm")]
    Delete {
        /// Delete every snapshot of NAME
        #[arg(long, value_name = "NAME")]
        all: Option<String>,
        /// Delete pinned snapshots too
        #[arg(short, long)]
        force: bool,
        /// Delete nothing; print what would be deleted and freed
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Snapshots to delete: mysql_2, or a range mysql_2..mysql_5
        #[arg(value_name = "SNAP", required_unless_present = "all")]
        snaps: Vec<String>,
    },
    /// Pin SNAP: prune never deletes it, delete only with --force
    Pin {
        /// Snapshot to pin, e.g. mysql_2
        snap: String,
    },
    /// Unpin SNAP
    Unpin {
        /// Snapshot to unpin, e.g. mysql_2
        snap: String,
    },
    /// Delete the snapshots of NAME (or --all containers) that no rule keeps
    Prune {
        /// Prune every container's snapshots
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Keep the N newest snapshots
        #[arg(long, value_name = "N")]
        keep_last: Option<String>,
        /// Keep the newest snapshot of each of the last N hours that have one
        #[arg(long, value_name = "N")]
        keep_hourly: Option<String>,
        /// Keep the newest snapshot of each of the last N days that have one
        #[arg(long, value_name = "N")]
        keep_daily: Option<String>,
        /// Keep the newest snapshot of each of the last N weeks that have one
        #[arg(long, value_name = "N")]
        keep_weekly: Option<String>,
        /// Keep the newest snapshot of each of the last N months that have one
        #[arg(long, value_name = "N")]
        keep_monthly: Option<String>,
        /// Keep every snapshot within DURATION (e.g. 2d12h, 1y6m) of the newest
        #[arg(long, value_name = "DURATION")]
        keep_within: Option<String>,
        /// Delete the snapshots that have expired (and are not pinned)
        #[arg(long)]
        expired: bool,
        /// Print what would be kept and removed, and why; change nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// With --dry-run: print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Container whose snapshots to prune
        #[arg(required_unless_present = "all")]
        name: Option<String>,
    },
    /// Show what changed between snapshots A and B (or A and the container now)
    Diff {
        /// Compare file contents byte by byte instead of size and mtime
        #[arg(long)]
        content: bool,
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
        /// The older snapshot, e.g. mysql_1
        #[arg(value_name = "SNAP_A")]
        a: String,
        /// The newer snapshot of the same container [default: the container now]
        #[arg(value_name = "SNAP_B")]
        b: Option<String>,
    },
    /// Show everything known about SNAP; fails if the snapshot is broken
    Info {
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
        /// Snapshot, e.g. mysql_2
        snap: String,
    },
    /// Convert the original lxc-snap's snapshots of NAME into lxc-snap's own
    Adopt {
        /// Print what would be adopted; change nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Adopt lxc-snapshot's snapshots of NAME (LXCPATH/NAME/snaps/snapN)
        #[arg(long)]
        from_lxc_snapshot: bool,
        /// Keep lxc-snapshot's originals
        #[arg(long, requires = "from_lxc_snapshot")]
        keep: bool,
        /// Container whose snapshots to adopt
        name: String,
    },
    /// Empty what SNAP wrote when started (each start does this itself)
    Reset {
        /// Run as the snapshot's lxc.hook.pre-start: the snapshot is
        /// starting; LXC's own arguments after SNAP are ignored, and SNAP
        /// defaults to $LXC_NAME
        #[arg(long, hide = true)]
        from_lxc: bool,
        /// Snapshot to reset, e.g. mysql_2
        #[arg(required_unless_present = "from_lxc")]
        snap: Option<String>,
        /// What LXC passes a hook after the container name
        #[arg(hide = true, requires = "from_lxc")]
        lxc_args: Vec<String>,
    },
    /// Put the (stopped) container back to SNAP in place
    Rollback {
        /// Do not snapshot the current state first
        #[arg(long)]
        no_backup: bool,
        /// Snapshot to go back to, e.g. mysql_2
        snap: String,
    },
    /// Mount SNAP's whole filesystem read-only at DIR (an empty directory)
    Mount {
        /// Snapshot to mount, e.g. mysql_2
        snap: String,
        /// Empty directory to mount it on
        dir: PathBuf,
    },
    /// Unmount a snapshot mounted with `lxc-snap mount`
    Umount {
        /// Where it is mounted
        dir: PathBuf,
    },
    /// Make SNAP expire after DURATION from now (30m, 1d12h, 2w), or never
    Expire {
        /// Snapshot, e.g. mysql_2
        snap: String,
        /// How long from now, or `never`
        #[arg(value_name = "DURATION|never")]
        duration: String,
    },
    /// Verify the snapshots of NAME (or --all): trees, base, dependency files, leftovers
    Check {
        /// Check every container's snapshots
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Make the safe fixes (remove leftovers, re-register, measure sizes again)
        #[arg(long)]
        repair: bool,
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
        /// Container whose snapshots to check
        #[arg(required_unless_present = "all")]
        name: Option<String>,
    },
    /// Take and prune the snapshots that the policies in /etc/lxc-snap say are due
    Auto {
        /// Where the policies are (NAME.conf each)
        #[arg(long, value_name = "DIR", default_value = "/etc/lxc-snap")]
        policy_dir: PathBuf,
        /// Print what is due; change nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// List a directory of SNAP as it was captured (no mounting)
    Ls {
        /// Show type, mode, owner, size and mtime
        #[arg(short = 'l', long)]
        long: bool,
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
        /// Snapshot, e.g. mysql_2
        snap: String,
        /// Path in the container [default: /]
        path: Option<PathBuf>,
    },
    /// Print a file of SNAP as it was captured
    Cat {
        /// Snapshot, e.g. mysql_2
        snap: String,
        /// Path of a regular file in the container, e.g. /etc/hosts
        path: PathBuf,
    },
    /// Copy a file or a tree out of a snapshot, with owners, times and xattrs
    Cp {
        /// What to copy, e.g. mysql_2:/etc/nginx
        #[arg(value_name = "SNAP:PATH")]
        source: PathBuf,
        /// Where to: a new name, or a directory to copy into
        dest: PathBuf,
    },
    /// Put PATHs of the stopped container back as they are in SNAP
    Undo {
        /// Print what would change, as diff does; change nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Do not snapshot the current state first
        #[arg(long)]
        no_backup: bool,
        /// Compare file contents byte by byte instead of size and mtime
        #[arg(long)]
        content: bool,
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
        /// Snapshot to take the paths from, e.g. mysql_2
        snap: String,
        /// Paths in the container, e.g. /etc/nginx/nginx.conf
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Put each NAME onto snapshot SNAP (a template's), keeping its config and --keep paths
    Rebuild {
        /// The snapshot to rebuild onto, e.g. tmpl_4
        #[arg(long, value_name = "SNAP", required = true)]
        from: String,
        /// Stop a running container first, start it again after
        #[arg(long)]
        restart: bool,
        /// Do not snapshot each container first
        #[arg(long)]
        no_backup: bool,
        /// A whole copy of SNAP's tree instead of a linked clone
        #[arg(long)]
        copy: bool,
        /// Carry PATH over from the old root filesystem (repeatable)
        #[arg(long, value_name = "PATH")]
        keep: Vec<PathBuf>,
        /// Containers to rebuild
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Run CMD in a throwaway linked clone of SOURCE (a snapshot, or a stopped container)
    Exec {
        /// Keep the snapshot taken of a container SOURCE
        #[arg(long)]
        keep_snapshot: bool,
        /// Copy PATH out of the copy's tree when CMD ends (repeatable)
        #[arg(long, value_name = "PATH")]
        collect: Vec<PathBuf>,
        /// Where collected paths go (default: the current directory)
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
        /// Refuse to collect a symlink instead of copying it as a symlink
        #[arg(long)]
        no_symlinks: bool,
        /// Give the copy no network devices (lxc.net.0.type = empty)
        #[arg(long)]
        no_network: bool,
        /// Stop CMD after DURATION (e.g. 30s, 10m, 1h); exit status 124
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Put KEY=VAL in CMD's environment (repeatable)
        #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
        env: Vec<String>,
        /// Snapshot (e.g. web_2) or stopped container (snapshotted first)
        source: String,
        /// The command and its arguments, after --
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Print the comment of SNAP, or replace it with TEXT or FILE's contents
    Comment {
        /// Read the new comment from FILE (- for standard input)
        #[arg(
            short = 'c',
            long = "comment-file",
            value_name = "FILE",
            conflicts_with = "text"
        )]
        comment_file: Option<PathBuf>,
        /// Snapshot whose comment to print or set, e.g. mysql_2
        snap: String,
        /// The new comment
        text: Option<String>,
    },
    /// Print the completion script for SHELL (bash, zsh or fish)
    Completions {
        /// The shell to print the script for
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The clap definition of the command line: completion scripts are
/// generated from it, and the names lookup reads its arguments.
pub fn clap_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// What parsing produced: something to run, or text clap wants printed
/// (help, version) with the status to exit with.
#[derive(Debug)]
pub enum Parsed {
    Run(Invocation),
    Print {
        text: String,
        to_stderr: bool,
        code: i32,
    },
}

/// `lxc-snap __complete-names [--] WORDS...`, what the completion scripts
/// call. It is recognised before clap parses anything, so that neither
/// `--help` nor the generated scripts show it.
pub const COMPLETE_NAMES: &str = "__complete-names";

/// Parses `args` (including the program name).
pub fn parse<I, T>(args: I) -> Result<Parsed>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_some_and(|a| a == COMPLETE_NAMES) {
        return complete_names(&args[2..]);
    }
    if args.len() == 1 {
        // Nothing asked: the usage, as a usage error.
        return Ok(Parsed::Print {
            text: clap_command().render_help().to_string(),
            to_stderr: true,
            code: ErrorKind::Usage.exit_code(),
        });
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind as K;
            return match e.kind() {
                K::DisplayHelp
                | K::DisplayVersion
                | K::DisplayHelpOnMissingArgumentOrSubcommand => Ok(Parsed::Print {
                    text: e.render().to_string(),
                    to_stderr: false,
                    code: 0,
                }),
                _ => Err(usage_error(&e, &args)),
            };
        }
    };
    let globals = Globals {
        lxcpath: cli.globals.lxcpath,
        snapdir: cli.globals.snapdir,
        quiet: cli.globals.quiet,
        allow_lowers: cli.globals.allow_lowers,
        lock_wait: match (cli.globals.no_wait, cli.globals.wait) {
            (true, _) => LockWait::Up(Duration::ZERO),
            (false, Some(d)) => LockWait::Up(d),
            (false, None) => LockWait::Forever,
        },
        exact_bytes: cli.globals.exact_bytes,
    };
    let legacy_used = cli.list
        || cli.restore.is_some()
        || cli.comment_file.is_some()
        || cli.json
        || cli.full
        || cli.whole
        || cli.checksum
        || cli.name.is_some();
    let command = match cli.command {
        Some(_) if legacy_used => return Err(Error::new(
            ErrorKind::Usage,
            "-l, -r, -c, --json, --full, --whole, --checksum and NAME go without a subcommand (or after it)",
        )
        .with_hint("lxc-snap --help shows the usage")),
        Some(sub) => from_subcommand(sub)?,
        None => from_legacy(
            cli.list,
            cli.restore,
            cli.comment_file,
            cli.json,
            increment_from_flags(cli.full, cli.whole, cli.checksum),
            cli.name,
        )?,
    };
    Ok(Parsed::Run(Invocation { globals, command }))
}

/// The default globals (`LXC_SNAP_DIR` included) and the words to complete.
fn complete_names(rest: &[std::ffi::OsString]) -> Result<Parsed> {
    let defaults = Cli::try_parse_from(["lxc-snap", "list"]).map_err(|e| usage_error(&e, &[]))?;
    let rest = match rest.first() {
        Some(first) if first == "--" => &rest[1..],
        _ => rest,
    };
    Ok(Parsed::Run(Invocation {
        globals: Globals {
            lxcpath: defaults.globals.lxcpath,
            snapdir: defaults.globals.snapdir,
            quiet: true,
            allow_lowers: Vec::new(),
            lock_wait: LockWait::Up(Duration::ZERO),
            exact_bytes: false,
        },
        command: Command::CompleteNames {
            words: rest
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect(),
        },
    }))
}

fn from_subcommand(sub: Sub) -> Result<Command> {
    Ok(match sub {
        Sub::Snap {
            comment_file,
            message,
            full,
            whole,
            checksum,
            freeze,
            expiry,
            expires_at,
            json,
            name,
        } => Command::Snap {
            container: ContainerName::parse(&name)?,
            comment: comment_file
                .map(CommentSource::File)
                .or(message.map(CommentSource::Text)),
            increment: increment_from_flags(full, whole, checksum),
            freeze,
            expiry: match (expiry, expires_at) {
                (Some(d), _) => Some(Expiry::After(Lifetime::parse(&d)?)),
                (None, Some(t)) => Some(Expiry::At(parse_time(&t)?)),
                (None, None) => None,
            },
            json,
        },
        Sub::List {
            json,
            no_header,
            columns,
            name,
        } => Command::List {
            container: name.as_deref().map(ContainerName::parse).transpose()?,
            json,
            no_header,
            columns,
        },
        Sub::Restore { snap, newname } => Command::Restore {
            snapshot: SnapshotName::parse(&snap)?,
            new_name: ContainerName::parse(&newname)?,
        },
        Sub::Export {
            output,
            compression,
            level,
            with_base,
            since,
            format: FormatArg::Oci,
            tag,
            snap,
            dir,
        } => {
            let snapshot = SnapshotName::parse(&snap)?;
            let Some(dir) = dir else {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "export --format oci: give the layout directory: export --format oci SNAP DIR",
                ));
            };
            if output.is_some() || with_base || since.is_some() || compression != CompressionArg::Zstd || level.is_some() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "export --format oci takes only --tag: an image always holds its base, in layers of its own",
                ));
            }
            Command::ExportOci {
                tag: tag.unwrap_or_else(|| snapshot.to_string()),
                snapshot,
                dir,
            }
        }
        Sub::Export {
            output,
            compression,
            level,
            with_base,
            since,
            format: FormatArg::Stream,
            tag: None,
            snap,
            dir: None,
        } => Command::Export {
            opts: ExportOptions {
                snapshot: SnapshotName::parse(&snap)?,
                compression: match compression {
                    CompressionArg::Zstd => Compression::Zstd,
                    CompressionArg::Gzip => Compression::Gzip,
                    CompressionArg::None => Compression::None,
                },
                level: match (compression, level) {
                    (CompressionArg::Zstd, Some(l)) if !(1..=19).contains(&l) => {
                        return Err(Error::new(
                            ErrorKind::Usage,
                            format!("--level {l}: zstd levels are 1 to 19"),
                        ))
                    }
                    (CompressionArg::Gzip, Some(l)) if !(1..=9).contains(&l) => {
                        return Err(Error::new(
                            ErrorKind::Usage,
                            format!("--level {l}: gzip levels are 1 to 9"),
                        ))
                    }
                    (_, l) => l,
                },
                with_base,
                since: since.as_deref().map(SnapshotName::parse).transpose()?,
            },
            output: output.filter(|o| o.as_os_str() != "-"),
        },
        Sub::Export { .. } => {
            return Err(Error::new(
                ErrorKind::Usage,
                "export: a DIR and --tag go with --format oci; a stream goes to -o FILE or standard output",
            ))
        }
        Sub::Push {
            insecure,
            snap,
            reference,
        } => Command::Push {
            snapshot: SnapshotName::parse(&snap)?,
            reference,
            insecure,
        },
        Sub::Pull {
            as_container,
            insecure,
            max_size,
            trust_config,
            reference,
        } => Command::Pull {
            opts: crate::ops::oci::PullOptions {
                reference,
                container: as_container
                    .as_deref()
                    .map(ContainerName::parse)
                    .transpose()?,
                insecure,
                max_size: match max_size {
                    Some(s) => parse_size(&s)?,
                    None => crate::ops::stream::DEFAULT_MAX_SIZE,
                },
                trust_config,
            },
        },
        Sub::Import {
            as_container,
            max_size,
            trust_config,
            file,
        } => Command::Import {
            opts: ImportOptions {
                container: as_container
                    .as_deref()
                    .map(ContainerName::parse)
                    .transpose()?,
                max_size: match max_size {
                    Some(s) => parse_size(&s)?,
                    None => crate::ops::stream::DEFAULT_MAX_SIZE,
                },
                trust_config,
            },
            input: file,
        },
        Sub::Clone { snap, new } => Command::Clone {
            snapshot: SnapshotName::parse(&snap)?,
            new_names: new
                .iter()
                .map(|n| ContainerName::parse(n))
                .collect::<Result<_>>()?,
        },
        Sub::Comment {
            comment_file,
            snap,
            text,
        } => Command::Comment {
            snapshot: SnapshotName::parse(&snap)?,
            set: comment_file
                .map(CommentSource::File)
                .or(text.map(CommentSource::Text)),
        },
        Sub::Completions { shell } => Command::Completions { shell },
        Sub::Delete {
            all,
            force,
            dry_run,
            snaps,
        } => {
            let mut targets = snaps
                .iter()
                .map(|s| parse_selection(s))
                .collect::<Result<Vec<_>>>()?;
            if let Some(name) = all {
                targets.push(Selection::All(ContainerName::parse(&name)?));
            }
            Command::Delete {
                targets,
                force,
                dry_run,
            }
        }
        Sub::Pin { snap } => Command::Pin {
            snapshot: SnapshotName::parse(&snap)?,
            pinned: true,
        },
        Sub::Unpin { snap } => Command::Pin {
            snapshot: SnapshotName::parse(&snap)?,
            pinned: false,
        },
        Sub::Prune {
            all: _,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_within,
            expired,
            dry_run,
            json,
            name,
        } => {
            let count = |v: Option<String>| v.as_deref().map(Count::parse).transpose();
            let policy = Policy {
                last: count(keep_last)?,
                hourly: count(keep_hourly)?,
                daily: count(keep_daily)?,
                weekly: count(keep_weekly)?,
                monthly: count(keep_monthly)?,
                within: keep_within.as_deref().map(Within::parse).transpose()?,
            };
            if policy.is_empty() && !(expired && policy == Policy::default()) {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "prune needs --expired or at least one --keep-* rule that keeps something",
                )
                .with_hint("e.g. lxc-snap prune mysql --keep-last 5 --keep-daily 7"));
            }
            if json && !dry_run {
                return Err(Error::new(ErrorKind::Usage, "--json goes with --dry-run"));
            }
            Command::Prune {
                container: name.as_deref().map(ContainerName::parse).transpose()?,
                policy,
                expired,
                dry_run,
                json,
            }
        }
        Sub::Diff {
            content,
            json,
            a,
            b,
        } => {
            let old = SnapshotName::parse(&a)?;
            let new = b.as_deref().map(SnapshotName::parse).transpose()?;
            if let Some(new) = &new {
                if new.container() != old.container() {
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!(
                            "diff compares snapshots of one container: {old} and {new} are not"
                        ),
                    ));
                }
            }
            Command::Diff {
                old,
                new,
                content,
                json,
            }
        }
        Sub::Info { json, snap } => Command::Info {
            snapshot: SnapshotName::parse(&snap)?,
            json,
        },
        Sub::Adopt {
            dry_run,
            from_lxc_snapshot,
            keep,
            name,
        } => Command::Adopt {
            container: ContainerName::parse(&name)?,
            dry_run,
            from_lxc_snapshot,
            keep,
        },
        Sub::Reset {
            from_lxc,
            snap,
            lxc_args: _,
        } => {
            let name = match snap {
                Some(s) => s,
                None => std::env::var("LXC_NAME").map_err(|_| {
                    Error::new(ErrorKind::Usage, "reset needs SNAP (or LXC_NAME from LXC)")
                })?,
            };
            Command::Reset {
                snapshot: SnapshotName::parse(&name)?,
                starting: from_lxc,
            }
        }
        Sub::Rollback { no_backup, snap } => Command::Rollback {
            snapshot: SnapshotName::parse(&snap)?,
            backup: !no_backup,
        },
        Sub::Mount { snap, dir } => Command::Mount {
            snapshot: SnapshotName::parse(&snap)?,
            dir,
        },
        Sub::Umount { dir } => Command::Umount { dir },
        Sub::Expire { snap, duration } => Command::Expire {
            snapshot: SnapshotName::parse(&snap)?,
            expiry: match duration.as_str() {
                "never" => None,
                d => Some(Expiry::After(Lifetime::parse(d)?)),
            },
        },
        Sub::Check {
            all: _,
            repair,
            json,
            name,
        } => Command::Check {
            container: name.as_deref().map(ContainerName::parse).transpose()?,
            repair,
            json,
        },
        Sub::Auto {
            policy_dir,
            dry_run,
        } => Command::Auto {
            policy_dir,
            dry_run,
        },
        Sub::Ls {
            long,
            json,
            snap,
            path,
        } => Command::Ls {
            snapshot: SnapshotName::parse(&snap)?,
            path: path.map_or_else(|| b"/".to_vec(), path_bytes),
            long,
            json,
        },
        Sub::Cat { snap, path } => Command::Cat {
            snapshot: SnapshotName::parse(&snap)?,
            path: path_bytes(path),
        },
        Sub::Cp { source, dest } => {
            let text = path_bytes(source);
            let Some(colon) = text.iter().position(|&b| b == b':') else {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "{}: expected SNAP:PATH, e.g. mysql_2:/etc/hosts",
                        crate::printable::escape_bytes(&text, true)
                    ),
                ));
            };
            let snap = String::from_utf8_lossy(&text[..colon]).into_owned();
            Command::Cp {
                snapshot: SnapshotName::parse(&snap)?,
                path: text[colon + 1..].to_vec(),
                dest,
            }
        }
        Sub::Undo {
            dry_run,
            no_backup,
            content,
            json,
            snap,
            paths,
        } => Command::Undo {
            opts: UndoOptions {
                snapshot: SnapshotName::parse(&snap)?,
                paths: paths.into_iter().map(path_bytes).collect(),
                dry_run,
                backup: !no_backup,
                content,
            },
            json,
        },
        Sub::Rebuild {
            from,
            restart,
            no_backup,
            copy,
            keep,
            names,
        } => Command::Rebuild {
            opts: RebuildOptions {
                containers: names
                    .iter()
                    .map(|n| ContainerName::parse(n))
                    .collect::<Result<_>>()?,
                from: SnapshotName::parse(&from)?,
                restart,
                backup: !no_backup,
                copy,
                keep: keep.into_iter().map(path_bytes).collect(),
            },
        },
        Sub::Exec {
            keep_snapshot,
            collect,
            dest,
            no_symlinks,
            no_network,
            timeout,
            env,
            source,
            command,
        } => Command::Exec {
            opts: Box::new(ExecOptions {
                source,
                command,
                keep_snapshot,
                collect: collect.into_iter().map(path_bytes).collect(),
                dest: dest.unwrap_or_else(|| PathBuf::from(".")),
                no_symlinks,
                no_network,
                timeout: timeout.as_deref().map(parse_timeout).transpose()?,
                env,
            }),
        },
    })
}

/// `--max-size`: bytes, or a number with K, M, G or T (powers of 1024).
fn parse_size(text: &str) -> Result<u64> {
    let bad = || {
        Error::new(
            ErrorKind::Usage,
            format!("--max-size {text}: give a size such as 500G or 2T"),
        )
    };
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// `--timeout`: a duration of weeks, days, hours, minutes and seconds.
fn parse_timeout(text: &str) -> Result<std::time::Duration> {
    let l = Lifetime::parse(text)?;
    if l.years > 0 || l.months > 0 {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("--timeout {text}: give it in w, d, h, m and s"),
        ));
    }
    let secs = u64::from(l.weeks) * 604_800
        + u64::from(l.days) * 86_400
        + u64::from(l.hours) * 3_600
        + u64::from(l.minutes) * 60
        + u64::from(l.seconds);
    Ok(std::time::Duration::from_secs(secs))
}

/// A path from the command line, byte for byte.
fn path_bytes(path: PathBuf) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    path.into_os_string().into_vec()
}

/// `mysql_2` or `mysql_2..mysql_5`.
fn parse_selection(text: &str) -> Result<Selection> {
    let Some((a, b)) = text.split_once("..") else {
        return Ok(Selection::One(SnapshotName::parse(text)?));
    };
    let (a, b) = (SnapshotName::parse(a)?, SnapshotName::parse(b)?);
    if a.container() != b.container() || a.number() > b.number() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("invalid range {text:?}: expected NAME_A..NAME_B of one container with A <= B"),
        ));
    }
    Ok(Selection::Range(
        a.container().clone(),
        a.number(),
        b.number(),
    ))
}

fn from_legacy(
    list: bool,
    restore: Option<Vec<String>>,
    comment_file: Option<PathBuf>,
    json: bool,
    increment: Increment,
    name: Option<String>,
) -> Result<Command> {
    if list {
        return Ok(Command::List {
            container: name.as_deref().map(ContainerName::parse).transpose()?,
            json,
            no_header: false,
            columns: Vec::new(),
        });
    }
    if let Some(args) = restore {
        let [snap, newname] = args.as_slice() else {
            return Err(Error::new(
                ErrorKind::Usage,
                "-r takes two arguments: SNAP NEWNAME",
            ));
        };
        return Ok(Command::Restore {
            snapshot: SnapshotName::parse(snap)?,
            new_name: ContainerName::parse(newname)?,
        });
    }
    match name {
        Some(name) => Ok(Command::Snap {
            container: ContainerName::parse(&name)?,
            comment: comment_file.map(CommentSource::File),
            increment,
            freeze: false,
            expiry: None,
            json: false,
        }),
        None => Err(Error::new(
            ErrorKind::Usage,
            "no container named: name the container to snapshot, or a subcommand",
        )
        .with_hint("lxc-snap --help shows the usage")),
    }
}

/// clap's error in lxc-snap's format: its first line as the message, the
/// rest (what is missing, the allowed values, the usage line) as details,
/// and a hint at the subcommand's own `--help`.
fn usage_error(e: &clap::Error, args: &[std::ffi::OsString]) -> Error {
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    let details = lines
        .filter(|l| !l.starts_with("For more information"))
        .map(|l| l.trim_end().to_string())
        .collect();
    let hint = match subcommand_in(args) {
        Some(sub) => format!("lxc-snap {sub} --help shows its usage"),
        None => "lxc-snap --help shows the usage".to_string(),
    };
    Error::new(ErrorKind::Usage, first)
        .with_details(details)
        .with_hint(hint)
}

/// The subcommand named in `args`, if any (the first word that is one).
fn subcommand_in(args: &[std::ffi::OsString]) -> Option<String> {
    let command = clap_command();
    args.iter().skip(1).find_map(|a| {
        let a = a.to_str()?;
        command
            .get_subcommands()
            .find(|c| c.get_name() == a || c.get_all_aliases().any(|x| x == a))
            .map(|c| c.get_name().to_string())
    })
}

/// The subcommand `word` is one edit away from (a letter added, dropped,
/// changed or two swapped), for "did you mean". Words of two letters or
/// fewer are too short to guess from.
pub fn near_subcommand(word: &str) -> Option<String> {
    if word.chars().count() <= 2 {
        return None;
    }
    let command = clap_command();
    let found = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .find(|c| {
            std::iter::once(c.get_name())
                .chain(c.get_visible_aliases())
                .any(|n| n != word && strsim::osa_distance(n, word) == 1)
        })
        .map(|c| c.get_name().to_string());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Invocation> {
        let mut all = vec!["lxc-snap"];
        all.extend_from_slice(args);
        match parse(all)? {
            Parsed::Run(i) => Ok(i),
            Parsed::Print { text, .. } => panic!("unexpected print: {text}"),
        }
    }

    fn cmd(args: &[&str]) -> Command {
        run(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    fn name(s: &str) -> ContainerName {
        ContainerName::parse(s).expect("valid name")
    }

    fn snap(s: &str) -> SnapshotName {
        SnapshotName::parse(s).expect("valid snapshot name")
    }

    #[test]
    fn both_spellings_of_snap_give_one_command() {
        let want = Command::Snap {
            container: name("mysql"),
            comment: None,
            increment: Increment::QuickCheck,
            freeze: false,
            expiry: None,
            json: false,
        };
        assert_eq!(cmd(&["mysql"]), want);
        assert_eq!(cmd(&["snap", "mysql"]), want);
        let with_file = Command::Snap {
            container: name("mysql"),
            comment: Some(CommentSource::File("/tmp/comment".into())),
            increment: Increment::QuickCheck,
            freeze: false,
            expiry: None,
            json: false,
        };
        assert_eq!(cmd(&["-c", "/tmp/comment", "mysql"]), with_file);
        assert_eq!(cmd(&["snap", "-c", "/tmp/comment", "mysql"]), with_file);
        assert_eq!(
            cmd(&["snap", "-m", "hello", "mysql"]),
            Command::Snap {
                container: name("mysql"),
                comment: Some(CommentSource::Text("hello".into())),
                increment: Increment::QuickCheck,
                freeze: false,
                expiry: None,
                json: false,
            }
        );
        for (args, increment) in [
            (&["--full", "mysql"][..], Increment::Full),
            (&["--checksum", "mysql"], Increment::Checksum),
            (&["snap", "--full", "mysql"], Increment::Full),
            (&["snap", "--checksum", "mysql"], Increment::Checksum),
            (&["--whole", "mysql"], Increment::Whole),
            (&["snap", "--whole", "mysql"], Increment::Whole),
            (
                &["snap", "--whole", "--checksum", "mysql"],
                Increment::WholeChecksum,
            ),
        ] {
            assert_eq!(
                cmd(args),
                Command::Snap {
                    container: name("mysql"),
                    comment: None,
                    increment,
                    freeze: false,
                    expiry: None,
                    json: false,
                },
                "{args:?}"
            );
        }
        for bad in [
            &["--full", "--checksum", "mysql"][..],
            &["snap", "--full", "--checksum", "mysql"],
            &["--full", "--whole", "mysql"],
            &["-l", "--full"],
            &["--full", "snap", "mysql"],
        ] {
            assert_eq!(
                run(bad).expect_err("usage").kind(),
                ErrorKind::Usage,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn both_spellings_of_list_and_restore() {
        assert_eq!(
            cmd(&["-l"]),
            Command::List {
                container: None,
                json: false,
                no_header: false,
                columns: Vec::new(),
            }
        );
        assert_eq!(
            cmd(&["list"]),
            Command::List {
                container: None,
                json: false,
                no_header: false,
                columns: Vec::new(),
            }
        );
        assert_eq!(
            cmd(&["-l", "mysql", "--json"]),
            Command::List {
                container: Some(name("mysql")),
                json: true,
                no_header: false,
                columns: Vec::new(),
            }
        );
        assert_eq!(
            cmd(&["list", "--json", "mysql"]),
            Command::List {
                container: Some(name("mysql")),
                json: true,
                no_header: false,
                columns: Vec::new(),
            }
        );
        let restore = Command::Restore {
            snapshot: snap("mysql_2"),
            new_name: name("mysql_tmp"),
        };
        assert_eq!(cmd(&["-r", "mysql_2", "mysql_tmp"]), restore);
        assert_eq!(cmd(&["restore", "mysql_2", "mysql_tmp"]), restore);
    }

    #[test]
    fn comment_forms() {
        assert_eq!(
            cmd(&["comment", "mysql_2"]),
            Command::Comment {
                snapshot: snap("mysql_2"),
                set: None
            }
        );
        assert_eq!(
            cmd(&["comment", "mysql_2", "text"]),
            Command::Comment {
                snapshot: snap("mysql_2"),
                set: Some(CommentSource::Text("text".into()))
            }
        );
        assert_eq!(
            cmd(&["comment", "mysql_2", "-c", "-"]),
            Command::Comment {
                snapshot: snap("mysql_2"),
                set: Some(CommentSource::File("-".into()))
            }
        );
        assert_eq!(
            run(&["comment", "mysql_2", "text", "-c", "f"])
                .expect_err("conflict")
                .kind(),
            ErrorKind::Usage
        );
    }

    #[test]
    fn completions_and_the_hidden_names_lookup() {
        assert_eq!(
            cmd(&["completions", "zsh"]),
            Command::Completions { shell: Shell::Zsh }
        );
        assert_eq!(
            cmd(&["__complete-names", "--", "-P", "/l", "restore"]),
            Command::CompleteNames {
                words: vec!["-P".into(), "/l".into(), "restore".into()]
            }
        );
        assert_eq!(
            cmd(&["__complete-names"]),
            Command::CompleteNames { words: vec![] }
        );
        match parse(["lxc-snap", "--help"]).expect("parse") {
            Parsed::Print { text, .. } => assert!(!text.contains("__complete")),
            Parsed::Run(_) => panic!("--help ran something"),
        }
    }

    #[test]
    fn lock_waits_parse_in_seconds_minutes_and_hours() {
        let wait = |args: &[&str]| run(args).map(|i| i.globals.lock_wait);
        let up = |s| Some(LockWait::Up(Duration::from_secs(s)));
        assert_eq!(wait(&["--wait", "90", "snap", "c"]).ok(), up(90));
        assert_eq!(wait(&["snap", "c", "--wait", "30s"]).ok(), up(30));
        assert_eq!(wait(&["snap", "c", "--wait", "1h30m"]).ok(), up(5400));
        assert_eq!(wait(&["snap", "c", "--wait=5m"]).ok(), up(300));
        assert_eq!(wait(&["snap", "c", "--no-wait"]).ok(), up(0));
        assert_eq!(wait(&["snap", "c"]).ok(), Some(LockWait::Forever));
        for bad in ["", "5x", "m", "1.5m", "-3", "1h30"] {
            let e = wait(&["snap", "c", "--wait", bad]).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
        }
        let both = wait(&["snap", "c", "--wait", "3", "--no-wait"]).expect_err("both");
        assert_eq!(both.kind(), ErrorKind::Usage);
    }

    #[test]
    fn globals_before_or_after_the_subcommand() {
        let i = run(&["-P", "/l", "--snapdir", "/s", "-q", "list"]).expect("parse");
        assert_eq!(
            i.globals,
            Globals {
                lxcpath: Some("/l".into()),
                snapdir: "/s".into(),
                quiet: true,
                allow_lowers: Vec::new(),
                lock_wait: LockWait::Forever,
                exact_bytes: false,
            }
        );
        let k = run(&["snap", "c", "--allow-lower", "/a", "--allow-lower", "/b"]).expect("parse");
        assert_eq!(
            k.globals.allow_lowers,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let j = run(&["list", "-P", "/l", "--snapdir", "/s", "--quiet"]).expect("parse");
        assert_eq!(j.globals, i.globals);
        let k = run(&["--lxcpath", "/l", "mysql"]).expect("parse");
        assert_eq!(k.globals.lxcpath, Some("/l".into()));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["-r", "mysql_2"][..],
            &["-q"],
            &["-l", "-r", "a_1", "b"],
            &["--json", "mysql"],
            &["snap"],
            &["snap", "-c", "f", "-m", "t", "x"],
            &["--bogus"],
            &["-c", "f", "-l"],
        ] {
            let err = run(args).expect_err(&format!("{args:?}"));
            assert_eq!(err.kind(), ErrorKind::Usage, "{args:?}: {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn usage_errors_keep_what_clap_says_and_point_at_the_subcommand() {
        let err = run(&["restore", "web_1"]).expect_err("one argument");
        let details = err.details().join("\n");
        assert!(details.contains("<NEWNAME>"), "{err}: {details}");
        assert!(details.contains("Usage:"), "{details}");
        assert!(!details.contains("For more information"), "{details}");
        assert_eq!(err.hint(), Some("lxc-snap restore --help shows its usage"));
        let err = run(&["completions", "tcsh"]).expect_err("no such shell");
        let all = format!("{err}\n{}", err.details().join("\n"));
        for shell in ["bash", "zsh", "fish"] {
            assert!(all.contains(shell), "{all}");
        }
        let err = run(&["rm"]).expect_err("nothing to delete");
        assert_eq!(err.hint(), Some("lxc-snap delete --help shows its usage"));
        let err = run(&["--bogus"]).expect_err("no such option");
        assert_eq!(err.hint(), Some("lxc-snap --help shows the usage"));
    }

    #[test]
    fn no_arguments_print_the_usage_as_a_usage_error() {
        match parse(["lxc-snap"]).expect("parse") {
            Parsed::Print {
                text,
                to_stderr,
                code,
            } => {
                assert!(to_stderr);
                assert_eq!(code, 2);
                assert!(text.contains("Usage:"), "{text}");
            }
            Parsed::Run(_) => panic!("ran something"),
        }
    }

    #[test]
    fn near_subcommands() {
        assert_eq!(near_subcommand("lsit").as_deref(), Some("list"));
        assert_eq!(near_subcommand("restroe").as_deref(), Some("restore"));
        assert_eq!(near_subcommand("dif").as_deref(), Some("diff"));
        assert_eq!(near_subcommand("list"), None, "a subcommand itself");
        assert_eq!(near_subcommand("mysql"), None);
        assert_eq!(near_subcommand("rn"), None, "too short to guess");
    }

    #[test]
    fn invalid_names_are_usage_errors() {
        for args in [
            &["../x"][..],
            &["snap", "a/b"],
            &["-r", "x_1", "-x"],
            &["restore", "mysql", "new"],
            &["-l", ".."],
            &["comment", "a_01"],
        ] {
            assert_eq!(
                run(args).expect_err(&format!("{args:?}")).kind(),
                ErrorKind::Usage,
                "{args:?}"
            );
        }
    }

    #[test]
    fn lifecycle_subcommands() {
        assert_eq!(
            cmd(&["rm", "a_1", "a_2..a_5", "--all", "b"]),
            Command::Delete {
                targets: vec![
                    Selection::One(snap("a_1")),
                    Selection::Range(name("a"), 2, 5),
                    Selection::All(name("b"))
                ],
                force: false,
                dry_run: false,
            }
        );
        assert_eq!(
            cmd(&["delete", "--force", "a_1"]),
            Command::Delete {
                targets: vec![Selection::One(snap("a_1"))],
                force: true,
                dry_run: false,
            }
        );
        assert_eq!(
            cmd(&["rm", "-n", "a_1"]),
            Command::Delete {
                targets: vec![Selection::One(snap("a_1"))],
                force: false,
                dry_run: true,
            }
        );
        for bad in [
            &["rm", "a_5..a_2"][..],
            &["rm", "a_1..b_2"],
            &["rm"],
            &["prune", "a"],
            &["prune", "--keep-last", "1"],
            &["diff", "a_1", "b_2"],
            &["prune", "a", "--keep-last", "1", "--json"],
        ] {
            assert_eq!(
                run(bad).expect_err(&format!("{bad:?}")).kind(),
                ErrorKind::Usage,
                "{bad:?}"
            );
        }
        assert_eq!(
            cmd(&["pin", "a_1"]),
            Command::Pin {
                snapshot: snap("a_1"),
                pinned: true
            }
        );
        assert_eq!(
            cmd(&["unpin", "a_1"]),
            Command::Pin {
                snapshot: snap("a_1"),
                pinned: false
            }
        );
        assert_eq!(
            cmd(&[
                "prune",
                "--all",
                "--keep-daily",
                "7",
                "--keep-within",
                "2d",
                "-n"
            ]),
            Command::Prune {
                container: None,
                policy: Policy {
                    daily: Some(Count::Limit(7)),
                    within: Some(Within {
                        days: 2,
                        ..Within::default()
                    }),
                    ..Policy::default()
                },
                expired: false,
                dry_run: true,
                json: false
            }
        );
        assert_eq!(
            cmd(&["diff", "a_1"]),
            Command::Diff {
                old: snap("a_1"),
                new: None,
                content: false,
                json: false
            }
        );
        assert_eq!(
            cmd(&["diff", "--content", "--json", "a_1", "a_3"]),
            Command::Diff {
                old: snap("a_1"),
                new: Some(snap("a_3")),
                content: true,
                json: true
            }
        );
        assert_eq!(
            cmd(&["info", "a_1", "--json"]),
            Command::Info {
                snapshot: snap("a_1"),
                json: true
            }
        );
        assert_eq!(
            cmd(&["rollback", "a_1"]),
            Command::Rollback {
                snapshot: snap("a_1"),
                backup: true
            }
        );
        assert_eq!(
            cmd(&["rollback", "--no-backup", "a_1"]),
            Command::Rollback {
                snapshot: snap("a_1"),
                backup: false
            }
        );
        assert_eq!(
            cmd(&["mount", "a_1", "/mnt/x"]),
            Command::Mount {
                snapshot: snap("a_1"),
                dir: "/mnt/x".into()
            }
        );
        assert_eq!(
            cmd(&["umount", "/mnt/x"]),
            Command::Umount {
                dir: "/mnt/x".into()
            }
        );
    }

    #[test]
    fn help_and_version_are_printed_with_success() {
        for flag in ["--help", "-h", "--version", "-V"] {
            match parse(["lxc-snap", flag]).expect("parse") {
                Parsed::Print { code, text, .. } => {
                    assert_eq!(code, 0);
                    assert!(!text.is_empty());
                }
                Parsed::Run(_) => panic!("{flag} ran something"),
            }
        }
    }
}
