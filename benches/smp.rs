//! SMP scaling: 2 vCPUs against 1, each vCPU doing the same work, on vcpulab (per BQL policy
//! and lock kind) and on QEMU 7.2 and 10.0 MTTCG, same ELF, same parameters.
//!
//! `cargo bench --bench smp`
//!
//! Aggregate throughput ratio = (iterations of 2 harts / net wall) / (iterations of 1 hart /
//! net wall) = 2 · net(1 hart) / net(2 harts): every hart runs `iters` iterations, so 2 harts
//! do twice the work; net = wall − the median wall of an iters = 1 run of the same variant
//! and hart count (start-up subtraction).
//!
//! Guests (guests/README.md): `compute` = smp_compute; `uart`, `mtime`, `msip`, `plic` =
//! smp_mmio_storm with slot 4 = 0, 1, 2, 3 and slot 1 (rate) = 8 ALU instructions per access.
//! Variants: vcpulab `--bql always|mmio|device` with parking_lot ("policy"); `--bql mmio` with
//! the other four lock kinds, and for `mtime` also `--bql device` with them ("lock"); QEMU
//! 7.2 and 10.0 with `-accel tcg,thread=multi` ("qemu"; the bench checks from the thread
//! names that each vCPU has its own thread).
//!
//! Method (docs/benchmarks.md): start-up runs (iters = 1) of every variant and hart count,
//! alternating, `REPS` rounds; calibration per emulator (vcpulab, QEMU 7.2, QEMU 10.0) on a
//! 1-hart run so that it takes ~`TARGET_S` net (and a 2-hart probe per vcpulab variant under
//! `--timeout`, which lowers the count of a variant whose pair of runs would exceed
//! `PAIR_MAX_S`); then `REPS` rounds, each running every
//! variant at 1 and 2 harts back to back (the order of the two alternates, and the variant
//! order rotates from round to round). Every run's guest output is checked (each hart's
//! iterations, or one checksum per hart). For vcpulab the BQL profile of every run is kept
//! (acquisitions, contended, wait and hold percentiles, total wait and hold over the sites).
//!
//! Knobs (environment): VCPULAB_BENCH_REPS (3), VCPULAB_BENCH_TARGET_S (0.3),
//! VCPULAB_BENCH_GUESTS (compute,uart,mtime,msip,plic), VCPULAB_BENCH_VARIANTS
//! (policy,lock,qemu: groups or variant labels), VCPULAB_BENCH_RATE (8),
//! VCPULAB_BENCH_PAIR_MAX_S (2.5: a variant whose 1- and 2-hart runs would take longer together
//! runs fewer iterations), VCPULAB_BENCH_MIN_NET_S (0.05: but not fewer than a 1-hart run of
//! this long needs), VCPULAB_BENCH_TIME_LIMIT_S (120 per run). Writes results/smp-YYYY-MM-DD.json.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// One guest configuration.
struct SmpGuest {
    name: &'static str,
    elf: &'static str,
    /// Parameter slots besides slot 0 (iterations per hart).
    fixed: Vec<(usize, u64)>,
    /// Iterations of the calibration run.
    calib_iters: u64,
    /// Guest instructions per iteration and hart (for the probe's progress).
    insns_per_iter: f64,
    what: String,
}

#[derive(Clone, Debug)]
enum Emu {
    Vcpulab {
        policy: &'static str,
        lock: &'static str,
    },
    Qemu {
        bin: &'static str,
    },
}

#[derive(Clone, Debug)]
struct SmpVariant {
    label: String,
    group: &'static str,
    /// Calibration family: variants of one family run the same iteration count.
    family: &'static str,
    emu: Emu,
}

/// (variant label, ratio of medians, median of the per-round ratios).
type SummaryCell = (String, f64, f64);

/// Every lock kind `--bql-lock` accepts, the default first.
fn locks() -> impl Iterator<Item = &'static str> {
    vcpulab::sync::bql::LockKind::ALL
        .into_iter()
        .map(|k| k.name())
}

