//! Name validation: a name that is accepted is one safe path component and
//! prints as it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lxc_snap::names::{ContainerName, SnapshotName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = ContainerName::parse(text) {
        assert_eq!(name.as_str(), text);
        assert!(!text.is_empty() && text.len() <= 64);
        assert!(!text.contains('/') && !text.starts_with('.') && !text.starts_with('-'));
        assert!(!text.chars().any(char::is_control));
    }
    match SnapshotName::try_parse(text) {
        Some(snap) => {
            assert_eq!(snap.to_string(), text);
            assert!(SnapshotName::parse(text).is_ok());
            assert_eq!(
                SnapshotName::try_parse(&snap.to_string()).map(|s| s.number()),
                Some(snap.number())
            );
        }
        None => assert!(SnapshotName::parse(text).is_err()),
    }
});
