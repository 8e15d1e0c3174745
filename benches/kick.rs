//! Kick latency per mechanism (futex, signal, eventfd), for a target that is running and one
//! that is halted, at two levels.
//!
//! `cargo bench --bench kick`
//!
//! (a) Library level: one target thread with a `vcpulab::sync::kick::Waiter` and a
//! `vcpulab::accel::cpu::CpuShared` woken through its `Kicker`; this thread kicks it
//! (`CpuShared::kick`) and the target records `CpuShared::take_kick_latency` (kick stamp to the
//! target consuming the exit request, the clock the run report uses) into an HdrHistogram.
//! - halted: the target runs the halt loop (`take_exit_request`, else `Waiter::park`); the
//!   kicker waits until the target has announced that it parks, then sleeps `GAP_US` more so
//!   that it really sleeps in the kernel, then kicks;
//! - running: the target spins on `exit_requested()`; after each kick it consumes the kick's
//!   token (`park_timeout(0)`) outside the timed window, so every kick takes the full path.
//!
//! The six variants (mechanism × state) run in alternating chunks (round r runs chunk r of
//! every variant); each variant's chunk histograms are merged, and every chunk is written to
//! results/kick-DATE.hlog (HdrHistogram interval log, tagged `futex-halted` etc., ns).
//!
//! (b) Whole machine: `vcpulab run --kick K --stats` and the report's `kicks.running_ns` /
//! `kicks.halted_ns`, on smp_ipi_pingpong (2 harts waking each other with msip: halted
//! targets) and on smp_mmio_storm with the msip target under `--bql always` (the BQL hand-over
//! kicks a vCPU that is running guest code) and under `--bql mmio` (writing 0 to one's own
//! msip changes no bit, so it kicks nobody: the control). `REPS` rounds, the mechanisms
//! alternating within each round.
//!
//! Knobs (environment): VCPULAB_BENCH_SAMPLES (20000 per variant at level a),
//! VCPULAB_BENCH_CHUNKS (10), VCPULAB_BENCH_GAP_US (100), VCPULAB_BENCH_REPS (3),
//! VCPULAB_BENCH_PINGPONG_ITERS (5000), VCPULAB_BENCH_STORM_ITERS (300000),
//! VCPULAB_BENCH_TIME_LIMIT_S (120 per run). Writes results/kick-YYYY-MM-DD.json and .hlog.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde_json::{Value, json};
use vcpulab::accel::cpu::CpuShared;
use vcpulab::sync::kick::{KickKind, Waiter};

#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    Running,
    Halted,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Halted => "halted",
        }
    }
}

/// `n` kicks of one target thread in state `state`, kicked through mechanism `kind`, at least
/// `gap` apart; returns the latency histogram (ns) and how many kicks the target observed.
fn chunk(kind: KickKind, state: State, n: u64, gap: Duration) -> Histogram<u64> {
    let waiter = Waiter::new(kind).expect("creating the waiter");
    let cpu = Arc::new(CpuShared::new(0, waiter.kicker()));
    let stop = Arc::new(AtomicBool::new(false));
    // `ready` = the target is about to wait for kick number `done`.
    let ready = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let target = {
        let (cpu, stop, ready, done) = (cpu.clone(), stop.clone(), ready.clone(), done.clone());
        std::thread::spawn(move || {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            // The first wait attaches a signal waiter to this thread (before it, a signal kick
            // has no thread to go to); with nothing pending it returns at once.
            waiter.park_timeout(Duration::ZERO);
            loop {
                ready.store(true, Ordering::SeqCst);
                match state {
                    State::Halted => loop {
                        if stop.load(Ordering::Acquire) {
                            return h;
                        }
                        if cpu.take_exit_request() {
                            break;
                        }
                        waiter.park();
                    },
                    State::Running => {
                        while !cpu.exit_requested() {
                            if stop.load(Ordering::Relaxed) {
                                return h;
                            }
                            std::hint::spin_loop();
                        }
                        cpu.take_exit_request();
                    }
                }
                if let Some(ns) = cpu.take_kick_latency() {
                    h.record(ns.max(1)).expect("record");
                }
                if state == State::Running {
                    // Consume the kick's token outside the timed window.
                    waiter.park_timeout(Duration::ZERO);
                }
                ready.store(false, Ordering::SeqCst);
                done.fetch_add(1, Ordering::Release);
            }
        })
    };
    for i in 0..n {
        while !(ready.load(Ordering::SeqCst) && done.load(Ordering::Acquire) == i) {
            std::thread::yield_now();
        }
        std::thread::sleep(gap);
        cpu.kick();
        while done.load(Ordering::Acquire) == i {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Release);
    cpu.wake();
    target.join().expect("target thread")
}

fn pct(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "min": h.min(),
        "mean": h.mean(),
        "count": h.len(),
    })
}

fn us(ns: f64) -> String {
    format!("{:.2}", ns / 1e3)
}

struct LibVariant {
    kind: KickKind,
    state: State,
    hist: Histogram<u64>,
    chunks: Vec<Value>,
}

impl LibVariant {
    fn tag(&self) -> String {
        format!("{}-{}", self.kind.name(), self.state.name())
    }
}

