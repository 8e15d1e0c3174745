//! UART0, a 16550A at 0x1000_0000, on PLIC source 10.
//!
//! QEMU analogue: `hw/char/serial.c` (+ `serial_mm`). Transmitted bytes go to
//! the host sink (stdout by default) at once, so the line status always reads
//! "transmitter empty" (`LSR = 0x60`) as on QEMU with a stdio chardev. The
//! scratch register is plain storage — the cheapest MMIO target there is.
//! Receive data can be queued by the host (`push_input`). Interrupts follow
//! `serial_update_irq`: receiver line status, receive data, THR empty, modem
//! status, in that priority. Accesses are byte-wide (QEMU accepts 1..8 bytes
//! and uses the low byte).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{BusError, MmioDevice, check_size};
use crate::runstate::RunState;

/// Guest address of UART0.
pub const UART_BASE: u64 = 0x1000_0000;
/// Size of its region: QEMU maps 8 byte-wide registers (`serial_mm_init`
/// with regshift 0), so 0x1000_0008.. is unmapped there too.
pub const UART_SIZE: u64 = 8;
/// PLIC source of UART0 on `virt`.
pub const UART_IRQ: usize = 10;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;
const IIR_NO_INT: u8 = 0x01;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_MSI: u8 = 0x00;
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_BI: u8 = 0x10;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const LSR_INT_ANY: u8 = 0x1e;
const LCR_DLAB: u8 = 0x80;
const MSR_ANY_DELTA: u8 = 0x0f;

struct Regs {
    ier: u8,
    iir: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    lsr: u8,
    msr: u8,
    divider: u16,
    thr_ipending: bool,
    rx: VecDeque<u8>,
}

impl Regs {
    fn power_on() -> Regs {
        Regs {
            ier: 0,
            iir: IIR_NO_INT,
            fcr: 0,
            lcr: 0,
            mcr: 0x08,
            lsr: LSR_TEMT | LSR_THRE,
            msr: 0xb0,
            divider: 0x0c,
            thr_ipending: false,
            rx: VecDeque::new(),
        }
    }
}

/// Where transmitted bytes go.
pub type Sink = Box<dyn Write + Send>;

/// The 16550A device.
///
/// Locking: the UART locks itself (`regs`, then `out`, in that order, and
/// `regs` is held for the whole of a register access, a THR write included,
/// so a transmit and the status it sets are one step). Its interrupt line
/// goes to the PLIC, which needs the BQL, so only the scratch register —
/// an atomic outside `regs`, touching nothing else — is reached without the
/// BQL under the `device` policy.
pub struct Uart {
    regs: Mutex<Regs>,
    scr: std::sync::atomic::AtomicU8,
    out: Mutex<Sink>,
    irq: Box<dyn Fn(bool) + Send + Sync>,
    run: Arc<RunState>,
    /// Bytes transmitted (for the run report).
    pub tx_bytes: std::sync::atomic::AtomicU64,
}

impl Uart {
    /// A UART writing to `out`, driving its interrupt line through `irq`.
    /// Output stops once `run` records a shutdown (QEMU exits at once).
    pub fn new(out: Sink, irq: Box<dyn Fn(bool) + Send + Sync>, run: Arc<RunState>) -> Uart {
        Uart {
            regs: Mutex::new(Regs::power_on()),
            scr: Default::default(),
            out: Mutex::new(out),
            irq,
            run,
            tx_bytes: Default::default(),
        }
    }

    /// Queue received bytes (from the host).
    pub fn push_input(&self, data: &[u8]) {
        let mut r = self.regs.lock();
        r.rx.extend(data);
        r.lsr |= LSR_DR;
        self.update_irq(&mut r);
    }

    /// Flush the host sink.
    pub fn flush(&self) {
        let _ = self.out.lock().flush();
    }

    fn update_irq(&self, r: &mut Regs) {
        let id = if r.ier & IER_RLSI != 0 && r.lsr & LSR_INT_ANY != 0 {
            IIR_RLSI
        } else if r.ier & IER_RDI != 0 && r.lsr & LSR_DR != 0 {
            IIR_RDI
        } else if r.ier & IER_THRI != 0 && r.thr_ipending {
            IIR_THRI
        } else if r.ier & IER_MSI != 0 && r.msr & MSR_ANY_DELTA != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        };
        r.iir = id | (r.iir & 0xf0);
        (self.irq)(id != IIR_NO_INT);
    }

    fn transmit(&self, b: u8) {
        if self.run.shutdown_requested() {
            return;
        }
        self.tx_bytes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = self.out.lock();
        let _ = out.write_all(&[b]);
        if b == b'\n' {
            let _ = out.flush();
        }
    }
}

impl MmioDevice for Uart {
    /// The scratch register (offset 7): an atomic of its own.
    fn lockless_at(&self, offset: u64) -> bool {
        offset & 7 == 7
    }

