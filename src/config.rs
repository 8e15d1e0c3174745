//! Run configuration: parsed and validated once, then trusted everywhere.
//!
//! QEMU analogue: the option parsing of `system/vl.c` and `qemu-options.hx`
//! (`-m`, `-icount`), with the same option names (two dashes here) and the
//! same checks, each failing with a message that names the bad value and what
//! was expected.

use std::path::PathBuf;

use serde::Serialize;

/// Guest address of the workload parameter block; slot `i` is the u64 at
/// `PARAM_BLOCK + 8 * i`.
pub const PARAM_BLOCK: u64 = 0x8010_0000;
/// Number of parameter slots.
pub const PARAM_SLOTS: usize = 64;

/// Named parameter slots (`--param NAME=VALUE`); any slot can also be named by
/// its number.
pub const PARAM_NAMES: &[(&str, usize)] = &[("iters", 0), ("inner", 1), ("delay", 2)];

/// A configuration error: one line for the user, exit status 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Parse a memory size as QEMU's `-m` does: a number with an optional binary
/// suffix `K`, `M`, `G`, `T` (optionally followed by `B` or `iB`); a bare
/// number means MiB.
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return err(format!(
            "invalid size '{s}': expected a number with an optional K, M, G or T suffix (e.g. 128M)"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError(format!("invalid size '{s}': number too large")))?;
    let shift = match suffix
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 20,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return err(format!(
                "invalid size '{s}': unknown suffix '{suffix}' (expected K, M, G or T)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| ConfigError(format!("invalid size '{s}': too large")))
}

/// Parse `--timeout SECONDS`: a positive, finite number of seconds (decimal,
/// fractions allowed) whose deadline the host clock can represent.
pub fn parse_timeout(s: &str) -> Result<std::time::Duration, ConfigError> {
    let bad = |why: &str| {
        err(format!(
            "invalid --timeout '{s}': {why}; expected a positive number of seconds (e.g. 1 or 0.5)"
        ))
    };
    let Ok(t) = s.trim().parse::<f64>() else {
        return bad("not a number");
    };
    if !t.is_finite() {
        return bad("not finite");
    }
    if t <= 0.0 {
        return bad("not positive");
    }
    let Ok(d) = std::time::Duration::try_from_secs_f64(t) else {
        return bad("too large");
    };
    if d.is_zero() {
        return bad("shorter than 1 ns");
    }
    if std::time::Instant::now().checked_add(d).is_none() {
        return bad("too large for the host clock");
    }
    Ok(d)
}

/// The CPU topology of `--smp` (QEMU's `-smp`): recorded in the report; the
/// machine has `cpus` harts, one per vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SmpTopology {
    /// Harts (vCPUs) at start.
    pub cpus: usize,
    /// Sockets.
    pub sockets: usize,
    /// Cores per socket.
    pub cores: usize,
    /// Threads per core.
    pub threads: usize,
    /// Most CPUs (hot-plug is not modelled: at most `cpus` run).
    pub maxcpus: usize,
}

/// Parse `--smp N[,cpus=N][,sockets=S][,cores=C][,threads=T][,maxcpus=M]` with
/// QEMU's rules (`smp_parse` in `hw/core/machine-smp.c`): missing counts are
/// derived (preferring cores), `sockets × cores × threads` must equal
/// `maxcpus`, `maxcpus` defaults to `cpus` and may not be smaller; and
/// `virt`'s limits: at most [`MAX_SMP`] CPUs and 8 sockets.
pub fn parse_smp(s: &str) -> Result<SmpTopology, ConfigError> {
    let bad = |why: &str| ConfigError(format!("invalid --smp '{s}': {why}"));
    let (mut cpus, mut sockets, mut cores, mut threads, mut maxcpus) =
        (None, None, None, None, None);
    for (i, part) in s.split(',').enumerate() {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None if i == 0 => ("cpus", part.trim()),
            None => return Err(bad(&format!("'{part}' is not KEY=VALUE"))),
        };
        let n: usize = match v.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(bad(&format!("{k}='{v}' is not a positive number"))),
        };
        let slot = match k {
            "cpus" => &mut cpus,
            "sockets" => &mut sockets,
            "cores" => &mut cores,
            "threads" => &mut threads,
            "maxcpus" => &mut maxcpus,
            _ => {
                return Err(bad(&format!(
                    "unknown key '{k}' (expected cpus, sockets, cores, threads, maxcpus)"
                )));
            }
        };
        if slot.replace(n).is_some() {
            return Err(bad(&format!("{k} given twice")));
        }
    }
    let given = |o: Option<usize>| o.unwrap_or(1);
    let max = maxcpus
        .or(cpus)
        .unwrap_or_else(|| given(sockets) * given(cores) * given(threads));
    let threads_n = threads.unwrap_or(1);
    let (sockets_n, cores_n) = match (sockets, cores) {
        (Some(s), Some(c)) => (s, c),
        (Some(s), None) => (s, (max / (s * threads_n)).max(1)),
        (None, Some(c)) => ((max / (c * threads_n)).max(1), c),
        (None, None) => (1, (max / threads_n).max(1)),
    };
    let cpus_n = cpus.unwrap_or(max);
    if sockets_n * cores_n * threads_n != max {
        return Err(bad(&format!(
            "sockets ({sockets_n}) * cores ({cores_n}) * threads ({threads_n}) != maxcpus ({max})"
        )));
    }
    if max < cpus_n {
        return Err(bad(&format!(
            "maxcpus ({max}) must be at least cpus ({cpus_n})"
        )));
    }
    if max > MAX_SMP {
        return Err(bad(&format!("at most {MAX_SMP} CPUs on the virt machine")));
    }
    if sockets_n > 8 {
        return Err(bad("at most 8 sockets on the virt machine"));
    }
    Ok(SmpTopology {
        cpus: cpus_n,
        sockets: sockets_n,
        cores: cores_n,
        threads: threads_n,
        maxcpus: max,
    })
}

