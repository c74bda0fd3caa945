//! The prune rules' parsers: counts and --keep-within durations parse or
//! refuse without panicking, print back to what they parse from, and
//! reach back from any date without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lxc_snap::prune::{Count, Within};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(count) = Count::parse(text) {
        assert_eq!(Count::parse(&count.to_string()).ok(), Some(count));
    }
    if let Ok(within) = Within::parse(text) {
        assert_eq!(Within::parse(&within.to_string()).ok(), Some(within));
        for t in [
            "2026-12-03T10:00:00+01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-12:00",
        ] {
            let t = chrono::DateTime::parse_from_rfc3339(t).expect("date");
            if let Some(before) = within.before(&t) {
                assert!(before <= t);
            }
        }
    }
});
