//! The lock profile: per call site and per thread, merged when read.
//!
//! QEMU analogue: QSP, `util/qsp.c` (`info sync-profile`, `sync-profile
//! on|off|reset`), which records per (thread, call site, object) the total
//! wait time and the number of acquisitions. This profile records the same,
//! plus the number of *contended* acquisitions, wait and hold HdrHistograms,
//! and hold time, which QSP lacks.
//!
//! # Cost
//! The uncontended path reads no clock: the lock is tried first, and only a
//! failed try starts the wait clock. Each thread writes only its own
//! [`ThreadProfile`] (a separate, cache-padded allocation), with plain
//! `load` + `store` pairs rather than atomic read-modify-writes: no cache
//! line is shared with another thread except the lock's own. Hold time needs
//! two clock reads per hold, several times the cost of an uncontended lock
//! on this kind of host, so holds are *sampled*: one acquisition in
//! `hold_sample` (the rate is in every report; 1 measures every hold).
//! While a `--trace` is recorded ([`crate::trace`]) every hold is timed for
//! the trace's hold events, and contended waits become wait events; only
//! the samples go into the profile. Without a trace that costs one check of
//! a flag per acquisition.
//!
//! # Reading
//! Readers (the monitor, the run report) merge the per-thread records; a
//! record being written at that moment may be read one update stale, never
//! torn. `reset` does what QSP's does: it keeps a snapshot and subtracts it
//! from later reports, since the counters have a single writer each and
//! cannot be zeroed from outside.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Call sites recorded per thread; later ones share the last slot.
pub const MAX_SITES: usize = 32;

/// Default hold-time sampling: one acquisition in this many is timed.
pub const DEFAULT_HOLD_SAMPLE: u32 = 64;

static NEXT_PROFILE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's record in each live profile, by profile id.
    static LOCAL: RefCell<Vec<(u64, *const ThreadProfile)>> = const { RefCell::new(Vec::new()) };
    /// The last (profile id, call site) this thread recorded, and where:
    /// a thread that takes the same lock at the same site over and over (a
    /// vCPU's device accesses) finds its counters without a search.
    static LAST: Cell<LastSite> = const {
        Cell::new(LastSite { profile: 0, site: std::ptr::null(), thread: std::ptr::null(), slot: std::ptr::null() })
    };
}

#[derive(Clone, Copy)]
struct LastSite {
    profile: u64,
    site: *const Location<'static>,
    thread: *const ThreadProfile,
    slot: *const SiteSlot,
}

