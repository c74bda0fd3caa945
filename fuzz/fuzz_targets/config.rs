//! The config reader and rewriter: any text parses, renders back byte for
//! byte, and rewrites without panicking into a config whose rootfs is the
//! one asked for.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use lxc_snap::lxc::config::Retarget;
use lxc_snap::lxc::{LxcConfig, Rootfs};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = LxcConfig::parse(text);
    assert_eq!(
        config.render(),
        text,
        "an untouched config renders as it was"
    );
    if let Ok(rootfs) = config.rootfs() {
        if !matches!(rootfs, Rootfs::Unsupported { .. }) {
            assert_eq!(Rootfs::parse(&rootfs.to_value()).ok(), Some(rootfs.clone()));
        }
    }
    let rootfs = Rootfs::Overlay {
        prefix: "overlay".into(),
        lowers: vec![
            PathBuf::from("/s/c_0/private/delta"),
            PathBuf::from("/l/base/rootfs"),
        ],
        upper: PathBuf::from("/s/c_0/private/scratch/upper"),
    };
    let t = Retarget {
        old_dirs: &[Path::new("/l/c"), Path::new("/var/lib/lxc/c")],
        new_dir: Path::new("/s/c_0"),
        new_name: "c_0",
        rootfs: &rootfs,
    };
    let out = config.retarget(&t, || "10:66:6a:00:00:01".to_string());
    for rel in &out.copy {
        assert!(
            rel.is_relative()
                && !rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)),
            "{rel:?}"
        );
    }
    let again = LxcConfig::parse(&out.config.render());
    if let Some((_, value)) = again.rootfs_entry() {
        assert_eq!(Rootfs::parse(value).ok(), Some(rootfs), "{value:?}");
    }
});
