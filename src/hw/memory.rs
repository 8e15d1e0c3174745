//! Guest physical memory: RAM shared by all vCPU threads, and the bus that
//! routes every other address to a device.
//!
//! QEMU analogue: `system/physmem.c` and `system/memory.c` (the address space,
//! `MemoryRegionOps` with their valid access sizes), plus the dirty-code
//! tracking of `accel/tcg/translate-all.c` (`tb_invalidate_phys_page_*`).
//!
//! # Soundness of racy guest memory
//! Guest memory is racy by nature: several vCPU threads load and store the
//! same bytes without synchronisation. RAM is therefore an array of
//! [`AtomicU64`] words, and every guest access is an atomic access with
//! `Relaxed` ordering on the word(s) it touches: a 64-bit aligned store is one
//! atomic store; a narrower store is a compare-and-swap loop that replaces only
//! its bytes of the word, so no other byte is ever torn or lost; a misaligned
//! access that crosses a word is split into per-word parts (the guest sees it as
//! non-atomic, as on real hardware). AMOs are real atomic read-modify-writes and
//! LR/SC is emulated with compare-and-swap, as QEMU does. No access ever mixes
//! atomic sizes on the same location.
//!
//! # Allocation
//! RAM and its code-line bitmap are anonymous private mappings made with
//! `MAP_NORESERVE` (the `memmap2` crate): the kernel hands out zeroed pages
//! only when the guest first touches them, and no swap is reserved, as QEMU's
//! RAM is reserved, not touched. `--memory 64G` therefore costs no start-up
//! work and only the memory the guest uses. The one `unsafe` of this module
//! views such a mapping as `[AtomicU64]` (see [`Words`]).
//!
//! # Self-modifying code
//! Each 64-byte line of RAM has a "holds translated code" bit (one `AtomicU64`
//! of bits per 4 KiB page). The translator sets the bit of every line it reads
//! before reading it; a store into a flagged line clears the bit and bumps the
//! global code generation, which every vCPU compares at each TB lookup (and the
//! storing vCPU ends its TB), so a store over code that has run is seen by the
//! next instruction fetch, as in QEMU. Lines rather than pages, because small
//! guests keep their variables on the same page as their code: with per-page
//! flags every store to such a variable would throw all translations away
//! (QEMU too tracks written ranges, not whole pages).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hw::devices::MmioDevice;

/// Guest physical base address of RAM (QEMU `virt`: `VIRT_DRAM`).
pub const RAM_BASE: u64 = 0x8000_0000;

/// Page size: one word of code-line bits per page.
pub const PAGE_SHIFT: u32 = 12;
/// Code is tracked in lines of 64 bytes.
pub const LINE_SHIFT: u32 = 6;

/// Zero-filled words in an anonymous mapping whose pages the kernel provides
/// on first touch (`MAP_NORESERVE`: no swap is reserved for them either).
struct Words {
    map: memmap2::MmapMut,
    len: usize,
}

impl Words {
    fn new(len: usize) -> std::io::Result<Words> {
        let bytes = len
            .checked_mul(8)
            .ok_or_else(|| std::io::Error::other("size overflows the address space"))?;
        let map = memmap2::MmapOptions::new()
            .len(bytes.max(1))
            .no_reserve_swap()
            .map_anon()?;
        Ok(Words { map, len })
    }
}

impl std::ops::Deref for Words {
    type Target = [AtomicU64];

    #[inline(always)]
    fn deref(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-byte aligned), at least
        // `len * 8` bytes long, zero-filled by the kernel (a valid AtomicU64
        // is any 8 bytes), and lives as long as `self`, which the returned
        // slice borrows. Its bytes are never accessed other than through this
        // slice, i.e. only atomically: `map` is private and its `&mut [u8]`
        // view is never taken.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.len) }
    }
}

