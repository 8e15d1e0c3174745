//! Random differential test of *SMP* under icount: random programs of 2..=4
//! harts (`tests/common/randsmp.rs`: per-hart ALU code, own and shared
//! memory, AMOs and LR/SC, time reads, own timers, IPIs, `wfi`, UART scratch,
//! a barrier, then hart 0 prints every hart's registers and logs) run on each
//! QEMU with `-smp N -icount shift=K,sleep=off`, where all vCPUs share one
//! round-robin thread, and on vcpulab with `--smp N --icount
//! shift=K,sleep=off` and the matching `--compat` (which picks QEMU 10.0's
//! split of each round's budget between the vCPUs, or QEMU 7.2's whole limit
//! to each turn): byte-identical UART output, the same exit.
//!
//! The number of harts N is drawn by the generator from the program's seed;
//! the shift is `(index + base seed) % 11`, so any 11 consecutive programs of
//! one base seed cover every shift. Every program runs twice on QEMU first: a
//! program on which QEMU's two runs differ is reported with a loud warning
//! and not counted (QEMU's nondeterminism, not vcpulab's).
//!
//! One ISA (RV64IMA, `-cpu rv64,c=off,zba=off,zbb=off,zbs=off`), one test
//! against each QEMU: `random_smp_programs_match_qemu_icount::qemu_10_0`,
//! `…::qemu_7_2`; and the generator's self-test.
//!
//! Knobs (environment), besides those of `tests/common/diff.rs`
//! (`VCPULAB_SMP_ICOUNT_DIFF_COUNT` — default 400 per test —, `_SEED`,
//! `_START`, `_SHRINK`):
//! - `VCPULAB_SMP_ICOUNT_DIFF_SHIFT`: force this shift (0..=10) for every program;
//! - `VCPULAB_SMP_ICOUNT_DIFF_HARTS`: force this many harts (2..=4);
//! - `VCPULAB_SMP_ICOUNT_DIFF_MAX_FAILURES`: stop starting programs after
//!   this many mismatches (default 6; a large value measures the mismatch rate);
//! - `VCPULAB_SMP_ICOUNT_DIFF_DUMP=<dir>`: also write every program's ELF and
//!   listing there.
//!
//! On a mismatch the ELF, its listing and both outputs go to
//! `target/qemu_smp_icount_diff-failures/<qemu>-<isa>/`; the program is then
//! shrunk (shortest failing prefix of its units, then greedy removal of units
//! of any hart).

mod common;

use common::asm::{Isa, program_seed};
use common::diff::{self, Family};
use common::randsmp::{GenOptions, Program, harts_of};
use common::{RunOut, env_u64, qemu};
use libtest_mimic::Trial;

const DEFAULT_SEED: u64 = 0x736d_7074_696d_6531; // "smptime1"
const DEFAULT_COUNT: usize = 400;
const PREFIX: &str = "VCPULAB_SMP_ICOUNT_DIFF";

fn gen_options() -> GenOptions {
    let harts = env_u64(&format!("{PREFIX}_HARTS")).map(|h| {
        assert!((2..=4).contains(&h), "{PREFIX}_HARTS={h}: expected 2..=4");
        h as usize
    });
    GenOptions { harts }
}

fn shift_for(base: u64, index: u64) -> u32 {
    match env_u64(&format!("{PREFIX}_SHIFT")) {
        Some(s) => {
            assert!(s <= 10, "{PREFIX}_SHIFT={s}: expected 0..=10");
            s as u32
        }
        None => ((index % 11 + base % 11) % 11) as u32,
    }
}

struct Smp {
    opts: GenOptions,
}

impl Smp {
    fn harts(&self, base: u64, index: u64) -> usize {
        harts_of(program_seed(base, index), self.opts)
    }
}

