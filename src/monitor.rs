//! The monitor: a small QEMU-style human monitor (HMP) served by the iothread.
//!
//! QEMU analogues: `monitor/hmp.c` (reading a line, looking the command up in the command
//! table, the banner and the `(qemu) ` prompt), `monitor/hmp-cmds.c` (`hmp_stop`,
//! `hmp_cont`, `hmp_info_status`, `hmp_quit`) and the `qapi` query commands whose data
//! those print (`query-status`). `info clocks` and `info timers` have no QEMU counterpart;
//! they show the state of [`crate::time::clock`] and [`crate::time::timer`] that this laboratory is
//! about.
//!
//! # Commands
//!
//! One per line, surrounding whitespace ignored, empty lines ignored:
//!
//! | command | effect |
//! |---|---|
//! | `help`, `?` | list the commands (`help info`: the `info` subcommands) |
//! | `stop`, `s` | pause the machine ([`Machine::pause`], QEMU's `vm_stop`): vCPUs park, VIRTUAL freezes |
//! | `cont`, `c` | resume it ([`Machine::resume`], QEMU's `vm_start`) |
//! | `info status` | `VM status: running` or `VM status: paused`, as QEMU prints it |
//! | `info clocks` | the four clocks in ns; under icount the shift, bias and raw instruction count; under `smp=local` each vCPU's own clock |
//! | `info timers` | per clock: timers pending, the next expiry and its distance from now |
//! | `info sync-profile [-m] [-n] [max]` | the BQL's profile, QEMU's QSP table (Type, Object, Call site, Wait Time (s), Count, Average (us)) plus hold time: at most `max` rows (10), sorted by total wait, or by mean wait with `-m`; `-n` does not coalesce lock objects sharing a call site |
//! | `sync-profile [on\|off\|reset]` | switch the profile on or off, or count from now (without an argument: say whether it is on) |
//! | `quit`, `q` | shut down with reason `quit`, exit status 0 |
//!
//! Anything else answers `unknown command: 'LINE'`; arguments after a command that takes
//! none answer QEMU's `Error: extraneous characters at the end of line`.
//!
//! Parsing ([`parse`]) and execution ([`execute`], [`handle_line`]) are plain functions over
//! the [`Vm`] trait that return text, so they are tested without sockets; [`Machine`]
//! implements [`Vm`].
//!
//! # Transports
//!
//! [`MonitorSpec`] is the `--monitor` option:
//!
//! * `stdio` ([`StdioMonitor`]): commands are read from standard input; the banner, the
//!   prompts and the replies go to **standard error**, because standard output carries the
//!   guest's UART. Standard input is registered with the iothread's poller as it is (it is
//!   *not* switched to `O_NONBLOCK`, which would leak to the shell sharing the terminal):
//!   after each readiness event it is drained with one `read` per zero-timeout `poll(2)`
//!   that reports it readable, so no read blocks. Standard input that epoll refuses (a
//!   regular file, `/dev/null`) is copied by a helper thread into a pipe that is polled
//!   instead. End of input removes the monitor; it does not quit the machine.
//! * `unix:PATH` ([`UnixMonitor`]): a listening Unix socket at PATH. A stale socket file is
//!   removed first; an existing PATH that is not a socket is refused. Any number of clients
//!   may be connected at once; each gets the banner and the `(vcpulab) ` prompt, and its
//!   replies on its own connection. The socket file is removed when the monitor is dropped
//!   (if it is still the one it bound).
//!
//! # Threads and locks
//!
//! Commands run on the iothread, without the BQL: every datum they read is an atomic or
//! behind its own lock, and `stop` must *not* hold the BQL, because it waits until every vCPU
//! has parked and a vCPU may need the BQL to finish its current MMIO access first (QEMU's
//! `vm_stop` drops the BQL in `qemu_cond_wait` for the same reason). While `stop` waits, the
//! iothread does not run timers; the wait ends at the vCPUs' next TB boundary.
//!
//! All connections of one Unix monitor share its single iothread token: after any event the
//! handler accepts every pending connection and drains every client, which is what
//! edge-triggered readiness requires anyway.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use mio::event::Event;
use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::config::IcountShift;
use crate::hw::machine::Machine;
use crate::iothread::{HandlerAction, IoHandler};
use crate::runstate::{ExitReason, ExitStatus};
use crate::time::clock::ClockType;
use crate::time::timer::TimerListGroup;

/// First line sent to every monitor (QEMU: `QEMU 7.2.0 monitor - type 'help' for more
/// information`).
pub const BANNER: &str = "vcpulab monitor - type 'help' for more information";

/// The prompt written before each command is read (QEMU: `(qemu) `).
pub const PROMPT: &str = "(vcpulab) ";

/// Longest accepted command line in bytes; longer input is discarded with an error.
pub const MAX_LINE: usize = 4096;

/// Unsent reply bytes above which a Unix client's input is no longer read.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Where the monitor listens (`--monitor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorSpec {
    /// Commands on stdin, replies on stderr.
    Stdio,
    /// A Unix socket listening at the path.
    Unix(PathBuf),
}

impl FromStr for MonitorSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stdio" => Ok(MonitorSpec::Stdio),
            _ => match s.strip_prefix("unix:") {
                Some("") => Err("--monitor unix:PATH needs a path".into()),
                Some(p) => Ok(MonitorSpec::Unix(PathBuf::from(p))),
                None => Err(format!("--monitor {s}: expected stdio or unix:PATH")),
            },
        }
    }
}

impl std::fmt::Display for MonitorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MonitorSpec::Stdio => f.write_str("stdio"),
            MonitorSpec::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl serde::Serialize for MonitorSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl MonitorSpec {
    /// Parses a `--monitor` argument and checks what can be checked before the machine
    /// starts (a `unix:` PATH that exists must be a socket). The error is one line.
    pub fn from_cli(s: &str) -> Result<MonitorSpec, String> {
        let spec: MonitorSpec = s.parse()?;
        if let MonitorSpec::Unix(p) = &spec {
            check_socket_path(p).map_err(|e| format!("--monitor {spec}: {e}"))?;
        }
        Ok(spec)
    }
}