fn variants_for(g: &SmpGuest) -> Vec<SmpVariant> {
    let vl = |group, policy, lock| SmpVariant {
        label: format!("vcpulab {policy}/{lock}"),
        group,
        family: "vcpulab",
        emu: Emu::Vcpulab { policy, lock },
    };
    let mut v = vec![
        vl("policy", "always", "parking_lot"),
        vl("policy", "mmio", "parking_lot"),
        vl("policy", "device", "parking_lot"),
    ];
    for lock in locks().skip(1) {
        v.push(vl("lock", "mmio", lock));
    }
    if g.name == "mtime" {
        for lock in locks().skip(1) {
            v.push(vl("lock", "device", lock));
        }
    }
    v.push(SmpVariant {
        label: "QEMU 7.2 MTTCG".into(),
        group: "qemu",
        family: "qemu-7.2",
        emu: Emu::Qemu { bin: QEMU },
    });
    v.push(SmpVariant {
        label: "QEMU 10.0 MTTCG".into(),
        group: "qemu",
        family: "qemu-10.0",
        emu: Emu::Qemu { bin: QEMU_10_0 },
    });
    v
}

fn qemu_extra(smp: u64) -> Vec<String> {
    vec![
        "-smp".into(),
        smp.to_string(),
        "-accel".into(),
        "tcg,thread=multi".into(),
    ]
}

impl SmpVariant {
    fn command(&self, g: &SmpGuest, smp: u64, iters: u64) -> String {
        let mut params = vec![(0usize, iters)];
        params.extend(g.fixed.iter().copied());
        match &self.emu {
            Emu::Vcpulab { policy, lock } => {
                let p: Vec<String> = params
                    .iter()
                    .map(|(s, v)| format!("--param {s}={v}"))
                    .collect();
                format!(
                    "vcpulab run --kernel {} {} --smp {smp} --bql {policy} --bql-lock {lock} --stats FILE",
                    g.elf,
                    p.join(" ")
                )
            }
            Emu::Qemu { bin } => {
                let extra = qemu_extra(smp);
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                format!(
                    "{bin} {}",
                    qemu_args_params(g.elf, &params, &extra).join(" ")
                )
            }
        }
    }
}

/// One run.
#[derive(Clone, Debug)]
struct Rec {
    wall_ns: f64,
    cpu_ns: f64,
    host_busy_cores: f64,
    threads: u64,
    ok: bool,
    work_ok: bool,
    stdout: String,
    /// vcpulab's BQL section, condensed (see `bql_summary`).
    bql: Option<Value>,
    /// vcpulab's instructions per hart.
    instructions: Option<Value>,
    kicks: Option<Value>,
}

/// The BQL figures of one vCPU-lab run: the report's counters and percentiles, plus the
/// total wait and hold summed over the call sites.
fn bql_summary(stats: &Value) -> Value {
    let b = &stats["bql"];
    let sites = b["sites"].as_array().cloned().unwrap_or_default();
    let sum = |k: &str| -> u64 { sites.iter().filter_map(|s| s[k].as_u64()).sum() };
    json!({
        "acquisitions": b["acquisitions"],
        "contended": b["contended"],
        "wait_ns": b["wait_ns"],
        "hold_ns": b["hold_ns"],
        "wanted_requests": b["wanted_requests"],
        "wait_ns_total": sum("wait_ns_total"),
        "hold_ns_total": sum("hold_ns_total"),
        "top_sites": sites.iter().take(3).map(|s| json!({
            "site": s["site"], "acquisitions": s["acquisitions"], "contended": s["contended"],
            "wait_ns_total": s["wait_ns_total"], "hold_ns_total": s["hold_ns_total"],
        })).collect::<Vec<_>>(),
        "stats_wall_ns": stats["wall_ns"],
    })
}

