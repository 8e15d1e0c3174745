//! The run timeline (`--trace FILE`): what each thread did and when, as
//! Chrome trace-event JSON (the format Perfetto and `chrome://tracing` open).
//!
//! QEMU analogue: the trace events of `trace-events` files with the
//! `simple` backend (`trace/simple.c`, read with `scripts/simpletrace.py`).
//! QEMU's simpletrace writes every thread's records into one shared ring
//! drained by a writer thread; here each thread has a buffer of its own and
//! nothing is written until the run ends.
//!
//! # What is recorded
//! [`Event`] lists the kinds: BQL waits (contended acquisitions only, from
//! the failed try to the acquisition) and holds (acquisition to release),
//! with the call site; halts (a vCPU's `wfi` to its wake-up); kicks sent and
//! received, linked by a flow arrow; quantum barrier waits and device-access
//! waits (`smp=local,quantum`); timer callbacks, on the thread that ran
//! them, with the clock and the lateness; icount hand-offs to the iothread.
//! Each event is recorded where the code already reads the clock for its
//! statistics (the BQL profile, the kick latency, the barrier and hand-off
//! histograms); holds, halts and timer callbacks, which are not otherwise
//! timed every time, read it only while a trace is being recorded.
//!
//! # Cost
//! Off (no `--trace`): each hook is one Relaxed load of a flag that is never
//! written during a run, and a branch that always goes the same way. On:
//! the event goes into the calling thread's own buffer (its own allocation
//! and lock, which no other thread takes before the run ends), so no cache
//! line is shared between threads on the recording path.
//!
//! # Bounds
//! Each thread keeps its *first* `events_per_thread` events (the start of a
//! run is where the interesting hand-offs are, and a prefix is a timeline
//! without holes); later ones are counted, and the count of each thread is
//! in the file (`otherData.dropped`). Memory is at most
//! `events_per_thread × threads × size_of::<Event>()`.
//!
//! # Time
//! Every time stamp is in ns on one monotonic clock ([`now_ns`], since the
//! first use in the process), the same that kick latencies are measured
//! with; the file's `ts` are µs since the trace started.
//!
//! One trace at a time per process: [`Session::start`] replaces any other.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::time::clock::ClockType;

/// Default `--trace-events`: events kept per thread.
pub const DEFAULT_EVENTS_PER_THREAD: usize = 200_000;

/// The largest `--trace-events` accepted (about 1 GiB per thread).
pub const MAX_EVENTS_PER_THREAD: usize = 1 << 24;

/// Whether a trace is being recorded: written only when a session starts or
/// ends, read by every hook.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The current session's number (0: none ever started).
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The current session's buffers.
static CURRENT: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

thread_local! {
    /// This thread's buffer in the session it last recorded into.
    static LOCAL: RefCell<Option<(u64, Arc<CachePadded<ThreadBuf>>)>> = const { RefCell::new(None) };
}

/// The clock of every time stamp: ns since its first use in the process.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now, in ns on the trace clock.
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// `t` in ns on the trace clock (0 if before the clock's start).
#[inline]
pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Whether a trace is being recorded: the one check on the hot path.
#[inline(always)]
pub fn enabled() -> bool {
    // Relaxed: a flag set before the vCPU threads start and cleared after
    // they end; a hook that reads it stale records one event more or less.
    ENABLED.load(Ordering::Relaxed)
}

/// One recorded event. Times are ns on the trace clock ([`now_ns`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A contended BQL acquisition: from the failed try to the acquisition.
    BqlWait {
        /// The caller of `Bql::lock`.
        site: &'static Location<'static>,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
    },
    /// A BQL hold: from the acquisition to the release.
    BqlHold {
        /// The caller of `Bql::lock`.
        site: &'static Location<'static>,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
    },
    /// vCPU `vcpu` halted in `wfi`, until it had work again (or the run
    /// ended).
    Halt {
        /// The vCPU.
        vcpu: u32,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
    },
    /// A kick sent to vCPU `vcpu`.
    KickSent {
        /// The kicked vCPU.
        vcpu: u32,
        /// When.
        at: u64,
        /// Non-zero for the first kick since the vCPU last looked (the one
        /// whose latency is measured): the flow id its receipt carries.
        flow: u64,
    },
    /// vCPU `vcpu` observed a kick (consumed its exit request).
    KickReceived {
        /// The vCPU.
        vcpu: u32,
        /// When.
        at: u64,
        /// The flow id of the [`Event::KickSent`] it answers.
        flow: u64,
        /// Whether the vCPU was halted when the kick came.
        halted: bool,
    },
    /// A wait at a quantum barrier (`smp=local,quantum`).
    BarrierWait {
        /// The vCPU.
        vcpu: u32,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
    },
    /// A wait for the turn to access a device (`smp=local,quantum`).
    AccessWait {
        /// The vCPU.
        vcpu: u32,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
    },
    /// A timer callback.
    Timer {
        /// The timer's clock.
        clock: ClockType,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
        /// The list's time when it ran its expired timers, less the timer's
        /// expiry, in the clock's ns (virtual ns for VIRTUAL).
        late_ns: i64,
    },
    /// An icount hand-off of VIRTUAL timers to the iothread: from the
    /// request to the vCPU resuming.
    Handoff {
        /// The vCPU.
        vcpu: u32,
        /// Start.
        start: u64,
        /// Duration.
        dur: u64,
    },
}