/// Fails if `path` exists and is not a socket (a symbolic link counts as "not a socket").
fn check_socket_path(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the iothread handler for `spec`, serving `vm`.
pub fn handler<V: Vm + Send + Sync + 'static>(
    spec: &MonitorSpec,
    vm: Arc<V>,
) -> io::Result<Box<dyn IoHandler>> {
    Ok(match spec {
        MonitorSpec::Stdio => Box::new(StdioMonitor::new(vm, Box::new(io::stderr()))),
        MonitorSpec::Unix(p) => Box::new(
            UnixMonitor::bind(p, vm)
                .map_err(|e| io::Error::new(e.kind(), format!("--monitor {spec}: {e}")))?,
        ),
    })
}

/// The icount state shown by `info clocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcountInfo {
    /// Current shift (one instruction lasts `2^shift` ns).
    pub shift: u32,
    /// Whether the shift is adaptive (`shift=auto`).
    pub auto: bool,
    /// Bias in ns (`qemu_icount_bias`).
    pub bias: i64,
    /// Instructions counted so far, over all vCPUs (`icount_get_raw`; under
    /// `smp=local`, the sum of the counts the vCPUs published).
    pub raw: i64,
}

/// What the monitor needs from a machine; implemented by [`Machine`] (and by fakes in
/// tests).
pub trait Vm {
    /// Stops the machine and returns once it is stopped (QEMU's `vm_stop`).
    fn pause(&self);
    /// Resumes the machine (QEMU's `vm_start`).
    fn resume(&self);
    /// Whether the machine is paused.
    fn is_paused(&self) -> bool;
    /// Whether a shutdown was requested (the machine is going away).
    fn shutdown_requested(&self) -> bool;
    /// Current value of `clock` in ns.
    fn clock_ns(&self, clock: ClockType) -> i64;
    /// The icount state, under icount.
    fn icount(&self) -> Option<IcountInfo>;
    /// Under `--icount ...,smp=local`: each vCPU's own clock in ns, `None`
    /// for a halted one (it does not hold the machine's clock back).
    fn vcpu_clocks(&self) -> Option<Vec<Option<i64>>> {
        None
    }
    /// The timer lists.
    fn timers(&self) -> &TimerListGroup;
    /// Requests shutdown with reason `quit`, exit status 0, and wakes every vCPU.
    fn quit(&self);
    /// The BQL's profile.
    fn bql_profile(&self) -> &crate::sync::bql::Profile;
}

impl Vm for Machine {
    fn pause(&self) {
        Machine::pause(self);
    }

    fn resume(&self) {
        Machine::resume(self);
    }

    fn is_paused(&self) -> bool {
        Machine::is_paused(self)
    }

    fn shutdown_requested(&self) -> bool {
        self.run.shutdown_requested()
    }

    fn clock_ns(&self, clock: ClockType) -> i64 {
        self.clocks.get_ns(clock)
    }

    fn icount(&self) -> Option<IcountInfo> {
        let ic = self.icount.as_ref()?;
        Some(IcountInfo {
            shift: ic.shift(),
            auto: self
                .config
                .icount
                .is_some_and(|c| c.shift == IcountShift::Auto),
            bias: ic.bias(),
            // smp=local: the one counter counts nothing (each vCPU has its
            // own clock); the sum of what the vCPUs published instead.
            raw: if self.clocks.local() {
                self.cpus
                    .iter()
                    .map(|c| c.instret.load(std::sync::atomic::Ordering::Relaxed) as i64)
                    .sum()
            } else {
                ic.get_raw()
            },
        })
    }

    fn vcpu_clocks(&self) -> Option<Vec<Option<i64>>> {
        if !self.clocks.local() {
            return None;
        }
        Some(
            self.cpus
                .iter()
                // Relaxed: a figure, published by each vCPU at its exits.
                .map(
                    |c| match c.vclock.load(std::sync::atomic::Ordering::Relaxed) {
                        i64::MAX => None,
                        t => Some(t),
                    },
                )
                .collect(),
        )
    }

    fn timers(&self) -> &TimerListGroup {
        &self.timers
    }

    fn quit(&self) {
        self.run.request_shutdown(ExitStatus {
            reason: ExitReason::Quit,
            code: 0,
        });
        self.kick_all();
    }

    fn bql_profile(&self) -> &crate::sync::bql::Profile {
        self.bql.profile()
    }
}

/// A parsed monitor command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`: the command list.
    Help,
    /// `info` or `help info`: the `info` subcommands.
    InfoHelp,
    /// `stop`.
    Stop,
    /// `cont`.
    Cont,
    /// `info status`.
    InfoStatus,
    /// `info clocks`.
    InfoClocks,
    /// `info timers`.
    InfoTimers,
    /// `quit`.
    Quit,
    /// `info sync-profile [-m] [-n] [max]`.
    InfoSyncProfile {
        /// `-m`: sort by mean wait.
        mean: bool,
        /// `-n`: do not coalesce lock objects that share a call site.
        no_coalesce: bool,
        /// At most this many rows.
        max: usize,
    },
    /// `sync-profile [on|off|reset]` (`None`: show the state).
    SyncProfile(Option<SyncProfileOp>),
}

/// The argument of `sync-profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncProfileOp {
    /// `on`.
    On,
    /// `off`.
    Off,
    /// `reset`.
    Reset,
}

