//! The metadata reader: any bytes are read or refused without panicking,
//! and what is read writes back to metadata that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lxc_snap::names::SnapshotName;
use lxc_snap::store::{parse_metadata, Metadata};

fuzz_target!(|data: &[u8]| {
    let Some(name) = SnapshotName::try_parse("web_3") else {
        return;
    };
    let Ok(meta) = parse_metadata(data, &name) else {
        return;
    };
    let _ = meta.created_time();
    let text = serde_json::to_string(&meta).expect("encodes");
    let again: Metadata = parse_metadata(text.as_bytes(), &name).expect("reads back");
    assert_eq!(again, meta);
});
