//! The cost of the BQL's instrumentation: an uncontended acquire + release
//! through [`vcpulab::sync::bql::Bql`] (profile on, and off) against the same raw
//! lock taken bare, for every lock kind. One thread, so nothing contends:
//! this is the price every device access pays when nobody else wants the
//! lock. QSP, QEMU's profiler, reads the clock twice and looks up a hash
//! table on every acquisition; the goal here is at most 1.5× the bare lock.
//!
//! `cargo bench --bench bql`
//!
//! Method: for each rep, every variant runs `N` acquire/release pairs, the
//! variants alternating within the rep (A/B/C/A/B/C…); the figure is the
//! median ns per pair over the reps, and the ratio is the median of the
//! per-rep ratios. Host facts are printed with the figures.
//!
//! Knobs (environment): VCPULAB_BENCH_REPS (15), VCPULAB_BENCH_PAIRS (2000000),
//! VCPULAB_BENCH_HOLD_SAMPLE (the profile's sampling, default the BQL's).

use std::hint::black_box;
use std::time::Instant;

use lock_api::RawMutex;
use vcpulab::sync::bql::{AnyRawMutex, Bql, LockKind, profile::DEFAULT_HOLD_SAMPLE};

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(format!("VCPULAB_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_pairs(pairs: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..pairs {
        f();
    }
    t.elapsed().as_nanos() as f64 / pairs as f64
}

fn main() {
    let reps: usize = knob("REPS", 15);
    let pairs: u64 = knob("PAIRS", 2_000_000);
    let sample: u32 = knob("HOLD_SAMPLE", DEFAULT_HOLD_SAMPLE);
    let host = vcpulab::host::HostFacts::collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "== bql: uncontended acquire+release, 1 thread, {reps} alternating reps of {pairs} pairs =="
    );
    println!(
        "host: {} cores, {}, kernel {}, load {}",
        host.cores,
        host.cpu_model,
        host.kernel,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("profile: one hold in {sample} timed");
    println!(
        "{:<18} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "kind", "bare ns", "profiled ns", "off ns", "profiled/bare", "off/bare"
    );
    for kind in LockKind::ALL {
        let bare = AnyRawMutex::new(kind);
        let on = Bql::with(kind, true, sample);
        let off = Bql::with(kind, false, sample);
        let (mut b, mut p, mut o, mut rp, mut ro) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            let tb = time_pairs(pairs, || {
                let m = black_box(&bare);
                let g = m.lock();
                // SAFETY: `g` is the guard of the acquisition just made.
                unsafe { m.unlock(g) };
            });
            let tp = time_pairs(pairs, || drop(black_box(&on).lock()));
            let to = time_pairs(pairs, || drop(black_box(&off).lock()));
            b.push(tb);
            p.push(tp);
            o.push(to);
            rp.push(tp / tb);
            ro.push(to / tb);
        }
        println!(
            "{:<18} {:>10.2} {:>12.2} {:>12.2} {:>12.3}x {:>11.3}x",
            kind.name(),
            median(&mut b),
            median(&mut p),
            median(&mut o),
            median(&mut rp),
            median(&mut ro)
        );
        assert_eq!(on.profile().snapshot().acquisitions(), reps as u64 * pairs);
    }
    // The price of timing every hold, for the record.
    let every = Bql::with(LockKind::ParkingLot, true, 1);
    let bare = AnyRawMutex::new(LockKind::ParkingLot);
    let mut r = vec![];
    for _ in 0..reps {
        let tb = time_pairs(pairs, || {
            let m = black_box(&bare);
            let g = m.lock();
            // SAFETY: as above.
            unsafe { m.unlock(g) };
        });
        let te = time_pairs(pairs, || drop(black_box(&every).lock()));
        r.push(te / tb);
    }
    println!(
        "parking_lot, every hold timed: {:.3}x the bare lock",
        median(&mut r)
    );
}
