//! The man page against the program: every subcommand and every long option
//! that `--help` shows is documented in man/lxc-snap.1, the page names the
//! package version, and groff formats it without a single warning.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const MAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/man/lxc-snap.1");

fn help(path: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lxc-snap"))
        .args(path)
        .arg("--help")
        .env("COLUMNS", "100")
        .output()
        .expect("running lxc-snap");
    assert!(out.status.success(), "lxc-snap {path:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The names under `Commands:` in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// Every `--long-option` a help text mentions.
fn long_options(help: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = help.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let mut i = 0;
    while let Some(at) = help[i..].find("--") {
        let start = i + at;
        let mut end = start + 2;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        let preceded_by_word = start > 0 && word(bytes[start - 1]);
        if !preceded_by_word && end > start + 2 {
            found.insert(help[start..end].to_string());
        }
        i = end;
    }
    found
}

/// Every subcommand path (`["snap"]`, ...) and every long option of the
/// program, from `--help` at every level.
fn program_surface() -> (Vec<Vec<String>>, BTreeSet<String>) {
    let mut commands = Vec::new();
    let mut options = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        options.extend(long_options(&text));
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub.clone());
            // `help` takes subcommand names, not options of its own.
            if sub != "help" {
                todo.push(next.clone());
            }
            commands.push(next);
        }
    }
    (commands, options)
}

/// The page's source with the escapes that matter for searching undone.
fn man_text() -> String {
    let raw = std::fs::read_to_string(MAN).expect("reading man/lxc-snap.1");
    let mut text = raw
        .replace("\\-", "-")
        .replace("\\%", "")
        .replace("\\&", "")
        .replace("\\e", "\\");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text
}

/// The lines of section `name` (from `.SH NAME` to the next `.SH`).
fn section(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| l.trim() != format!(".SH {name}"))
        .skip(1)
        .take_while(|l| !l.starts_with(".SH"))
        .map(String::from)
        .collect()
}

/// The first word of each item heading (the line after `.TP` or `.TQ`),
/// without its font macro.
fn headings(lines: &[String]) -> Vec<String> {
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP" || w[0] == ".TQ")
        .filter_map(|w| {
            let line = w[1].trim();
            let line = match line.split_once(' ') {
                Some((m, rest)) if m.starts_with('.') => rest,
                _ => line,
            };
            line.trim_start_matches('"')
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .map(String::from)
        })
        .collect()
}

#[test]
fn every_subcommand_has_an_entry_in_commands() {
    let (commands, _) = program_surface();
    assert!(commands.iter().any(|c| c == &["completions"]));
    let entries = headings(&section(&man_text(), "COMMANDS"));
    for path in &commands {
        let name = path.last().expect("non-empty path");
        // `help X` only repeats the other subcommands' names.
        if path.len() > 1 && path[0] == "help" {
            continue;
        }
        assert!(
            entries.iter().any(|e| e == name),
            "subcommand `{}` has no entry in COMMANDS of man/lxc-snap.1 (entries: {entries:?})",
            path.join(" ")
        );
    }
}

#[test]
fn every_long_option_is_documented_in_options() {
    let (_, options) = program_surface();
    for want in [
        "--snapdir",
        "--json",
        "--comment-file",
        "--message",
        "--help",
    ] {
        assert!(options.contains(want), "{want} not found in --help");
    }
    let documented = long_options(&section(&man_text(), "OPTIONS").join("\n"));
    let missing: Vec<&String> = options.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "long options missing from OPTIONS in man/lxc-snap.1: {missing:?}"
    );
}

#[test]
fn the_page_and_the_program_name_the_package_version() {
    let th = man_text()
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect(".TH line")
        .to_string();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        th.contains(&format!("\"lxc-snap {version}\"")),
        "{th} does not name version {version}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lxc-snap"))
        .arg("--version")
        .output()
        .expect("running lxc-snap");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("lxc-snap {version}\n")
    );
}

#[test]
fn groff_formats_the_page_without_warnings() {
    let skip = std::env::var("LXC_SNAP_SKIP_SYSTEM_TESTS").as_deref() == Ok("1");
    let out = match Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(Path::new(MAN))
        .output()
    {
        Ok(out) => out,
        Err(e) if skip => {
            eprintln!("SKIPPED groff check: groff: {e}; LXC_SNAP_SKIP_SYSTEM_TESTS=1");
            return;
        }
        Err(e) => panic!(
            "groff is needed to check the man page: {e} (apt-get install groff-base, \
             or set LXC_SNAP_SKIP_SYSTEM_TESTS=1 to skip system tests)"
        ),
    };
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff -man -ww -z man/lxc-snap.1:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_scanners_see_what_they_should() {
    let text = "Commands:\n  snap  Do\n  help  Help\n\nOptions:\n  -c, --comment-file <F>  x --json\n  lxc-snap a--b";
    assert_eq!(subcommands(text), ["snap", "help"]);
    assert_eq!(
        long_options(text).into_iter().collect::<Vec<_>>(),
        ["--comment-file", "--json"]
    );
    let lines: Vec<String> = [".TP", ".BI restore \" SNAP\"", ".TQ", "snap [-c FILE] NAME"]
        .map(String::from)
        .to_vec();
    assert_eq!(headings(&lines), ["restore", "snap"]);
}