/// Add to a counter that only the owning thread writes.
#[inline(always)]
fn bump(a: &AtomicU64, by: u64) {
    // Invariant: one writer (the owning thread), so load + store loses no
    // update; Relaxed because readers only need an eventually current value.
    a.store(
        a.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// One call site's counters in one thread.
#[derive(Default)]
struct SiteSlot {
    /// The call site; null while the slot is unused.
    loc: AtomicPtr<Location<'static>>,
    acquisitions: AtomicU64,
    contended: AtomicU64,
    wait_ns_total: AtomicU64,
    wait_ns_max: AtomicU64,
    hold_ns_sampled: AtomicU64,
    hold_samples: AtomicU64,
}

struct Hists {
    wait: Histogram<u64>,
    hold: Histogram<u64>,
}

impl Hists {
    fn new() -> Hists {
        Hists {
            wait: Histogram::new(3).expect("3 significant figures is valid"),
            hold: Histogram::new(3).expect("3 significant figures is valid"),
        }
    }
}

/// One thread's record in a [`Profile`].
pub struct ThreadProfile {
    thread: String,
    n_sites: AtomicUsize,
    sites: [SiteSlot; MAX_SITES],
    /// Locked by the owner on contended acquisitions and sampled holds, and
    /// by readers: uncontended in practice.
    hists: Mutex<Hists>,
}

impl ThreadProfile {
    fn new() -> ThreadProfile {
        let t = std::thread::current();
        ThreadProfile {
            thread: t
                .name()
                .map_or_else(|| format!("{:?}", t.id()), str::to_string),
            n_sites: AtomicUsize::new(0),
            sites: Default::default(),
            hists: Mutex::new(Hists::new()),
        }
    }

    /// The slot of `site`, adding it if new (owner only).
    #[inline]
    fn slot(&self, site: &'static Location<'static>) -> usize {
        let p = site as *const Location<'static> as *mut Location<'static>;
        // Acquire: pairs with the Release below (a slot is set before it is
        // counted); the owner is the only writer, so it always sees its own.
        let n = self.n_sites.load(Ordering::Acquire);
        for (i, s) in self.sites[..n].iter().enumerate() {
            if s.loc.load(Ordering::Relaxed) == p {
                return i;
            }
        }
        if n == MAX_SITES {
            return MAX_SITES - 1;
        }
        self.sites[n].loc.store(p, Ordering::Relaxed);
        // Release: readers that see the count see the slot's call site.
        self.n_sites.store(n + 1, Ordering::Release);
        n
    }
}

/// A profile of one lock: all threads' records, and what `reset` subtracts.
pub struct Profile {
    id: u64,
    enabled: AtomicBool,
    hold_sample: u32,
    /// `hold_sample - 1`: a hold is timed when a site's acquisition count
    /// has these bits clear.
    hold_mask: u64,
    threads: Mutex<Vec<Arc<CachePadded<ThreadProfile>>>>,
    baseline: Mutex<Option<Snapshot>>,
}

/// What an acquisition recorded, for its release.
pub struct Held {
    thread: *const ThreadProfile,
    slot: *const SiteSlot,
    /// When the hold began, if it is timed (sampled, or traced).
    since: Option<Instant>,
    /// Whether the hold is one of the profile's samples.
    sampled: bool,
    /// The call site, for the trace ([`crate::trace`]), if traced.
    traced: Option<&'static Location<'static>>,
}

impl Profile {
    /// A profile, enabled or not, timing one hold in `hold_sample` per call
    /// site (rounded up to a power of two, at least 1).
    pub fn new(enabled: bool, hold_sample: u32) -> Profile {
        let hold_sample = hold_sample.max(1).next_power_of_two();
        Profile {
            id: NEXT_PROFILE_ID.fetch_add(1, Ordering::Relaxed),
            enabled: AtomicBool::new(enabled),
            hold_sample,
            hold_mask: hold_sample as u64 - 1,
            threads: Mutex::new(Vec::new()),
            baseline: Mutex::new(None),
        }
    }

    /// A number unique among the process's profiles (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether acquisitions are being recorded.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// `sync-profile on|off`.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// One hold in this many (per call site) is timed.
    pub fn hold_sample(&self) -> u32 {
        self.hold_sample
    }

    /// `sync-profile reset`: later snapshots count from now.
    pub fn reset(&self) {
        let now = self.raw_snapshot();
        *self.baseline.lock() = Some(now);
    }

    /// This thread's record and its slot for `site`, created on first use.
    #[inline(always)]
    fn site_slot(
        &self,
        site: &'static Location<'static>,
    ) -> (*const ThreadProfile, *const SiteSlot) {
        let last = LAST.get();
        if last.profile == self.id && std::ptr::eq(last.site, site) {
            return (last.thread, last.slot);
        }
        self.site_slot_slow(site)
    }

    #[cold]
    #[inline(never)]
    fn site_slot_slow(
        &self,
        site: &'static Location<'static>,
    ) -> (*const ThreadProfile, *const SiteSlot) {
        let thread = LOCAL.with(|l| {
            if let Some(&(_, p)) = l.borrow().iter().find(|(id, _)| *id == self.id) {
                return p;
            }
            self.register(&mut l.borrow_mut())
        });
        // SAFETY: `thread` points into an `Arc` that `self.threads` keeps
        // alive for as long as `self` lives (entries are never removed).
        let t = unsafe { &*thread };
        let slot: *const SiteSlot = &t.sites[t.slot(site)];
        LAST.set(LastSite {
            profile: self.id,
            site,
            thread,
            slot,
        });
        (thread, slot)
    }

    #[cold]
    fn register(&self, l: &mut Vec<(u64, *const ThreadProfile)>) -> *const ThreadProfile {
        let t = Arc::new(CachePadded::new(ThreadProfile::new()));
        let p: *const ThreadProfile = &**t;
        self.threads.lock().push(t);
        l.push((self.id, p));
        p
    }

    /// Record an acquisition at `site`: `try_lock` must try the lock
    /// without blocking; only if it fails is `lock`, which blocks, called,
    /// and timed. Returns the lock's guard and the record to give to
    /// [`Profile::released`].
    #[inline(always)]
    pub fn acquire<G>(
        &self,
        site: &'static Location<'static>,
        try_lock: impl FnOnce() -> Option<G>,
        lock: impl FnOnce() -> G,
    ) -> (G, Held) {
        let (thread, slot) = self.site_slot(site);
        // SAFETY: both point into an `Arc` that `self.threads` keeps alive
        // for as long as `self` lives (entries are never removed), and the
        // caller borrows `self` for the duration of this call.
        let s = unsafe { &*slot };
        let g = match try_lock() {
            Some(g) => g,
            // SAFETY: as above.
            None => Self::contended(unsafe { &*thread }, s, site, lock),
        };
        let n = s.acquisitions.load(Ordering::Relaxed).wrapping_add(1);
        // Invariant: one writer (this thread); see `bump`.
        s.acquisitions.store(n, Ordering::Relaxed);
        let sampled = n & self.hold_mask == 0;
        // With a trace every hold is timed (the trace's hold events), but
        // only the samples go into the profile.
        let traced = crate::trace::enabled().then_some(site);
        let since = (sampled || traced.is_some()).then(Instant::now);
        (
            g,
            Held {
                thread,
                slot,
                since,
                sampled,
                traced,
            },
        )
    }

    #[cold]
    #[inline(never)]
    fn contended<G>(
        t: &ThreadProfile,
        s: &SiteSlot,
        site: &'static Location<'static>,
        lock: impl FnOnce() -> G,
    ) -> G {
        let t0 = Instant::now();
        let g = lock();
        let w = t0.elapsed().as_nanos() as u64;
        if crate::trace::enabled() {
            crate::trace::record(crate::trace::Event::BqlWait {
                site,
                start: crate::trace::ns_of(t0),
                dur: w,
            });
        }

        bump(&s.contended, 1);
        bump(&s.wait_ns_total, w);
        if w > s.wait_ns_max.load(Ordering::Relaxed) {
            s.wait_ns_max.store(w, Ordering::Relaxed);
        }
        let _ = t.hists.lock().wait.record(w.max(1));
        g
    }

    /// Record the release of an acquisition (on the thread that took it,
    /// before the lock is released: the hold ends here).
    #[inline]
    pub fn released(&self, h: &Held) {
        let Some(since) = h.since else { return };
        Self::record_hold(h, since);
    }

    #[cold]
    #[inline(never)]
    fn record_hold(h: &Held, since: Instant) {
        let ns = since.elapsed().as_nanos() as u64;
        if let Some(site) = h.traced {
            crate::trace::record(crate::trace::Event::BqlHold {
                site,
                start: crate::trace::ns_of(since),
                dur: ns,
            });
        }
        if !h.sampled {
            return;
        }
        // SAFETY: as in `acquire`: the profile's `threads` keeps the record
        // alive, and the guard that holds `h` borrows the profile's lock.
        let (t, s) = unsafe { (&*h.thread, &*h.slot) };
        bump(&s.hold_ns_sampled, ns);
        bump(&s.hold_samples, 1);
        let _ = t.hists.lock().hold.record(ns.max(1));
    }

    fn raw_snapshot(&self) -> Snapshot {
        let threads = self.threads.lock().clone();
        let mut snap = Snapshot::empty(self.hold_sample);
        for t in threads.iter() {
            let n = t.n_sites.load(Ordering::Acquire);
            for s in &t.sites[..n] {
                let loc = s.loc.load(Ordering::Relaxed);
                // SAFETY: a non-null `loc` was stored from a `&'static
                // Location` (see `ThreadProfile::slot`).
                let loc: &'static Location<'static> = unsafe { &*loc };
                snap.sites.push(SiteStats {
                    object: "BQL".to_string(),
                    site: format!("{}:{}", loc.file(), loc.line()),
                    thread: t.thread.clone(),
                    acquisitions: s.acquisitions.load(Ordering::Relaxed),
                    contended: s.contended.load(Ordering::Relaxed),
                    wait_ns_total: s.wait_ns_total.load(Ordering::Relaxed),
                    wait_ns_max: s.wait_ns_max.load(Ordering::Relaxed),
                    hold_ns_sampled: s.hold_ns_sampled.load(Ordering::Relaxed),
                    hold_samples: s.hold_samples.load(Ordering::Relaxed),
                });
            }
            let h = t.hists.lock();
            let _ = snap.wait.add(&h.wait);
            let _ = snap.hold.add(&h.hold);
        }
        snap
    }

    /// Everything recorded since the start or the last `reset`, one entry
    /// per (thread, call site).
    pub fn snapshot(&self) -> Snapshot {
        let mut now = self.raw_snapshot();
        if let Some(base) = &*self.baseline.lock() {
            now.subtract(base);
        }
        now
    }
}

/// One call site's figures (in one thread, or merged).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SiteStats {
    /// The lock ("BQL").
    pub object: String,
    /// `file:line` of the acquisition.
    pub site: String,
    /// The thread, or `"*"` once merged over threads.
    #[serde(skip)]
    pub thread: String,
    /// All acquisitions.
    pub acquisitions: u64,
    /// Acquisitions whose first try failed.
    pub contended: u64,
    /// Total wait over the contended acquisitions, ns.
    pub wait_ns_total: u64,
    /// Longest wait, ns.
    pub wait_ns_max: u64,
    /// Total hold time of the sampled acquisitions, ns.
    #[serde(skip)]
    pub hold_ns_sampled: u64,
    /// Number of sampled holds.
    #[serde(skip)]
    pub hold_samples: u64,
}

impl SiteStats {
    /// Estimated total hold time, ns: the sampled mean × acquisitions.
    pub fn hold_ns_total(&self) -> u64 {
        if self.hold_samples == 0 {
            0
        } else {
            (self.hold_ns_sampled as u128 * self.acquisitions as u128 / self.hold_samples as u128)
                as u64
        }
    }

    fn add(&mut self, o: &SiteStats) {
        self.acquisitions += o.acquisitions;
        self.contended += o.contended;
        self.wait_ns_total += o.wait_ns_total;
        self.wait_ns_max = self.wait_ns_max.max(o.wait_ns_max);
        self.hold_ns_sampled += o.hold_ns_sampled;
        self.hold_samples += o.hold_samples;
    }
}

/// A merged view of a [`Profile`].
#[derive(Clone)]
pub struct Snapshot {
    /// One hold in this many was timed.
    pub hold_sample: u32,
    /// Per (thread, call site).
    pub sites: Vec<SiteStats>,
    /// Wait times of the contended acquisitions, ns.
    pub wait: Histogram<u64>,
    /// Sampled hold times, ns.
    pub hold: Histogram<u64>,
}

/// How `info sync-profile` orders its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Total wait time (QSP's default).
    TotalWait,
    /// Mean wait per acquisition (`-m`).
    MeanWait,
}