    fn read(&self, offset: u64, size: u64) -> Result<u64, BusError> {
        check_size(size, 1, 8)?;
        if offset & 7 == 7 {
            // Relaxed: the register orders nothing else.
            return Ok(self.scr.load(std::sync::atomic::Ordering::Relaxed) as u64);
        }
        let mut r = self.regs.lock();
        let v = match offset & 7 {
            0 if r.lcr & LCR_DLAB != 0 => r.divider as u8,
            0 => {
                let b = r.rx.pop_front().unwrap_or(0);
                if r.rx.is_empty() {
                    r.lsr &= !LSR_DR;
                }
                self.update_irq(&mut r);
                b
            }
            1 if r.lcr & LCR_DLAB != 0 => (r.divider >> 8) as u8,
            1 => r.ier,
            2 => {
                let v = r.iir;
                if v & 0x0f == IIR_THRI {
                    r.thr_ipending = false;
                    self.update_irq(&mut r);
                }
                v
            }
            3 => r.lcr,
            4 => r.mcr,
            5 => {
                let v = r.lsr;
                if r.lsr & (LSR_BI | LSR_OE) != 0 {
                    r.lsr &= !(LSR_BI | LSR_OE);
                    self.update_irq(&mut r);
                }
                v
            }
            6 => {
                let v = r.msr;
                if r.msr & MSR_ANY_DELTA != 0 {
                    r.msr &= 0xf0;
                    self.update_irq(&mut r);
                }
                v
            }
            _ => unreachable!("offset 7 is the scratch register, read above"),
        };
        Ok(v as u64)
    }

    fn write(&self, offset: u64, size: u64, value: u64) -> Result<(), BusError> {
        check_size(size, 1, 8)?;
        let v = value as u8;
        if offset & 7 == 7 {
            self.scr.store(v, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let mut r = self.regs.lock();
        match offset & 7 {
            0 if r.lcr & LCR_DLAB != 0 => r.divider = (r.divider & 0xff00) | v as u16,
            0 => {
                r.thr_ipending = false;
                self.transmit(v);
                r.lsr |= LSR_THRE | LSR_TEMT;
                r.thr_ipending = true;
                self.update_irq(&mut r);
            }
            1 if r.lcr & LCR_DLAB != 0 => r.divider = (r.divider & 0x00ff) | ((v as u16) << 8),
            1 => {
                let changed = (r.ier ^ v) & 0x0f;
                r.ier = v & 0x0f;
                if changed & IER_THRI != 0 && r.ier & IER_THRI != 0 && r.lsr & LSR_THRE != 0 {
                    r.thr_ipending = true;
                }
                if changed != 0 {
                    self.update_irq(&mut r);
                }
            }
            2 => {
                r.fcr = v & 0xc9;
                r.iir = (r.iir & 0x0f) | if v & 1 != 0 { 0xc0 } else { 0 };
                if v & 0x02 != 0 {
                    r.rx.clear();
                    r.lsr &= !LSR_DR;
                }
                self.update_irq(&mut r);
            }
            3 => r.lcr = v,
            4 => r.mcr = v & 0x1f,
            5 | 6 => {}
            _ => unreachable!("offset 7 is the scratch register, written above"),
        }
        Ok(())
    }

    fn reset(&self) {
        let mut r = self.regs.lock();
        *r = Regs::power_on();
        self.scr.store(0, std::sync::atomic::Ordering::Relaxed);
        self.update_irq(&mut r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_scratch_and_status() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let irq = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let i2 = irq.clone();
        let run = Arc::new(RunState::new());
        let u = Uart::new(
            Box::new(Shared(buf.clone())),
            Box::new(move |l| i2.store(l, std::sync::atomic::Ordering::SeqCst)),
            run.clone(),
        );
        u.write(0, 1, b'h' as u64).unwrap();
        u.write(0, 1, b'i' as u64).unwrap();
        assert_eq!(&*buf.lock(), b"hi");
        assert_eq!(u.read(5, 1).unwrap(), 0x60);
        u.write(7, 1, 0xa5).unwrap();
        assert_eq!(u.read(7, 1).unwrap(), 0xa5);
        // THR-empty interrupt when enabled, cleared by reading IIR.
        u.write(1, 1, IER_THRI as u64).unwrap();
        assert!(irq.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(u.read(2, 1).unwrap() & 0x0f, IIR_THRI as u64);
        assert!(!irq.load(std::sync::atomic::Ordering::SeqCst));
        // Receive.
        u.push_input(b"x");
        assert_eq!(u.read(5, 1).unwrap() & 1, 1);
        assert_eq!(u.read(0, 1).unwrap(), b'x' as u64);
        assert_eq!(u.read(5, 1).unwrap() & 1, 0);
        // No output after shutdown.
        run.request_shutdown(crate::runstate::ExitStatus {
            reason: crate::runstate::ExitReason::FinisherPass,
            code: 0,
        });
        u.write(0, 1, b'z' as u64).unwrap();
        assert_eq!(&*buf.lock(), b"hi");
    }
}
