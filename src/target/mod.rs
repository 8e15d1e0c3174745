//! Guest architectures, as QEMU's `target/`: only [`riscv`].

pub mod riscv;