impl Snapshot {
    fn empty(hold_sample: u32) -> Snapshot {
        Snapshot {
            hold_sample,
            sites: Vec::new(),
            wait: Histogram::new(3).expect("3 significant figures is valid"),
            hold: Histogram::new(3).expect("3 significant figures is valid"),
        }
    }

    fn subtract(&mut self, base: &Snapshot) {
        for s in &mut self.sites {
            if let Some(b) = base
                .sites
                .iter()
                .find(|b| b.site == s.site && b.thread == s.thread && b.object == s.object)
            {
                s.acquisitions -= b.acquisitions.min(s.acquisitions);
                s.contended -= b.contended.min(s.contended);
                s.wait_ns_total -= b.wait_ns_total.min(s.wait_ns_total);
                s.hold_ns_sampled -= b.hold_ns_sampled.min(s.hold_ns_sampled);
                s.hold_samples -= b.hold_samples.min(s.hold_samples);
                // The maximum cannot be un-merged: keep it only if it grew.
                if s.wait_ns_max <= b.wait_ns_max {
                    s.wait_ns_max = 0;
                }
            }
        }
        self.sites.retain(|s| s.acquisitions > 0);
        let _ = self.wait.subtract(&base.wait);
        let _ = self.hold.subtract(&base.hold);
    }

