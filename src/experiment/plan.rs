//! The sweep: the configurations of an experiment (the cross product of its
//! axes, less the exclusions; QEMU configurations collapsed over the axes
//! that mean nothing to QEMU), each checked before anything runs, and the
//! order of the runs (repetitions interleaved, each round in its own
//! shuffled order), `--filter` and `--shard`.

use std::collections::BTreeMap;

use super::backend::{Backend, check_vcpulab, not_for_qemu, qemu_args, vcpulab_args};
use super::spec::{Experiment, Locator, SpecError};

/// A value that does not apply to a backend.
pub const NOT_APPLICABLE: &str = "n/a";

/// One configuration of the sweep.
#[derive(Clone, Debug)]
pub struct Configuration {
    /// Axis name → label (`n/a` where it does not apply to the backend).
    pub labels: BTreeMap<String, String>,
    /// Every option of the run: the fixed ones and the axes'.
    pub options: BTreeMap<String, String>,
    /// Where it runs.
    pub backend: Backend,
    /// Host spinner threads beside it.
    pub load: u32,
    /// The guest ELF.
    pub guest: std::path::PathBuf,
    /// The token after which the guest reports its work.
    pub work: Option<String>,
    /// The program's arguments (vcpulab: after `run`; QEMU: all).
    pub args: Vec<String>,
    /// Host threads the run keeps busy: its vCPU threads, the iothread (or
    /// QEMU's main loop) and the spinners.
    pub threads: u32,
    /// A hash of the experiment, the guest, the backend and the options.
    pub id: String,
}

/// One run: a configuration and a repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedRun {
    /// Index into [`Plan::configs`].
    pub config: usize,
    /// Repetition, from 0.
    pub rep: u32,
}

/// The checked sweep.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The configurations, in the order of the axes' cross product.
    pub configs: Vec<Configuration>,
    /// Every run, in the order they run.
    pub runs: Vec<PlannedRun>,
}

/// 64-bit FNV-1a, as hex: short stable ids.
/// (Each part is followed by a 0xff byte, which UTF-8 text never holds, so
/// `["ab", "c"]` and `["a", "bc"]` differ.)
pub fn fnv_hex(parts: &[&str]) -> String {
    let bytes = parts
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0xff)));
    format!("{:016x}", fnv1a(bytes))
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Axis labels in a line: `KEY=VALUE` joined by `sep`.
pub fn describe(labels: &BTreeMap<String, String>, sep: &str) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// A small deterministic generator (SplitMix64) for the shuffles.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `--filter KEY=VALUE,...`: keep the configurations whose axis KEY has the
/// label VALUE, for every pair.
pub fn parse_filter(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("invalid --filter '{s}': expected KEY=VALUE[,KEY=VALUE...]"))
        })
        .collect()
}

/// `--shard K/N` (K from 1).
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid --shard '{s}': expected K/N with 1 <= K <= N (e.g. 2/8)");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

