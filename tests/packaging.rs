//! What the packaging files promise, without building a package (that is
//! `make test-package`): one version everywhere, a Keep a Changelog
//! CHANGELOG.md, and a Debian source that says what the issue asks of it.

use std::fs;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

#[test]
fn debian_changelog_carries_the_cargo_version() {
    let changelog = read("debian/changelog");
    let first = changelog.lines().next().expect("a first line");
    assert_eq!(
        first,
        format!(
            "lxc-snap ({}) unstable; urgency=medium",
            env!("CARGO_PKG_VERSION")
        ),
        "debian/changelog's newest entry must be Cargo.toml's version \
         (the package's version is what lxc-snap --version prints)"
    );
    assert_eq!(read("debian/source/format").trim(), "3.0 (native)");
}

#[test]
fn debian_control_asks_for_what_the_package_needs() {
    let control = read("debian/control");
    for line in [
        "Build-Depends: debhelper-compat (= 13)",
        "Depends: ${shlibs:Depends}, ${misc:Depends}",
        "Recommends: lxc",
        "Rules-Requires-Root: no",
    ] {
        assert!(
            control.lines().any(|l| l == line),
            "debian/control lacks {line:?}"
        );
    }
    let copyright = read("debian/copyright");
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
}

#[test]
fn changelog_follows_keep_a_changelog() {
    let text = read("CHANGELOG.md");
    assert!(text.starts_with("# Changelog\n"));
    assert!(text.contains("https://keepachangelog.com/en/1.1.0/"));
    let releases: Vec<&str> = text.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(releases.first(), Some(&"## [Unreleased]"), "{releases:?}");
    for heading in &releases[1..] {
        // ## [1.2.3] - 2026-01-31
        let rest = heading.trim_start_matches("## [");
        let (version, date) = rest.split_once("] - ").unwrap_or_else(|| {
            panic!("{heading:?}: not `## [VERSION] - YYYY-MM-DD`");
        });
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u64>().is_ok()),
            "{heading:?}: not a semantic version"
        );
        assert!(
            chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
            "{heading:?}: not an ISO date"
        );
    }
    for section in text.lines().filter(|l| l.starts_with("### ")) {
        assert!(
            [
                "### Added",
                "### Changed",
                "### Deprecated",
                "### Removed",
                "### Fixed",
                "### Security"
            ]
            .contains(&section),
            "{section:?} is not a Keep a Changelog section"
        );
    }
}
