//! Container and snapshot names, validated before anything touches the disk.
//!
//! A name is used as one path component under the lxcpath or the snapdir, so
//! anything that could escape that directory, hide among lxc-snap's own
//! dot-files, read as an option, or garble a terminal is refused.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// Longest container name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A valid container name: one safe path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerName(String);

impl ContainerName {
    pub fn parse(name: &str) -> Result<ContainerName> {
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_NAME_LEN {
            Some("it is longer than 64 bytes")
        } else if name.contains('/') {
            Some("it contains '/'")
        } else if name.starts_with('.') {
            Some("it starts with '.'")
        } else if name.starts_with('-') {
            Some("it starts with '-'")
        } else if name.chars().any(char::is_control) {
            Some("it contains control characters")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::new(
                ErrorKind::Usage,
                format!("invalid name {}: {why}", escape(name)),
            )),
            None => Ok(ContainerName(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// As JSON: the name as text.
impl serde::Serialize for ContainerName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name for a container called `name`: `name` itself when it is a
/// DNS label (letters, digits and inner hyphens, at most 63 bytes), else
/// `name` with every other character made a hyphen, hyphens trimmed from
/// the ends and cut to 63 bytes (`mysql_0` -> `mysql-0`), as systemd and
/// resolvers want it. Container names are never empty, so neither is this.
pub fn host_name_for(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(63)];
    let label = cut.trim_end_matches('-');
    if label.is_empty() {
        "localhost".to_string()
    } else {
        label.to_string()
    }
}

/// Snapshot number `number` of `container`, spelled `<container>_<number>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName {
    container: ContainerName,
    number: u64,
}

impl SnapshotName {
    pub fn new(container: ContainerName, number: u64) -> SnapshotName {
        SnapshotName { container, number }
    }

    /// Parses `NAME_N`. The number is what follows the LAST underscore, so
    /// `my_db_0` is snapshot 0 of `my_db`. Leading zeros are refused so
    /// that every snapshot has exactly one spelling.
    pub fn parse(name: &str) -> Result<SnapshotName> {
        Self::try_parse(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                format!(
                    "invalid snapshot name {}: expected CONTAINER_NUMBER, e.g. mysql_2",
                    escape(name)
                ),
            )
        })
    }

    /// Like [`SnapshotName::parse`], but `None` for anything that is not a
    /// snapshot name (used when scanning the snapdir).
    pub fn try_parse(name: &str) -> Option<SnapshotName> {
        let (container, number) = name.rsplit_once('_')?;
        let canonical = !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && (number == "0" || !number.starts_with('0'));
        if !canonical {
            return None;
        }
        let number = number.parse().ok()?;
        let container = ContainerName::parse(container).ok()?;
        Some(SnapshotName { container, number })
    }

    pub fn container(&self) -> &ContainerName {
        &self.container
    }

    pub fn number(&self) -> u64 {
        self.number
    }
}

/// As JSON: the name as text.
impl serde::Serialize for SnapshotName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.container, self.number)
    }
}

/// Quotes a user-given name for an error message without letting control
/// characters reach the terminal.
fn escape(name: &str) -> String {
    format!("{name:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["mysql", "my_db", "web-1", "a.b", "x", &"a".repeat(64)] {
            assert_eq!(
                ContainerName::parse(name)
                    .map(|n| n.to_string())
                    .ok()
                    .as_deref(),
                Some(name)
            );
        }
    }

    #[test]
    fn refuses_unsafe_names_as_usage_errors() {
        for name in [
            "",
            "a/b",
            "/abs",
            "..",
            ".",
            ".hidden",
            "-rf",
            "--x",
            "a\nb",
            "a\tb",
            "a\u{1b}[31m",
            &"a".repeat(65),
        ] {
            let err = ContainerName::parse(name).expect_err(name);
            assert_eq!(err.kind(), ErrorKind::Usage, "{name:?}");
            assert!(err.to_string().starts_with("invalid name "), "{err}");
        }
    }

    #[test]
    fn snapshot_names_split_at_the_last_underscore() {
        let s = SnapshotName::parse("my_db_10").expect("valid");
        assert_eq!(s.container().as_str(), "my_db");
        assert_eq!(s.number(), 10);
        assert_eq!(s.to_string(), "my_db_10");
        assert_eq!(SnapshotName::parse("mysql_0").expect("valid").number(), 0);
    }

    #[test]
    fn refuses_malformed_snapshot_names() {
        for name in [
            "mysql",
            "mysql_",
            "_3",
            "mysql_x",
            "mysql_01",
            "mysql_-1",
            "../x_1",
            "mysql_1 ",
            "a/b_1",
            "mysql_99999999999999999999999",
        ] {
            assert!(SnapshotName::try_parse(name).is_none(), "{name:?}");
            assert_eq!(
                SnapshotName::parse(name).expect_err(name).kind(),
                ErrorKind::Usage
            );
        }
    }

    #[test]
    fn host_names_are_dns_labels() {
        assert_eq!(host_name_for("web"), "web");
        assert_eq!(host_name_for("mysql_0"), "mysql-0");
        assert_eq!(host_name_for("mysql_tmp"), "mysql-tmp");
        assert_eq!(host_name_for("db.example"), "db-example");
        assert_eq!(host_name_for("_x_"), "x");
        assert_eq!(host_name_for("___"), "localhost");
        assert_eq!(host_name_for("é"), "localhost");
        let long = "a".repeat(62) + "_b";
        assert_eq!(host_name_for(&long), "a".repeat(62));
        assert_eq!(host_name_for(&"b".repeat(64)).len(), 63);
    }

    #[test]
    fn snapshot_numbers_order_numerically() {
        let c = ContainerName::parse("c").expect("valid");
        let mut v = [
            SnapshotName::new(c.clone(), 10),
            SnapshotName::new(c.clone(), 9),
            SnapshotName::new(c, 1),
        ];
        v.sort();
        let names: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["c_1", "c_9", "c_10"]);
    }
}
