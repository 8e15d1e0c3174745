//! Facts about the host a result came from, recorded with every result.

use serde::Serialize;

/// Host facts for the run report.
#[derive(Clone, Debug, Serialize)]
pub struct HostFacts {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Resolved versions of the crates the measurements depend on.
    pub crate_versions: std::collections::BTreeMap<String, String>,
    /// vcpulab version.
    pub vcpulab_version: String,
    /// Git commit vcpulab was built from.
    pub git_commit: String,
    /// Whether this is an optimised build.
    pub release_build: bool,
}

impl HostFacts {
    /// Collect the facts of this host.
    pub fn collect() -> HostFacts {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let uts = nix::sys::utsname::uname().ok();
        let kernel = uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let hostname = uts
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        let crate_versions = env!("VCPULAB_CRATE_VERSIONS")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HostFacts {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            kernel,
            hostname,
            crate_versions,
            vcpulab_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("VCPULAB_GIT_COMMIT").to_string(),
            release_build: !cfg!(debug_assertions),
        }
    }
}

/// Peak resident set size of this process in bytes (getrusage).
pub fn peak_rss_bytes() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss() as u64 * 1024)
        .unwrap_or(0)
}