/// Most harts a machine may have (`--smp`): QEMU `virt`'s `VIRT_CPUS_MAX`.
pub const MAX_SMP: usize = 512;

/// Largest `--memory`: 64 GiB (guest RAM is mapped lazily, so only what the
/// guest touches costs host memory).
pub const MAX_MEMORY: u64 = 64 << 30;

/// Parse `--param NAME=VALUE` into (slot, value). VALUE is decimal or 0x-hex.
pub fn parse_param(s: &str) -> Result<(usize, u64), ConfigError> {
    let Some((name, value)) = s.split_once('=') else {
        return err(format!(
            "invalid --param '{s}': expected NAME=VALUE (NAME a slot number 0..{} or one of iters, inner, delay)",
            PARAM_SLOTS - 1
        ));
    };
    let slot = match PARAM_NAMES.iter().find(|(n, _)| *n == name) {
        Some(&(_, i)) => i,
        None => match name.parse::<usize>() {
            Ok(i) if i < PARAM_SLOTS => i,
            _ => {
                return err(format!(
                    "invalid --param name '{name}': expected a slot number 0..{} or one of iters, inner, delay",
                    PARAM_SLOTS - 1
                ));
            }
        },
    };
    let v = value.trim();
    let parsed = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        v.parse::<u64>()
    };
    match parsed {
        Ok(x) => Ok((slot, x)),
        Err(_) => err(format!(
            "invalid --param value '{value}' for '{name}': expected an unsigned 64-bit number (decimal or 0x hex)"
        )),
    }
}

/// icount shift: a fixed value or QEMU's adaptive `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IcountShift {
    /// VIRTUAL advances `2^N` ns per instruction.
    Fixed(u32),
    /// Adaptive (`icount_adjust`), starting at 3.
    Auto,
}

/// `--icount shift=N|auto[,sleep=on|off][,align=on|off][,smp=rr|global|local[,quantum=Q]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IcountConfig {
    /// The shift.
    pub shift: IcountShift,
    /// Idle time follows real time (`on`, QEMU's default) or jumps to the next
    /// deadline (`off`).
    pub sleep: bool,
    /// Sleep the vCPU when the guest gets ahead of real time.
    pub align: bool,
    /// What guest time means with several vCPUs (`smp=`).
    pub smp: IcountSmp,
}