/// Guest RAM: `size` bytes at [`RAM_BASE`], shared by every vCPU thread.
pub struct Ram {
    words: Words,
    size: u64,
    /// One bit per 64-byte line, 64 lines (one 4 KiB page) per word.
    code_lines: Words,
    /// Bumped whenever a page holding translated code is written.
    code_gen: AtomicU64,
}

impl Ram {
    /// Zero-filled RAM of `size` bytes (a multiple of 4 KiB), mapped lazily.
    /// Panics if the host refuses the mapping; see [`Ram::try_new`].
    pub fn new(size: u64) -> Ram {
        Ram::try_new(size).expect("guest RAM mapping")
    }

    /// Zero-filled RAM of `size` bytes (a positive multiple of 4 KiB),
    /// mapped lazily: the host's error if it refuses the mapping.
    pub fn try_new(size: u64) -> std::io::Result<Ram> {
        assert!(size % (1 << PAGE_SHIFT) == 0 && size > 0);
        let words = usize::try_from(size / 8)
            .map_err(|_| std::io::Error::other("size overflows the address space"))?;
        Ok(Ram {
            words: Words::new(words)?,
            size,
            code_lines: Words::new(words >> (PAGE_SHIFT - 3))?,
            code_gen: AtomicU64::new(0),
        })
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset of `addr` in RAM if the `len`-byte access lies entirely inside.
    #[inline(always)]
    pub fn offset(&self, addr: u64, len: u64) -> Option<u64> {
        let off = addr.wrapping_sub(RAM_BASE);
        if off < self.size && off + len <= self.size {
            Some(off)
        } else {
            None
        }
    }

    /// Load `len` (1, 2, 4, 8) bytes at offset `off`, zero-extended.
    #[inline(always)]
    pub fn load(&self, off: u64, len: u64) -> u64 {
        let sh = (off & 7) * 8;
        let w = self.words[(off >> 3) as usize].load(Ordering::Relaxed);
        if (off & 7) + len <= 8 {
            let v = w >> sh;
            if len == 8 {
                v
            } else {
                v & ((1u64 << (len * 8)) - 1)
            }
        } else {
            // Crosses into the next word.
            let w2 = self.words[(off >> 3) as usize + 1].load(Ordering::Relaxed);
            let v = (w >> sh) | (w2 << (64 - sh));
            if len == 8 {
                v
            } else {
                v & ((1u64 << (len * 8)) - 1)
            }
        }
    }

    /// Store the low `len` bytes of `val` at offset `off`. Returns `true` when
    /// the store hit a page that holds translated code (the caller ends its TB).
    #[inline(always)]
    pub fn store(&self, off: u64, len: u64, val: u64) -> bool {
        let first = off & 7;
        if first + len <= 8 {
            self.store_in_word(off >> 3, first, len, val);
        } else {
            let lo_len = 8 - first;
            self.store_in_word(off >> 3, first, lo_len, val);
            self.store_in_word((off >> 3) + 1, 0, len - lo_len, val >> (lo_len * 8));
        }
        self.note_write(off, len)
    }

    #[inline(always)]
    fn store_in_word(&self, idx: u64, byte: u64, len: u64, val: u64) {
        let word = &self.words[idx as usize];
        if len == 8 {
            word.store(val, Ordering::Relaxed);
            return;
        }
        let mask = ((1u64 << (len * 8)) - 1) << (byte * 8);
        let bits = (val << (byte * 8)) & mask;
        // Relaxed: guest plain stores carry no ordering of their own; the CAS
        // only guarantees that the other bytes of the word are not lost.
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some((old & !mask) | bits)
        });
    }

    #[inline(always)]
    fn note_write(&self, off: u64, len: u64) -> bool {
        let last = off + len - 1;
        let mut hit = false;
        for page in (off >> PAGE_SHIFT)..=(last >> PAGE_SHIFT) {
            let word = &self.code_lines[page as usize];
            // Relaxed fast-path read: a bit set concurrently by a translator
            // is ordered by the translator itself (it sets the bit, then
            // fences, then reads the code; see `mark_code`).
            let bits = word.load(Ordering::Relaxed);
            if bits == 0 {
                continue;
            }
            let lo = if page == off >> PAGE_SHIFT {
                (off >> LINE_SHIFT) & 63
            } else {
                0
            };
            let hi = if page == last >> PAGE_SHIFT {
                (last >> LINE_SHIFT) & 63
            } else {
                63
            };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            if bits & mask != 0 {
                word.fetch_and(!mask, Ordering::Relaxed);
                // SeqCst: pairs with the fence in `mark_code` so that either
                // the translator sees this store's bytes or we see its bit.
                self.code_gen.fetch_add(1, Ordering::SeqCst);
                hit = true;
            }
        }
        hit
    }

    /// Mark the line containing `off` as holding translated code. Called by
    /// the translator *before* it reads instructions from that line.
    pub fn mark_code(&self, off: u64) {
        let bit = 1u64 << ((off >> LINE_SHIFT) & 63);
        let word = &self.code_lines[(off >> PAGE_SHIFT) as usize];
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Relaxed);
        }
        // SeqCst fence: a store that races with translation either sees the
        // bit (and bumps the generation) or happened before our reads of the
        // code.
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The code generation: changes whenever translated code may be stale.
    #[inline(always)]
    pub fn code_gen(&self) -> u64 {
        self.code_gen.load(Ordering::Acquire)
    }

    /// Atomic read-modify-write of an aligned `len`-byte (4 or 8) location.
    /// Returns the old value (zero-extended).
    #[inline]
    pub fn rmw(&self, off: u64, len: u64, f: impl Fn(u64) -> u64) -> (u64, bool) {
        let word = &self.words[(off >> 3) as usize];
        let old = if len == 8 {
            // AcqRel: guest AMOs are the synchronisation points of racy guests.
            word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| Some(f(o)))
                .unwrap()
        } else {
            let sh = (off & 7) * 8;
            let mask = 0xffff_ffffu64 << sh;
            let w = word
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                    let cur = (o & mask) >> sh;
                    Some((o & !mask) | ((f(cur) & 0xffff_ffff) << sh))
                })
                .unwrap();
            (w & mask) >> sh
        };
        (old, self.note_write(off, len))
    }

    /// Compare-and-swap of an aligned `len`-byte (4 or 8) location: store `new`
    /// if it still holds `expected`. Returns whether it stored.
    #[inline]
    pub fn cas(&self, off: u64, len: u64, expected: u64, new: u64) -> (bool, bool) {
        let word = &self.words[(off >> 3) as usize];
        let ok = if len == 8 {
            word.compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        } else {
            let sh = (off & 7) * 8;
            let mask = 0xffff_ffffu64 << sh;
            word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                if (o & mask) >> sh == expected & 0xffff_ffff {
                    Some((o & !mask) | ((new & 0xffff_ffff) << sh))
                } else {
                    None
                }
            })
            .is_ok()
        };
        let hit = ok && self.note_write(off, len);
        (ok, hit)
    }

    /// Copy bytes into RAM at offset `off` (loader use).
    pub fn write_bytes(&self, off: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.store(off + i as u64, 1, *b as u64);
        }
    }

    /// Read `len` bytes at offset `off` (tests and dumps).
    pub fn read_bytes(&self, off: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| self.load(off + i as u64, 1) as u8)
            .collect()
    }

    /// Read an aligned 32-bit instruction word at offset `off`.
    #[inline]
    pub fn fetch32(&self, off: u64) -> u32 {
        self.load(off, 4) as u32
    }
}