/// One whole-machine case.
struct Case {
    name: &'static str,
    elf: &'static str,
    params: Vec<(usize, u64)>,
    extra: Vec<&'static str>,
}

fn main() {
    let samples: u64 = env_knob("SAMPLES", 20_000);
    let chunks: u64 = env_knob("CHUNKS", 10).max(1);
    let gap = Duration::from_micros(env_knob("GAP_US", 100));
    let reps: usize = env_knob("REPS", 3);
    let pp_iters: u64 = env_knob("PINGPONG_ITERS", 5000);
    let storm_iters: u64 = env_knob("STORM_ITERS", 300_000);
    let limit = Duration::from_secs(env_knob("TIME_LIMIT_S", 120));
    println!(
        "== kick: kick-to-observed latency per mechanism, target running and halted; (a) library level, (b) whole machine =="
    );
    let host = Host::collect(false);
    let cores = host.facts.cores;
    let t0 = Instant::now();
    let start_time = SystemTime::now();

    // (a) library level
    println!(
        "\n-- (a) library level: CpuShared::kick -> take_kick_latency, {samples} kicks per variant in {chunks} alternating chunks, >= {} µs apart --",
        gap.as_micros()
    );
    println!(
        "threads: {} (the kicker, blocked or sleeping most of the time, and the target: spinning when running, parked when halted)",
        oversubscription(2, 1, cores)
    );
    let mut vs: Vec<LibVariant> = KickKind::ALL
        .into_iter()
        .flat_map(|kind| {
            [State::Running, State::Halted].map(|state| LibVariant {
                kind,
                state,
                hist: Histogram::new(3).unwrap(),
                chunks: vec![],
            })
        })
        .collect();
    let mut log_buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment(
                "vcpulab benches/kick.rs: kick-to-observed latency in ns (CpuShared::kick to take_kick_latency), one interval per chunk, tag = mechanism-state",
            )
            .with_start_time(start_time)
            .with_base_time(start_time)
            .begin_log_with(&mut log_buf, &mut ser)
            .expect("begin hlog");
        for r in 0..chunks {
            let mut line = format!("  round {}/{chunks}:", r + 1);
            let n = samples / chunks + u64::from(r < samples % chunks);
            for v in vs.iter_mut() {
                let t_start = start_time.elapsed().unwrap_or_default();
                let t = Instant::now();
                let h = chunk(v.kind, v.state, n, gap);
                let wall = t.elapsed();
                v.hist.add(&h).expect("merge");
                let mut c = pct(&h);
                c["wall_s"] = json!(wall.as_secs_f64());
                c["loadavg"] = json!(loadavg());
                v.chunks.push(c);
                log.write_histogram(&h, t_start, wall, Tag::new(&v.tag()))
                    .expect("write hlog interval");
                line += &format!(" {} p50 {}us", v.tag(), us(h.value_at_quantile(0.5) as f64));
                if h.len() != n {
                    line += &format!(" (only {} of {n} observed!)", h.len());
                }
            }
            println!("{line}");
        }
    }
    println!(
        "\n(a) latency in µs, merged over chunks; host {cores} cores ({}), 2 threads (kicker + target) so threads do not outnumber cores, but the host is shared (load at start {}, now {})",
        host.facts.cpu_model,
        host.loadavg_start,
        loadavg()
    );
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>16}",
        "mechanism-state", "p50", "p90", "p99", "p99.9", "max", "count", "chunk p50 range"
    );
    let mut lib_out = vec![];
    for v in &vs {
        let h = &v.hist;
        let cp50: Vec<f64> = v
            .chunks
            .iter()
            .map(|c| c["p50"].as_f64().unwrap())
            .collect();
        let (lo, hi) = min_max(&cp50);
        println!(
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7}..{:<8}",
            v.tag(),
            us(h.value_at_quantile(0.5) as f64),
            us(h.value_at_quantile(0.9) as f64),
            us(h.value_at_quantile(0.99) as f64),
            us(h.value_at_quantile(0.999) as f64),
            us(h.max() as f64),
            h.len(),
            us(lo),
            us(hi)
        );
        lib_out.push(json!({
            "mechanism": v.kind.name(),
            "target": v.state.name(),
            "latency_ns": pct(h),
            "per_chunk": v.chunks,
        }));
    }

    // (b) whole machine
    let cases = [
        Case {
            name: "pingpong",
            elf: "guests/build/smp_ipi_pingpong.elf",
            params: vec![(0, pp_iters)],
            extra: vec!["--smp", "2"],
        },
        Case {
            name: "msip-storm-always",
            elf: "guests/build/smp_mmio_storm.elf",
            params: vec![(0, storm_iters), (4, 2)],
            extra: vec!["--smp", "2", "--bql", "always"],
        },
        Case {
            name: "msip-storm-mmio",
            elf: "guests/build/smp_mmio_storm.elf",
            params: vec![(0, storm_iters), (4, 2)],
            extra: vec!["--smp", "2", "--bql", "mmio"],
        },
    ];
    println!(
        "\n-- (b) whole machine: vcpulab run --kick K --stats, the report's kicks section; {reps} rounds, mechanisms alternating --"
    );
    // runs[case][kind] = reports
    let mut runs: Vec<Vec<Vec<(Outcome, Value)>>> =
        vec![vec![vec![]; KickKind::ALL.len()]; cases.len()];
    for rep in 0..reps {
        let mut line = format!("  round {}/{reps}:", rep + 1);
        for (ci, c) in cases.iter().enumerate() {
            for k in 0..KickKind::ALL.len() {
                let ki = (k + rep) % KickKind::ALL.len();
                let kind = KickKind::ALL[ki];
                let mut extra = c.extra.clone();
                extra.extend(["--kick", kind.name()]);
                let r = run_vcpulab_params(&repo_root().join(c.elf), &c.params, &extra, limit)
                    .expect("spawn vcpulab");
                line += &format!(
                    " {}/{} {:.2}s",
                    c.name,
                    kind.name(),
                    r.outcome.wall_ns as f64 / 1e9
                );
                runs[ci][ki].push((r.outcome, r.stats));
            }
        }
        println!("{line}");
    }
    println!(
        "\n(b) latency in µs, median over {reps} runs of each run's p50 / p99 (min..max); host {cores} cores; 2 harts = 2 vCPU threads + main + iothread, so threads outnumber cores"
    );
    println!(
        "{:<18} {:<8} {:<8} {:>9} {:>17} {:>9} {:>17} {:>9} {:>8} {:>8}",
        "case",
        "kick",
        "target",
        "p50",
        "p50 range",
        "p99",
        "p99 range",
        "count",
        "wall s",
        "threads"
    );
    let mut whole_out = vec![];
    for (ci, c) in cases.iter().enumerate() {
        for (ki, kind) in KickKind::ALL.iter().enumerate() {
            let rs = &runs[ci][ki];
            for (state, field) in [("running", "running_ns"), ("halted", "halted_ns")] {
                let get = |q: &str| -> Vec<f64> {
                    rs.iter()
                        .filter_map(|(_, s)| s["kicks"][field][q].as_f64())
                        .collect()
                };
                let (p50, p99, count) = (get("p50"), get("p99"), get("count"));
                let walls: Vec<f64> = rs.iter().map(|(o, _)| o.wall_ns as f64).collect();
                let threads = rs.iter().map(|(o, _)| o.max_threads).max().unwrap_or(0);
                let (a, b) = min_max(&p50);
                let (x, y) = min_max(&p99);
                println!(
                    "{:<18} {:<8} {:<8} {:>9} {:>8}..{:<8} {:>9} {:>8}..{:<8} {:>9.0} {:>8.3} {:>5}>{}c{}",
                    c.name,
                    kind.name(),
                    state,
                    us(median(&p50)),
                    us(a),
                    us(b),
                    us(median(&p99)),
                    us(x),
                    us(y),
                    median(&count),
                    median(&walls) / 1e9,
                    threads,
                    cores,
                    if rs.iter().all(|(o, _)| o.success) {
                        ""
                    } else {
                        "  RUN FAILED"
                    }
                );
                whole_out.push(json!({
                    "case": c.name,
                    "elf": c.elf,
                    "params": c.params,
                    "args": c.extra,
                    "mechanism": kind.name(),
                    "target": state,
                    "p50_ns": p50,
                    "p99_ns": p99,
                    "count": count,
                    "p50_ns_median": median(&p50),
                    "p99_ns_median": median(&p99),
                    "wall_ns": walls,
                    "max_threads": threads,
                    "all_exit_0": rs.iter().all(|(o, _)| o.success),
                    "kicks_sections": rs.iter().map(|(_, s)| s["kicks"].clone()).collect::<Vec<_>>(),
                    "bql_wanted_requests": rs.iter().map(|(_, s)| s["bql"]["wanted_requests"].clone()).collect::<Vec<_>>(),
                }));
            }
        }
    }
    println!(
        "(count = kicks timed per run (the first unobserved kick each time); a case with count 0 has no such kicks: p50/p99 0)"
    );

    let hlog = format!("kick-{}.hlog", host.date);
    match write_result_file("kick", &host.date, "hlog", &log_buf) {
        Ok(p) => println!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write results/{hlog}: {e}"),
    }
    let result = json!({
        "bench": "kick",
        "description": "kick-to-observed latency (ns) per mechanism, target running and halted: (a) CpuShared::kick / take_kick_latency with a Waiter in one target thread; (b) the kicks section of vcpulab run reports",
        "host": host.json(),
        "library": {
            "samples_per_variant": samples,
            "chunks": chunks,
            "gap_us": gap.as_micros() as u64,
            "threads": 2,
            "threads_outnumber_cores": 2 > cores,
            "variants": lib_out,
        },
        "whole_machine": {"reps": reps, "cases": whole_out},
        "hlog": hlog,
        "elapsed_s": t0.elapsed().as_secs_f64(),
    });
    match write_result("kick", &host.date, &result) {
        Ok(p) => println!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write result: {e}"),
    }
    println!("bench took {:.1} s", t0.elapsed().as_secs_f64());
}
