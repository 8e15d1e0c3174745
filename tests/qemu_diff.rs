//! Random differential test: random RV64IMA + Zicsr + Zifencei programs
//! (`tests/common/randprog.rs`: ALU, M, loads, stores, AMOs, LR/SC, branches,
//! jumps, CSRs, fences, traps, self-modifying code, and counted loops — TBs
//! that branch to their own start — over loads/stores, faults walking off the
//! end of RAM, misaligned and illegal instructions, MMIO) run on each QEMU
//! (`tests/common/qemu.rs`) and on vcpulab with the matching `--compat` must
//! print byte-identical UART output (registers, data region, trap log).
//!
//! Three ISA variants, each a test against each QEMU, the `-cpu`/`--cpu`
//! recorded with every program: `random_programs_match_qemu` (RV64IMA, `-cpu
//! rv64,c=off,zba=off,zbb=off,zbs=off`), `…_rvc` (the same programs with RVC
//! encodings wherever an instruction has one, `c=on`) and `…_zb` (Zba, Zbb
//! and Zbs instructions among the ALU ops).
//!
//! Knobs (environment), besides those of `tests/common/diff.rs`
//! (`VCPULAB_DIFF_COUNT` — default 300 per test —, `_SEED`, `_START`,
//! `_SHRINK`):
//! - `VCPULAB_DIFF_SKIP`: debugging aid, a comma-separated list of program
//!   classes not to generate (`reservation`: the LR/SC reservation quirks;
//!   `smc`: self-modifying code; `loops`: loop units), to look past a known
//!   difference. The test prints a loud note when it is set; CI never sets it.
//!
//! On a mismatch, the ELF, its listing and both outputs are written to
//! `target/qemu_diff-failures/<qemu>-<isa>/`, and the report names the first
//! differing line, the body instructions that likely caused it, and the
//! shortest prefix of the program that still differs.

mod common;

use common::RunOut;
use common::asm::Isa;
use common::diff::{self, Family};
use common::qemu;
use common::randprog::{GenOptions, Program};
use libtest_mimic::Trial;

const DEFAULT_SEED: u64 = 0x7635_7075_6c61_6231; // "v5pulab1"
const DEFAULT_COUNT: usize = 300;

/// Generator switches from `VCPULAB_DIFF_SKIP`.
fn gen_options(isa: Isa) -> GenOptions {
    let mut o = GenOptions {
        isa,
        ..GenOptions::default()
    };
    if let Ok(skip) = std::env::var("VCPULAB_DIFF_SKIP") {
        println!(
            "qemu_diff: NOTE: VCPULAB_DIFF_SKIP={skip:?}: some program classes are not generated"
        );
        for class in skip.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match class {
                "reservation" => o.reservation_quirks = false,
                "smc" => o.self_modifying_code = false,
                "loops" => o.loops = false,
                other => panic!(
                    "VCPULAB_DIFF_SKIP: unknown class {other:?} (known: reservation, smc, loops)"
                ),
            }
        }
    }
    o
}

struct Plain {
    opts: GenOptions,
}

impl Family for Plain {
    type Prog = Program;
    fn name(&self) -> &'static str {
        "qemu_diff"
    }
    fn prefix(&self) -> &'static str {
        "VCPULAB_DIFF"
    }
    fn default_seed(&self) -> u64 {
        DEFAULT_SEED
    }
    fn default_count(&self) -> usize {
        DEFAULT_COUNT
    }
    fn isa(&self) -> Isa {
        self.opts.isa
    }
    fn generate(&self, seed: u64, kept: Option<&[usize]>) -> Program {
        // only prefixes: `kept` is always `0..k`
        Program::generate_with(seed, kept.map_or(usize::MAX, <[usize]>::len), self.opts)
    }
    fn subsets(&self) -> bool {
        false
    }
    fn units(&self, p: &Program) -> usize {
        p.units
    }
    fn elf(&self, p: &Program) -> Vec<u8> {
        p.elf()
    }
    fn listing(&self, p: &Program) -> String {
        p.listing()
    }
    fn explain(&self, p: &Program, q: &str, v: &str) -> String {
        p.explain(q, v)
    }
    fn body_text(&self, p: &Program) -> String {
        (0..p.units).map(|u| p.unit_text(u)).collect()
    }
    fn qemu_ok(&self, q: &RunOut) -> bool {
        q.code == Some(0) && !q.timed_out && q.stdout.ends_with(b"end\n")
    }
}

fn main() {
    let mut trials = vec![
        Trial::test("generator_is_deterministic_per_seed", || {
            common::randprog::self_test();
            Ok(())
        }),
        Trial::test("rvc_and_zb_encodings_match_the_assembler", || {
            common::asm::self_test_encodings();
            Ok(())
        }),
    ];
    for (test, isa) in [
        ("random_programs_match_qemu", Isa::BASE),
        ("random_programs_match_qemu_rvc", Isa::C),
        ("random_programs_match_qemu_zb", Isa::ZB),
    ] {
        for v in qemu::QemuVersion::ALL {
            let full = format!("{test}::{}", qemu::tag(v));
            trials.push(qemu::trial(test, v, move |q| {
                diff::run(
                    &Plain {
                        opts: gen_options(isa),
                    },
                    q,
                    &full,
                )
            }));
        }
    }
    qemu::main(trials, 1)
}