impl Event {
    /// When it started.
    pub fn start(&self) -> u64 {
        match *self {
            Event::BqlWait { start, .. }
            | Event::BqlHold { start, .. }
            | Event::Halt { start, .. }
            | Event::BarrierWait { start, .. }
            | Event::AccessWait { start, .. }
            | Event::Timer { start, .. }
            | Event::Handoff { start, .. } => start,
            Event::KickSent { at, .. } | Event::KickReceived { at, .. } => at,
        }
    }

    /// How long it lasted (0 for an instant).
    pub fn dur(&self) -> u64 {
        match *self {
            Event::BqlWait { dur, .. }
            | Event::BqlHold { dur, .. }
            | Event::Halt { dur, .. }
            | Event::BarrierWait { dur, .. }
            | Event::AccessWait { dur, .. }
            | Event::Timer { dur, .. }
            | Event::Handoff { dur, .. } => dur,
            Event::KickSent { .. } | Event::KickReceived { .. } => 0,
        }
    }
}

/// One thread's buffer.
struct ThreadBuf {
    /// The thread's name when it first recorded.
    thread: String,
    /// Locked by the owner for each event and by the writer once the run
    /// has ended: never contended during the run.
    events: Mutex<Vec<Event>>,
    /// Events past the cap.
    dropped: AtomicU64,
}

struct Shared {
    generation: u64,
    cap: usize,
    threads: Mutex<Vec<Arc<CachePadded<ThreadBuf>>>>,
}

/// Record `ev` in the calling thread's buffer, if a trace is being
/// recorded (call it after [`enabled`], which is the cheap check).
#[cold]
#[inline(never)]
pub fn record(ev: Event) {
    let generation = GENERATION.load(Ordering::Acquire);
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let fresh = matches!(&*l, Some((g, _)) if *g == generation);
        if !fresh {
            let Some(buf) = register(generation) else {
                return;
            };
            *l = Some((generation, buf));
        }
        let Some((_, buf)) = &*l else { return };
        let cap = CURRENT_CAP.load(Ordering::Relaxed) as usize;
        let mut v = buf.events.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < cap {
            v.push(ev);
        } else {
            drop(v);
            // Invariant: one writer (this thread), so load + store loses no
            // update.
            let n = buf.dropped.load(Ordering::Relaxed);
            buf.dropped.store(n + 1, Ordering::Relaxed);
        }
    });
}

/// The current session's cap (set with [`GENERATION`]).
static CURRENT_CAP: AtomicU64 = AtomicU64::new(0);

#[cold]
fn register(generation: u64) -> Option<Arc<CachePadded<ThreadBuf>>> {
    let cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let shared = cur.as_ref().filter(|s| s.generation == generation)?;
    let t = std::thread::current();
    let buf = Arc::new(CachePadded::new(ThreadBuf {
        thread: t
            .name()
            .map_or_else(|| format!("{:?}", t.id()), str::to_string),
        events: Mutex::new(Vec::with_capacity(shared.cap.min(4096))),
        dropped: AtomicU64::new(0),
    }));
    shared
        .threads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(buf.clone());
    Some(buf)
}

/// A trace being recorded. Dropping it stops the recording and discards
/// the events; [`Session::finish`] stops it and returns them.
pub struct Session {
    shared: Arc<Shared>,
    start_ns: u64,
}