/// `info sync-profile`'s arguments (after the subcommand).
fn parse_info_sync_profile<'a>(args: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let (mut mean, mut no_coalesce, mut max) = (false, false, None);
    for a in args {
        match a {
            "-m" => mean = true,
            "-n" => no_coalesce = true,
            n if max.is_none() => match n.parse::<usize>() {
                Ok(v) => max = Some(v),
                Err(_) => {
                    return Err(format!(
                        "info sync-profile: invalid max '{n}': expected a number of rows"
                    ));
                }
            },
            _ => return Err(EXTRANEOUS.into()),
        }
    }
    Ok(Command::InfoSyncProfile {
        mean,
        no_coalesce,
        max: max.unwrap_or(10),
    })
}

/// QEMU's reply to arguments a command does not take.
const EXTRANEOUS: &str = "Error: extraneous characters at the end of line";

/// Parses one line: `Ok(None)` for an empty line, `Err(message)` for a line that is not a
/// command.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else {
        return Ok(None);
    };
    let unknown = || format!("unknown command: '{line}'");
    if name == "sync-profile" {
        let op = match words.next() {
            None => None,
            Some("on") => Some(SyncProfileOp::On),
            Some("off") => Some(SyncProfileOp::Off),
            Some("reset") => Some(SyncProfileOp::Reset),
            Some(other) => {
                return Err(format!(
                    "sync-profile: invalid argument '{other}': expected on, off or reset"
                ));
            }
        };
        if words.next().is_some() {
            return Err(EXTRANEOUS.into());
        }
        return Ok(Some(Command::SyncProfile(op)));
    }
    if name == "info" && line.split_whitespace().nth(1) == Some("sync-profile") {
        return parse_info_sync_profile(line.split_whitespace().skip(2)).map(Some);
    }
    let (cmd, takes_sub) = match name {
        "help" | "?" => (Command::Help, true),
        "stop" | "s" => (Command::Stop, false),
        "cont" | "c" => (Command::Cont, false),
        "quit" | "q" => (Command::Quit, false),
        "info" => (Command::InfoHelp, true),
        _ => return Err(unknown()),
    };
    let sub = words.next();
    if words.next().is_some() || (!takes_sub && sub.is_some()) {
        return Err(EXTRANEOUS.into());
    }
    Ok(Some(match (cmd, sub) {
        (c, None) => c,
        (Command::Help, Some("info")) => Command::InfoHelp,
        (Command::Help, Some(_)) => return Err(unknown()),
        (_, Some("status")) => Command::InfoStatus,
        (_, Some("clocks")) => Command::InfoClocks,
        (_, Some("timers")) => Command::InfoTimers,
        (_, Some(_)) => return Err(unknown()),
    }))
}

/// What a command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Text to show, each line ending in `\n` (empty for `stop`, `cont`, `quit`).
    pub text: String,
    /// The command was `quit`: no further prompt.
    pub quit: bool,
}

const HELP: &str = "\
cont|c  -- resume emulation
help|? [cmd]  -- show the help
info [subcommand]  -- show various information about the system state
quit|q  -- quit the emulator
stop|s  -- stop emulation
sync-profile [on|off|reset]  -- enable, disable or reset the BQL's profile (no argument: show whether it is on)
";

const INFO_HELP: &str = "\
info clocks  -- show the clocks in ns (and the icount state)
info status  -- show the current VM status (running|paused)
info sync-profile [-m] [-n] [max]  -- show the BQL's profile, up to max rows (default 10), sorted by total wait (-m: by mean wait; -n: do not coalesce objects with the same call site)
info timers  -- show the pending timers of each clock
";

/// Runs `cmd` on `vm`.
pub fn execute(vm: &dyn Vm, cmd: Command) -> Reply {
    let text = match cmd {
        Command::Help => HELP.to_string(),
        Command::InfoHelp => INFO_HELP.to_string(),
        Command::Stop => {
            vm.pause();
            String::new()
        }
        Command::Cont => {
            vm.resume();
            String::new()
        }
        Command::InfoStatus => format_status(vm),
        Command::InfoClocks => format_clocks(vm),
        Command::InfoTimers => format_timers(vm),
        Command::InfoSyncProfile {
            mean,
            no_coalesce,
            max,
        } => {
            let sort = if mean {
                crate::sync::bql::SortBy::MeanWait
            } else {
                crate::sync::bql::SortBy::TotalWait
            };
            vm.bql_profile().snapshot().table(!no_coalesce, sort, max)
        }
        Command::SyncProfile(op) => {
            let p = vm.bql_profile();
            match op {
                None => format!(
                    "sync-profile is {}\n",
                    if p.enabled() { "on" } else { "off" }
                ),
                Some(SyncProfileOp::On) => {
                    p.set_enabled(true);
                    String::new()
                }
                Some(SyncProfileOp::Off) => {
                    p.set_enabled(false);
                    String::new()
                }
                Some(SyncProfileOp::Reset) => {
                    p.reset();
                    String::new()
                }
            }
        }
        Command::Quit => {
            vm.quit();
            return Reply {
                text: String::new(),
                quit: true,
            };
        }
    };
    Reply { text, quit: false }
}

/// Parses and runs one line; errors become the reply's text.
pub fn handle_line(vm: &dyn Vm, line: &str) -> Reply {
    match parse(line) {
        Ok(None) => Reply::default(),
        Ok(Some(cmd)) => execute(vm, cmd),
        Err(e) => Reply {
            text: e + "\n",
            quit: false,
        },
    }
}

/// `info status`, worded as QEMU's `hmp_info_status` (`paused (shutdown)` once a shutdown
/// was requested, like QEMU's `shutdown` run state).
pub fn format_status(vm: &dyn Vm) -> String {
    let status = if vm.shutdown_requested() {
        "paused (shutdown)"
    } else if vm.is_paused() {
        "paused"
    } else {
        "running"
    };
    format!("VM status: {status}\n")
}

