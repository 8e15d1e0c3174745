//! The board, as QEMU's `hw/` has it: the `virt` machine ([`machine`]), its
//! address space ([`memory`]), the ELF loader ([`loader`]) and the devices
//! ([`devices`]). Nothing here runs a thread: the vCPUs ([`crate::accel`])
//! and the iothread ([`crate::iothread`]) call into it.

pub mod devices;
pub mod loader;
pub mod machine;
pub mod memory;
