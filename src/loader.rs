//! ELF loader and parameter block.
//!
//! QEMU analogue: `hw/core/loader.c` (`load_elf_ram_sym`) as used by
//! `riscv_load_kernel()` in `hw/riscv/boot.c`: the loadable segments of an
//! ELF64 RISC-V executable are copied to their physical addresses (`p_paddr`),
//! the rest of each segment (`.bss`) is zero, and the entry point is the ELF's
//! `e_entry`. The parameter block is what QEMU's `-device loader,addr=…,
//! data=…,data-len=8` writes.

use std::path::Path;

use object::Endianness;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};

use crate::config::PARAM_BLOCK;
use crate::memory::{RAM_BASE, Ram};

/// A loader error: one line naming the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read kernel '{path}': {err}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// Not an ELF file, or not one this machine runs.
    #[error("kernel '{path}': {what}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A segment does not fit in RAM.
    #[error(
        "kernel '{path}': segment at {addr:#x}..{end:#x} lies outside RAM ({ram_start:#x}..{ram_end:#x})"
    )]
    OutsideRam {
        /// The file.
        path: String,
        /// Segment start.
        addr: u64,
        /// Segment end.
        end: u64,
        /// RAM start.
        ram_start: u64,
        /// RAM end.
        ram_end: u64,
    },
    /// The parameter block does not fit.
    #[error("parameter block at {PARAM_BLOCK:#x} lies outside RAM (use a larger --memory)")]
    ParamsOutsideRam,
}

/// What the loader found.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// Entry point.
    pub entry: u64,
    /// Lowest loaded address.
    pub low: u64,
    /// One past the highest loaded address.
    pub high: u64,
}

/// The guest run when no kernel is given: `guests/build/compute.elf`.
pub const BUILTIN_KERNEL: &[u8] = include_bytes!("../guests/build/compute.elf");

/// Name shown for the built-in kernel.
pub const BUILTIN_NAME: &str = "<built-in compute guest>";

/// Read and validate an ELF file, returning its bytes.
pub fn read_kernel(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|err| LoadError::Read {
        path: path.display().to_string(),
        err,
    })
}

/// Load the ELF image `data` (from `path`, for messages) into `ram`.
pub fn load_elf(path: &Path, data: &[u8], ram: &Ram) -> Result<LoadedKernel, LoadError> {
    let p = path.display().to_string();
    let fmt = |what: &str| LoadError::Format {
        path: p.clone(),
        what: what.to_string(),
    };
    if data.len() < 16 || &data[0..4] != b"\x7fELF" {
        return Err(fmt(
            "not an ELF file (bad magic); expected an ELF64 RISC-V executable",
        ));
    }
    if data[4] != 2 {
        return Err(fmt("is a 32-bit ELF; expected ELF64 (RV64)"));
    }
    if data[5] != 1 {
        return Err(fmt("is big-endian; expected a little-endian RISC-V ELF"));
    }
    let hdr = elf::FileHeader64::<Endianness>::parse(data)
        .map_err(|e| fmt(&format!("malformed ELF header: {e}")))?;
    let endian = hdr
        .endian()
        .map_err(|e| fmt(&format!("malformed ELF header: {e}")))?;
    if hdr.e_machine(endian) != elf::EM_RISCV {
        return Err(fmt(&format!(
            "is for machine {} ; expected RISC-V (EM_RISCV = 243)",
            hdr.e_machine(endian)
        )));
    }
    let ty = hdr.e_type(endian);
    if ty != elf::ET_EXEC {
        return Err(fmt(&format!(
            "ELF type {ty} is not an executable (ET_EXEC)"
        )));
    }
    let phdrs = hdr
        .program_headers(endian, data)
        .map_err(|e| fmt(&format!("malformed program headers: {e}")))?;
    let ram_end = RAM_BASE + ram.size();
    let mut low = u64::MAX;
    let mut high = 0;
    let mut any = false;
    for ph in phdrs {
        if ph.p_type(endian) != elf::PT_LOAD || ph.p_memsz(endian) == 0 {
            continue;
        }
        let addr = ph.p_paddr(endian);
        let memsz = ph.p_memsz(endian);
        let bytes = ph
            .data(endian, data)
            .map_err(|_| fmt("segment data lies outside the file"))?;
        if bytes.len() as u64 > memsz {
            return Err(fmt("segment file size exceeds its memory size"));
        }
        let end = addr
            .checked_add(memsz)
            .ok_or_else(|| fmt("segment address overflows"))?;
        let Some(off) = ram.offset(addr, memsz) else {
            return Err(LoadError::OutsideRam {
                path: p.clone(),
                addr,
                end,
                ram_start: RAM_BASE,
                ram_end,
            });
        };
        ram.write_bytes(off, bytes);
        // .bss: zero explicitly, so a reload on reset clears it too.
        for i in bytes.len() as u64..memsz {
            ram.store(off + i, 1, 0);
        }
        low = low.min(addr);
        high = high.max(end);
        any = true;
    }
    if !any {
        return Err(fmt("has no loadable segments"));
    }
    Ok(LoadedKernel {
        entry: hdr.e_entry(endian),
        low,
        high,
    })
}

/// Write the parameter block slots.
pub fn write_params(ram: &Ram, params: &[(usize, u64)]) -> Result<(), LoadError> {
    for &(slot, value) in params {
        let addr = PARAM_BLOCK + 8 * slot as u64;
        let off = ram.offset(addr, 8).ok_or(LoadError::ParamsOutsideRam)?;
        ram.store(off, 8, value);
    }
    Ok(())
}
