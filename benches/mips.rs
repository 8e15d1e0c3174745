//! Guest MIPS: vcpulab's interpreter against QEMU 7.2 TCG (no icount), same ELF, same
//! parameters, one vCPU.
//!
//! `cargo bench --bench mips`
//!
//! For each guest (`compute`, the ~34-instruction ALU + M-extension loop, and `alu_loop`, a
//! pure 4-instruction ALU loop from benches/guests/):
//! 1. start-up: both emulators with iters = 1, alternating, `REPS` times; the median start-up
//!    wall time of each is subtracted from its measured runs;
//! 2. calibration: QEMU once, scaled so that a measured QEMU run takes ~`TARGET_S` (≥ 1 s);
//! 3. measurement: QEMU / vcpulab / QEMU / vcpulab … `REPS` times each.
//!
//! Guest MIPS = instructions / (wall − median start-up), instructions from vcpulab's
//! `--stats` (`instructions.total`; the same ELF and parameters execute the same instructions
//! on both). Peak memory: max RSS from wait4 for both, and vcpulab's own `peak_rss_bytes`.
//!
//! Knobs (environment): VCPULAB_BENCH_REPS (5), VCPULAB_BENCH_TARGET_S (1.5),
//! VCPULAB_BENCH_GUESTS (compute,alu_loop), VCPULAB_BENCH_TIME_LIMIT_S (120 per run).
//! Writes results/mips-YYYY-MM-DD.json.

mod common;

use common::*;
use serde_json::json;

fn main() {
    let reps: usize = env_knob("REPS", 5);
    let target_s: f64 = env_knob("TARGET_S", 1.5);
    let guests_sel: String = env_knob("GUESTS", "compute,alu_loop".to_string());
    println!(
        "== mips: vcpulab vs QEMU 7.2 TCG (no icount), 1 vCPU, {reps} alternating runs each =="
    );
    let host = Host::collect(true);
    let t0 = std::time::Instant::now();

    let variants = vec![
        Variant {
            label: "QEMU 7.2 TCG",
            emu: Emu::Qemu(vec![]),
        },
        Variant {
            label: "vcpulab",
            emu: Emu::Vcpulab(vec![]),
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
        let s = alternating_series(g, &variants, reps, 0, target_s, None);
        print_series(&s);
        let (q, v) = (&s.variants[0], &s.variants[1]);
        let ratio = v.mips_median() / q.mips_median();
        let pair = s.pair_ratios(0, 1);
        let pair_med = median(&pair);
        let (plo, phi) = min_max(&pair);
        let v_peak = median(&v.stats_peak_rss);
        let q_rss = median(&q.max_rss);
        let v_rss = median(&v.max_rss);
        let threads = q.max_threads.max(v.max_threads);
        println!(
            "ratio vcpulab/QEMU MIPS: {ratio:.3} (of medians); per alternation pair: median {pair_med:.3}, range {plo:.3}..{phi:.3}  [goal >= 0.5: {}]",
            if ratio >= 0.5 { "met" } else { "NOT met" }
        );
        println!(
            "vcpulab self-reported MIPS (its own wall clock, no process start-up): median {:.1}",
            median(&v.self_mips)
        );
        println!(
            "peak memory: vcpulab peak_rss_bytes {} (wait4 max RSS {}), QEMU max RSS {} (wait4); QEMU/vcpulab {:.1}x",
            mib(v_peak),
            mib(v_rss),
            mib(q_rss),
            q_rss / v_peak.max(1.0)
        );
        println!(
            "threads: QEMU {} , vcpulab {} ; 1 busy (the vCPU) in each run, runs never overlap; {}",
            q.max_threads,
            v.max_threads,
            oversubscription(threads, 1, host.facts.cores)
        );
        summary.push(format!(
            "{:<10} {:>12} {:>10.1} {:>10.1} {:>8.3} {:>10.3} {:>12} {:>12}",
            g.name,
            s.instructions,
            q.mips_median(),
            v.mips_median(),
            ratio,
            pair_med,
            mib(q_rss),
            mib(v_peak)
        ));
        let mut j = s.json();
        j["ratio_vcpulab_over_qemu_mips"] = json!(ratio);
        j["pair_ratios"] = json!(pair);
        j["pair_ratio_median"] = json!(pair_med);
        j["goal_ratio_min"] = json!(0.5);
        j["goal_met"] = json!(ratio >= 0.5);
        j["threads_outnumber_cores"] = json!(threads > host.facts.cores as u64);
        j["busy_threads"] = json!(1);
        out.push(j);
    }

    println!(
        "\n== summary (medians; {} cores, {}) ==",
        host.facts.cores, host.facts.cpu_model
    );
    println!(
        "{:<10} {:>12} {:>10} {:>10} {:>8} {:>10} {:>12} {:>12}",
        "guest",
        "instructions",
        "QEMU MIPS",
        "vcpulab",
        "ratio",
        "pair-ratio",
        "QEMU RSS",
        "vcpulab RSS"
    );
    for l in &summary {
        println!("{l}");
    }
    println!(
        "ratio = median vcpulab MIPS / median QEMU MIPS (goal >= 0.5); pair-ratio = median over alternation pairs"
    );

    let result = json!({
        "bench": "mips",
        "description": "guest MIPS, vcpulab vs qemu-system-riscv64 TCG without icount; MIPS = instructions / (wall - median start-up wall of an iters=1 run); alternating runs",
        "reps": reps,
        "target_qemu_seconds": target_s,
        "host": host.json(),
        "elapsed_s": t0.elapsed().as_secs_f64(),
        "guests": out,
    });
    match write_result("mips", &host.date, &result) {
        Ok(p) => println!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write result: {e}"),
    }
    println!("bench took {:.1} s", t0.elapsed().as_secs_f64());
}