    /// All acquisitions.
    pub fn acquisitions(&self) -> u64 {
        self.sites.iter().map(|s| s.acquisitions).sum()
    }

    /// Contended acquisitions.
    pub fn contended(&self) -> u64 {
        self.sites.iter().map(|s| s.contended).sum()
    }

    /// Per call site, merged over threads (and, with `coalesce`, over lock
    /// objects sharing the call site), sorted by `sort`, largest first.
    pub fn by_site(&self, coalesce: bool, sort: SortBy) -> Vec<SiteStats> {
        let mut out: Vec<SiteStats> = Vec::new();
        for s in &self.sites {
            match out
                .iter_mut()
                .find(|o| o.site == s.site && (coalesce || o.object == s.object))
            {
                Some(o) => o.add(s),
                None => out.push(SiteStats {
                    thread: "*".to_string(),
                    ..s.clone()
                }),
            }
        }
        let key = |s: &SiteStats| match sort {
            SortBy::TotalWait => s.wait_ns_total as f64,
            SortBy::MeanWait => s.wait_ns_total as f64 / s.acquisitions.max(1) as f64,
        };
        out.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.site.cmp(&b.site)));
        out
    }

    /// The `info sync-profile` table: QSP's columns (Type, Object, Call
    /// site, Wait Time (s), Count, Average (us)) plus hold time, at most
    /// `max` rows.
    pub fn table(&self, coalesce: bool, sort: SortBy, max: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<10} {:<6} {:<36} {:>13} {:>12} {:>13} {:>13} {:>13}",
            "Type",
            "Object",
            "Call site",
            "Wait Time (s)",
            "Count",
            "Average (us)",
            "Hold Time (s)",
            "Avg Hold (us)"
        );
        let _ = writeln!(s, "{}", "-".repeat(122));
        for r in self.by_site(coalesce, sort).into_iter().take(max) {
            let n = r.acquisitions.max(1) as f64;
            let hold = r.hold_ns_total();
            let _ = writeln!(
                s,
                "{:<10} {:<6} {:<36} {:>13.5} {:>12} {:>13.2} {:>13.5} {:>13.3}",
                "BQL mutex",
                r.object,
                r.site,
                r.wait_ns_total as f64 / 1e9,
                r.acquisitions,
                r.wait_ns_total as f64 / n / 1e3,
                hold as f64 / 1e9,
                hold as f64 / n / 1e3,
            );
        }
        let _ = writeln!(s, "{}", "-".repeat(122));
        let _ = writeln!(
            s,
            "hold times: one acquisition in {} sampled; Average (us) is the wait per acquisition, contended or not",
            self.hold_sample
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn counts_sites_and_contention() {
        let p = Profile::new(true, 1);
        let a = here();
        let b = here();
        for _ in 0..3 {
            let (_, h) = p.acquire(a, || Some(()), || ());
            p.released(&h);
        }
        let (_, h) = p.acquire(
            b,
            || None,
            || std::thread::sleep(std::time::Duration::from_millis(2)),
        );
        p.released(&h);
        let snap = p.snapshot();
        assert_eq!(snap.acquisitions(), 4);
        assert_eq!(snap.contended(), 1);
        let sites = snap.by_site(true, SortBy::TotalWait);
        assert_eq!(sites.len(), 2);
        // The contended site sorts first, with its ~2 ms wait.
        assert_eq!(sites[0].contended, 1);
        assert!(sites[0].wait_ns_total >= 2_000_000, "{:?}", sites[0]);
        assert_eq!(sites[1].acquisitions, 3);
        assert_eq!(sites[1].wait_ns_total, 0);
        assert_eq!(snap.wait.len(), 1);
        assert_eq!(snap.hold.len(), 4, "every hold sampled at rate 1");
    }

    #[test]
    fn threads_merge_and_reset_subtracts() {
        let p = Arc::new(Profile::new(true, 4));
        let site = here();
        std::thread::scope(|sc| {
            for _ in 0..2 {
                let p = &p;
                sc.spawn(move || {
                    for _ in 0..100 {
                        let (_, h) = p.acquire(site, || Some(()), || ());
                        p.released(&h);
                    }
                });
            }
        });
        let snap = p.snapshot();
        assert_eq!(snap.sites.len(), 2, "one entry per thread");
        let merged = snap.by_site(true, SortBy::MeanWait);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].acquisitions, 200);
        assert_eq!(snap.hold.len(), 50, "one in 4 sampled");
        p.reset();
        assert_eq!(p.snapshot().acquisitions(), 0);
        let (_, h) = p.acquire(site, || Some(()), || ());
        p.released(&h);
        assert_eq!(p.snapshot().acquisitions(), 1);
        let t = p.snapshot().table(true, SortBy::TotalWait, 10);
        assert!(t.contains("Call site") && t.contains("BQL mutex"), "{t}");
    }

    #[test]
    fn many_sites_share_the_last_slot() {
        let p = Profile::new(true, 1);
        let t = ThreadProfile::new();
        let _ = &p;
        let sites: Vec<&'static Location<'static>> = (0..MAX_SITES + 5)
            .map(|i| {
                // Distinct leaked locations stand for distinct call sites.
                let l: &'static Location<'static> = Box::leak(Box::new(*here()));
                let _ = i;
                l
            })
            .collect();
        let slots: Vec<usize> = sites.iter().map(|s| t.slot(s)).collect();
        assert_eq!(slots[MAX_SITES - 1], MAX_SITES - 1);
        assert!(slots[MAX_SITES..].iter().all(|&s| s == MAX_SITES - 1));
        assert_eq!(t.slot(sites[3]), 3);
    }
}