/// `info clocks`: one line per clock (`NAME  VALUE ns`, in QEMU's enum order), then the
/// icount line (`icount     off`, or the shift, bias and raw instruction count), then under
/// `smp=local` one line per vCPU with its own clock (`vcpu N      VALUE ns`, or `halted`).
pub fn format_clocks(vm: &dyn Vm) -> String {
    let mut s = String::new();
    for c in ClockType::ALL {
        let _ = writeln!(s, "{:<11}{} ns", c.name(), vm.clock_ns(c));
    }
    match vm.icount() {
        None => s.push_str("icount     off\n"),
        Some(ic) => {
            let _ = writeln!(
                s,
                "icount     shift {}{}, bias {} ns, raw {} instructions",
                ic.shift,
                if ic.auto { " (auto)" } else { "" },
                ic.bias,
                ic.raw
            );
        }
    }
    // smp=local: the machine's VIRTUAL above follows these.
    for (i, c) in vm.vcpu_clocks().into_iter().flatten().enumerate() {
        let name = format!("vcpu {i}");
        match c {
            Some(t) => {
                let _ = writeln!(s, "{name:<11}{t} ns");
            }
            None => {
                let _ = writeln!(s, "{name:<11}halted");
            }
        }
    }
    s
}

/// `info timers`: one line per clock with the number of pending timers and, if any, the
/// head's expiry and its distance from the clock's current value.
pub fn format_timers(vm: &dyn Vm) -> String {
    let mut s = String::new();
    for c in ClockType::ALL {
        let list = vm.timers().get(c);
        let _ = write!(s, "{:<11}{} pending", c.name(), list.pending_count());
        if let Some(expire) = list.next_expiry() {
            let d = expire.saturating_sub(vm.clock_ns(c));
            if d >= 0 {
                let _ = write!(s, ", next expiry {expire} ns (in {d} ns)");
            } else {
                let _ = write!(
                    s,
                    ", next expiry {expire} ns (expired {} ns ago)",
                    d.unsigned_abs()
                );
            }
        }
        if !list.is_enabled() {
            s.push_str(", clock disabled");
        }
        s.push('\n');
    }
    s
}

/// The line discipline of one monitor connection: splits input into lines and turns each
/// into its reply followed by a prompt. A line longer than [`MAX_LINE`] gets exactly one
/// error, as soon as it is seen to be too long, and is then discarded whole up to its
/// newline, however long it is; at most [`MAX_LINE`] bytes are ever buffered.
#[derive(Debug, Default)]
struct Session {
    input: Vec<u8>,
    /// Inside an overlong line (already answered): drop bytes up to the next newline.
    discarding: bool,
    quit: bool,
}

impl Session {
    /// The banner and the first prompt.
    fn greeting() -> Vec<u8> {
        format!("{BANNER}\n{PROMPT}").into_bytes()
    }

    fn overlong(&mut self, out: &mut Vec<u8>) {
        self.input.clear();
        let _ = write!(out, "Error: line longer than {MAX_LINE} bytes\n{PROMPT}");
    }

    /// Consumes `data`, runs every complete line and returns what to send back.
    fn feed(&mut self, vm: &dyn Vm, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() && !self.quit {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if !self.discarding {
                    if self.input.len() + rest.len() > MAX_LINE {
                        self.overlong(&mut out);
                        self.discarding = true;
                    } else {
                        self.input.extend_from_slice(rest);
                    }
                }
                break;
            };
            let chunk = &rest[..nl];
            rest = &rest[nl + 1..];
            if self.discarding {
                // The end of a line that was already answered.
                self.discarding = false;
                continue;
            }
            if self.input.len() + chunk.len() > MAX_LINE {
                self.overlong(&mut out);
                continue;
            }
            self.input.extend_from_slice(chunk);
            let line = std::mem::take(&mut self.input);
            let reply = handle_line(vm, &String::from_utf8_lossy(&line));
            out.extend_from_slice(reply.text.as_bytes());
            if reply.quit {
                self.quit = true;
                self.input.clear();
                return out;
            }
            out.extend_from_slice(PROMPT.as_bytes());
        }
        out
    }

    /// End of input: a last line without a newline still counts.
    fn finish(&mut self, vm: &dyn Vm) -> Vec<u8> {
        if self.discarding {
            self.discarding = false;
            return Vec::new();
        }
        if self.input.is_empty() {
            return Vec::new();
        }
        self.feed(vm, b"\n")
    }
}

/// Where `--monitor stdio` reads from.
enum StdinSource {
    /// File descriptor 0, registered with the poller directly.
    Fd,
    /// A pipe filled by a helper thread (stdin that epoll refuses).
    Pipe(mio::unix::pipe::Receiver),
}

/// `--monitor stdio`: commands from standard input, replies to `out` (standard error in
/// the binary). See the module documentation.
pub struct StdioMonitor<V> {
    vm: Arc<V>,
    out: Box<dyn Write + Send>,
    input: StdinSource,
    session: Session,
}

impl<V> std::fmt::Debug for StdioMonitor<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioMonitor")
            .field("pipe", &matches!(self.input, StdinSource::Pipe(_)))
            .finish()
    }
}

impl<V: Vm + Send + Sync + 'static> StdioMonitor<V> {
    /// A monitor reading standard input and writing replies to `out`.
    pub fn new(vm: Arc<V>, out: Box<dyn Write + Send>) -> Self {
        StdioMonitor {
            vm,
            out,
            input: StdinSource::Fd,
            session: Session::default(),
        }
    }

    fn send(&mut self, data: &[u8]) {
        if !data.is_empty() {
            let _ = self.out.write_all(data);
            let _ = self.out.flush();
        }
    }

    /// Reads what stdin has without blocking; returns the data and whether it ended.
    fn read_available(&mut self) -> (Vec<u8>, bool) {
        let mut data = Vec::new();
        let mut buf = [0u8; 1024];
        match &mut self.input {
            StdinSource::Fd => {
                let stdin = io::stdin();
                let fd = stdin.as_fd();
                loop {
                    // One read per "readable" answer from a zero-timeout poll: fd 0 stays
                    // blocking, yet no read blocks (a hang-up also reads without blocking).
                    let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                    match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO) {
                        Ok(0) => return (data, false),
                        Ok(_) => {}
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => return (data, true),
                    }
                    match nix::unistd::read(fd, &mut buf) {
                        Ok(0) => return (data, true),
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(nix::errno::Errno::EAGAIN) => return (data, false),
                        Err(_) => return (data, true),
                    }
                }
            }
            StdinSource::Pipe(rx) => loop {
                match rx.read(&mut buf) {
                    Ok(0) => return (data, true),
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (data, false),
                    Err(_) => return (data, true),
                }
            },
        }
    }
}