/// The SMP icount semantics (`--icount ...,smp=MODE[,quantum=Q]`): what
/// guest time means with several vCPUs. `docs/time.md` has a section per
/// mode with what it guarantees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IcountSmp {
    /// QEMU's: one thread runs every vCPU round-robin, one counter
    /// (`--accel tcg,thread=single`, the default).
    #[default]
    Rr,
    /// What QEMU would get by allowing MTTCG with icount: one thread per
    /// vCPU, all adding to one atomic counter (`thread=multi`).
    Global,
    /// Per-vCPU instruction clocks, one thread per vCPU (`thread=multi`).
    /// With a quantum (virtual ns), no vCPU runs more than a quantum ahead
    /// of the others (a barrier at each quantum's end) and device accesses
    /// take effect in virtual-time order; without, the clocks run free.
    Local {
        /// The quantum in virtual ns; `None`: free-running clocks.
        quantum_ns: Option<u64>,
    },
}

impl IcountSmp {
    /// The mode's name as `smp=` spells it.
    pub fn name(self) -> &'static str {
        match self {
            IcountSmp::Rr => "rr",
            IcountSmp::Global => "global",
            IcountSmp::Local { .. } => "local",
        }
    }

    /// Whether the mode runs one thread per vCPU.
    pub fn parallel(self) -> bool {
        self != IcountSmp::Rr
    }
}

/// Parse a virtual duration: a whole number of ns, or with a suffix `ns`,
/// `us`, `ms` or `s` (`quantum=100us`).
pub fn parse_virtual_ns(v: &str) -> Option<u64> {
    let (num, mul) = [
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
    ]
    .iter()
    .find_map(|&(suf, mul)| v.strip_suffix(suf).map(|n| (n, mul)))
    .unwrap_or((v, 1));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// QEMU's `MAX_ICOUNT_SHIFT`.
pub const MAX_ICOUNT_SHIFT: u32 = 10;

fn on_off(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => err(format!(
            "invalid --icount {key}='{v}': expected 'on' or 'off'"
        )),
    }
}

impl IcountConfig {
    /// Parse the `--icount` argument with QEMU's checks: shift 0..=10 or auto,
    /// no unknown keys, `align=on` not with `sleep=off`, `shift=auto` not with
    /// `align=on`. A bare number is the shift (QEMU's implied `shift=`).
    pub fn parse(s: &str) -> Result<IcountConfig, ConfigError> {
        let mut shift = None;
        let mut sleep = true;
        let mut align = false;
        let mut smp = IcountSmp::Rr;
        let mut quantum = None;
        for (n, part) in s.split(',').enumerate() {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k, v),
                None if n == 0 => ("shift", part),
                None => {
                    return err(format!(
                        "invalid --icount option '{part}': expected KEY=VALUE (keys: shift, sleep, align, smp, quantum)"
                    ));
                }
            };
            match k {
                "shift" => {
                    shift = Some(if v == "auto" {
                        IcountShift::Auto
                    } else {
                        match v.parse::<u32>() {
                            Ok(n) if n <= MAX_ICOUNT_SHIFT => IcountShift::Fixed(n),
                            Ok(n) => {
                                return err(format!(
                                    "invalid --icount shift={n}: expected 0..={MAX_ICOUNT_SHIFT} or 'auto'"
                                ));
                            }
                            Err(_) => {
                                return err(format!(
                                    "invalid --icount shift='{v}': expected 0..={MAX_ICOUNT_SHIFT} or 'auto'"
                                ));
                            }
                        }
                    })
                }
                "sleep" => sleep = on_off(k, v)?,
                "align" => align = on_off(k, v)?,
                "smp" => {
                    smp = match v {
                        "rr" => IcountSmp::Rr,
                        "global" => IcountSmp::Global,
                        "local" => IcountSmp::Local { quantum_ns: None },
                        _ => {
                            return err(format!(
                                "invalid --icount smp='{v}': expected rr, global or local"
                            ));
                        }
                    }
                }
                "quantum" => {
                    quantum = Some(match parse_virtual_ns(v) {
                        Some(0) => {
                            return err(format!(
                                "invalid --icount quantum={v}: the quantum must be more than 0"
                            ));
                        }
                        Some(q) if q <= i64::MAX as u64 / 4 => q,
                        _ => {
                            return err(format!(
                                "invalid --icount quantum='{v}': expected a positive virtual time: N (ns) or N with ns, us, ms or s"
                            ));
                        }
                    })
                }
                _ => {
                    return err(format!(
                        "invalid --icount option '{k}': unknown key (expected shift, sleep, align, smp or quantum)"
                    ));
                }
            }
        }
        let Some(shift) = shift else {
            return err(
                "invalid --icount: 'shift' is required (shift=N with N in 0..=10, or shift=auto)",
            );
        };
        if align && !sleep {
            return err("invalid --icount: align=on and sleep=off are incompatible");
        }
        if align && shift == IcountShift::Auto {
            return err("invalid --icount: shift=auto and align=on are incompatible");
        }
        if let Some(q) = quantum {
            match &mut smp {
                IcountSmp::Local { quantum_ns } => *quantum_ns = Some(q),
                other => {
                    return err(format!(
                        "invalid --icount quantum={q}: quantum needs smp=local (smp={} has none)",
                        other.name()
                    ));
                }
            }
        }
        if matches!(smp, IcountSmp::Local { .. }) && shift == IcountShift::Auto {
            return err(
                "invalid --icount: shift=auto and smp=local are incompatible (the adaptive shift follows one clock; smp=local keeps one per vCPU)",
            );
        }
        Ok(IcountConfig {
            shift,
            sleep,
            align,
            smp,
        })
    }
}