impl Session {
    /// Start recording, keeping the first `events_per_thread` events of
    /// each thread (replacing any session already running).
    pub fn start(events_per_thread: usize) -> Session {
        let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        let generation = GENERATION.load(Ordering::Relaxed) + 1;
        let shared = Arc::new(Shared {
            generation,
            cap: events_per_thread,
            threads: Mutex::new(Vec::new()),
        });
        *cur = Some(shared.clone());
        CURRENT_CAP.store(events_per_thread as u64, Ordering::Relaxed);
        // Release: a thread that reads the new generation finds the session
        // in CURRENT (which it reads under the lock anyway).
        GENERATION.store(generation, Ordering::Release);
        let start_ns = now_ns();
        ENABLED.store(true, Ordering::Relaxed);
        Session { shared, start_ns }
    }

    /// Stop recording and take every thread's events.
    pub fn finish(self) -> Trace {
        self.stop();
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        Trace {
            start_ns: self.start_ns,
            events_per_thread: self.shared.cap,
            threads: threads
                .iter()
                .map(|t| ThreadTrace {
                    thread: t.thread.clone(),
                    events: std::mem::take(
                        &mut *t.events.lock().unwrap_or_else(|e| e.into_inner()),
                    ),
                    dropped: t.dropped.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }

    fn stop(&self) {
        let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if cur
            .as_ref()
            .is_some_and(|s| s.generation == self.shared.generation)
        {
            ENABLED.store(false, Ordering::Relaxed);
            *cur = None;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One thread's recorded events.
#[derive(Clone, Debug)]
pub struct ThreadTrace {
    /// The thread's name (`vcpu-0`, `vcpu-rr`, `iothread`, ...).
    pub thread: String,
    /// Its events, in the order recorded.
    pub events: Vec<Event>,
    /// Events past the cap, not kept.
    pub dropped: u64,
}

/// A finished trace.
#[derive(Clone, Debug)]
pub struct Trace {
    /// When recording started, on the trace clock.
    pub start_ns: u64,
    /// The cap per thread.
    pub events_per_thread: usize,
    /// Every thread that recorded something.
    pub threads: Vec<ThreadTrace>,
}

/// A track name and the order tracks are shown in, for a thread name.
fn track(thread: &str) -> (String, (u32, u64)) {
    if let Some(n) = thread
        .strip_prefix("vcpu-")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return (format!("vCPU {n}"), (0, n));
    }
    match thread {
        "vcpu-rr" => ("vCPU rr".to_string(), (1, 0)),
        "iothread" => ("iothread".to_string(), (2, 0)),
        _ => (thread.to_string(), (3, 0)),
    }
}

/// A JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// ns as µs with three decimals.
fn us(out: &mut String, ns: u64) {
    let _ = write!(out, "{}.{:03}", ns / 1000, ns % 1000);
}

/// The pid of every track.
const PID: u32 = 1;
/// Tracks of the halts of the vCPUs the round-robin thread runs start here.
const RR_HALT_TID: u64 = 1000;

impl Trace {
    /// Chrome trace-event JSON: `{"traceEvents":[...],"displayTimeUnit":"ns",
    /// "otherData":{...}}`, one track (`tid`) per thread, named with a
    /// `thread_name` metadata event (`vCPU N`, `vCPU rr`, `iothread`, or the
    /// thread's own name); the round-robin thread's halts go to a track per
    /// vCPU (`vCPU N (rr) halted`), since they overlap. Each track's events
    /// are sorted by start.
    pub fn to_json(&self) -> String {
        let mut threads: Vec<(&ThreadTrace, String, (u32, u64))> = self
            .threads
            .iter()
            .map(|t| {
                let (name, key) = track(&t.thread);
                (t, name, key)
            })
            .collect();
        threads.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.1.cmp(&b.1)));
        // A flow ends only where it starts in the file: a kick sent before
        // the trace started, or past its sender's cap, has no arrow.
        let sent: std::collections::HashSet<u64> = self
            .threads
            .iter()
            .flat_map(|t| t.events.iter())
            .filter_map(|e| match e {
                Event::KickSent { flow, .. } if *flow != 0 => Some(*flow),
                _ => None,
            })
            .collect();
        let mut out = String::with_capacity(
            64 + 160 * threads.iter().map(|t| t.0.events.len()).sum::<usize>(),
        );
        out.push_str("{\"traceEvents\":[\n");
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push_str(",\n");
            }
            first = false;
        };
        sep(&mut out);
        let _ = write!(
            out,
            "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{PID},\"tid\":0,\"args\":{{\"name\":\"vcpulab\"}}}}"
        );
        let mut rr_halt_tracks: Vec<u32> = Vec::new();
        for (i, (t, name, _)) in threads.iter().enumerate() {
            let tid = i as u64 + 1;
            let meta = |out: &mut String, tid: u64, name: &str, order: u64| {
                out.push_str("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":");
                let _ = write!(out, "{tid},\"args\":{{\"name\":");
                json_str(out, name);
                out.push_str(
                    "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":",
                );
                let _ = write!(out, "{tid},\"args\":{{\"sort_index\":{order}}}}}");
            };
            sep(&mut out);
            meta(&mut out, tid, name, tid);
            let rr = t.thread == "vcpu-rr";
            let mut events: Vec<&Event> = t.events.iter().collect();
            // By start; of two that start together the longer first, so
            // that nested spans come after the span that holds them.
            events.sort_by(|a, b| {
                a.start()
                    .cmp(&b.start())
                    .then_with(|| b.dur().cmp(&a.dur()))
            });
            for ev in events {
                let tid = match ev {
                    Event::Halt { vcpu, .. } if rr => {
                        if !rr_halt_tracks.contains(vcpu) {
                            rr_halt_tracks.push(*vcpu);
                            sep(&mut out);
                            let htid = RR_HALT_TID + *vcpu as u64;
                            meta(&mut out, htid, &format!("vCPU {vcpu} (rr) halted"), htid);
                        }
                        RR_HALT_TID + *vcpu as u64
                    }
                    _ => tid,
                };
                sep(&mut out);
                self.event_json(&mut out, ev, tid, &sent);
            }
        }
        out.push_str("\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"events_per_thread\":");
        let _ = write!(out, "{},\"dropped\":{{", self.events_per_thread);
        for (i, (t, name, _)) in threads.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, name);
            let _ = write!(out, ":{}", t.dropped);
        }
        out.push_str("}}}\n");
        out
    }

