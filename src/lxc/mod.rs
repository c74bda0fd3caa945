//! What lxc-snap knows about LXC: configs in every spelling, a container's
//! directory and state, freezing it, the dependency files LXC's own tools
//! keep, writing a host name into a container tree, and watchdogs that
//! clean up after a run that was killed.

pub mod config;
pub mod container;
pub mod files;
pub mod freeze;
pub mod hostname;
pub mod tools;
pub mod watchdog;

pub use config::{LxcConfig, Rootfs};
pub use container::{Container, State};
pub use freeze::Frozen;