/// Does the guest output say that every hart did `iters` iterations (or printed its checksum)?
fn work_done(g: &SmpGuest, out: &str, smp: u64, iters: u64) -> bool {
    if g.name == "compute" {
        let harts = out
            .lines()
            .filter(|l| l.starts_with("hart ") && l.contains(" checksum=0x"))
            .count() as u64;
        return harts == smp && out.contains("xor of checksums=");
    }
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("hart ") && l.contains("iterations="))
        .collect();
    let total: u64 = lines
        .iter()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("iterations="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    lines.len() as u64 == smp && lines.iter().all(|l| l.ends_with(" ok")) && total == iters * smp
}

fn run_one(v: &SmpVariant, g: &SmpGuest, smp: u64, iters: u64, limit: Duration) -> Rec {
    run_one_opts(v, g, smp, iters, limit, None)
}

/// As [`run_one`]; vcpulab gets `--timeout SECS` when `timeout_s` is set.
fn run_one_opts(
    v: &SmpVariant,
    g: &SmpGuest,
    smp: u64,
    iters: u64,
    limit: Duration,
    timeout_s: Option<f64>,
) -> Rec {
    let mut params = vec![(0usize, iters)];
    params.extend(g.fixed.iter().copied());
    let elf = repo_root().join(g.elf);
    let (o, stats) = match &v.emu {
        Emu::Vcpulab { policy, lock } => {
            let smp_s = smp.to_string();
            let mut extra = vec!["--smp", &smp_s, "--bql", policy, "--bql-lock", lock];
            let t = timeout_s.map(|t| format!("{t:.3}"));
            if let Some(t) = &t {
                extra.extend(["--timeout", t]);
            }
            let r = run_vcpulab_params(&elf, &params, &extra, limit).expect("spawn vcpulab");
            (r.outcome, Some(r.stats))
        }
        Emu::Qemu { bin } => {
            let extra = qemu_extra(smp);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let args = qemu_args_params(&elf.display().to_string(), &params, &extra);
            (
                run_process(Path::new(bin), &args, limit).expect("spawn QEMU"),
                None,
            )
        }
    };
    Rec {
        wall_ns: o.wall_ns as f64,
        cpu_ns: o.cpu_ns as f64,
        host_busy_cores: o.host_busy_cores,
        threads: o.max_threads,
        ok: o.success,
        work_ok: work_done(g, &o.stdout, smp, iters),
        stdout: o.stdout,
        bql: stats.as_ref().filter(|s| !s.is_null()).map(bql_summary),
        instructions: stats.as_ref().map(|s| s["instructions"].clone()),
        kicks: stats.as_ref().map(|s| s["kicks"].clone()),
    }
}

/// Per variant and hart count.
#[derive(Default, Clone, Debug)]
struct Side {
    startup: Vec<f64>,
    runs: Vec<Rec>,
}

impl Side {
    fn startup_med(&self) -> f64 {
        median(&self.startup)
    }
    fn nets(&self) -> Vec<f64> {
        let s = self.startup_med();
        self.runs.iter().map(|r| r.wall_ns - s).collect()
    }
    fn med_of(&self, f: impl Fn(&Rec) -> f64) -> f64 {
        median(&self.runs.iter().map(f).collect::<Vec<_>>())
    }
    fn bql_med(&self, f: impl Fn(&Value) -> Option<f64>) -> f64 {
        median(
            &self
                .runs
                .iter()
                .filter_map(|r| r.bql.as_ref().and_then(&f))
                .collect::<Vec<_>>(),
        )
    }
    fn threads(&self) -> u64 {
        self.runs.iter().map(|r| r.threads).max().unwrap_or(0)
    }
}

struct VarResult {
    v: SmpVariant,
    iters: u64,
    one: Side,
    two: Side,
}