/// Who runs VIRTUAL timers when a vCPU reaches a deadline under icount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IcountTimers {
    /// The vCPU thread itself, under the BQL (QEMU's way).
    #[default]
    Vcpu,
    /// A hand-off: the vCPU asks the iothread to run them and waits, stopped
    /// at the deadline, until it has.
    Iothread,
}

/// How vCPUs are mapped to host threads (`--accel tcg,thread=...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadMode {
    /// One host thread runs every vCPU in turn (QEMU's round-robin TCG,
    /// `tcg-accel-ops-rr.c`).
    Single,
    /// One host thread per vCPU (MTTCG, `tcg-accel-ops-mttcg.c`).
    Multi,
}

/// The instruction budget of one round-robin turn under icount
/// (`--accel tcg,rr-turn=...`; the default follows `--compat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RrTurn {
    /// QEMU 8.1 and later: the round's budget limit divided by the number
    /// of vCPUs (the whole limit when that rounds to 0), and never more than
    /// the limit computed afresh when the turn starts.
    Split,
    /// QEMU 7.2: the whole budget limit, computed afresh, to each turn.
    Whole,
}

/// The accelerator's options (`--accel tcg[,thread=single|multi][,rr-turn=split|whole]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AccelConfig {
    /// Thread mode, resolved: QEMU's default is `multi` without icount and
    /// `single` with it.
    pub thread: ThreadMode,
    /// The round-robin turn under icount (only `thread=single` uses it).
    pub rr_turn: RrTurn,
}

impl AccelConfig {
    /// Parse an `--accel` value (`None`: not given) and resolve the
    /// defaults against icount (`icount`: its SMP mode, `None` without
    /// icount) and `--compat`. `thread=multi` with `smp=rr` icount is refused,
    /// as QEMU refuses MTTCG with icount; `smp=global|local` need it.
    pub fn parse(
        s: Option<&str>,
        icount: Option<IcountSmp>,
        compat: Compat,
    ) -> Result<AccelConfig, ConfigError> {
        let mut thread = None;
        let mut rr_turn = None;
        if let Some(s) = s {
            let mut parts = s.split(',');
            match parts.next() {
                Some("tcg") => {}
                Some(a) => {
                    return err(format!(
                        "invalid --accel '{s}': unknown accelerator '{a}' (expected tcg)"
                    ));
                }
                None => unreachable!("split yields at least one item"),
            }
            for kv in parts {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    ConfigError(format!(
                        "invalid --accel '{s}': expected KEY=VALUE, got '{kv}'"
                    ))
                })?;
                match k {
                    "thread" if thread.is_none() => {
                        thread = Some(match v {
                            "single" => ThreadMode::Single,
                            "multi" => ThreadMode::Multi,
                            _ => {
                                return err(format!(
                                    "invalid --accel '{s}': thread={v}: expected single or multi"
                                ));
                            }
                        })
                    }
                    "rr-turn" if rr_turn.is_none() => {
                        rr_turn = Some(match v {
                            "split" => RrTurn::Split,
                            "whole" => RrTurn::Whole,
                            _ => {
                                return err(format!(
                                    "invalid --accel '{s}': rr-turn={v}: expected split or whole"
                                ));
                            }
                        })
                    }
                    "thread" | "rr-turn" => {
                        return err(format!("invalid --accel '{s}': {k} given twice"));
                    }
                    _ => {
                        return err(format!(
                            "invalid --accel '{s}': unknown option '{k}' (expected thread, rr-turn)"
                        ));
                    }
                }
            }
        }
        // QEMU's default: multi without icount, single with it. The
        // parallel icount modes are asked for by name, and say which thread
        // mode they need rather than picking it silently.
        let thread = thread.unwrap_or(if icount.is_some() {
            ThreadMode::Single
        } else {
            ThreadMode::Multi
        });
        match (icount, thread) {
            (Some(IcountSmp::Rr), ThreadMode::Multi) => {
                return err(format!(
                    "invalid --accel '{}': no MTTCG when icount is enabled (QEMU refuses it too; use thread=single, or --icount ...,smp=global|local for the parallel modes)",
                    s.unwrap_or("tcg,thread=multi")
                ));
            }
            (Some(m), ThreadMode::Single) if m.parallel() => {
                return err(format!(
                    "invalid --icount smp={}: needs one thread per vCPU (--accel tcg,thread=multi)",
                    m.name()
                ));
            }
            _ => {}
        }
        Ok(AccelConfig {
            thread,
            rr_turn: rr_turn.unwrap_or(match compat {
                Compat::Qemu10_0 => RrTurn::Split,
                Compat::Qemu7_2 => RrTurn::Whole,
            }),
        })
    }

    /// The default for a run without `--accel` and without icount.
    pub fn multi() -> AccelConfig {
        AccelConfig {
            thread: ThreadMode::Multi,
            rr_turn: RrTurn::Split,
        }
    }
}