impl Family for Smp {
    type Prog = Program;
    fn name(&self) -> &'static str {
        "qemu_smp_icount_diff"
    }
    fn prefix(&self) -> &'static str {
        PREFIX
    }
    fn default_seed(&self) -> u64 {
        DEFAULT_SEED
    }
    fn default_count(&self) -> usize {
        DEFAULT_COUNT
    }
    fn max_failures(&self) -> usize {
        env_u64(&format!("{PREFIX}_MAX_FAILURES")).map_or(6, |n| n as usize)
    }
    fn isa(&self) -> Isa {
        Isa::BASE
    }
    fn generate(&self, seed: u64, kept: Option<&[usize]>) -> Program {
        Program::generate_with(seed, kept, self.opts)
    }
    fn subsets(&self) -> bool {
        true
    }
    fn units(&self, p: &Program) -> usize {
        p.kept.len()
    }
    fn elf(&self, p: &Program) -> Vec<u8> {
        diff::dump_program(&format!("{PREFIX}_DUMP"), "s", p.seed, p.elf(), || {
            p.listing()
        })
    }
    fn listing(&self, p: &Program) -> String {
        p.listing()
    }
    fn explain(&self, p: &Program, q: &str, v: &str) -> String {
        p.explain(q, v)
    }
    fn body_text(&self, p: &Program) -> String {
        let s = &p.shape;
        let actions: Vec<Vec<String>> = s
            .actions
            .iter()
            .map(|t| {
                t.iter()
                    .map(|&v| {
                        if v == 1 << 63 {
                            "disarm".to_string()
                        } else {
                            (v as i64).to_string()
                        }
                    })
                    .collect()
            })
            .collect();
        let per_hart: Vec<Vec<usize>> = (0..s.harts)
            .map(|h| {
                p.kept
                    .iter()
                    .copied()
                    .filter(|&u| s.hart_of(u) == h)
                    .collect()
            })
            .collect();
        format!(
            "{} harts, units per hart {per_hart:?}\n{}handler: vectored {}, log time via {}, re-arm via {} {}; \
             per hart: actions {:?}, prologue disarm {:?}, mie {:x?}, MIE {:?}\n",
            s.harts,
            p.body_text(),
            s.vectored,
            if s.handler_log_mmio { "mmio" } else { "rdtime" },
            if s.handler_rearm_mmio {
                "mmio"
            } else {
                "rdtime"
            },
            s.handler_write,
            actions,
            s.prologue_disarm,
            s.init_mie,
            s.init_mstatus_mie,
        )
    }
    fn qemu_args(&self, base: u64, index: u64) -> Vec<String> {
        vec![
            "-smp".into(),
            self.harts(base, index).to_string(),
            "-icount".into(),
            format!("shift={},sleep=off", shift_for(base, index)),
        ]
    }
    fn vcpulab_args(&self, base: u64, index: u64) -> Vec<String> {
        vec![
            "--smp".into(),
            self.harts(base, index).to_string(),
            "--icount".into(),
            format!("shift={},sleep=off", shift_for(base, index)),
        ]
    }
    fn job_text(&self, base: u64, index: u64) -> String {
        format!(
            "shift {} smp {}",
            shift_for(base, index),
            self.harts(base, index)
        )
    }
    fn qemu_ok(&self, q: &RunOut) -> bool {
        q.code == Some(0) && !q.timed_out && q.stdout.ends_with(b"\nend\n")
    }
    fn qemu_twice(&self) -> bool {
        true
    }
    fn check_jobs(&self, jobs: &[(u64, u64)]) {
        let mut shifts: Vec<u32> = jobs.iter().map(|&(b, i)| shift_for(b, i)).collect();
        shifts.sort();
        shifts.dedup();
        let mut harts: Vec<usize> = jobs.iter().map(|&(b, i)| self.harts(b, i)).collect();
        harts.sort();
        harts.dedup();
        println!("qemu_smp_icount_diff: shifts covered: {shifts:?}, harts: {harts:?}");
        if jobs.len() >= 22 && env_u64(&format!("{PREFIX}_SHIFT")).is_none() {
            assert_eq!(
                shifts,
                (0..=10).collect::<Vec<u32>>(),
                "every shift must be covered"
            );
        }
        if jobs.len() >= 30 && self.opts.harts.is_none() {
            assert_eq!(harts, vec![2, 3, 4], "every hart count must be covered");
        }
    }
}

fn main() {
    let mut trials = vec![Trial::test(
        "generator_is_deterministic_and_subsets_keep_units",
        || {
            common::randsmp::self_test();
            Ok(())
        },
    )];
    let test = "random_smp_programs_match_qemu_icount";
    for v in qemu::QemuVersion::ALL {
        let full = format!("{test}::{}", qemu::tag(v));
        trials.push(qemu::trial(test, v, move |q| {
            diff::run(
                &Smp {
                    opts: gen_options(),
                },
                q,
                &full,
            )
        }));
    }
    qemu::main(trials, 1)
}
