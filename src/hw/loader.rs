//! ELF loader and parameter block.
//!
//! QEMU analogue: `hw/core/loader.c` (`load_elf_ram_sym`) as used by
//! `riscv_load_kernel()` in `hw/riscv/boot.c`: the loadable segments of an
//! ELF64 RISC-V executable are copied to their physical addresses (`p_paddr`),
//! and the rest of each segment (`.bss`) is zero. The parameter block is what
//! QEMU's `-device loader,addr=…,data=…,data-len=8` writes.
//!
//! # Bytes outside RAM
//! An ELF linked the usual way (`gcc -nostdlib -Ttext=0x80000000`, gcc's
//! default linker script) has a first LOAD segment that starts a page below
//! RAM, at 0x7fff_f000, because it also carries the ELF and program headers.
//! QEMU turns every segment into a ROM blob and, at reset, writes each blob
//! only where memory is; the bytes that fall outside any memory region are
//! dropped. vcpulab does the same: it loads the bytes of each segment that lie
//! in RAM and drops the rest, and says once on stderr what it dropped unless
//! that was only the ELF and program headers (and the zero padding after
//! them). It refuses an ELF none of whose loadable bytes lie in RAM, and a
//! segment that overlaps a device (QEMU would write into the device's ROM or
//! ignore the write; neither is what the ELF's author meant).
//!
//! # Where the guest starts
//! With `-bios none` QEMU's reset ROM jumps to the start of RAM, whatever
//! `e_entry` says; QEMU passes the ELF's lowest segment address (the `lowaddr`
//! of `load_elf`, which `riscv_load_kernel` returns as the "kernel entry") in
//! `fw_dynamic_info.next_addr` only. [`LoadedKernel::low`] is that address.

use std::path::Path;

use object::Endianness;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};

use crate::config::PARAM_BLOCK;
use crate::hw::memory::{RAM_BASE, Ram};

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
    /// No loadable byte of the ELF lies in RAM.
    #[error(
        "kernel '{path}': no loadable byte lies in RAM ({ram_start:#x}..{ram_end:#x}): its segments span {addr:#x}..{end:#x} (use a larger --memory, or link it for RAM)"
    )]
    OutsideRam {
        /// The file.
        path: String,
        /// Lowest segment address.
        addr: u64,
        /// One past the highest segment address.
        end: u64,
        /// RAM start.
        ram_start: u64,
        /// RAM end.
        ram_end: u64,
    },
    /// A segment overlaps a device.
    #[error(
        "kernel '{path}': segment at {addr:#x}..{end:#x} overlaps device '{device}' at {base:#x}..{dev_end:#x}; expected segments in RAM ({ram_start:#x}..{ram_end:#x})"
    )]
    OverlapsDevice {
        /// The file.
        path: String,
        /// Segment start.
        addr: u64,
        /// Segment end.
        end: u64,
        /// The device's region name.
        device: &'static str,
        /// Device start.
        base: u64,
        /// Device end.
        dev_end: u64,
        /// RAM start.
        ram_start: u64,
        /// RAM end.
        ram_end: u64,
    },
    /// The host refused the guest RAM mapping.
    #[error("cannot allocate {size} bytes of guest RAM (--memory): {err}")]
    Ram {
        /// Requested size.
        size: u64,
        /// The OS error.
        err: std::io::Error,
    },
    /// The vCPUs' kick mechanism could not be set up (an eventfd refused).
    #[error("cannot set up --kick {kind}: {err}")]
    Kick {
        /// The mechanism.
        kind: &'static str,
        /// The OS error.
        err: std::io::Error,
    },
    /// The parameter block does not fit.
    #[error("parameter block at {PARAM_BLOCK:#x} lies outside RAM (use a larger --memory)")]
    ParamsOutsideRam,
}