/// Which QEMU's behaviour to reproduce where QEMU versions differ
/// (`--compat`). The list of differences is in `docs/machine.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Compat {
    /// QEMU 10.0 (Debian 13; the default reference).
    #[default]
    #[serde(rename = "qemu-10.0")]
    Qemu10_0,
    /// QEMU 7.2 (Debian 12).
    #[serde(rename = "qemu-7.2")]
    Qemu7_2,
}

impl Compat {
    /// Every accepted spelling, for messages.
    pub const NAMES: &'static str = "qemu-10.0, qemu-7.2";

    /// Parse `qemu-10.0` or `qemu-7.2`.
    pub fn parse(s: &str) -> Result<Compat, ConfigError> {
        match s {
            "qemu-10.0" => Ok(Compat::Qemu10_0),
            "qemu-7.2" => Ok(Compat::Qemu7_2),
            _ => err(format!(
                "invalid --compat '{s}': expected one of {}",
                Compat::NAMES
            )),
        }
    }

    /// The name as `--compat` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compat::Qemu10_0 => "qemu-10.0",
            Compat::Qemu7_2 => "qemu-7.2",
        }
    }
}

/// The hart's ISA extensions beyond RV64IMA + Zicsr + Zifencei (`--cpu`,
/// QEMU's `-cpu rv64,c=false,zba=false,...`). All on by default, as on QEMU's
/// `rv64` hart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CpuConfig {
    /// C: compressed instructions (IALIGN=16).
    pub c: bool,
    /// Zba: address generation (`sh1add`, `add.uw`, ...).
    pub zba: bool,
    /// Zbb: basic bit manipulation (`andn`, `clz`, `rev8`, ...).
    pub zbb: bool,
    /// Zbs: single-bit instructions (`bset`, `bext`, ...).
    pub zbs: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            c: true,
            zba: true,
            zbb: true,
            zbs: true,
        }
    }
}

impl CpuConfig {
    /// Parse `rv64[,EXT=on|off|true|false|yes|no]...` with EXT one of c, zba,
    /// zbb, zbs (QEMU's `-cpu` property syntax).
    pub fn parse(s: &str) -> Result<CpuConfig, ConfigError> {
        let mut parts = s.split(',');
        let model = parts.next().unwrap_or("");
        if model != "rv64" {
            return err(format!(
                "invalid --cpu model '{model}': expected 'rv64' (e.g. rv64,c=off)"
            ));
        }
        let mut cpu = CpuConfig::default();
        for part in parts {
            let Some((k, v)) = part.split_once('=') else {
                return err(format!(
                    "invalid --cpu property '{part}': expected EXT=on|off (EXT one of c, zba, zbb, zbs)"
                ));
            };
            let on = match v {
                "on" | "yes" | "true" => true,
                "off" | "no" | "false" => false,
                _ => {
                    return err(format!(
                        "invalid --cpu {k}='{v}': expected on, off, true or false"
                    ));
                }
            };
            match k {
                "c" => cpu.c = on,
                "zba" => cpu.zba = on,
                "zbb" => cpu.zbb = on,
                "zbs" => cpu.zbs = on,
                _ => {
                    return err(format!(
                        "invalid --cpu property '{k}': unknown extension (expected c, zba, zbb or zbs)"
                    ));
                }
            }
        }
        Ok(cpu)
    }