    /// One event (two for a kick with a flow: the instant and its arrow
    /// end, drawn only if its start, in `sent`, is in the file).
    fn event_json(
        &self,
        out: &mut String,
        ev: &Event,
        tid: u64,
        sent: &std::collections::HashSet<u64>,
    ) {
        let ts = |out: &mut String, ns: u64| us(out, ns.saturating_sub(self.start_ns));
        let complete = |out: &mut String, name: &str, cat: &str, start: u64, dur: u64| {
            let _ = write!(
                out,
                "{{\"name\":\"{name}\",\"cat\":\"{cat}\",\"ph\":\"X\",\"pid\":{PID},\"tid\":{tid},\"ts\":"
            );
            ts(out, start);
            out.push_str(",\"dur\":");
            us(out, dur);
            out.push_str(",\"args\":{");
        };
        let instant = |out: &mut String, name: &str, cat: &str, at: u64| {
            let _ = write!(
                out,
                "{{\"name\":\"{name}\",\"cat\":\"{cat}\",\"ph\":\"i\",\"s\":\"t\",\"pid\":{PID},\"tid\":{tid},\"ts\":"
            );
            ts(out, at);
            out.push_str(",\"args\":{");
        };
        let flow = |out: &mut String, ph: &str, at: u64, id: u64| {
            let _ = write!(
                out,
                ",\n{{\"name\":\"kick\",\"cat\":\"kick\",\"ph\":\"{ph}\",\"bp\":\"e\",\"id\":{id},\"pid\":{PID},\"tid\":{tid},\"ts\":"
            );
            ts(out, at);
            out.push('}');
        };
        match *ev {
            Event::BqlWait { site, start, dur } | Event::BqlHold { site, start, dur } => {
                let name = if matches!(ev, Event::BqlWait { .. }) {
                    "BQL wait"
                } else {
                    "BQL hold"
                };
                complete(out, name, "bql", start, dur);
                out.push_str("\"site\":");
                json_str(out, &format!("{}:{}", site.file(), site.line()));
                out.push_str("}}");
            }
            Event::Halt { vcpu, start, dur } => {
                complete(out, "halt", "vcpu", start, dur);
                let _ = write!(out, "\"vcpu\":{vcpu}}}}}");
            }
            Event::BarrierWait { vcpu, start, dur } => {
                complete(out, "barrier wait", "quantum", start, dur);
                let _ = write!(out, "\"vcpu\":{vcpu}}}}}");
            }
            Event::AccessWait { vcpu, start, dur } => {
                complete(out, "access wait", "quantum", start, dur);
                let _ = write!(out, "\"vcpu\":{vcpu}}}}}");
            }
            Event::Handoff { vcpu, start, dur } => {
                complete(out, "icount hand-off", "icount", start, dur);
                let _ = write!(out, "\"vcpu\":{vcpu}}}}}");
            }
            Event::Timer {
                clock,
                start,
                dur,
                late_ns,
            } => {
                complete(out, "timer", "timer", start, dur);
                let _ = write!(
                    out,
                    "\"clock\":\"{}\",\"late_ns\":{late_ns}}}}}",
                    clock.name()
                );
            }
            Event::KickSent { vcpu, at, flow: id } => {
                instant(out, "kick sent", "kick", at);
                let _ = write!(out, "\"to_vcpu\":{vcpu}}}}}");
                if id != 0 {
                    flow(out, "s", at, id);
                }
            }
            Event::KickReceived {
                vcpu,
                at,
                flow: id,
                halted,
            } => {
                instant(out, "kick received", "kick", at);
                let _ = write!(out, "\"vcpu\":{vcpu},\"halted\":{halted}}}}}");
                if id != 0 && sent.contains(&id) {
                    flow(out, "f", at, id);
                }
            }
        }
    }
}