/// One device mapping on the bus.
#[derive(Clone)]
pub struct Region {
    /// Name shown in diagnostics (QEMU's memory region name).
    pub name: &'static str,
    /// First guest physical address.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// The device.
    pub dev: Arc<dyn MmioDevice>,
}

/// The address map: devices at fixed guest physical addresses. A lookup
/// clones nothing and takes no lock; the map is immutable after machine
/// construction (the cloud-hypervisor `Bus` idea without its `RwLock`).
#[derive(Clone, Default)]
pub struct Bus {
    regions: Vec<Region>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Map `dev` at `[base, base + size)`. Panics on overlap (a machine
    /// construction bug, not a guest error).
    pub fn map(&mut self, name: &'static str, base: u64, size: u64, dev: Arc<dyn MmioDevice>) {
        for r in &self.regions {
            assert!(
                base + size <= r.base || r.base + r.size <= base,
                "bus overlap: {name} and {}",
                r.name
            );
        }
        self.regions.push(Region {
            name,
            base,
            size,
            dev,
        });
        self.regions.sort_by_key(|r| r.base);
    }

    /// The region containing `addr`, and the offset in it.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<(&Region, u64)> {
        self.regions
            .iter()
            .find(|r| addr >= r.base && addr - r.base < r.size)
            .map(|r| (r, addr - r.base))
    }

