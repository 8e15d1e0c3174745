//! Timer lists: QEMU's `QEMUTimerList`, `QEMUTimer` and `QEMUTimerListGroup`.
//!
//! Mirrors `util/qemu-timer.c` (`timer_mod_ns`, `timer_mod_anticipate_ns`, `timer_del`,
//! `timerlist_deadline_ns`, `timerlist_run_timers`, `timerlistgroup_deadline_ns`,
//! `qemu_clock_run_all_timers`).
//!
//! # Design
//!
//! As in tokio's time module, the data structure that holds pending timers is separate from
//! the driver that sleeps until the next one (here [`crate::iothread`], or a vCPU thread
//! under icount) and from the clock that says what "now" is ([`crate::time::clock`]): a list only
//! stores deadlines, answers "how long until the next one" ([`TimerList::deadline_ns`]) and
//! fires what is due when the driver hands it the current time
//! ([`TimerList::run_expired`]).
//!
//! A [`TimerList`] belongs to one clock. Its pending timers are kept in a `BTreeMap` keyed
//! by `(expire_ns, seq)`, where `seq` is a per-list insertion counter: among equal
//! deadlines the timer armed first fires first, exactly like QEMU's sorted singly linked
//! list, whose insertion walks past every timer with expiry `<=` the new one. The map lives
//! behind a `parking_lot::Mutex` (QEMU's `active_timers_lock`).
//!
//! Arming a timer ([`Timer::modify`]) that becomes the head of its list calls the list's
//! *notify* callback, with the list lock dropped, so that whoever sleeps on that clock
//! recomputes its timeout (QEMU's `timerlist_rearm` / `notify_cb`). Modifications that do
//! not change the head do not notify.
//!
//! Callbacks are stored per timer as `Arc<Mutex<Box<dyn FnMut(&TimerRef)>>>`.
//! [`TimerList::run_expired`] unlinks the head under the list lock, drops the lock, and
//! only then runs the callback, so a callback may re-arm or delete its own timer or any
//! other timer of any list without deadlocking. The callback receives a [`TimerRef`] to its
//! own timer (a weak, clonable handle that can re-arm it); callbacks created with
//! [`TimerList::new_timer`] simply ignore it.
//!
//! A [`Timer`] is the owning handle: dropping it deletes the timer (`timer_free`). A
//! callback that is already running when its timer is dropped finishes normally.
//!
//! A [`TimerListGroup`] (QEMU's `QEMUTimerListGroup`) holds one list per [`ClockType`] and
//! computes the poll timeout of its event loop: the minimum of the lists' deadlines, VIRTUAL
//! excluded under icount (where vCPU threads run VIRTUAL timers at exact instruction
//! counts).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::time::clock::{ClockType, Clocks};

/// A timer callback. It receives a handle to its own timer, so that it can re-arm it.
type Callback = Box<dyn FnMut(&TimerRef) + Send>;

/// The notify callback of a list (QEMU's `QEMUTimerListNotifyCB`).
pub type NotifyFn = Arc<dyn Fn() + Send + Sync>;

/// One registered (not yet dropped) timer.
struct Slot {
    /// `(expire_ns, seq)` while pending.
    key: Option<(i64, u64)>,
    /// Called with the list lock dropped.
    cb: Arc<Mutex<Callback>>,
}

#[derive(Default)]
struct Inner {
    /// Pending timers, sorted by (expiry, insertion order) -> timer id.
    queue: BTreeMap<(i64, u64), u64>,
    /// Registered timers by id.
    slots: HashMap<u64, Slot>,
    /// Next insertion sequence number (FIFO among equal deadlines).
    next_seq: u64,
    /// Next timer id.
    next_id: u64,
}