/// The flow id that links a kick of vCPU `vcpu` stamped `stamp` (the
/// non-zero kick stamp of [`crate::accel::cpu::CpuShared`]) to its receipt.
#[inline]
pub fn kick_flow(vcpu: usize, stamp: u64) -> u64 {
    (stamp << 10) ^ (vcpu as u64 & 0x3ff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    /// Sessions run one at a time in this module's tests.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn records_per_thread_keeps_the_first_n_and_writes_json() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let s = Session::start(3);
        std::thread::Builder::new()
            .name("vcpu-97".into())
            .spawn(|| {
                for i in 0..5 {
                    record(Event::BqlHold {
                        site: here(),
                        start: now_ns() + i,
                        dur: 10,
                    });
                }
                record(Event::KickReceived {
                    vcpu: 1,
                    at: now_ns(),
                    flow: kick_flow(1, 7),
                    halted: true,
                });
            })
            .unwrap()
            .join()
            .unwrap();
        record(Event::KickSent {
            vcpu: 1,
            at: now_ns(),
            flow: kick_flow(1, 7),
        });
        let t = s.finish();
        assert!(!enabled());
        assert!(
            std::mem::size_of::<Event>() <= 40,
            "docs/trace.md says 40 bytes"
        );
        let v = t.threads.iter().find(|t| t.thread == "vcpu-97").unwrap();
        assert_eq!(v.events.len(), 3, "the first 3 kept");
        assert_eq!(v.dropped, 3);
        assert!(matches!(v.events[0], Event::BqlHold { .. }));
        let j: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
        let evs = j["traceEvents"].as_array().unwrap();
        let tid_of = |name: &str| {
            evs.iter()
                .find(|e| e["name"] == "thread_name" && e["args"]["name"] == name)
                .map(|e| e["tid"].as_u64().unwrap())
        };
        let v1 = tid_of("vCPU 97").expect("a vCPU 97 track");
        let holds: Vec<_> = evs
            .iter()
            .filter(|e| e["name"] == "BQL hold" && e["tid"] == v1)
            .collect();
        assert_eq!(holds.len(), 3);
        assert!(
            holds[0]["args"]["site"]
                .as_str()
                .unwrap()
                .starts_with("src/trace.rs:")
        );
        assert_eq!(holds[0]["dur"].as_f64(), Some(0.01));
        assert!(evs.iter().any(|e| e["ph"] == "s"));
        assert_eq!(j["otherData"]["dropped"]["vCPU 97"], 3);
        assert_eq!(j["displayTimeUnit"], "ns");
    }

    #[test]
    fn nothing_is_recorded_without_a_session() {
        let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let s = Session::start(10);
        drop(s);
        assert!(!enabled());
        record(Event::Halt {
            vcpu: 0,
            start: 1,
            dur: 1,
        });
        let s = Session::start(10);
        let t = s.finish();
        assert!(t.threads.iter().all(|t| t.events.is_empty()), "{t:?}");
    }
}