    /// All regions, sorted by base.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_store_all_widths_and_alignments() {
        let ram = Ram::new(4096);
        for off in 0..24u64 {
            for len in [1u64, 2, 4, 8] {
                let val = 0x0123_4567_89ab_cdefu64.wrapping_mul(off + len);
                ram.write_bytes(0, &[0xee; 64]);
                ram.store(off, len, val);
                let mask = if len == 8 {
                    u64::MAX
                } else {
                    (1 << (len * 8)) - 1
                };
                assert_eq!(ram.load(off, len), val & mask, "off {off} len {len}");
                // Neighbouring bytes untouched.
                if off > 0 {
                    assert_eq!(ram.load(off - 1, 1), 0xee);
                }
                assert_eq!(ram.load(off + len, 1), 0xee);
            }
        }
    }

    #[test]
    fn bounds() {
        let ram = Ram::new(4096);
        assert_eq!(ram.offset(RAM_BASE + 4088, 8), Some(4088));
        assert_eq!(ram.offset(RAM_BASE + 4089, 8), None);
        assert_eq!(ram.offset(RAM_BASE - 1, 1), None);
        assert_eq!(ram.offset(0, 1), None);
    }

    #[test]
    fn rmw_and_cas_32_bit_halves() {
        let ram = Ram::new(4096);
        ram.store(0, 8, 0x1111_1111_2222_2222);
        let (old, _) = ram.rmw(4, 4, |o| o + 1);
        assert_eq!(old, 0x1111_1111);
        assert_eq!(ram.load(0, 8), 0x1111_1112_2222_2222);
        assert!(ram.cas(0, 4, 0x2222_2222, 7).0);
        assert!(!ram.cas(0, 4, 0x2222_2222, 8).0);
        assert_eq!(ram.load(0, 8), 0x1111_1112_0000_0007);
    }

    #[test]
    fn code_page_write_bumps_generation() {
        let ram = Ram::new(8192);
        let g0 = ram.code_gen();
        assert!(!ram.store(100, 4, 1));
        ram.mark_code(100);
        // A store to another line of the same page leaves translations alone.
        assert!(!ram.store(200, 4, 1));
        assert!(!ram.store(60, 4, 1));
        assert_eq!(ram.code_gen(), g0);
        // A store that touches the code's line, even by one byte, does not.
        assert!(ram.store(62, 4, 1));
        assert!(ram.code_gen() > g0);
        // The bit is cleared: the next write is cheap again.
        assert!(!ram.store(108, 4, 1));
        // Lines at the end of a page and a store across two pages.
        ram.mark_code(4095);
        assert!(ram.store(4094, 4, 1));
        ram.mark_code(4096);
        assert!(ram.store(4094, 4, 1));
    }

    #[test]
    fn concurrent_byte_stores_do_not_tear_neighbours() {
        let ram = Arc::new(Ram::new(4096));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let ram = ram.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        ram.store(t, 1, i & 0xff);
                    }
                    ram.store(t, 1, 0x40 + t);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ram.load(0, 4), 0x4342_4140);
    }
}
