//! icount: (a) what `--icount shift=0,sleep=off` costs vcpulab, and (b) icount throughput
//! against QEMU 7.2's `-icount shift=0,sleep=off`.
//!
//! `cargo bench --bench icount`
//!
//! For each guest (`compute` and the pure 4-instruction `alu_loop`), four variants run in
//! round-robin alternation (QEMU, QEMU icount, vcpulab, vcpulab icount; `REPS` rounds):
//! 1. start-up: every variant with iters = 1, `REPS` rounds; the median is subtracted;
//! 2. calibration: QEMU with icount once, scaled so that its measured run takes ~`TARGET_S`;
//! 3. measurement: `REPS` rounds of the four, same iteration count.
//!
//! (a) overhead = median net wall (wall − start-up) of vcpulab with icount / without
//!     (goal ≤ 1.05); also per round, and of raw wall times.
//! (b) ratio = median MIPS of vcpulab icount / QEMU icount (goal ≥ 1.0).
//! QEMU's own icount cost (QEMU icount net wall / QEMU net wall) is printed for reference.
//! Instructions come from vcpulab's `--stats` (identical with and without icount).
//!
//! Knobs (environment): VCPULAB_BENCH_REPS (5), VCPULAB_BENCH_TARGET_S (1.5),
//! VCPULAB_BENCH_GUESTS (compute,alu_loop), VCPULAB_BENCH_TIME_LIMIT_S (120 per run).
//! Writes results/icount-YYYY-MM-DD.json.

mod common;

use common::*;
use serde_json::json;

const QP: usize = 0; // QEMU plain
const QI: usize = 1; // QEMU icount
const VP: usize = 2; // vcpulab plain
const VI: usize = 3; // vcpulab icount

fn main() {
    let reps: usize = env_knob("REPS", 5);
    let target_s: f64 = env_knob("TARGET_S", 1.5);
    let guests_sel: String = env_knob("GUESTS", "compute,alu_loop".to_string());
    println!(
        "== icount: vcpulab icount overhead and icount throughput vs QEMU 7.2, 1 vCPU, {reps} alternating rounds =="
    );
    let host = Host::collect(true);
    let t0 = std::time::Instant::now();

    let variants = vec![
        Variant {
            label: "QEMU 7.2 TCG",
            emu: Emu::Qemu(vec![]),
        },
        Variant {
            label: "QEMU 7.2 -icount shift=0,sleep=off",
            emu: Emu::Qemu(vec!["-icount", "shift=0,sleep=off"]),
        },
        Variant {
            label: "vcpulab",
            emu: Emu::Vcpulab(vec![]),
        },
        Variant {
            label: "vcpulab --icount shift=0,sleep=off",
            emu: Emu::Vcpulab(vec!["--icount", "shift=0,sleep=off"]),
        },
    ];
    let guests: Vec<Guest> = [compute_guest(), alu_guest()]
        .into_iter()
        .filter(|g| guests_sel.split(',').any(|s| s.trim() == g.name))
        .collect();

    let mut out = vec![];
    let mut summary = vec![];
    for g in &guests {
        println!("\n-- guest {} --", g.name);
        let s = alternating_series(g, &variants, reps, QI, target_s, None);
        print_series(&s);
        let v = &s.variants;
        let threads = v.iter().map(|r| r.max_threads).max().unwrap_or(0);

        // (a) overhead of icount in vcpulab
        let overhead = v[VI].net() / v[VP].net();
        let overhead_raw = v[VI].wall() / v[VP].wall();
        let per_round: Vec<f64> = v[VP]
            .walls
            .iter()
            .zip(&v[VI].walls)
            .map(|(p, i)| (i - v[VI].startup()) / (p - v[VP].startup()))
            .collect();
        let (olo, ohi) = min_max(&per_round);
        println!(
            "(a) vcpulab icount overhead: net wall ratio {overhead:.3} (raw wall {overhead_raw:.3}); per round median {:.3}, range {olo:.3}..{ohi:.3}  [goal <= 1.05: {}]",
            median(&per_round),
            if overhead <= 1.05 { "met" } else { "NOT met" }
        );
        // (b) icount throughput vs QEMU
        let ratio = v[VI].mips_median() / v[QI].mips_median();
        let pair = s.pair_ratios(QI, VI);
        let (plo, phi) = min_max(&pair);
        println!(
            "(b) icount MIPS: vcpulab {:.1}, QEMU {:.1}; ratio vcpulab/QEMU {ratio:.3}; per round median {:.3}, range {plo:.3}..{phi:.3}  [goal >= 1.0: {}]",
            v[VI].mips_median(),
            v[QI].mips_median(),
            median(&pair),
            if ratio >= 1.0 { "met" } else { "NOT met" }
        );
        let qemu_cost = v[QI].net() / v[QP].net();
        println!(
            "reference: QEMU's own icount cost (net wall icount / plain) {qemu_cost:.3}; plain MIPS ratio vcpulab/QEMU {:.3}",
            v[VP].mips_median() / v[QP].mips_median()
        );
        println!(
            "threads: {}",
            oversubscription(threads, 1, host.facts.cores)
        );
        summary.push(format!(
            "{:<10} {:>12} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.3} {:>10.3} {:>10.3}",
            g.name,
            s.instructions,
            v[QP].mips_median(),
            v[QI].mips_median(),
            v[VP].mips_median(),
            v[VI].mips_median(),
            overhead,
            ratio,
            qemu_cost
        ));
        let mut j = s.json();
        j["a_vcpulab_icount_overhead_net_wall_ratio"] = json!(overhead);
        j["a_vcpulab_icount_overhead_raw_wall_ratio"] = json!(overhead_raw);
        j["a_per_round_ratios"] = json!(per_round);
        j["a_goal_max"] = json!(1.05);
        j["a_goal_met"] = json!(overhead <= 1.05);
        j["b_icount_mips_ratio_vcpulab_over_qemu"] = json!(ratio);
        j["b_per_round_ratios"] = json!(pair);
        j["b_goal_min"] = json!(1.0);
        j["b_goal_met"] = json!(ratio >= 1.0);
        j["qemu_icount_cost_net_wall_ratio"] = json!(qemu_cost);
        j["threads_outnumber_cores"] = json!(threads > host.facts.cores as u64);
        j["busy_threads"] = json!(1);
        out.push(j);
    }

    println!(
        "\n== summary (median MIPS; {} cores, {}) ==",
        host.facts.cores, host.facts.cpu_model
    );
    println!(
        "{:<10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "guest",
        "instructions",
        "QEMU",
        "QEMU-ic",
        "vcpulab",
        "vcpu-ic",
        "(a) ovh",
        "(b) ratio",
        "QEMU ovh"
    );
    for l in &summary {
        println!("{l}");
    }
    println!(
        "(a) ovh = vcpulab icount / plain net wall (goal <= 1.05); (b) ratio = vcpulab icount MIPS / QEMU icount MIPS (goal >= 1.0); icount = shift=0,sleep=off"
    );

    let result = json!({
        "bench": "icount",
        "description": "vcpulab icount overhead (a) and icount throughput vs qemu-system-riscv64 -icount shift=0,sleep=off (b); MIPS = instructions / (wall - median start-up wall of an iters=1 run); four variants in round-robin alternation",
        "reps": reps,
        "target_qemu_icount_seconds": target_s,
        "host": host.json(),
        "elapsed_s": t0.elapsed().as_secs_f64(),
        "guests": out,
    });
    match write_result("icount", &host.date, &result) {
        Ok(p) => println!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write result: {e}"),
    }
    println!("bench took {:.1} s", t0.elapsed().as_secs_f64());
}