/// Copies standard input into a pipe until either ends (helper for stdin epoll refuses).
fn spawn_stdin_copier() -> io::Result<mio::unix::pipe::Receiver> {
    let (tx, rx) = mio::unix::pipe::new()?;
    tx.set_nonblocking(false)?;
    std::thread::Builder::new()
        .name("monitor-stdin".into())
        .spawn(move || {
            let mut tx = tx;
            let mut stdin = io::stdin();
            let mut buf = [0u8; 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })?;
    Ok(rx)
}

impl<V: Vm + Send + Sync + 'static> IoHandler for StdioMonitor<V> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let fd = io::stdin().as_raw_fd();
        match registry.register(&mut SourceFd(&fd), token, Interest::READABLE) {
            Ok(()) => self.input = StdinSource::Fd,
            // EPERM: a regular file or /dev/null, which epoll does not poll.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let mut rx = spawn_stdin_copier()?;
                registry.register(&mut rx, token, Interest::READABLE)?;
                self.input = StdinSource::Pipe(rx);
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("--monitor stdio: standard input: {e}"),
                ));
            }
        }
        self.send(&Session::greeting());
        Ok(())
    }

    fn ready(&mut self, _event: &Event) -> HandlerAction {
        let (data, eof) = self.read_available();
        let mut out = self.session.feed(&*self.vm, &data);
        if eof {
            out.extend(self.session.finish(&*self.vm));
        }
        self.send(&out);
        if eof {
            HandlerAction::Remove
        } else {
            HandlerAction::Continue
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.input {
            StdinSource::Fd => registry.deregister(&mut SourceFd(&io::stdin().as_raw_fd())),
            StdinSource::Pipe(rx) => registry.deregister(rx),
        }
    }
}

/// One connection to a [`UnixMonitor`].
struct Client {
    stream: UnixStream,
    session: Session,
    /// Bytes not yet written (the peer is slow to read).
    out: Vec<u8>,
    /// The peer closed its writing side: close once `out` is written.
    read_done: bool,
    /// The connection failed or is finished: drop it.
    dead: bool,
}

impl Client {
    fn flush(&mut self) {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.read_done {
            self.dead = true;
        }
    }

    fn serve(&mut self, vm: &dyn Vm) {
        let mut buf = [0u8; 1024];
        self.flush();
        // Stop reading from a client that does not read its replies (back-pressure); its
        // next writable event resumes the reading.
        while !self.read_done && !self.dead && self.out.len() < OUT_HIGH_WATER {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_done = true;
                    let out = self.session.finish(vm);
                    self.out.extend(out);
                }
                Ok(n) => {
                    let out = self.session.feed(vm, &buf[..n]);
                    self.out.extend(out);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
            // Write as we go, so that a client that pipelines many commands without
            // reading does not grow `out` without bound (beyond the socket buffer).
            self.flush();
        }
        self.flush();
    }
}

/// `--monitor unix:PATH`: a listening Unix socket; see the module documentation.
pub struct UnixMonitor<V> {
    vm: Arc<V>,
    path: PathBuf,
    /// (device, inode) of the socket file it bound, to remove only that one.
    ident: (u64, u64),
    listener: UnixListener,
    clients: Vec<Client>,
    registry: Option<(Registry, Token)>,
}

impl<V> std::fmt::Debug for UnixMonitor<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixMonitor")
            .field("path", &self.path)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl<V: Vm + Send + Sync + 'static> UnixMonitor<V> {
    /// Listens at `path`: a stale socket there is removed; anything else there is refused.
    pub fn bind(path: &Path, vm: Arc<V>) -> io::Result<Self> {
        check_socket_path(path)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        let md = std::fs::symlink_metadata(path)?;
        Ok(UnixMonitor {
            vm,
            path: path.to_path_buf(),
            ident: (md.dev(), md.ino()),
            listener,
            clients: Vec::new(),
            registry: None,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn accept_all(&mut self) {
        let Some((registry, token)) = &self.registry else {
            return;
        };
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let r = registry.register(
                        &mut stream,
                        *token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if let Err(e) = r {
                        eprintln!("vcpulab: monitor: cannot serve a connection: {e}");
                        continue;
                    }
                    self.clients.push(Client {
                        stream,
                        session: Session::default(),
                        out: Session::greeting(),
                        read_done: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // E.g. EMFILE: the pending connection stays queued; retried on the next
                    // event.
                    eprintln!("vcpulab: monitor: accept failed: {e}");
                    return;
                }
            }
        }
    }
}

impl<V: Vm + Send + Sync + 'static> IoHandler for UnixMonitor<V> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.listener, token, Interest::READABLE)?;
        self.registry = Some((registry.try_clone()?, token));
        Ok(())
    }

    fn ready(&mut self, _event: &Event) -> HandlerAction {
        self.accept_all();
        for c in &mut self.clients {
            c.serve(&*self.vm);
        }
        let registry = self.registry.as_ref().map(|(r, _)| r);
        self.clients.retain_mut(|c| {
            if c.dead {
                if let Some(r) = registry {
                    let _ = r.deregister(&mut c.stream);
                }
            }
            !c.dead
        });
        HandlerAction::Continue
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        for c in &mut self.clients {
            let _ = registry.deregister(&mut c.stream);
        }
        registry.deregister(&mut self.listener)
    }
}