/// What the loader found.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// The ELF's `e_entry` (informative: execution starts at RAM's base).
    pub entry: u64,
    /// Lowest segment address (QEMU's `fw_dynamic_info.next_addr`), which may
    /// lie below RAM.
    pub low: u64,
    /// One past the highest segment address.
    pub high: u64,
    /// Segment bytes outside RAM that were not loaded, if any.
    pub dropped: Option<Dropped>,
}

/// Segment bytes that lay outside RAM and were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// How many bytes (file bytes and `.bss`).
    pub bytes: u64,
    /// Lowest dropped address.
    pub low: u64,
    /// One past the highest dropped address.
    pub high: u64,
    /// The dropped bytes were only the ELF and program headers and the zero
    /// padding after them (the usual gcc layout): nothing worth a message.
    pub headers_only: bool,
}

impl Dropped {
    /// The one line to print about it, or `None` when only headers were
    /// dropped.
    pub fn message(&self, path: &Path) -> Option<String> {
        (!self.headers_only).then(|| {
            format!(
                "kernel '{}': {} bytes of its segments at {:#x}..{:#x} lie outside RAM and were not loaded (QEMU drops them too)",
                path.display(),
                self.bytes,
                self.low,
                self.high
            )
        })
    }
}

/// A device region the loader must not write: (name, base, size).
pub type DeviceRange = (&'static str, u64, u64);

/// The guest run when no kernel is given: `guests/build/compute.elf`.
pub const BUILTIN_KERNEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/guests/build/compute.elf"
));

/// Name shown for the built-in kernel.
pub const BUILTIN_NAME: &str = "<built-in compute guest>";

/// Read and validate an ELF file, returning its bytes.
pub fn read_kernel(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|err| LoadError::Read {
        path: path.display().to_string(),
        err,
    })
}

/// Load the ELF image `data` (from `path`, for messages) into `ram`: the
/// bytes of each segment that lie in RAM; a segment overlapping one of
/// `devices` is refused (see the module documentation).
pub fn load_elf(
    path: &Path,
    data: &[u8],
    ram: &Ram,
    devices: &[DeviceRange],
) -> Result<LoadedKernel, LoadError> {
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
    // File bytes [0, headers_end) are the ELF header and program headers.
    let headers_end = (hdr.e_phoff(endian))
        .saturating_add(hdr.e_phnum(endian) as u64 * hdr.e_phentsize(endian) as u64)
        .max(hdr.e_ehsize(endian) as u64);
    struct Seg<'a> {
        addr: u64,
        end: u64,
        offset: u64,
        bytes: &'a [u8],
    }
    let mut segs = Vec::new();
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
        for &(device, base, size) in devices {
            if addr < base + size && base < end {
                return Err(LoadError::OverlapsDevice {
                    path: p.clone(),
                    addr,
                    end,
                    device,
                    base,
                    dev_end: base + size,
                    ram_start: RAM_BASE,
                    ram_end,
                });
            }
        }
        segs.push(Seg {
            addr,
            end,
            offset: ph.p_offset(endian),
            bytes,
        });
    }
    if segs.is_empty() {
        return Err(fmt("has no loadable segments"));
    }
    let low = segs.iter().map(|s| s.addr).min().unwrap_or(0);
    let high = segs.iter().map(|s| s.end).max().unwrap_or(0);
    if !segs.iter().any(|s| s.addr < ram_end && RAM_BASE < s.end) {
        return Err(LoadError::OutsideRam {
            path: p.clone(),
            addr: low,
            end: high,
            ram_start: RAM_BASE,
            ram_end,
        });
    }
    let mut dropped: Option<Dropped> = None;
    let mut drop_range = |lo: u64, hi: u64, headers: bool| {
        let d = dropped.get_or_insert(Dropped {
            bytes: 0,
            low: lo,
            high: hi,
            headers_only: true,
        });
        d.bytes += hi - lo;
        d.low = d.low.min(lo);
        d.high = d.high.max(hi);
        d.headers_only &= headers;
    };
    for s in &segs {
        let lo = s.addr.max(RAM_BASE);
        let hi = s.end.min(ram_end);
        if s.addr < lo {
            // The part below RAM: only headers if it is file bytes that are
            // the headers or zero padding after them.
            let n = (lo.min(s.end) - s.addr) as usize;
            let headers = n <= s.bytes.len()
                && s.offset < headers_end
                && s.bytes[..n]
                    .iter()
                    .skip(headers_end.saturating_sub(s.offset) as usize)
                    .all(|&b| b == 0);
            drop_range(s.addr, lo.min(s.end), headers);
        }
        if s.end > hi.max(lo) {
            drop_range(hi.max(lo).max(s.addr), s.end, false);
        }
        if lo >= hi {
            continue;
        }
        // In RAM: file bytes [lo, min(hi, addr + filesz)), then .bss zeros
        // (written explicitly, so a reload on reset clears it too).
        let off = lo - RAM_BASE;
        let file_end = (s.addr + s.bytes.len() as u64).clamp(lo, hi);
        let from = ((lo - s.addr) as usize).min(s.bytes.len());
        let to = ((file_end - s.addr) as usize).min(s.bytes.len());
        ram.write_bytes(off, &s.bytes[from..to]);
        zero(ram, file_end - RAM_BASE, hi - RAM_BASE);
    }
    Ok(LoadedKernel {
        entry: hdr.e_entry(endian),
        low,
        high,
        dropped,
    })
}

