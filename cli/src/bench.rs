//! `naerdata bench`: times the process step on large generated deliveries, each in a
//! fresh child process so peak memory is that run's own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::ingest::Ingested;

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn print_stats(results: &[Ingested], elapsed: Duration) {
    let rows: u64 = results.iter().map(|r| r.rows_read).sum();
    let secs = elapsed.as_secs_f64();
    println!(
        "{{\"rows\":{rows},\"seconds\":{secs:.3},\"rows_per_second\":{:.0},\"peak_rss_mib\":{:.1}}}",
        rows as f64 / secs,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}

pub fn run(sizes: &[u64], dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating the naerdata binary")?;
    println!(
        "{:>10}  {:>9}  {:>12}  {:>13}",
        "rows", "seconds", "rows/s", "peak RSS MiB"
    );
    for &rows in sizes {
        let file = dir.join(format!("almenpraksis/diagnose/2026-01-01/bench-{rows}.csv"));
        if !file.exists() {
            eprintln!("generating {}", file.display());
            naerdata::generate::bench_file(&file, rows, 7)?;
        }
        let home = dir.join(format!("home-{rows}"));
        if home.exists() {
            std::fs::remove_dir_all(&home)?;
        }
        let out = Command::new(&exe)
            .args(["--home"])
            .arg(&home)
            .args(["ingest", "--stats"])
            .arg(&file)
            .output()
            .context("running the ingest child")?;
        if !out.status.success() {
            bail!(
                "bench ingest failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stats: serde_json::Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .context("the ingest child printed no stats")?;
        println!(
            "{:>10}  {:>9.2}  {:>12.0}  {:>13.1}",
            stats["rows"],
            stats["seconds"].as_f64().unwrap_or(0.0),
            stats["rows_per_second"].as_f64().unwrap_or(0.0),
            stats["peak_rss_mib"].as_f64().unwrap_or(0.0)
        );
        std::fs::remove_dir_all(&home)?;
    }
    Ok(())
}