impl<V> Drop for UnixMonitor<V> {
    fn drop(&mut self) {
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if md.file_type().is_socket() && (md.dev(), md.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The atomics of the fake machine are plain flags and counters read back on the test
    //! thread; their orderings protect no other data.
    use super::*;
    use crate::iothread::{IoThread, IoThreadConfig};
    use crate::time::clock::ClockType;
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A machine whose clocks read fixed values (VIRTUAL freezes while paused).
    struct Fake {
        paused: AtomicBool,
        quit: AtomicBool,
        pauses: AtomicUsize,
        icount: Option<IcountInfo>,
        clocks: Option<Vec<Option<i64>>>,
        timers: TimerListGroup,
        bql: crate::sync::bql::Bql,
    }

    impl Fake {
        fn new(icount: Option<IcountInfo>) -> Fake {
            Fake {
                paused: AtomicBool::new(false),
                quit: AtomicBool::new(false),
                pauses: AtomicUsize::new(0),
                icount,
                clocks: None,
                timers: TimerListGroup::new(),
                bql: crate::sync::bql::Bql::with(crate::sync::bql::LockKind::ParkingLot, true, 1),
            }
        }
    }

    impl Vm for Fake {
        fn pause(&self) {
            self.pauses.fetch_add(1, Ordering::Relaxed);
            self.paused.store(true, Ordering::Relaxed);
        }
        fn resume(&self) {
            self.paused.store(false, Ordering::Relaxed);
        }
        fn is_paused(&self) -> bool {
            self.paused.load(Ordering::Relaxed)
        }
        fn shutdown_requested(&self) -> bool {
            self.quit.load(Ordering::Relaxed)
        }
        fn clock_ns(&self, clock: ClockType) -> i64 {
            match clock {
                ClockType::Realtime => 1_000,
                ClockType::Virtual => 2_000,
                ClockType::Host => 3_000,
                ClockType::VirtualRt => 4_000,
            }
        }
        fn icount(&self) -> Option<IcountInfo> {
            self.icount
        }
        fn vcpu_clocks(&self) -> Option<Vec<Option<i64>>> {
            self.clocks.clone()
        }
        fn timers(&self) -> &TimerListGroup {
            &self.timers
        }
        fn quit(&self) {
            self.quit.store(true, Ordering::Relaxed);
        }
        fn bql_profile(&self) -> &crate::sync::bql::Profile {
            self.bql.profile()
        }
    }

    #[test]
    fn sync_profile_commands() {
        assert_eq!(
            parse("info sync-profile"),
            Ok(Some(Command::InfoSyncProfile {
                mean: false,
                no_coalesce: false,
                max: 10
            }))
        );
        assert_eq!(
            parse("info sync-profile -m -n 3"),
            Ok(Some(Command::InfoSyncProfile {
                mean: true,
                no_coalesce: true,
                max: 3
            }))
        );
        assert!(parse("info sync-profile x").unwrap_err().contains("'x'"));
        assert_eq!(parse("info sync-profile 3 4"), Err(EXTRANEOUS.into()));
        assert_eq!(parse("sync-profile"), Ok(Some(Command::SyncProfile(None))));
        assert_eq!(
            parse("sync-profile reset"),
            Ok(Some(Command::SyncProfile(Some(SyncProfileOp::Reset))))
        );
        assert!(parse("sync-profile maybe").unwrap_err().contains("'maybe'"));
        assert_eq!(parse("sync-profile on off"), Err(EXTRANEOUS.into()));

        let vm = Fake::new(None);
        for _ in 0..3 {
            drop(vm.bql.lock());
        }
        let t = handle_line(&vm, "info sync-profile").text;
        assert!(t.starts_with("Type "), "{t}");
        assert!(
            t.contains("Call site") && t.contains("Hold Time (s)"),
            "{t}"
        );
        let row = t
            .lines()
            .find(|l| l.starts_with("BQL mutex"))
            .expect("a row");
        assert!(row.contains("src/monitor.rs:"), "{row}");
        assert!(row.split_whitespace().any(|w| w == "3"), "count 3: {row}");
        assert_eq!(
            handle_line(&vm, "sync-profile").text,
            "sync-profile is on\n"
        );
        assert_eq!(handle_line(&vm, "sync-profile off").text, "");
        assert_eq!(
            handle_line(&vm, "sync-profile").text,
            "sync-profile is off\n"
        );
        drop(vm.bql.lock());
        assert_eq!(
            vm.bql.profile().snapshot().acquisitions(),
            3,
            "off: not counted"
        );
        handle_line(&vm, "sync-profile on");
        handle_line(&vm, "sync-profile reset");
        assert_eq!(vm.bql.profile().snapshot().acquisitions(), 0);
        let t = handle_line(&vm, "info sync-profile 0").text;
        assert!(!t.contains("BQL mutex"), "max 0: no rows\n{t}");
    }

    #[test]
    fn parse_commands_and_aliases() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("  \t "), Ok(None));
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
        assert_eq!(parse("?"), Ok(Some(Command::Help)));
        assert_eq!(parse("help info"), Ok(Some(Command::InfoHelp)));
        assert_eq!(parse("info"), Ok(Some(Command::InfoHelp)));
        assert_eq!(parse(" stop "), Ok(Some(Command::Stop)));
        assert_eq!(parse("s"), Ok(Some(Command::Stop)));
        assert_eq!(parse("cont"), Ok(Some(Command::Cont)));
        assert_eq!(parse("c\r"), Ok(Some(Command::Cont)));
        assert_eq!(parse("quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse("q"), Ok(Some(Command::Quit)));
        assert_eq!(parse("info status"), Ok(Some(Command::InfoStatus)));
        assert_eq!(parse("info   clocks"), Ok(Some(Command::InfoClocks)));
        assert_eq!(parse("info timers"), Ok(Some(Command::InfoTimers)));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse("bogus"), Err("unknown command: 'bogus'".into()));
        assert_eq!(
            parse("  info bogus "),
            Err("unknown command: 'info bogus'".into())
        );
        assert_eq!(parse("help me"), Err("unknown command: 'help me'".into()));
        assert_eq!(parse("stop now"), Err(EXTRANEOUS.into()));
        assert_eq!(parse("info status now"), Err(EXTRANEOUS.into()));
        assert_eq!(parse("STOP"), Err("unknown command: 'STOP'".into()));
    }

    #[test]
    fn spec_parsing() {
        assert_eq!("stdio".parse(), Ok(MonitorSpec::Stdio));
        assert_eq!(
            "unix:/tmp/m.sock".parse(),
            Ok(MonitorSpec::Unix("/tmp/m.sock".into()))
        );
        assert!("unix:".parse::<MonitorSpec>().is_err());
        let e = "bogus".parse::<MonitorSpec>().unwrap_err();
        assert!(!e.contains('\n') && e.contains("bogus"), "{e}");
        assert_eq!(
            MonitorSpec::Unix("/x".into()).to_string(),
            "unix:/x".to_string()
        );
        assert_eq!(
            serde_json::to_string(&MonitorSpec::Stdio).unwrap(),
            "\"stdio\""
        );
    }

    #[test]
    fn from_cli_refuses_a_non_socket() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = MonitorSpec::from_cli(&format!("unix:{}", file.display())).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        assert!(file.exists(), "a non-socket must not be removed");
        let free = dir.path().join("free.sock");
        assert_eq!(
            MonitorSpec::from_cli(&format!("unix:{}", free.display())),
            Ok(MonitorSpec::Unix(free))
        );
    }

