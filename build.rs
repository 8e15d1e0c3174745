//! Records the resolved versions of the crates whose behaviour the
//! measurements depend on, and the git commit, for the run report.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    // A commit moves the branch ref, not HEAD: watch those too.
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=.git/{}", r.trim());
        }
    }
    println!("cargo:rerun-if-changed=.git/packed-refs");
    let wanted = [
        "parking_lot",
        "parking_lot_core",
        "lock_api",
        "crossbeam-utils",
        "mio",
        "nix",
        "hdrhistogram",
    ];
    let mut found = Vec::new();
    if let Ok(lock) = std::fs::read_to_string("Cargo.lock") {
        let mut name = None;
        for line in lock.lines() {
            if let Some(n) = line.strip_prefix("name = ") {
                name = Some(n.trim_matches('"').to_string());
            } else if let Some(v) = line.strip_prefix("version = ") {
                if let Some(n) = name.take() {
                    if wanted.contains(&n.as_str()) {
                        found.push(format!("{n}={}", v.trim_matches('"')));
                    }
                }
            }
        }
    }
    println!("cargo:rustc-env=VCPULAB_CRATE_VERSIONS={}", found.join(","));
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=VCPULAB_GIT_COMMIT={commit}");
}