impl Plan {
    /// Expands and checks `exp`'s sweep with `reps` repetitions. Every
    /// configuration is checked with `vcpulab run`'s own parser (or the
    /// QEMU translation) before anything runs; the first that fails is
    /// the error, pointing at the axis it comes from.
    pub fn new(exp: &Experiment, reps: u32) -> Result<Plan, SpecError> {
        let loc = Locator::new(&exp.file, &exp.text);
        let mut configs: Vec<Configuration> = Vec::new();
        let n: usize = exp.axes.iter().map(|a| a.values.len()).product();
        for mut i in 0..n {
            // The cross product, the last axis varying fastest.
            let mut pick = vec![0; exp.axes.len()];
            for (j, a) in exp.axes.iter().enumerate().rev() {
                pick[j] = i % a.values.len();
                i /= a.values.len();
            }
            let mut labels = BTreeMap::new();
            let mut options = exp.run.clone();
            for (a, &p) in exp.axes.iter().zip(&pick) {
                let v = &a.values[p];
                labels.insert(a.name.clone(), v.label.clone());
                options.extend(v.options.clone());
            }
            if exp
                .exclude
                .iter()
                .any(|e| e.matches.iter().all(|(k, v)| labels.get(k) == Some(v)))
            {
                continue;
            }
            let guest = match options
                .remove("guest")
                .map(std::path::PathBuf::from)
                .or(exp.guest.clone())
            {
                Some(g) => g,
                None => {
                    return Err(loc.error(
                        &(0..0),
                        "no guest: set `guest = \"FILE\"` or give every value of an axis a `guest`",
                    ));
                }
            };
            let work = options.remove("work").or(exp.work.clone());
            let backend_name = options
                .get("backend")
                .cloned()
                .unwrap_or_else(|| "vcpulab".into());
            let backend =
                Backend::parse(&backend_name).expect("backend names are checked when read");
            let load: u32 = options.get("load").map_or(0, |l| l.parse().unwrap_or(0));
            // Where an error in this configuration points: the axis whose
            // option the message names, else the first axis.
            let blame = |msg: &str| {
                exp.axes
                    .iter()
                    .zip(&pick)
                    .find(|(a, p)| {
                        a.values[**p]
                            .options
                            .keys()
                            .any(|o| msg.contains(&format!("--{o}")) || msg.contains(o.as_str()))
                    })
                    .or(exp.axes.iter().zip(&pick).next())
                    .map(|(a, p)| a.values[*p].span.clone())
                    .unwrap_or(0..0)
            };
            let (args, threads) = match backend {
                Backend::Vcpulab => {
                    let args = vcpulab_args(&guest, &options);
                    let t = check_vcpulab(&args).map_err(|m| {
                        loc.error(
                            &blame(&m),
                            format!("the configuration {{{}}}: {m}", describe(&labels, ", ")),
                        )
                    })?;
                    (args, t)
                }
                Backend::Qemu(version) => {
                    for a in &exp.axes {
                        let v = &labels[&a.name];
                        let opts = &a
                            .values
                            .iter()
                            .find(|x| &x.label == v)
                            .expect("a label of the axis")
                            .options;
                        if !opts.is_empty() && opts.keys().all(|o| not_for_qemu(o)) {
                            labels.insert(a.name.clone(), NOT_APPLICABLE.into());
                        }
                    }
                    options.retain(|k, _| !not_for_qemu(k));
                    qemu_args(&guest, &options, version).map_err(|m| {
                        loc.error(
                            &blame(&m),
                            format!(
                                "the configuration {{{}}} cannot run on {backend_name}: {m} (exclude it with [[exclude]])",
                                describe(&labels, ", ")
                            ),
                        )
                    })?
                }
            };
            let id = fnv_hex(&[
                &exp.name,
                &guest.display().to_string(),
                work.as_deref().unwrap_or(""),
                backend.name(),
                &load.to_string(),
                &args.join("\u{1f}"),
            ]);
            if configs.iter().any(|c| c.id == id) {
                continue; // a QEMU configuration collapsed over n/a axes
            }
            configs.push(Configuration {
                labels,
                options,
                backend,
                load,
                guest,
                work,
                args,
                threads: threads + 1 + load,
                id,
            });
        }
        if configs.is_empty() {
            return Err(loc.error(&(0..0), "the exclusions leave no configuration to run"));
        }
        // Repetitions interleaved: round r runs every configuration once,
        // in an order of its own (seeded by the experiment and r), so that
        // a drift of the host lines up with no axis.
        let mut runs = Vec::with_capacity(configs.len() * reps as usize);
        let seed = u64::from_str_radix(&fnv_hex(&[&exp.name]), 16).unwrap_or(1);
        for rep in 0..reps {
            let mut order: Vec<usize> = (0..configs.len()).collect();
            let mut rng = SplitMix(seed ^ u64::from(rep).wrapping_mul(0x9e37_79b9));
            for i in (1..order.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            runs.extend(order.into_iter().map(|config| PlannedRun { config, rep }));
        }
        Ok(Plan { configs, runs })
    }

    /// Keeps the runs of the configurations that match every pair.
    pub fn filter(&mut self, exp: &Experiment, pairs: &[(String, String)]) -> Result<(), String> {
        for (k, v) in pairs {
            let Some(axis) = exp.axes.iter().find(|a| &a.name == k) else {
                return Err(format!(
                    "--filter: '{k}' is not an axis of {} (axes: {})",
                    exp.name,
                    exp.axes
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if v != NOT_APPLICABLE && !axis.values.iter().any(|x| &x.label == v) {
                return Err(format!(
                    "--filter: '{v}' is not a value of '{k}' (values: {})",
                    axis.values
                        .iter()
                        .map(|x| x.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let configs = &self.configs;
        self.runs.retain(|r| {
            pairs
                .iter()
                .all(|(k, v)| configs[r.config].labels.get(k) == Some(v))
        });
        if self.runs.is_empty() {
            return Err("--filter: no configuration matches".into());
        }
        Ok(())
    }

    /// Keeps shard `k` of `n` (from 1): every n-th run of the full order,
    /// starting at the k-th. The shards of one plan are disjoint and
    /// together are the plan.
    pub fn shard(&mut self, k: u32, n: u32) {
        let (k, n) = (k as usize, n as usize);
        self.runs = self
            .runs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, r)| *r)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function_and_parts_are_kept_apart() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv_hex(&["a"]), format!("{:016x}", fnv1a(*b"a\xff")));
        assert_ne!(fnv_hex(&["ab", "c"]), fnv_hex(&["a", "bc"]));
    }
}
