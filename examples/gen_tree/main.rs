//! `gen_tree`: writes a reproducible tree shaped like a container's root
//! filesystem delta, for the benchmarks (`make bench`, bench/run.sh).
//! An example, so it is built on demand and never installed:
//!
//! ```text
//! cargo run --release --example gen_tree -- --seed 1 --entries 50000 --bytes 650M DIR
//! ```
//!
//! DIR must be empty or not exist. Prints a JSON summary of what it wrote
//! (counts of each kind of entry, bytes, a digest of the whole plan).

mod tree;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Write a reproducible tree shaped like a root filesystem delta into DIR.
#[derive(Parser)]
#[command(name = "gen_tree")]
struct Args {
    /// Seed of the PRNG: the same seed and sizes give the same tree.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Entries (directories, files, symlinks, hard links), at least 100.
    #[arg(long, default_value_t = 50_000)]
    entries: u64,
    /// Data bytes to write (K, M, G: binary multiples); holes of sparse
    /// files come on top.
    #[arg(long, default_value = "650M", value_parser = tree::parse_size)]
    bytes: u64,
    /// Print the summary of the tree without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Where to write the tree: an empty or missing directory.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = tree::Options {
        seed: args.seed,
        entries: args.entries,
        bytes: args.bytes,
    };
    let result = if args.dry_run {
        tree::plan(&opts).map(|p| p.summary())
    } else {
        tree::generate(&opts, &args.dir)
    };
    match result {
        Ok(summary) => {
            match serde_json::to_string_pretty(&summary) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    eprintln!("gen_tree: encoding the summary: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_tree: {e}");
            ExitCode::FAILURE
        }
    }
}