/// Zero RAM offsets `[from, to)`, storing only where a word is not zero
/// already: reading an untouched page costs no memory, so a large `.bss` in
/// fresh RAM stays unbacked.
fn zero(ram: &Ram, from: u64, to: u64) {
    let mut a = from;
    while a < to {
        if a % 8 == 0 && to - a >= 8 {
            if ram.load(a, 8) != 0 {
                ram.store(a, 8, 0);
            }
            a += 8;
        } else {
            if ram.load(a, 1) != 0 {
                ram.store(a, 1, 0);
            }
            a += 1;
        }
    }
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

/// The built-in guest's default iteration count (`guests/src/compute.c`).
pub const BUILTIN_DEFAULT_ITERS: u64 = 10_000_000;

/// The checksum the built-in compute guest prints after `iters` iterations
/// (0 means the guest's default), computed here from the guest's loop
/// (`guests/src/compute.c`) with RISC-V's arithmetic rules, so that a run of
/// the main job can be judged without QEMU. `tests/main_job.rs` checks it
/// against the guest on vcpulab and on QEMU.
pub fn builtin_checksum(iters: u64) -> u64 {
    let iters = if iters == 0 {
        BUILTIN_DEFAULT_ITERS
    } else {
        iters
    };
    let sext32 = |v: u32| v as i32 as i64 as u64;
    let (mut x, mut y, mut acc): (u64, u64, u64) = (0x9e3779b97f4a7c15, 0x0123456789abcdef, 0);
    for i in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_add(x.wrapping_mul(y)); // mul
        acc ^= ((x as u128 * y as u128) >> 64) as u64; // mulhu
        y = y.wrapping_sub(((acc as i64 as i128 * x as i64 as i128) >> 64) as u64); // mulh
        let d = ((x & 0xff) as i64) - 8; // andi, addi
        let q = if d == 0 {
            u64::MAX
        } else {
            (acc as i64).wrapping_div(d) as u64
        }; // div
        acc = acc.wrapping_add(q);
        let s = ((x as i64) >> 57) as u64; // srai
        let r = if s == 0 { y } else { y % s }; // remu
        acc = sext32((acc as u32).wrapping_add(r as u32)); // addw
        acc ^= sext32((acc as u32).wrapping_mul(x as u32)); // mulw
        let t = sext32(((y as i32) >> 3) as u32); // sraiw
        let dq = match t as u32 {
            0 => u64::MAX,
            dv => sext32((acc as u32) / dv),
        }; // divuw
        y |= dq;
        y = y.wrapping_add((acc < y) as u64); // sltu, add
        y = y.rotate_right(1); // srli, slli, or
        acc = acc.wrapping_add(i);
    }
    acc ^ x ^ y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 RISC-V executable with one PT_LOAD segment at `paddr`: the
    /// headers (0x78 bytes) followed by `body`, `memsz` bytes in memory.
    fn elf(paddr: u64, body: &[u8], memsz: u64) -> Vec<u8> {
        let mut v = vec![0u8; 0x78];
        v[0..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[5] = 1;
        v[6] = 1;
        v[16..18].copy_from_slice(&2u16.to_le_bytes());
        v[18..20].copy_from_slice(&243u16.to_le_bytes());
        v[20..24].copy_from_slice(&1u32.to_le_bytes());
        v[24..32].copy_from_slice(&0x8000_0000u64.to_le_bytes());
        v[32..40].copy_from_slice(&0x40u64.to_le_bytes());
        v[52..54].copy_from_slice(&64u16.to_le_bytes());
        v[54..56].copy_from_slice(&56u16.to_le_bytes());
        v[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        v[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        v[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        v[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        let filesz = 0x78 + body.len() as u64;
        v[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
        v[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn bytes_below_ram_are_dropped_and_the_rest_loaded() {
        let ram = Ram::new(1 << 20);
        ram.store(0x10, 8, u64::MAX); // .bss is zeroed even over old data
        // Headers and zero padding up to RAM, then code: only headers dropped.
        let mut body = vec![0u8; 0x1000 - 0x78];
        body.extend_from_slice(&[1, 2, 3, 4]);
        let k = load_elf(Path::new("t"), &elf(0x7fff_f000, &body, 0x1020), &ram, &[]).unwrap();
        assert_eq!(k.low, 0x7fff_f000);
        assert_eq!(ram.read_bytes(0, 5), [1, 2, 3, 4, 0]);
        assert_eq!(ram.load(0x10, 8), 0);
        let d = k.dropped.unwrap();
        assert_eq!((d.bytes, d.low, d.high), (0x1000, 0x7fff_f000, 0x8000_0000));
        assert!(d.headers_only && d.message(Path::new("t")).is_none());
        // Non-zero bytes below RAM: worth a message.
        let mut body = vec![7u8; 0x1000 - 0x78];
        body.extend_from_slice(&[5]);
        let k = load_elf(Path::new("t"), &elf(0x7fff_f000, &body, 0x1001), &ram, &[]).unwrap();
        assert_eq!(ram.load(0, 1), 5);
        let msg = k.dropped.unwrap().message(Path::new("t")).unwrap();
        assert!(
            msg.contains("4096 bytes") && msg.contains("0x7ffff000..0x80000000"),
            "{msg}"
        );
    }

    #[test]
    fn bytes_above_ram_are_dropped_and_devices_refused() {
        let ram = Ram::new(1 << 20);
        let top = RAM_BASE + (1 << 20);
        let k = load_elf(Path::new("t"), &elf(top - 0x78, &[9, 9], 0x100), &ram, &[]).unwrap();
        assert_eq!(ram.load((1 << 20) - 0x78, 4), 0x464c_457f);
        let d = k.dropped.unwrap();
        assert_eq!((d.low, d.high, d.bytes), (top, top + 0x88, 0x88));
        assert!(!d.headers_only);
        let e = load_elf(Path::new("t"), &elf(top, &[], 0x100), &ram, &[]).unwrap_err();
        assert!(matches!(e, LoadError::OutsideRam { .. }), "{e}");
        let dev = [("dev", 0x7fff_f800, 0x100)];
        let e = load_elf(Path::new("t"), &elf(0x7fff_f000, &[], 0x2000), &ram, &dev).unwrap_err();
        assert!(e.to_string().contains("overlaps device 'dev'"), "{e}");
    }
}