    /// The QEMU `-cpu` argument that selects the same hart.
    pub fn qemu_arg(&self) -> String {
        let mut s = String::from("rv64");
        for (name, on) in [
            ("c", self.c),
            ("zba", self.zba),
            ("zbb", self.zbb),
            ("zbs", self.zbs),
        ] {
            s.push_str(&format!(",{name}={}", if on { "true" } else { "false" }));
        }
        s
    }
}

/// The BQL axis: when it is taken, what lock it is, how it is profiled
/// (`--bql`, `--bql-lock`, `--bql-hold-sample`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BqlConfig {
    /// When the BQL is taken.
    pub policy: crate::sync::bql::BqlPolicy,
    /// The lock under it.
    pub lock: crate::sync::bql::LockKind,
    /// One acquisition in this many (per call site, a power of two) has its
    /// hold time measured.
    pub hold_sample: u32,
}

impl Default for BqlConfig {
    fn default() -> Self {
        BqlConfig {
            policy: Default::default(),
            lock: Default::default(),
            hold_sample: crate::sync::bql::profile::DEFAULT_HOLD_SAMPLE,
        }
    }
}

/// Parse `--bql-hold-sample`: a power of two from 1 to 2^20.
pub fn parse_hold_sample(s: &str) -> Result<u32, ConfigError> {
    match s.trim().parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1 << 20 => Ok(n),
        _ => err(format!(
            "invalid --bql-hold-sample '{s}': expected a power of two from 1 to 1048576"
        )),
    }
}

/// The machine's configuration.
#[derive(Clone, Debug, Serialize)]
pub struct MachineConfig {
    /// The guest ELF; `None` runs the built-in compute-loop guest.
    pub kernel: Option<PathBuf>,
    /// RAM size in bytes.
    #[serde(rename = "memory_bytes")]
    pub memory: u64,
    /// Number of harts.
    pub smp: usize,
    /// The `--smp` topology as given (harts = `topology.cpus` = `smp`).
    pub topology: SmpTopology,
    /// Parameter block slots to fill.
    pub params: Vec<(usize, u64)>,
    /// icount, if enabled.
    pub icount: Option<IcountConfig>,
    /// Who runs VIRTUAL timers at a deadline under icount.
    pub icount_timers: IcountTimers,
    /// The hart's ISA extensions.
    pub cpu: CpuConfig,
    /// Which QEMU version's behaviour to reproduce.
    pub compat: Compat,
    /// The BQL policy, lock kind and profile.
    pub bql: BqlConfig,
    /// How vCPU threads are woken (`--kick`).
    pub kick: crate::sync::kick::KickKind,
    /// Thread mode and round-robin turn (`--accel`).
    pub accel: AccelConfig,
}