    #[test]
    fn status_stop_cont_quit() {
        let vm = Fake::new(None);
        assert_eq!(handle_line(&vm, "info status").text, "VM status: running\n");
        let r = handle_line(&vm, "stop");
        assert_eq!(r, Reply::default());
        assert!(vm.is_paused());
        assert_eq!(handle_line(&vm, "info status").text, "VM status: paused\n");
        assert_eq!(handle_line(&vm, "c"), Reply::default());
        assert!(!vm.is_paused());
        let r = handle_line(&vm, "quit");
        assert!(r.quit && r.text.is_empty());
        assert!(vm.quit.load(Ordering::Relaxed));
        assert_eq!(
            handle_line(&vm, "info status").text,
            "VM status: paused (shutdown)\n"
        );
    }

    #[test]
    fn unknown_and_help_replies() {
        let vm = Fake::new(None);
        assert_eq!(handle_line(&vm, "xyz").text, "unknown command: 'xyz'\n");
        assert_eq!(handle_line(&vm, "").text, "");
        let help = handle_line(&vm, "help").text;
        for c in ["cont|c", "stop|s", "quit|q", "info [subcommand]", "help|?"] {
            assert!(help.contains(c), "{help}");
        }
        let info = handle_line(&vm, "info").text;
        for c in ["info status", "info clocks", "info timers"] {
            assert!(info.contains(c), "{info}");
        }
    }

    #[test]
    fn clocks_format() {
        let vm = Fake::new(None);
        assert_eq!(
            format_clocks(&vm),
            "realtime   1000 ns\nvirtual    2000 ns\nhost       3000 ns\n\
             virtual_rt 4000 ns\nicount     off\n"
        );
        let vm = Fake::new(Some(IcountInfo {
            shift: 3,
            auto: true,
            bias: -5,
            raw: 250,
        }));
        assert!(
            format_clocks(&vm)
                .ends_with("icount     shift 3 (auto), bias -5 ns, raw 250 instructions\n")
        );
        let mut vm = vm;
        vm.clocks = Some(vec![Some(1_500), None, Some(2_250)]);
        assert!(
            format_clocks(&vm).ends_with(
                "raw 250 instructions\nvcpu 0     1500 ns\nvcpu 1     halted\nvcpu 2     2250 ns\n"
            ),
            "{}",
            format_clocks(&vm)
        );
    }

    #[test]
    fn timers_format() {
        let vm = Fake::new(None);
        assert_eq!(
            format_timers(&vm),
            "realtime   0 pending\nvirtual    0 pending\nhost       0 pending\n\
             virtual_rt 0 pending\n"
        );
        let v = vm.timers.get(ClockType::Virtual);
        let a = v.new_timer(|| {});
        let b = v.new_timer(|| {});
        a.modify(2_500);
        b.modify(9_000);
        let r = vm.timers.get(ClockType::Realtime).new_timer(|| {});
        r.modify(400);
        vm.timers.get(ClockType::Host).set_enabled(false);
        let s = format_timers(&vm);
        assert!(
            s.contains("virtual    2 pending, next expiry 2500 ns (in 500 ns)\n"),
            "{s}"
        );
        assert!(
            s.contains("realtime   1 pending, next expiry 400 ns (expired 600 ns ago)\n"),
            "{s}"
        );
        assert!(s.contains("host       0 pending, clock disabled\n"), "{s}");
    }

    #[test]
    fn session_splits_lines_and_prompts() {
        let vm = Fake::new(None);
        let mut s = Session::default();
        assert!(s.feed(&vm, b"info sta").is_empty());
        let out = String::from_utf8(s.feed(&vm, b"tus\r\n\nstop\n")).unwrap();
        assert_eq!(
            out,
            format!("VM status: running\n{PROMPT}{PROMPT}{PROMPT}"),
            "{out}"
        );
        assert!(vm.is_paused());
        // A last line without a newline runs at end of input; nothing after quit.
        let out = String::from_utf8(s.feed(&vm, b"q\ninfo status\n")).unwrap();
        assert_eq!(out, "");
        assert!(s.finish(&vm).is_empty());
        let mut s = Session::default();
        s.feed(&vm, b"cont");
        assert_eq!(String::from_utf8(s.finish(&vm)).unwrap(), PROMPT);
        assert!(!vm.is_paused());
    }