impl Inner {
    /// Unlinks timer `id` if pending. Returns whether it was pending.
    fn unlink(&mut self, id: u64) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        match slot.key.take() {
            Some(key) => {
                self.queue.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Inserts registered timer `id` at `expire` (already clamped), after every timer with
    /// the same expiry. Returns whether it is now the head (QEMU's `timer_mod_ns_locked`).
    fn insert(&mut self, id: u64, expire: i64) -> bool {
        let key = (expire, self.next_seq);
        self.next_seq += 1;
        let slot = self.slots.get_mut(&id).expect("registered timer");
        debug_assert!(slot.key.is_none());
        slot.key = Some(key);
        self.queue.insert(key, id);
        self.queue.first_key_value().map(|(k, _)| *k) == Some(key)
    }
}

/// A list of timers on one clock (QEMU's `QEMUTimerList`).
pub struct TimerList {
    clock: ClockType,
    inner: Mutex<Inner>,
    /// Whether the clock is enabled for this list (`QEMUClock::enabled`).
    enabled: AtomicBool,
    notify: RwLock<Option<NotifyFn>>,
    /// This list's own `Arc` (lists only exist inside one), for the `TimerRef`s handed to
    /// callbacks.
    me: Weak<TimerList>,
}

impl std::fmt::Debug for TimerList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerList")
            .field("clock", &self.clock)
            .field("pending", &self.pending_count())
            .field("next_expiry", &self.next_expiry())
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl TimerList {
    /// An empty, enabled list for `clock`, without a notify callback.
    pub fn new(clock: ClockType) -> Arc<Self> {
        TimerList::with_notify(clock, None)
    }

    /// An empty, enabled list for `clock` with an optional notify callback.
    pub fn with_notify(clock: ClockType, notify: Option<NotifyFn>) -> Arc<Self> {
        Arc::new_cyclic(|me| TimerList {
            clock,
            inner: Mutex::new(Inner::default()),
            enabled: AtomicBool::new(true),
            notify: RwLock::new(notify),
            me: me.clone(),
        })
    }

    /// The clock this list's deadlines are expressed in.
    pub fn clock(&self) -> ClockType {
        self.clock
    }

    /// Sets (or clears) the callback called when a modified timer becomes the head.
    pub fn set_notify(&self, notify: Option<NotifyFn>) {
        *self.notify.write() = notify;
    }

    /// The current notify callback.
    pub fn notify_fn(&self) -> Option<NotifyFn> {
        self.notify.read().clone()
    }

    /// Calls the notify callback, if any (QEMU's `timerlist_notify`), without any lock held.
    pub fn notify(&self) {
        let cb = self.notify.read().clone();
        if let Some(cb) = cb {
            cb();
        }
    }

    /// Enables or disables the clock for this list (QEMU's `qemu_clock_enable`). A disabled
    /// list has no deadline and [`TimerList::run_expired`] fires nothing. Enabling a
    /// disabled list with pending timers notifies, so that a sleeping driver recomputes its
    /// timeout.
    pub fn set_enabled(&self, enabled: bool) {
        // SeqCst: a lone flag with no data published through it; the strongest ordering
        // keeps "enable, then notify" simple to reason about against `deadline_ns`.
        let was = self.enabled.swap(enabled, Ordering::SeqCst);
        if enabled && !was && self.next_expiry().is_some() {
            self.notify();
        }
    }

    /// Whether the clock is enabled for this list.
    pub fn is_enabled(&self) -> bool {
        // SeqCst: see `set_enabled`.
        self.enabled.load(Ordering::SeqCst)
    }

    /// Creates a (not pending) timer on this list whose callback is `cb`
    /// (QEMU's `timer_new_ns`).
    pub fn new_timer(self: &Arc<Self>, mut cb: impl FnMut() + Send + 'static) -> Timer {
        self.new_timer_with_ref(move |_| cb())
    }

    /// Creates a (not pending) timer whose callback receives a [`TimerRef`] to the timer
    /// itself, for callbacks that re-arm their own timer.
    pub fn new_timer_with_ref(
        self: &Arc<Self>,
        cb: impl FnMut(&TimerRef) + Send + 'static,
    ) -> Timer {
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.slots.insert(
            id,
            Slot {
                key: None,
                cb: Arc::new(Mutex::new(Box::new(cb))),
            },
        );
        drop(inner);
        Timer {
            list: self.clone(),
            r: TimerRef {
                list: Arc::downgrade(self),
                id,
            },
        }
    }

    /// Number of pending timers.
    pub fn pending_count(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Expiry of the head timer, if any (regardless of whether the clock is enabled).
    pub fn next_expiry(&self) -> Option<i64> {
        self.inner.lock().queue.first_key_value().map(|(k, _)| k.0)
    }

    /// Nanoseconds from `now_ns` until the head timer expires (QEMU's
    /// `timerlist_deadline_ns`): -1 if the list is empty or the clock is disabled, otherwise
    /// `max(0, head - now_ns)`.
    pub fn deadline_ns(&self, now_ns: i64) -> i64 {
        if !self.is_enabled() {
            return -1;
        }
        match self.next_expiry() {
            None => -1,
            Some(expire) => expire.saturating_sub(now_ns).max(0),
        }
    }

    /// Whether the head timer has expired at `now_ns` (QEMU's `timerlist_expired`).
    pub fn expired(&self, now_ns: i64) -> bool {
        self.is_enabled() && self.next_expiry().is_some_and(|e| e <= now_ns)
    }

    /// Fires every timer whose expiry is `<= now_ns`, in order (QEMU's
    /// `timerlist_run_timers`). For each: the timer is unlinked (no longer pending), the list
    /// lock dropped, `on_fire(expire_ns)` called, then the timer's callback. Callbacks may
    /// re-arm or delete any timer; a timer re-armed at or before `now_ns` fires again in the
    /// same call. Returns the number of callbacks run; 0 if the clock is disabled.
    ///
    /// A callback must not call `run_expired` on a list that would fire that same
    /// callback again (its own callback mutex is held while it runs).
    pub fn run_expired(&self, now_ns: i64, on_fire: &mut dyn FnMut(i64)) -> usize {
        if !self.is_enabled() {
            return 0;
        }
        let mut fired = 0;
        loop {
            let (expire, cb) = {
                let mut inner = self.inner.lock();
                let Some((&(expire, seq), &id)) = inner.queue.first_key_value() else {
                    break;
                };
                if expire > now_ns {
                    break;
                }
                inner.queue.remove(&(expire, seq));
                let slot = inner
                    .slots
                    .get_mut(&id)
                    .expect("queued timer is registered");
                slot.key = None;
                (expire, (slot.cb.clone(), id))
            };
            on_fire(expire);
            let (cb, id) = cb;
            let me = TimerRef {
                list: self.me.clone(),
                id,
            };
            let traced = crate::trace::enabled().then(crate::trace::now_ns);
            (cb.lock())(&me);
            if let Some(start) = traced {
                crate::trace::record(crate::trace::Event::Timer {
                    clock: self.clock,
                    start,
                    dur: crate::trace::now_ns().saturating_sub(start),
                    late_ns: now_ns - expire,
                });
            }
            fired += 1;
        }
        fired
    }

    // --- operations by id, shared by Timer and TimerRef ---

    fn modify_id(&self, id: u64, expire_ns: i64) {
        let expire = expire_ns.max(0);
        let head = {
            let mut inner = self.inner.lock();
            if !inner.slots.contains_key(&id) {
                return;
            }
            inner.unlink(id);
            inner.insert(id, expire)
        };
        if head {
            self.notify();
        }
    }

    fn modify_anticipate_id(&self, id: u64, expire_ns: i64) {
        let head = {
            let mut inner = self.inner.lock();
            let Some(slot) = inner.slots.get(&id) else {
                return;
            };
            // As QEMU: compare the unclamped new expiry with the current one.
            match slot.key {
                Some((cur, _)) if cur <= expire_ns => false,
                _ => {
                    inner.unlink(id);
                    inner.insert(id, expire_ns.max(0))
                }
            }
        };
        if head {
            self.notify();
        }
    }

    fn delete_id(&self, id: u64) {
        self.inner.lock().unlink(id);
    }

    fn expire_time_id(&self, id: u64) -> Option<i64> {
        self.inner
            .lock()
            .slots
            .get(&id)
            .and_then(|s| s.key.map(|k| k.0))
    }

    fn free_id(&self, id: u64) {
        let mut inner = self.inner.lock();
        inner.unlink(id);
        inner.slots.remove(&id);
    }
}

/// A weak, clonable handle to a timer, as passed to its own callback. Operations on a timer
/// whose [`Timer`] was dropped (or whose list is gone) do nothing.
#[derive(Clone, Debug)]
pub struct TimerRef {
    list: Weak<TimerList>,
    id: u64,
}

impl TimerRef {
    /// See [`Timer::modify`].
    pub fn modify(&self, expire_ns: i64) {
        if let Some(l) = self.list.upgrade() {
            l.modify_id(self.id, expire_ns);
        }
    }

    /// See [`Timer::modify_anticipate`].
    pub fn modify_anticipate(&self, expire_ns: i64) {
        if let Some(l) = self.list.upgrade() {
            l.modify_anticipate_id(self.id, expire_ns);
        }
    }

    /// See [`Timer::delete`].
    pub fn delete(&self) {
        if let Some(l) = self.list.upgrade() {
            l.delete_id(self.id);
        }
    }

    /// See [`Timer::is_pending`].
    pub fn is_pending(&self) -> bool {
        self.expire_time().is_some()
    }

    /// See [`Timer::expire_time`].
    pub fn expire_time(&self) -> Option<i64> {
        self.list.upgrade().and_then(|l| l.expire_time_id(self.id))
    }

    /// The list this timer belongs to, if it still exists.
    pub fn list(&self) -> Option<Arc<TimerList>> {
        self.list.upgrade()
    }
}

/// A timer (QEMU's `QEMUTimer`): owns its callback; dropping it deletes the timer.
pub struct Timer {
    list: Arc<TimerList>,
    r: TimerRef,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("clock", &self.list.clock)
            .field("id", &self.r.id)
            .field("expire", &self.expire_time())
            .finish()
    }
}

impl Timer {
    /// Arms (or re-arms) the timer to fire at `expire_ns` on its list's clock, clamped to
    /// `>= 0` (QEMU's `timer_mod_ns`). It goes after every pending timer with the same
    /// expiry. Notifies the list if the timer became the head.
    pub fn modify(&self, expire_ns: i64) {
        self.list.modify_id(self.r.id, expire_ns);
    }

    /// Arms the timer at `expire_ns` if it is not pending, or moves it earlier if it is
    /// pending later; otherwise does nothing (QEMU's `timer_mod_anticipate_ns`).
    pub fn modify_anticipate(&self, expire_ns: i64) {
        self.list.modify_anticipate_id(self.r.id, expire_ns);
    }

    /// Disarms the timer (QEMU's `timer_del`). A callback already running is not waited for.
    pub fn delete(&self) {
        self.list.delete_id(self.r.id);
    }

    /// Whether the timer is armed and has not fired yet (QEMU's `timer_pending`).
    pub fn is_pending(&self) -> bool {
        self.expire_time().is_some()
    }

    /// The expiry of a pending timer (clamped), `None` if not pending
    /// (QEMU's `timer_expire_time_ns`, which returns -1).
    pub fn expire_time(&self) -> Option<i64> {
        self.list.expire_time_id(self.r.id)
    }

    /// A weak handle to this timer (e.g. to re-arm it from elsewhere).
    pub fn timer_ref(&self) -> TimerRef {
        self.r.clone()
    }

    /// The list this timer belongs to.
    pub fn list(&self) -> &Arc<TimerList> {
        &self.list
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.list.free_id(self.r.id);
    }
}

/// One timer list per clock (QEMU's `QEMUTimerListGroup`).
#[derive(Debug)]
pub struct TimerListGroup {
    lists: [Arc<TimerList>; 4],
}

impl Default for TimerListGroup {
    fn default() -> Self {
        TimerListGroup::new()
    }
}

impl TimerListGroup {
    /// A group with an empty, enabled list per clock and no notify callbacks.
    pub fn new() -> Self {
        TimerListGroup {
            lists: ClockType::ALL.map(TimerList::new),
        }
    }

    /// The list of `clock`.
    pub fn get(&self, clock: ClockType) -> &Arc<TimerList> {
        &self.lists[clock.index()]
    }

    /// Whether `clock`'s list takes part in this group's deadline and run
    /// (QEMU's `qemu_clock_use_for_deadline`).
    pub fn uses(clock: ClockType, exclude_virtual: bool) -> bool {
        !(exclude_virtual && clock == ClockType::Virtual)
    }

    /// The poll timeout in ns (QEMU's `timerlistgroup_deadline_ns`): the minimum over the
    /// lists' deadlines, each computed against `clocks`' current time of its clock; -1 if no
    /// list has one. VIRTUAL is excluded when `exclude_virtual` (icount).
    pub fn deadline_ns(&self, clocks: &Clocks, exclude_virtual: bool) -> i64 {
        let mut deadline = -1i64;
        for clock in ClockType::ALL {
            if !Self::uses(clock, exclude_virtual) {
                continue;
            }
            let list = self.get(clock);
            if !list.is_enabled() || list.next_expiry().is_none() {
                continue;
            }
            let d = list.deadline_ns(clocks.get_ns(clock));
            deadline = soonest_timeout(deadline, d);
        }
        deadline
    }

    /// Runs the expired timers of every list (QEMU's `qemu_clock_run_all_timers`), VIRTUAL
    /// excluded when `exclude_virtual`. Each list is run against its clock's time read once
    /// before it starts. `on_fire(clock, expire_ns)` is called before each callback. Returns
    /// the number of callbacks run.
    pub fn run_all(
        &self,
        clocks: &Clocks,
        exclude_virtual: bool,
        on_fire: &mut dyn FnMut(ClockType, i64),
    ) -> usize {
        let mut fired = 0;
        for clock in ClockType::ALL {
            if !Self::uses(clock, exclude_virtual) {
                continue;
            }
            let list = self.get(clock);
            if list.next_expiry().is_none() {
                continue;
            }
            let now = clocks.get_ns(clock);
            fired += list.run_expired(now, &mut |expire| on_fire(clock, expire));
        }
        fired
    }
}

/// The sooner of two timeouts where -1 means "none" (QEMU's `qemu_soonest_timeout`).
pub fn soonest_timeout(a: i64, b: i64) -> i64 {
    // Casting to u64 makes -1 the largest value, as QEMU does.
    if (a as u64) < (b as u64) { a } else { b }
}

#[cfg(test)]
mod tests {
    //! The atomics in these tests are counters and stop flags read on the thread that bumps
    //! them or after `join()`; their orderings protect no other data.
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicUsize;

    type Log = Arc<Mutex<Vec<u64>>>;

    /// A shared log and a factory of callbacks that append their id to it.
    fn recorder() -> (Log, impl Fn(u64) -> Box<dyn FnMut() + Send>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (log, move |id| {
            let l = l.clone();
            Box::new(move || l.lock().push(id))
        })
    }

    fn counting_notify(list: &TimerList) -> Arc<AtomicUsize> {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        list.set_notify(Some(Arc::new(move || {
            // SeqCst: a test counter; the simplest ordering, cost irrelevant.
            c.fetch_add(1, Ordering::SeqCst);
        })));
        n
    }

    #[test]
    fn basic_modify_delete_deadline() {
        let list = TimerList::new(ClockType::Realtime);
        assert_eq!(list.clock(), ClockType::Realtime);
        let (log, cb) = recorder();
        let a = list.new_timer(cb(1));
        assert!(!a.is_pending());
        assert_eq!(list.deadline_ns(0), -1);
        a.modify(100);
        assert!(a.is_pending());
        assert_eq!(a.expire_time(), Some(100));
        assert_eq!(list.deadline_ns(30), 70);
        assert_eq!(list.deadline_ns(130), 0);
        a.modify(-5);
        assert_eq!(a.expire_time(), Some(0));
        a.delete();
        assert!(!a.is_pending());
        assert_eq!(list.next_expiry(), None);
        assert_eq!(list.run_expired(1_000, &mut |_| {}), 0);
        assert!(log.lock().is_empty());
    }

    #[test]
    fn run_expired_order_and_fifo() {
        let list = TimerList::new(ClockType::Virtual);
        let (log, cb) = recorder();
        let timers: Vec<_> = (0..5).map(|i| list.new_timer(cb(i))).collect();
        timers[3].modify(50);
        timers[1].modify(50);
        timers[4].modify(10);
        timers[0].modify(50);
        timers[2].modify(60);
        let mut expires = Vec::new();
        assert_eq!(list.run_expired(50, &mut |e| expires.push(e)), 4);
        assert_eq!(*log.lock(), [4, 3, 1, 0]);
        assert_eq!(expires, [10, 50, 50, 50]);
        assert!(!timers[3].is_pending());
        assert!(timers[2].is_pending());
        // Re-modifying to the same expiry moves a timer behind its equals (QEMU re-inserts).
        timers[0].modify(60);
        timers[2].modify(60);
        list.run_expired(60, &mut |_| {});
        assert_eq!(log.lock()[4..], [0, 2]);
    }

    #[test]
    fn anticipate_only_moves_earlier() {
        let list = TimerList::new(ClockType::Realtime);
        let t = list.new_timer(|| {});
        t.modify_anticipate(100);
        assert_eq!(t.expire_time(), Some(100));
        t.modify_anticipate(200);
        assert_eq!(t.expire_time(), Some(100));
        t.modify_anticipate(40);
        assert_eq!(t.expire_time(), Some(40));
        t.modify_anticipate(-3);
        assert_eq!(t.expire_time(), Some(0));
    }

    #[test]
    fn notify_only_when_modified_timer_becomes_head() {
        let list = TimerList::new(ClockType::Realtime);
        let n = counting_notify(&list);
        let a = list.new_timer(|| {});
        let b = list.new_timer(|| {});
        a.modify(100); // new head
        assert_eq!(n.load(Ordering::SeqCst), 1);
        b.modify(200); // not head
        assert_eq!(n.load(Ordering::SeqCst), 1);
        b.modify(100); // equal expiry goes after a: not head
        assert_eq!(n.load(Ordering::SeqCst), 1);
        b.modify(50); // head
        assert_eq!(n.load(Ordering::SeqCst), 2);
        b.modify_anticipate(70); // no-op
        assert_eq!(n.load(Ordering::SeqCst), 2);
        a.modify_anticipate(10); // head
        assert_eq!(n.load(Ordering::SeqCst), 3);
        a.delete(); // deletions never notify
        assert_eq!(n.load(Ordering::SeqCst), 3);
        list.set_enabled(false);
        assert_eq!(list.deadline_ns(0), -1);
        assert_eq!(list.run_expired(i64::MAX, &mut |_| {}), 0);
        list.set_enabled(true); // enabling with pending timers notifies
        assert_eq!(n.load(Ordering::SeqCst), 4);
        assert_eq!(list.deadline_ns(0), 50);
    }

    #[test]
    fn drop_deletes() {
        let list = TimerList::new(ClockType::Host);
        let t = list.new_timer(|| {});
        let r = t.timer_ref();
        t.modify(5);
        assert_eq!(list.pending_count(), 1);
        drop(t);
        assert_eq!(list.pending_count(), 0);
        r.modify(1);
        assert!(!r.is_pending());
        assert_eq!(list.pending_count(), 0);
    }

    #[test]
    fn callbacks_rearm_themselves_and_touch_others() {
        let list = TimerList::new(ClockType::Virtual);
        let n = counting_notify(&list);
        // A periodic timer re-arming itself relative to its previous expiry.
        let count2 = Arc::new(AtomicUsize::new(0));
        let c2 = count2.clone();
        let last = Arc::new(Mutex::new(0i64));
        let l2 = last.clone();
        let periodic = list.new_timer_with_ref(move |me| {
            // SeqCst: a test counter; the simplest ordering, cost irrelevant.
            let k = c2.fetch_add(1, Ordering::SeqCst) as i64 + 1;
            *l2.lock() = k * 10;
            if k < 5 {
                me.modify(k * 10 + 10);
            }
        });
        periodic.modify(10);
        let victim = list.new_timer(|| panic!("deleted timer fired"));
        victim.modify(25);
        let victim_ref = victim.timer_ref();
        let (log, cb) = recorder();
        let late = list.new_timer(cb(7));
        let late_ref = late.timer_ref();
        let killer = list.new_timer(move || {
            victim_ref.delete();
            late_ref.modify(1); // in the past: fires in this same run
        });
        killer.modify(20);
        let mut expires = Vec::new();
        let fired = list.run_expired(45, &mut |e| expires.push(e));
        // periodic@10 (re-arms at 20, after killer@20 which was armed first), killer@20
        // (deletes victim, arms late@1: the new head), late@1, periodic@20, @30, @40.
        assert_eq!(expires, [10, 20, 1, 20, 30, 40]);
        assert_eq!(fired, 6);
        assert_eq!(*log.lock(), [7]);
        assert_eq!(count2.load(Ordering::SeqCst), 4);
        assert_eq!(periodic.expire_time(), Some(50));
        assert_eq!(list.run_expired(100, &mut |_| {}), 1);
        assert_eq!(*last.lock(), 50);
        assert!(!periodic.is_pending());
        assert!(!victim.is_pending());
        // Arming `late` from inside killer's callback made it the head: notified without
        // deadlocking (the list lock is not held while callbacks run).
        assert!(n.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn group_deadline_and_run_all() {
        let clocks = Clocks::new_stopped(); // VIRTUAL frozen at 0
        let g = TimerListGroup::new();
        assert_eq!(g.deadline_ns(&clocks, false), -1);
        let (log, cb) = recorder();
        let v = g.get(ClockType::Virtual).new_timer(cb(1));
        v.modify(1_000);
        assert_eq!(g.deadline_ns(&clocks, false), 1_000);
        assert_eq!(g.deadline_ns(&clocks, true), -1);
        let rt = g.get(ClockType::Realtime).new_timer(cb(2));
        let now = clocks.get_ns(ClockType::Realtime);
        rt.modify(now + 10_000_000_000);
        let d = g.deadline_ns(&clocks, true);
        assert!(d > 9_000_000_000 && d <= 10_000_000_000);
        assert_eq!(g.deadline_ns(&clocks, false), 1_000);
        let past = g.get(ClockType::Host).new_timer(cb(3));
        past.modify(0);
        assert_eq!(g.deadline_ns(&clocks, false), 0);
        let mut seen = Vec::new();
        assert_eq!(g.run_all(&clocks, false, &mut |c, e| seen.push((c, e))), 1);
        assert_eq!(seen, [(ClockType::Host, 0)]);
        v.modify(0);
        assert_eq!(g.run_all(&clocks, true, &mut |_, _| {}), 0);
        assert_eq!(g.run_all(&clocks, false, &mut |_, _| {}), 1);
        assert_eq!(*log.lock(), [3, 1]);
        assert_eq!(soonest_timeout(-1, 5), 5);
        assert_eq!(soonest_timeout(5, -1), 5);
        assert_eq!(soonest_timeout(3, 5), 3);
        assert_eq!(soonest_timeout(-1, -1), -1);
    }

    // ---- property tests against a reference model ----

    #[derive(Clone, Debug)]
    enum Op {
        Modify(usize, i64),
        Anticipate(usize, i64),
        Delete(usize),
        Run(i64),
        Enable(bool),
    }

    const N: usize = 5;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..N, -20i64..200).prop_map(|(i, t)| Op::Modify(i, t)),
            2 => (0..N, -20i64..200).prop_map(|(i, t)| Op::Anticipate(i, t)),
            1 => (0..N).prop_map(Op::Delete),
            2 => (0i64..220).prop_map(Op::Run),
            1 => any::<bool>().prop_map(Op::Enable),
        ]
    }

    /// The reference: a Vec of (expire, seq, id), scanned linearly.
    #[derive(Default)]
    struct Model {
        pending: Vec<(i64, u64, usize)>,
        seq: u64,
        enabled: bool,
    }

    impl Model {
        fn head(&self) -> Option<(i64, u64, usize)> {
            self.pending.iter().copied().min()
        }
        fn expire(&self, id: usize) -> Option<i64> {
            self.pending.iter().find(|p| p.2 == id).map(|p| p.0)
        }
        fn insert(&mut self, id: usize, t: i64) -> bool {
            self.pending.retain(|p| p.2 != id);
            self.seq += 1;
            self.pending.push((t.max(0), self.seq, id));
            self.head().unwrap().2 == id
        }
        /// Returns whether a notify is expected.
        fn apply(&mut self, op: &Op, fired: &mut Vec<(usize, i64)>) -> bool {
            match *op {
                Op::Modify(id, t) => self.insert(id, t),
                Op::Anticipate(id, t) => match self.expire(id) {
                    Some(cur) if cur <= t => false,
                    _ => self.insert(id, t),
                },
                Op::Delete(id) => {
                    self.pending.retain(|p| p.2 != id);
                    false
                }
                Op::Run(now) => {
                    while self.enabled {
                        match self.head() {
                            Some(h) if h.0 <= now => {
                                self.pending.retain(|p| p != &h);
                                fired.push((h.2, h.0));
                            }
                            _ => break,
                        }
                    }
                    false
                }
                Op::Enable(on) => {
                    let notify = on && !self.enabled && !self.pending.is_empty();
                    self.enabled = on;
                    notify
                }
            }
        }
        fn deadline(&self, now: i64) -> i64 {
            match self.head() {
                Some(h) if self.enabled => (h.0 - now).max(0),
                _ => -1,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
            let list = TimerList::new(ClockType::Virtual);
            let notes = counting_notify(&list);
            let fired = Arc::new(Mutex::new(Vec::new()));
            let pending_expire = Arc::new(Mutex::new(0i64));
            let timers: Vec<_> = (0..N)
                .map(|id| {
                    let f = fired.clone();
                    let e = pending_expire.clone();
                    list.new_timer(move || {
                        let expire = *e.lock();
                        f.lock().push((id, expire));
                    })
                })
                .collect();
            let mut model = Model { enabled: true, ..Model::default() };
            let mut model_fired = Vec::new();
            for op in &ops {
                // SeqCst: test counter, bumped on this same thread by the notify callback.
                let before = notes.load(Ordering::SeqCst);
                let expect_notify = model.apply(op, &mut model_fired);
                match *op {
                    Op::Modify(i, t) => timers[i].modify(t),
                    Op::Anticipate(i, t) => timers[i].modify_anticipate(t),
                    Op::Delete(i) => timers[i].delete(),
                    Op::Run(now) => {
                        let e = pending_expire.clone();
                        list.run_expired(now, &mut |x| *e.lock() = x);
                    }
                    Op::Enable(on) => list.set_enabled(on),
                }
                let notified = notes.load(Ordering::SeqCst) - before;
                prop_assert_eq!(notified, usize::from(expect_notify), "notify after {:?}", op);
                prop_assert_eq!(&*fired.lock(), &model_fired, "firing order after {:?}", op);
                for now in [0, 50, 100, 250] {
                    prop_assert_eq!(list.deadline_ns(now), model.deadline(now));
                }
                prop_assert_eq!(list.next_expiry(), model.head().map(|h| h.0));
                for (i, t) in timers.iter().enumerate() {
                    prop_assert_eq!(t.expire_time(), model.expire(i));
                }
            }
        }

        #[test]
        fn fifo_among_equal_deadlines(order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
                                       expire in 0i64..1000) {
            let list = TimerList::new(ClockType::Realtime);
            let (log, cb) = recorder();
            let timers: Vec<_> = (0..8).map(|i| list.new_timer(cb(i as u64))).collect();
            for &i in &order {
                timers[i].modify(expire);
            }
            prop_assert_eq!(list.run_expired(expire, &mut |_| {}), 8);
            let want: Vec<u64> = order.iter().map(|&i| i as u64).collect();
            prop_assert_eq!(&*log.lock(), &want);
        }
    }
}