impl MachineConfig {
    /// Check the ranges that depend on several options.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.memory < 2 << 20 || self.memory % 4096 != 0 {
            return err(format!(
                "invalid --memory {}: expected at least 2M and a multiple of 4K",
                self.memory
            ));
        }
        if self.memory > MAX_MEMORY {
            return err(format!(
                "invalid --memory {}: at most 64G is supported",
                self.memory
            ));
        }
        if self.smp == 0 || self.smp > MAX_SMP {
            return err(format!(
                "invalid --smp {}: expected 1..={MAX_SMP}",
                self.smp
            ));
        }
        if let Some(IcountConfig {
            smp: IcountSmp::Local { quantum_ns },
            ..
        }) = self.icount
        {
            if self.bql.policy == crate::sync::bql::BqlPolicy::Always {
                return err(
                    "invalid --bql always with --icount smp=local: the vCPUs run in parallel between their own clocks' barriers, and a vCPU that holds the BQL while it runs would keep the others from them (use mmio or device)",
                );
            }
            if quantum_ns.is_some() && self.icount_timers == IcountTimers::Iothread {
                return err(
                    "invalid --icount-timers iothread with --icount smp=local,quantum=Q: the VIRTUAL timers run at the quantum barrier, where every vCPU is stopped (use vcpu)",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128"), Ok(128 << 20));
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn timeouts_and_smp() {
        assert_eq!(
            parse_timeout("1.5"),
            Ok(std::time::Duration::from_millis(1500))
        );
        for bad in ["1e30", "-1", "0", "NaN", "inf", "-inf", "x", "", "1e-300"] {
            let e = parse_timeout(bad).unwrap_err();
            assert!(e.0.contains(&format!("'{bad}'")), "{e}");
        }
        assert_eq!(parse_smp("4").map(|t| t.cpus), Ok(4));
        let t = parse_smp("4,sockets=2,cores=2").unwrap();
        assert_eq!(
            (t.cpus, t.sockets, t.cores, t.threads, t.maxcpus),
            (4, 2, 2, 1, 4)
        );
        let t = parse_smp("2,maxcpus=8,cores=4").unwrap();
        assert_eq!((t.cpus, t.sockets, t.cores, t.maxcpus), (2, 2, 4, 8));
        let t = parse_smp("sockets=2,cores=3,threads=2").unwrap();
        assert_eq!((t.cpus, t.maxcpus), (12, 12));
        assert!(parse_smp("4,sockets=3,cores=2").is_err(), "3*2 != 4");
        assert!(parse_smp("4,maxcpus=2").is_err());
        assert!(parse_smp("513").is_err());
        assert!(parse_smp("16,sockets=16").is_err(), "virt: 8 sockets");
        assert!(parse_smp("4,cpus=4").is_err(), "given twice");
        assert!(parse_smp("4,dies=2").is_err());
        assert!(parse_smp("4,cores").is_err());
        for bad in ["0", "513", "-1", "99999999999999999999999", "x"] {
            assert!(parse_smp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params() {
        assert_eq!(parse_param("iters=10"), Ok((0, 10)));
        assert_eq!(parse_param("3=0x10"), Ok((3, 16)));
        assert!(parse_param("64=1").is_err());
        assert!(parse_param("foo=1").is_err());
        assert!(parse_param("iters").is_err());
        assert!(parse_param("iters=-1").is_err());
    }

    #[test]
    fn icount_options() {
        let c = IcountConfig::parse("shift=3,sleep=off").unwrap();
        assert_eq!(
            c,
            IcountConfig {
                shift: IcountShift::Fixed(3),
                sleep: false,
                align: false,
                smp: IcountSmp::Rr,
            }
        );
        assert_eq!(
            IcountConfig::parse("7").unwrap().shift,
            IcountShift::Fixed(7)
        );
        assert_eq!(
            IcountConfig::parse("shift=auto").unwrap().shift,
            IcountShift::Auto
        );
        assert!(
            IcountConfig::parse("shift=0").unwrap().sleep,
            "sleep defaults to on (QEMU's code)"
        );
        assert!(IcountConfig::parse("shift=11").is_err());
        assert!(IcountConfig::parse("shift=-1").is_err());
        assert!(IcountConfig::parse("shift=x").is_err());
        assert!(IcountConfig::parse("shift=1,bogus=on").is_err());
        assert!(IcountConfig::parse("shift=1,sleep=maybe").is_err());
        assert!(IcountConfig::parse("shift=1,align=on,sleep=off").is_err());
        assert!(IcountConfig::parse("shift=auto,align=on").is_err());
        assert!(IcountConfig::parse("sleep=off").is_err());
        assert!(IcountConfig::parse("shift=2,align=on").is_ok());
        assert_eq!(
            IcountConfig::parse("shift=3,smp=rr").unwrap().smp,
            IcountSmp::Rr
        );
        assert_eq!(
            IcountConfig::parse("shift=3,smp=global").unwrap().smp,
            IcountSmp::Global
        );
        assert_eq!(
            IcountConfig::parse("shift=3,smp=local").unwrap().smp,
            IcountSmp::Local { quantum_ns: None }
        );
        for (spelled, ns) in [
            ("1000", 1000),
            ("250ns", 250),
            ("100us", 100_000),
            ("2ms", 2_000_000),
            ("1s", 1_000_000_000),
        ] {
            // The quantum may come before or after smp=local.
            for arg in [
                format!("shift=0,smp=local,quantum={spelled}"),
                format!("shift=0,quantum={spelled},smp=local"),
            ] {
                assert_eq!(
                    IcountConfig::parse(&arg).unwrap().smp,
                    IcountSmp::Local {
                        quantum_ns: Some(ns)
                    },
                    "{arg}"
                );
            }
        }
        for (bad, says) in [
            ("shift=3,smp=fair", "expected rr, global or local"),
            ("shift=3,quantum=1000", "needs smp=local"),
            ("shift=3,smp=global,quantum=1000", "needs smp=local"),
            ("shift=3,smp=rr,quantum=1us", "needs smp=local"),
            ("shift=3,smp=local,quantum=0", "more than 0"),
            ("shift=3,smp=local,quantum=0ms", "more than 0"),
            (
                "shift=3,smp=local,quantum=-5",
                "expected a positive virtual time",
            ),
            (
                "shift=3,smp=local,quantum=1.5ms",
                "expected a positive virtual time",
            ),
            (
                "shift=3,smp=local,quantum=ms",
                "expected a positive virtual time",
            ),
            (
                "shift=3,smp=local,quantum=5h",
                "expected a positive virtual time",
            ),
            ("shift=auto,smp=local", "shift=auto and smp=local"),
            ("smp=rr", "'shift' is required"),
            ("smp=local,quantum=1ms", "'shift' is required"),
        ] {
            let e = IcountConfig::parse(bad).unwrap_err();
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn accel_options() {
        let c72 = Compat::Qemu7_2;
        let c10 = Compat::Qemu10_0;
        const RR: Option<IcountSmp> = Some(IcountSmp::Rr);
        let local = Some(IcountSmp::Local { quantum_ns: None });
        for m in [Some(IcountSmp::Global), local] {
            let a = AccelConfig::parse(Some("tcg,thread=multi"), m, c10).unwrap();
            assert_eq!(a.thread, ThreadMode::Multi);
            for spelled in [None, Some("tcg"), Some("tcg,thread=single")] {
                let e = AccelConfig::parse(spelled, m, c10).unwrap_err();
                assert!(e.0.contains("needs one thread per vCPU"), "{e}");
            }
        }
        let a = AccelConfig::parse(None, None, c10).unwrap();
        assert_eq!((a.thread, a.rr_turn), (ThreadMode::Multi, RrTurn::Split));
        let a = AccelConfig::parse(None, RR, c72).unwrap();
        assert_eq!((a.thread, a.rr_turn), (ThreadMode::Single, RrTurn::Whole));
        let a = AccelConfig::parse(Some("tcg,thread=single"), None, c10).unwrap();
        assert_eq!(a.thread, ThreadMode::Single);
        let a = AccelConfig::parse(Some("tcg,rr-turn=whole"), RR, c10).unwrap();
        assert_eq!((a.thread, a.rr_turn), (ThreadMode::Single, RrTurn::Whole));
        assert_eq!(
            AccelConfig::parse(Some("tcg"), RR, c10).unwrap().thread,
            ThreadMode::Single
        );
        let e = AccelConfig::parse(Some("tcg,thread=multi"), RR, c10).unwrap_err();
        assert!(e.0.contains("no MTTCG when icount"), "{e}");
        for bad in [
            "kvm",
            "tcg,thread=both",
            "tcg,thread",
            "tcg,threads=multi",
            "tcg,thread=single,thread=multi",
            "tcg,rr-turn=half",
            "",
        ] {
            let e = AccelConfig::parse(Some(bad), None, c10).unwrap_err();
            assert!(e.0.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_and_compat_options() {
        assert_eq!(CpuConfig::parse("rv64"), Ok(CpuConfig::default()));
        let c = CpuConfig::parse("rv64,c=false,zbb=off").unwrap();
        assert!(!c.c && !c.zbb && c.zba && c.zbs);
        assert_eq!(c.qemu_arg(), "rv64,c=false,zba=true,zbb=false,zbs=true");
        assert!(CpuConfig::parse("rv32").is_err());
        assert!(CpuConfig::parse("rv64,c").is_err());
        assert!(CpuConfig::parse("rv64,f=on").is_err());
        assert!(CpuConfig::parse("rv64,c=maybe").is_err());
        assert_eq!(Compat::parse("qemu-7.2"), Ok(Compat::Qemu7_2));
        assert_eq!(Compat::parse("qemu-10.0"), Ok(Compat::Qemu10_0));
        assert!(Compat::parse("qemu-9").is_err());
        assert_eq!(Compat::default().name(), "qemu-10.0");
    }
}