    #[test]
    fn session_discards_overlong_lines() {
        let vm = Fake::new(None);
        let err = format!("Error: line longer than {MAX_LINE} bytes\n{PROMPT}");
        // Fed in pieces: one error, then the rest of the line (even one that reads like a
        // command) is dropped up to its newline.
        let mut s = Session::default();
        let out = String::from_utf8(s.feed(&vm, &vec![b'x'; MAX_LINE + 1])).unwrap();
        assert_eq!(out, err);
        for _ in 0..1000 {
            assert!(s.feed(&vm, &[b'y'; 4096]).is_empty());
        }
        assert!(s.feed(&vm, b" stop\n").is_empty());
        assert!(!vm.is_paused());
        let out = String::from_utf8(s.feed(&vm, b"info status\n")).unwrap();
        assert_eq!(out, format!("VM status: running\n{PROMPT}"));
        // In one piece, newline included, between two commands.
        let mut s = Session::default();
        let mut data = b"info status\n".to_vec();
        data.extend(vec![b'z'; 3 << 20]);
        data.extend(b"\ninfo status\n");
        let out = String::from_utf8(s.feed(&vm, &data)).unwrap();
        let status = format!("VM status: running\n{PROMPT}");
        assert_eq!(out, format!("{status}{err}{status}"));
        // Exactly MAX_LINE bytes is still a line.
        let mut s = Session::default();
        let mut line = vec![b' '; MAX_LINE - 4];
        line.extend(b"stop\n");
        assert_eq!(s.feed(&vm, &line), PROMPT.as_bytes());
        assert!(vm.is_paused());
        // An overlong last line without a newline: nothing more at end of input.
        let mut s = Session::default();
        assert_eq!(s.feed(&vm, &vec![b'q'; MAX_LINE + 1]), err.as_bytes());
        assert!(s.finish(&vm).is_empty());
    }

    /// Reads from `r` until the text read ends with the prompt.
    fn until_prompt(r: &mut impl BufRead) -> String {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !got.ends_with(PROMPT.as_bytes()) {
            assert!(Instant::now() < deadline, "no prompt: {got:?}");
            let buf = r.fill_buf().expect("read");
            assert!(!buf.is_empty(), "EOF: {got:?}");
            let n = buf.len();
            got.extend_from_slice(buf);
            r.consume(n);
        }
        String::from_utf8(got).unwrap()
    }

    #[test]
    fn unix_monitor_serves_concurrent_clients_and_removes_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mon.sock");
        // A stale socket file is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let vm = Arc::new(Fake::new(None));
        let mon = UnixMonitor::bind(&path, vm.clone()).unwrap();
        assert_eq!(mon.path(), path);
        let clocks = Arc::new(crate::time::clock::Clocks::new());
        let io = IoThread::spawn(
            clocks,
            Arc::new(TimerListGroup::new()),
            IoThreadConfig {
                handlers: vec![Box::new(mon)],
                ..Default::default()
            },
        )
        .unwrap();
        let connect = || {
            let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = io::BufReader::new(s.try_clone().unwrap());
            let banner = until_prompt(&mut r);
            assert_eq!(banner, format!("{BANNER}\n{PROMPT}"));
            (s, r)
        };
        let (mut a, mut ra) = connect();
        let (mut b, mut rb) = connect();
        a.write_all(b"stop\n").unwrap();
        assert_eq!(until_prompt(&mut ra), PROMPT);
        b.write_all(b"info status\n").unwrap();
        assert_eq!(
            until_prompt(&mut rb),
            format!("VM status: paused\n{PROMPT}")
        );
        // Pipelined commands, then a half-close: replies still arrive, then EOF.
        b.write_all(b"cont\ninfo status\nbogus").unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        rb.read_to_string(&mut rest).unwrap();
        assert_eq!(
            rest,
            format!("{PROMPT}VM status: running\n{PROMPT}unknown command: 'bogus'\n{PROMPT}")
        );
        drop((a, ra));
        // A third client after the others left.
        let (mut c, mut rc) = connect();
        c.write_all(b"quit\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vm.quit.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "quit not seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(vm.pauses.load(Ordering::Relaxed), 1);
        io.stop();
        let mut tail = String::new();
        rc.read_to_string(&mut tail).unwrap();
        assert_eq!(tail, "", "no prompt after quit");
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[test]
    fn unix_monitor_back_pressure_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bp.sock");
        let mon = UnixMonitor::bind(&path, Arc::new(Fake::new(None))).unwrap();
        let io = IoThread::spawn(
            Arc::new(crate::time::clock::Clocks::new()),
            Arc::new(TimerListGroup::new()),
            IoThreadConfig {
                handlers: vec![Box::new(mon)],
                ..Default::default()
            },
        )
        .unwrap();
        let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        const N: usize = 20_000;
        let mut w = s.try_clone().unwrap();
        // Replies (~1 MB) far exceed the socket buffers and the high-water mark while the
        // writer keeps sending.
        let writer = std::thread::spawn(move || {
            for _ in 0..N {
                w.write_all(b"info status\n").unwrap();
            }
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut all = String::new();
        (&s).read_to_string(&mut all).unwrap();
        writer.join().unwrap();
        assert_eq!(all.matches("VM status: running\n").count(), N);
        assert_eq!(all.matches(PROMPT).count(), N + 1);
        io.stop();
    }

    #[test]
    fn unix_monitor_refuses_a_non_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        std::fs::write(&path, b"keep me").unwrap();
        let e = UnixMonitor::bind(&path, Arc::new(Fake::new(None))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        let Err(e) = handler(&MonitorSpec::Unix(path), Arc::new(Fake::new(None))) else {
            panic!("a regular file was accepted as a socket path");
        };
        assert!(e.to_string().contains("not a socket"), "{e}");
    }

    #[test]
    fn socket_file_replaced_by_another_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let mon = UnixMonitor::bind(&path, Arc::new(Fake::new(None))).unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(mon);
        assert!(path.exists(), "someone else's socket survives");
        drop(other);
    }
}