impl VarResult {
    fn ratio(&self) -> f64 {
        2.0 * median(&self.one.nets()) / median(&self.two.nets())
    }
    fn round_ratios(&self) -> Vec<f64> {
        self.one
            .nets()
            .iter()
            .zip(self.two.nets())
            .map(|(a, b)| 2.0 * a / b)
            .collect()
    }
    /// Work per CPU-second of the emulator process, 2 harts over 1: 1.0 when the second
    /// vCPU costs no extra CPU per iteration (a diagnostic: it ignores how many cores the
    /// host gave the run).
    fn cpu_ratio(&self) -> f64 {
        2.0 * self.one.med_of(|r| r.cpu_ns) / self.two.med_of(|r| r.cpu_ns)
    }
    fn all_ok(&self) -> bool {
        self.one
            .runs
            .iter()
            .chain(&self.two.runs)
            .all(|r| r.ok && r.work_ok)
    }
}

fn fmt_range(v: &[f64], scale: f64, prec: usize) -> String {
    let (lo, hi) = min_max(v);
    format!("{:.p$}..{:.p$}", lo / scale, hi / scale, p = prec)
}

fn threads_note(t: u64, cores: usize) -> String {
    format!("{t}{}{cores}c", if t > cores as u64 { ">" } else { "<=" })
}

/// Check that `bin` runs one host thread per vCPU under `-accel tcg,thread=multi` (MTTCG):
/// threads named `CPU 0/TCG`, `CPU 1/TCG` and no `ALL CPUs/TCG` (round-robin's one thread).
fn check_mttcg(bin: &str) -> (bool, Vec<String>) {
    let mut extra = qemu_extra(2);
    extra.extend(["-name".into(), "vcpulab-bench,debug-threads=on".into()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let elf = repo_root().join("guests/build/smp_compute.elf");
    let args = qemu_args_params(&elf.display().to_string(), &[(0, 4_000_000_000)], &extra);
    let both = |n: &[String]| {
        ["CPU 0/TCG", "CPU 1/TCG"]
            .iter()
            .all(|w| n.iter().any(|x| x == w))
    };
    let names =
        thread_names(Path::new(bin), &args, both, Duration::from_secs(5)).unwrap_or_default();
    let has = |n: &str| names.iter().any(|x| x == n);
    (
        has("CPU 0/TCG") && has("CPU 1/TCG") && !has("ALL CPUs/TCG"),
        names,
    )
}

fn main() {
    let reps: usize = env_knob("REPS", 3);
    let target_s: f64 = env_knob("TARGET_S", 0.3);
    let rate: u64 = env_knob("RATE", 8);
    let guests_sel: String = env_knob("GUESTS", "compute,uart,mtime,msip,plic".to_string());
    let vars_sel: String = env_knob("VARIANTS", "policy,lock,qemu".to_string());
    let pair_max_s: f64 = env_knob("PAIR_MAX_S", 2.5);
    let min_net_s: f64 = env_knob("MIN_NET_S", 0.05);
    let limit = Duration::from_secs(env_knob("TIME_LIMIT_S", 120));
    println!(
        "== smp: 2 vCPUs vs 1, each vCPU the same work; {reps} rounds, runs alternating across variants =="
    );
    let host = Host::collect(true);
    let cores = host.facts.cores;
    let t0 = Instant::now();
    let q10 = qemu_version_of(QEMU_10_0);
    println!("QEMU 10.0: {q10}");

    let mut mttcg = BTreeMap::new();
    for bin in [QEMU, QEMU_10_0] {
        let (ok, names) = check_mttcg(bin);
        println!(
            "{bin} -smp 2 -accel tcg,thread=multi: threads [{}] -> {}",
            names.join(", "),
            if ok {
                "MTTCG (one thread per vCPU)"
            } else {
                "NOT MTTCG (or not running)"
            }
        );
        mttcg.insert(bin, json!({"mttcg": ok, "thread_names": names}));
    }

    let storm = |name, target: u64, what: &str| SmpGuest {
        name,
        elf: "guests/build/smp_mmio_storm.elf",
        fixed: vec![(1, rate), (4, target)],
        calib_iters: 2_000_000,
        insns_per_iter: (rate + 4) as f64,
        what: format!(
            "smp_mmio_storm target {target} ({what}), rate {rate}: {} insns/iter",
            rate + 4
        ),
    };
    let all_guests = vec![
        SmpGuest {
            name: "compute",
            elf: "guests/build/smp_compute.elf",
            fixed: vec![],
            calib_iters: 10_000_000,
            // 1,300,001,671 instructions for 100 M iterations on one hart.
            insns_per_iter: 13.0,
            what: "smp_compute: xorshift64 + multiply-add, no MMIO".into(),
        },
        storm("uart", 0, "sb to the UART scratch register"),
        storm("mtime", 1, "ld of CLINT mtime"),
        storm("msip", 2, "sw 0 to the hart's own CLINT msip"),
        storm("plic", 3, "lw of a PLIC priority"),
    ];
    let sel: Vec<&str> = vars_sel.split(',').map(str::trim).collect();
    let guests: Vec<SmpGuest> = all_guests
        .into_iter()
        .filter(|g| guests_sel.split(',').any(|s| s.trim() == g.name))
        .collect();

    let mut out = vec![];
    let mut summary: Vec<(String, Vec<SummaryCell>)> = vec![];
    let mut goals = vec![];
    for g in &guests {
        let vs: Vec<SmpVariant> = variants_for(g)
            .into_iter()
            .filter(|v| sel.iter().any(|s| *s == v.group || *s == v.label))
            .filter(|v| match v.emu {
                Emu::Qemu { bin } => mttcg[bin]["mttcg"].as_bool() == Some(true),
                _ => true,
            })
            .collect();
        if vs.is_empty() {
            continue;
        }
        println!("\n-- guest {}: {} --", g.name, g.what);
        let mut res: Vec<VarResult> = vs
            .iter()
            .map(|v| VarResult {
                v: v.clone(),
                iters: 0,
                one: Side::default(),
                two: Side::default(),
            })
            .collect();
        // 1. start-up
        for _ in 0..reps {
            for r in res.iter_mut() {
                for smp in [1, 2] {
                    let rec = run_one(&r.v, g, smp, 1, limit);
                    let side = if smp == 1 { &mut r.one } else { &mut r.two };
                    side.startup.push(rec.wall_ns);
                }
            }
        }
        // 2. calibration per family, on the family's first variant (vcpulab: mmio/parking_lot
        // if selected), 1 hart, faster of two runs.
        let mut fam_iters: BTreeMap<&str, u64> = BTreeMap::new();
        for fam in ["vcpulab", "qemu-7.2", "qemu-10.0"] {
            let Some(i) = res
                .iter()
                .position(|r| r.v.family == fam && r.v.label == "vcpulab mmio/parking_lot")
                .or_else(|| res.iter().position(|r| r.v.family == fam))
            else {
                continue;
            };
            // A calibration run shorter than half the target is too close to the start-up
            // time to scale from: grow the count (at most 20× per step) and measure again.
            let mut c = g.calib_iters;
            let (n, net) = loop {
                let w = (0..2)
                    .map(|_| run_one(&res[i].v, g, 1, c, limit).wall_ns)
                    .fold(f64::INFINITY, f64::min);
                let net = (w - res[i].one.startup_med()).max(1e6);
                let n = round_up_2sig(c as f64 * target_s * 1e9 / net);
                if net >= 0.5 * target_s * 1e9 || c >= 1 << 40 {
                    break (n, net);
                }
                c = n.min(c * 20);
            };
            println!(
                "  calibration {fam}: {} took {:.3} s net for {c} iters -> {n} iters per hart for ~{target_s} s at 1 hart",
                res[i].v.label,
                net / 1e9,
            );
            fam_iters.insert(fam, n);
        }
        // Per vCPU-lab variant: a 2-hart probe at the family's count, stopped by vcpulab's
        // `--timeout` after `PAIR_MAX_S − TARGET_S`; a variant that does not finish in that
        // time (a lock or policy that scales very badly) runs the iterations it managed
        // (from the instructions its report counts), but never fewer than a 1-hart run of
        // `MIN_NET_S` needs, so that start-up noise stays small against the 1-hart run. The
        // ratio compares a variant's own 1- and 2-hart runs, which have the same count.
        for r in res.iter_mut() {
            let n = fam_iters[r.v.family];
            r.iters = n;
            if !matches!(r.v.emu, Emu::Vcpulab { .. }) {
                continue;
            }
            let budget = (pair_max_s - target_s).max(0.5);
            let p = run_one_opts(&r.v, g, 2, n, limit, Some(budget));
            if p.ok {
                continue;
            }
            // The slower hart's instructions: the faster one may have finished its share
            // and spun at the closing barrier.
            let done = p
                .instructions
                .as_ref()
                .and_then(|i| i["per_vcpu"].as_array())
                .and_then(|v| v.iter().filter_map(Value::as_f64).reduce(f64::min))
                .unwrap_or(0.0);
            let frac = (done / (n as f64 * g.insns_per_iter)).clamp(0.0, 1.0);
            let floor = (n as f64 * min_net_s / target_s).ceil();
            let m = round_up_2sig((n as f64 * frac).max(floor)).min(n);
            println!(
                "  {}: the 2-hart probe at {n} iters did {:.1} % in {budget:.1} s (--timeout), so {m} iters per hart",
                r.v.label,
                100.0 * frac
            );
            r.iters = m;
        }
        // 3. measurement
        let nv = res.len();
        for rep in 0..reps {
            let mut line = format!("  round {}/{reps}:", rep + 1);
            for k in 0..nv {
                let i = (k + rep) % nv;
                let order = if (rep + k) % 2 == 0 { [1, 2] } else { [2, 1] };
                let r = &mut res[i];
                for smp in order {
                    let rec = run_one(&r.v, g, smp, r.iters, limit);
                    if smp == 1 {
                        r.one.runs.push(rec);
                    } else {
                        r.two.runs.push(rec);
                    }
                }
                let (a, b) = (
                    r.one.runs.last().unwrap().wall_ns,
                    r.two.runs.last().unwrap().wall_ns,
                );
                line += &format!(" [{} {:.2}/{:.2}s]", r.v.label, a / 1e9, b / 1e9);
            }
            println!("{line}");
        }

        // Guest output must agree across variants (per hart count and iteration count).
        let mut outputs: BTreeMap<(u64, u64), &str> = BTreeMap::new();
        let mut outputs_agree = true;
        for r in &res {
            for (smp, side) in [(1u64, &r.one), (2, &r.two)] {
                for rec in &side.runs {
                    let e = outputs.entry((smp, r.iters)).or_insert(&rec.stdout);
                    outputs_agree &= *e == rec.stdout;
                }
            }
        }

        // Table.
        println!(
            "\nguest {} ({}); host {} cores; net = wall − median start-up; ratio = 2·net(1 hart)/net(2 harts)",
            g.name, g.what, cores
        );
        println!(
            "{:<30} {:>9} {:>20} {:>20} {:>7} {:>18} {:>11} {:>9} {:>9} {:>13}",
            "variant",
            "iters/hart",
            "1 hart net s",
            "2 harts net s",
            "ratio",
            "per round",
            "cores 1h/2h",
            "others 2h",
            "per CPU-s",
            "threads 1h/2h"
        );
        let mut srow = vec![];
        for r in &res {
            let (n1, n2) = (r.one.nets(), r.two.nets());
            let rr = r.round_ratios();
            let used = |s: &Side| s.med_of(|x| x.cpu_ns / x.wall_ns);
            let others = r
                .two
                .med_of(|x| (x.host_busy_cores - x.cpu_ns / x.wall_ns).max(0.0));
            println!(
                "{:<30} {:>9} {:>7.3} ({:>11}) {:>7.3} ({:>11}) {:>6.2}x {:>5.2} ({:>10}) {:>5.2}/{:<5.2} {:>9.2} {:>8.2}x {:>6}/{:<6}{}",
                r.v.label,
                r.iters,
                median(&n1) / 1e9,
                fmt_range(&n1, 1e9, 3),
                median(&n2) / 1e9,
                fmt_range(&n2, 1e9, 3),
                r.ratio(),
                median(&rr),
                fmt_range(&rr, 1.0, 2),
                used(&r.one),
                used(&r.two),
                others,
                r.cpu_ratio(),
                threads_note(r.one.threads(), cores),
                threads_note(r.two.threads(), cores),
                if r.all_ok() { "" } else { "  RUN FAILED" }
            );
            srow.push((r.v.label.clone(), r.ratio(), median(&rr)));
        }
        println!(
            "(host: {cores} cores. Each row is {reps} runs per hart count; 'cores' = CPU time / wall of the emulator process; 'others' = what the rest of the host used meanwhile, from /proc/stat; per CPU-s = work per CPU-second of the process, 2 harts over 1 (start-up not subtracted; 1.0 = the second vCPU costs no extra CPU per iteration); threads = most seen in /proc/PID/status, '>' when they outnumber the {cores} cores; 2-hart runs have 2 busy vCPU threads, as many as the cores, plus the mostly idle ones (vcpulab: main, iothread, …; QEMU: main loop, RCU).)"
        );
        if !outputs_agree {
            println!("WARNING: guest output differs between variants or runs");
        }
        // BQL contention of the vcpulab variants.
        let vres: Vec<&VarResult> = res
            .iter()
            .filter(|r| matches!(r.v.emu, Emu::Vcpulab { .. }))
            .collect();
        if !vres.is_empty() {
            println!(
                "BQL (vcpulab --stats, medians over the runs; host {cores} cores, 2-hart runs: 2 busy threads of 4)"
            );
            println!(
                "{:<30} {:>5} {:>11} {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
                "variant",
                "harts",
                "acq/iter",
                "contend%",
                "wait p50",
                "wait p99",
                "hold p50",
                "hold p99",
                "wait %",
                "wanted"
            );
            for r in &vres {
                for (smp, side) in [(1u64, &r.one), (2, &r.two)] {
                    let f = |k: &'static str| side.bql_med(move |b| b[k].as_f64());
                    let p =
                        |k: &'static str, q: &'static str| side.bql_med(move |b| b[k][q].as_f64());
                    let acq = f("acquisitions");
                    let cont = f("contended");
                    // Total wait as a share of the vCPU threads' time (harts × vcpulab's wall).
                    let wait_share = side.bql_med(|b| {
                        Some(
                            b["wait_ns_total"].as_f64()?
                                / (smp as f64 * b["stats_wall_ns"].as_f64()?),
                        )
                    });
                    println!(
                        "{:<30} {:>5} {:>11.4} {:>7.1}% {:>8.0}ns {:>8.0}ns {:>8.0}ns {:>8.0}ns {:>8.1}% {:>9.0}",
                        r.v.label,
                        smp,
                        acq / (r.iters * smp) as f64,
                        100.0 * cont / acq.max(1.0),
                        p("wait_ns", "p50"),
                        p("wait_ns", "p99"),
                        p("hold_ns", "p50"),
                        p("hold_ns", "p99"),
                        100.0 * wait_share,
                        f("wanted_requests")
                    );
                }
            }
            println!(
                "(acq/iter = BQL acquisitions per guest iteration; contend% = acquisitions whose first try failed; wait p50/p99 over the contended ones; hold sampled 1 in 64; wait % = total wait summed over call sites / (harts × wall); wanted = hand-over requests under 'always')"
            );
        }
        // Goals.
        let find = |label: &str| res.iter().find(|r| r.v.label == label);
        let mut goal = |label: &str, min: f64, what: &str| {
            if let Some(r) = find(label) {
                let met = r.ratio() >= min;
                println!(
                    "goal: {what}: {label} ratio {:.2}x (per round median {:.2}x) >= {min}: {}  [host {cores} cores, 2-hart runs: threads outnumber cores]",
                    r.ratio(),
                    median(&r.round_ratios()),
                    if met { "met" } else { "NOT met" }
                );
                goals.push(json!({"guest": g.name, "variant": label, "min_ratio": min,
                    "ratio": r.ratio(), "round_ratio_median": median(&r.round_ratios()), "met": met}));
            }
        };
        match g.name {
            "compute" => goal("vcpulab mmio/parking_lot", 1.9, "compute >= 1.9x with mmio"),
            "mtime" => goal(
                "vcpulab device/parking_lot",
                1.6,
                "mtime-read storm >= 1.6x with device",
            ),
            _ => {}
        }
        summary.push((g.name.to_string(), srow));

        let side_json = |s: &Side| {
            json!({
                "startup_wall_ns": s.startup,
                "startup_wall_ns_median": s.startup_med(),
                "wall_ns": s.runs.iter().map(|r| r.wall_ns).collect::<Vec<_>>(),
                "net_ns": s.nets(),
                "net_ns_median": median(&s.nets()),
                "cpu_ns": s.runs.iter().map(|r| r.cpu_ns).collect::<Vec<_>>(),
                "host_busy_cores": s.runs.iter().map(|r| r.host_busy_cores).collect::<Vec<_>>(),
                "max_threads": s.threads(),
                "all_exit_0": s.runs.iter().all(|r| r.ok),
                "work_checked": s.runs.iter().all(|r| r.work_ok),
                "bql": s.runs.iter().filter_map(|r| r.bql.clone()).collect::<Vec<_>>(),
                "instructions": s.runs.iter().filter_map(|r| r.instructions.clone()).collect::<Vec<_>>(),
                "kicks": s.runs.iter().filter_map(|r| r.kicks.clone()).collect::<Vec<_>>(),
                "guest_stdout": s.runs.first().map(|r| r.stdout.clone()),
            })
        };
        out.push(json!({
            "guest": g.name,
            "elf": g.elf,
            "what": g.what,
            "params_besides_iters": g.fixed,
            "iters_per_hart": fam_iters,
            "outputs_agree": outputs_agree,
            "variants": res.iter().map(|r| json!({
                "label": r.v.label,
                "group": r.v.group,
                "command_1": r.v.command(g, 1, r.iters),
                "command_2": r.v.command(g, 2, r.iters),
                "iters_per_hart": r.iters,
                "ratio_of_medians": r.ratio(),
                "round_ratios": r.round_ratios(),
                "round_ratio_median": median(&r.round_ratios()),
                "work_per_cpu_ratio": r.cpu_ratio(),
                "one_hart": side_json(&r.one),
                "two_harts": side_json(&r.two),
            })).collect::<Vec<_>>(),
        }));
    }

    println!(
        "\n== summary: 2-hart / 1-hart aggregate throughput (ratio of medians; per-round median); host {cores} cores, {}; load at start {} now {} ==",
        host.facts.cpu_model,
        host.loadavg_start,
        loadavg()
    );
    for (gname, rows) in &summary {
        let cells: Vec<String> = rows
            .iter()
            .map(|(l, a, b)| format!("{l} {a:.2}x ({b:.2})"))
            .collect();
        println!("{gname:<8} {}", cells.join(" | "));
    }
    println!(
        "(2-hart runs: 2 busy vCPU threads on {cores} cores, plus idle ones, so threads outnumber cores; other sessions share the host)"
    );

    let mut hj = host.json();
    hj["qemu_10_0_version"] = json!(q10);
    let result = json!({
        "bench": "smp",
        "description": "2 vCPUs vs 1, each vCPU the same work: ratio = 2 * net(1 hart) / net(2 harts), net = wall - median wall of an iters=1 run; vcpulab per BQL policy and lock kind, QEMU 7.2 and 10.0 MTTCG; runs alternate across variants",
        "reps": reps,
        "target_s_one_hart": target_s,
        "rate": rate,
        "host": hj,
        "mttcg_check": mttcg,
        "elapsed_s": t0.elapsed().as_secs_f64(),
        "goals": goals,
        "guests": out,
    });
    match write_result("smp", &host.date, &result) {
        Ok(p) => println!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write result: {e}"),
    }
    println!("bench took {:.1} s", t0.elapsed().as_secs_f64());
}
