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
    let process: f64 = results.iter().map(|r| r.process_seconds).sum();
    println!(
        "{{\"rows\":{rows},\"seconds\":{secs:.3},\"process_seconds\":{process:.3},\"rows_per_second\":{:.0},\"peak_rss_mib\":{:.1}}}",
        rows as f64 / process,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}

/// One child run on `threads` threads: ingest `file` into a fresh home, return its
/// stats line.
fn one_run(exe: &Path, file: &Path, home: &Path, threads: usize) -> Result<serde_json::Value> {
    if home.exists() {
        std::fs::remove_dir_all(home)?;
    }
    let out = Command::new(exe)
        .env("NAERDATA_THREADS", threads.to_string())
        .arg("--home")
        .arg(home)
        .args(["ingest", "--stats"])
        .arg(file)
        .output()
        .context("running the ingest child")?;
    if !out.status.success() {
        bail!(
            "bench ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(home)?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("the ingest child printed no stats")
}

/// `runs` child runs: the process-step seconds, sorted, and the highest peak RSS.
fn repeat(
    exe: &Path,
    file: &Path,
    home: &Path,
    runs: usize,
    threads: usize,
) -> Result<(Vec<f64>, f64)> {
    let mut secs = Vec::new();
    let mut peak: f64 = 0.0;
    for _ in 0..runs.max(1) {
        let stats = one_run(exe, file, home, threads)?;
        secs.push(stats["process_seconds"].as_f64().unwrap_or(f64::NAN));
        peak = peak.max(stats["peak_rss_mib"].as_f64().unwrap_or(f64::NAN));
    }
    secs.sort_by(f64::total_cmp);
    Ok((secs, peak))
}

/// One thread count's runs of a delivery.
struct ThreadRuns {
    threads: usize,
    median: f64,
    best: f64,
    /// The first thread count's median over this one's.
    speed_up: f64,
    peak: f64,
}

/// `runs` child runs of `file` at each thread count, in order.
fn by_threads(
    exe: &Path,
    file: &Path,
    home: &Path,
    runs: usize,
    threads: &[usize],
) -> Result<Vec<ThreadRuns>> {
    let mut out: Vec<ThreadRuns> = Vec::new();
    for &t in threads {
        let (secs, peak) = repeat(exe, file, home, runs, t)?;
        let median = secs[secs.len() / 2];
        let base = out.first().map_or(median, |r| r.median);
        out.push(ThreadRuns {
            threads: t,
            median,
            best: secs[0],
            speed_up: base / median,
            peak,
        });
    }
    Ok(out)
}

/// Runs each size `runs` times at each thread count (wall time on a shared VM is
/// noisy) and prints the median and the best run, and the speed-up over one thread.
pub fn run(sizes: &[u64], dir: &Path, runs: usize, threads: &[usize]) -> Result<()> {
    let exe = std::env::current_exe().context("locating the naerdata binary")?;
    println!(
        "process step (read, validate, pseudonymise, write Parquet, publish, receipt), {runs} runs each:"
    );
    println!(
        "{:>10}  {:>7}  {:>14}  {:>14}  {:>9}  {:>8}  {:>13}",
        "rows", "threads", "median rows/s", "best rows/s", "median s", "speed-up", "peak RSS MiB"
    );
    for &rows in sizes {
        let file = dir.join(format!("almenpraksis/diagnose/2026-01-01/bench-{rows}.csv"));
        if !file.exists() {
            eprintln!("generating {}", file.display());
            naerdata::generate::bench_file(&file, rows, 7)?;
        }
        let home = dir.join(format!("home-{rows}"));
        for r in by_threads(&exe, &file, &home, runs, threads)? {
            println!(
                "{:>10}  {:>7}  {:>14.0}  {:>14.0}  {:>9.2}  {:>7.2}x  {:>13.1}",
                rows,
                r.threads,
                rows as f64 / r.median,
                rows as f64 / r.best,
                r.median,
                r.speed_up,
                r.peak
            );
        }
    }
    if let Some(&rows) = sizes.first() {
        let file = dir.join(format!("almenpraksis/diagnose/2026-01-01/bench-{rows}.csv"));
        quality_overhead(&file, rows, dir, runs)?;
    }
    Ok(())
}

/// The streaming pass alone (read, validate, pseudonymise, Parquet to a spool), with
/// and without the quality metrics, alternating so drift of the VM hits both alike.
fn quality_overhead(file: &Path, rows: u64, dir: &Path, runs: usize) -> Result<()> {
    let registry = naerdata::contract::Registry::builtin();
    let contract = registry
        .get("almenpraksis.diagnose")
        .context("the built-in contract")?;
    let key = naerdata::pseudonym::Key::new(1, vec![7; 32])?;
    let timed = |quality: bool| -> Result<f64> {
        let spool = tempfile::tempdir_in(dir)?;
        let started = std::time::Instant::now();
        let report = naerdata::process::run(
            &registry,
            contract,
            Box::new(std::fs::File::open(file)?),
            naerdata::process::RunOptions {
                delivery_id: "bench",
                delivery_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date"),
                received_at: chrono::Utc::now(),
                pseudonymiser: naerdata::pseudonym::Pseudonymiser::new(&key),
                spool: Some(spool.path()),
                quality,
                reference: naerdata::reference::ReferenceSet::builtin(),
                threads: 1,
            },
        )?;
        let secs = started.elapsed().as_secs_f64();
        if report.rows.read != rows || report.quality.is_empty() == quality {
            bail!(
                "the bench run read {} rows, quality {quality}",
                report.rows.read
            );
        }
        Ok(secs)
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        without.push(timed(false)?);
        with.push(timed(true)?);
    }
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let (w, wo) = (with[with.len() / 2], without[without.len() / 2]);
    println!("\nquality metrics cost (streaming pass only, {rows} rows, median of {runs}):");
    println!(
        "  without metrics {:>10.0} rows/s\n  with metrics    {:>10.0} rows/s\n  throughput cost {:>9.1} %  (budget 20 %)",
        rows as f64 / wo,
        rows as f64 / w,
        100.0 * (1.0 - wo / w)
    );
    Ok(())
}

/// The same for one KL Gateway delivery of `bundles` FHIR bundles.
pub fn run_gateway(bundles: usize, dir: &Path, runs: usize, threads: &[usize]) -> Result<()> {
    let exe = std::env::current_exe().context("locating the naerdata binary")?;
    let file = dir.join(format!("kommune/gateway/2026-10-01/bench-{bundles}.ndjson"));
    if !file.exists() {
        eprintln!("generating {}", file.display());
        naerdata::generate::bench_gateway_file(&file, bundles, 7)?;
    }
    println!("\nKL Gateway delivery (FHIR bundles -> 7 tables), {runs} runs each:");
    println!(
        "{:>10}  {:>7}  {:>16}  {:>9}  {:>8}  {:>13}",
        "bundles", "threads", "median bundles/s", "median s", "speed-up", "peak RSS MiB"
    );
    let home = dir.join(format!("home-gateway-{bundles}"));
    for r in by_threads(&exe, &file, &home, runs, threads)? {
        println!(
            "{:>10}  {:>7}  {:>16.0}  {:>9.2}  {:>7.2}x  {:>13.1}",
            bundles,
            r.threads,
            bundles as f64 / r.median,
            r.median,
            r.speed_up,
            r.peak
        );
    }
    Ok(())
}

/// The stats line of `naerdata publish --stats`.
pub fn print_publish_stats(p: &naerdata::publish::Published, seconds: f64) {
    let rows: u64 = p.tables.iter().map(|(_, n)| n).sum();
    let marts: Vec<serde_json::Value> = p
        .marts
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name, "query_seconds": m.query_seconds, "bytes_scanned": m.bytes_scanned,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds, "tables": p.tables.len(), "marts": p.marts.len(), "rows": rows,
            "current_seconds": p.current.iter().map(|m| m.seconds).sum::<f64>(),
            "current": p.current.iter().map(|m| serde_json::json!({
                "table": m.table, "rows": m.rows, "how": m.how.to_string(), "seconds": m.seconds,
            })).collect::<Vec<_>>(),
            "peak_rss_mib": peak_rss_mib(), "mart_queries": marts,
        })
    );
}

/// `naerdata bench-publish`: a generated population (`persons`, `days` of deliveries
/// from every source) ingested once into `<dir>/publish-<persons>/home`, then publish
/// timed `runs` times, each in a fresh child process so peak memory is its own.
pub async fn run_publish(persons: usize, days: u32, dir: &Path, runs: usize) -> Result<()> {
    let exe = std::env::current_exe().context("locating the naerdata binary")?;
    let base = dir.join(format!("publish-{persons}-{days}d"));
    let home = base.join("home");
    let ready = base.join("ingested.json");
    let mut opts = naerdata::generate::GenerateOptions::new(base.join("input"));
    opts.persons = persons;
    opts.days = days;
    if !ready.exists() {
        if base.exists() {
            std::fs::remove_dir_all(&base)?;
        }
        let started = std::time::Instant::now();
        eprintln!("generating {days} days of deliveries for {persons} persons");
        let files = naerdata::generate::generate(&opts)?;
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        eprintln!(
            "{rows} rows in {} files ({:.0} s); ingesting",
            files.len(),
            started.elapsed().as_secs_f64()
        );
        let p = naerdata::Platform::local(&home, naerdata::contract::Registry::builtin())?;
        let paths: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
        crate::ingest::ingest_paths(&p, &home, &paths, None, false).await?;
        // The generated files hold (synthetic) CPRs; the lake is all the bench needs.
        std::fs::remove_dir_all(base.join("input"))?;
        std::fs::write(
            &ready,
            serde_json::json!({"persons": persons, "days": days, "rows": rows}).to_string(),
        )?;
        eprintln!("ingested in {:.0} s", started.elapsed().as_secs_f64());
    }
    let ingested: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ready)?)?;
    // The day the deliveries' periods are closed, so the marts publish them.
    let date = naerdata::publication::all_closed_after(
        &naerdata::publish::marts(),
        &naerdata::contract::Registry::builtin(),
        opts.start + chrono::Duration::days(i64::from(days.max(1)) - 1),
    );
    let mut secs = Vec::new();
    let mut peak: f64 = 0.0;
    let mut published_rows = 0;
    // Per mart: the query's seconds in each run, and the bytes it scanned.
    let mut queries: std::collections::BTreeMap<String, (Vec<f64>, u64)> = Default::default();
    for _ in 0..runs.max(1) {
        let out = Command::new(&exe)
            .arg("--home")
            .arg(&home)
            .args(["publish", "--stats", "--date", &date.to_string()])
            .output()
            .context("running the publish child")?;
        if !out.status.success() {
            bail!(
                "bench publish failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stats: serde_json::Value = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .context("the publish child printed no stats")?;
        secs.push(stats["seconds"].as_f64().unwrap_or(f64::NAN));
        peak = peak.max(stats["peak_rss_mib"].as_f64().unwrap_or(f64::NAN));
        published_rows = stats["rows"].as_u64().unwrap_or(0);
        for m in stats["mart_queries"].as_array().into_iter().flatten() {
            let e = queries
                .entry(m["name"].as_str().unwrap_or("?").to_string())
                .or_default();
            e.0.push(m["query_seconds"].as_f64().unwrap_or(f64::NAN));
            e.1 = m["bytes_scanned"].as_u64().unwrap_or(0);
        }
    }
    secs.sort_by(f64::total_cmp);
    println!(
        "\npublish (current tables, dimensions, every mart with disclosure control), {} runs:",
        secs.len()
    );
    println!(
        "{:>10}  {:>12}  {:>14}  {:>10}  {:>10}  {:>13}",
        "persons", "input rows", "published rows", "median s", "best s", "peak RSS MiB"
    );
    println!(
        "{:>10}  {:>12}  {:>14}  {:>10.2}  {:>10.2}  {:>13.1}",
        persons,
        ingested["rows"].as_u64().unwrap_or(0),
        published_rows,
        secs[secs.len() / 2],
        secs[0],
        peak
    );
    println!("\neach mart's SQL (its cells, before disclosure control), median of the runs:");
    println!(
        "{:<30}  {:>10}  {:>14}  {:>19}",
        "mart", "query s", "bytes scanned", "Athena USD/query"
    );
    let (mut all_bytes, mut all_usd) = (0u64, 0.0);
    for (name, (mut s, bytes)) in queries {
        s.sort_by(f64::total_cmp);
        let usd = naerdata::cost::athena_usd(bytes);
        all_bytes += bytes;
        all_usd += usd;
        println!(
            "{name:<30}  {:>10.2}  {bytes:>14}  {usd:>19.6}",
            s[s.len() / 2]
        );
    }
    println!(
        "{:<30}  {:>10}  {all_bytes:>14}  {all_usd:>19.6}",
        "all marts", ""
    );
    Ok(())
}

/// One `naerdata publish --stats` in a fresh child process: its stats line.
fn publish_child(
    exe: &Path,
    home: &Path,
    day: chrono::NaiveDate,
    full: bool,
) -> Result<serde_json::Value> {
    let mut cmd = Command::new(exe);
    cmd.arg("--home")
        .arg(home)
        .args(["publish", "--stats", "--date", &day.to_string()]);
    if full {
        cmd.arg("--full");
    }
    let out = cmd.output().context("running the publish child")?;
    if !out.status.success() {
        bail!(
            "bench publish failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("the publish child printed no stats")
}

/// The seconds the marts' SQL took and the bytes it scanned, from a stats line.
fn marts_of(stats: &serde_json::Value) -> (f64, u64) {
    stats["mart_queries"]
        .as_array()
        .into_iter()
        .flatten()
        .fold((0.0, 0), |(s, b), m| {
            (
                s + m["query_seconds"].as_f64().unwrap_or(0.0),
                b + m["bytes_scanned"].as_u64().unwrap_or(0),
            )
        })
}

/// `naerdata bench-publish --history 1,30`: for each history length H, a population
/// with H days of deliveries is ingested and published (which builds the current
/// tables), then one more day is ingested and published: the current tables merge that
/// day (timed), and then a `--full` rebuild of the same state is timed for comparison.
/// Each publish is a fresh child process, so its peak memory is its own.
pub async fn run_publish_history(persons: usize, histories: &[u32], dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating the naerdata binary")?;
    let mut rows = Vec::new();
    for &h in histories {
        let base = dir.join(format!("publish-history-{persons}-{h}d"));
        if base.exists() {
            std::fs::remove_dir_all(&base)?;
        }
        let home = base.join("home");
        let mut opts = naerdata::generate::GenerateOptions::new(base.join("input"));
        opts.persons = persons;
        opts.days = h + 1;
        let started = std::time::Instant::now();
        eprintln!("{persons} persons, {h} days of history and one more day: generating");
        let files = naerdata::generate::generate(&opts)?;
        let mut by_day: std::collections::BTreeMap<String, Vec<(std::path::PathBuf, u64)>> =
            Default::default();
        for f in &files {
            by_day
                .entry(f.day())
                .or_default()
                .push((f.path.clone(), f.rows));
        }
        let (last_day, last) = by_day.pop_last().context("no deliveries generated")?;
        let p = naerdata::Platform::local(&home, naerdata::contract::Registry::builtin())?;
        let history: Vec<_> = by_day.values().flatten().map(|(f, _)| f.clone()).collect();
        let history_rows: u64 = by_day.values().flatten().map(|(_, n)| n).sum();
        crate::ingest::ingest_paths(&p, &home, &history, None, false).await?;
        let last_day: chrono::NaiveDate = last_day.parse()?;
        eprintln!(
            "{history_rows} history rows ingested ({:.0} s); the first publication",
            started.elapsed().as_secs_f64()
        );
        publish_child(&exe, &home, last_day - chrono::Duration::days(1), false)?;
        let day: Vec<_> = last.iter().map(|(f, _)| f.clone()).collect();
        let day_rows: u64 = last.iter().map(|(_, n)| n).sum();
        crate::ingest::ingest_paths(&p, &home, &day, None, false).await?;
        std::fs::remove_dir_all(base.join("input"))?;
        eprintln!("one more day ({day_rows} rows) ingested: merging it, then a full rebuild");
        let merged = publish_child(&exe, &home, last_day, false)?;
        let rebuilt = publish_child(&exe, &home, last_day, true)?;
        rows.push((h, history_rows, day_rows, merged, rebuilt));
    }
    println!(
        "\ncurrent tables for one more day of deliveries, {persons} persons: merged (incremental) and rebuilt (--full):"
    );
    println!(
        "{:>8}  {:>12}  {:>10}  {:>10}  {:>11}  {:>10}  {:>11}  {:>9}  {:>14}",
        "history",
        "history rows",
        "day rows",
        "merge s",
        "merge MiB",
        "rebuild s",
        "rebuild MiB",
        "marts s",
        "marts bytes"
    );
    for (h, history_rows, day_rows, merged, rebuilt) in &rows {
        let (marts_s, marts_b) = marts_of(merged);
        println!(
            "{:>7}d  {history_rows:>12}  {day_rows:>10}  {:>10.2}  {:>11.0}  {:>10.2}  {:>11.0}  {marts_s:>9.2}  {marts_b:>14}",
            h,
            merged["current_seconds"].as_f64().unwrap_or(f64::NAN),
            merged["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            rebuilt["current_seconds"].as_f64().unwrap_or(f64::NAN),
            rebuilt["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        let ratio = |s: &serde_json::Value| {
            last.3["current_seconds"].as_f64().unwrap_or(f64::NAN) / s.as_f64().unwrap_or(f64::NAN)
        };
        println!(
            "merge with {}d of history / with {}d: {:.2}x (the goal: at most 2x); rebuild: {:.2}x",
            last.0,
            first.0,
            ratio(&first.3["current_seconds"]),
            last.4["current_seconds"].as_f64().unwrap_or(f64::NAN)
                / first.4["current_seconds"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!(
        "(peak MiB is the whole publish's, marts included; the marts' SQL time and bytes are the merged run's)"
    );
    Ok(())
}

/// `naerdata bench-files`: a month of generated daily deliveries from every source,
/// ingested day by day into a fresh home; then the active files per Delta table before
/// and after maintenance (compaction), with the rows unchanged.
pub async fn run_files(persons: usize, days: u32, dir: &Path) -> Result<()> {
    let base = dir.join(format!("files-{persons}-{days}d"));
    if base.exists() {
        std::fs::remove_dir_all(&base)?;
    }
    let home = base.join("home");
    let mut opts = naerdata::generate::GenerateOptions::new(base.join("input"));
    opts.persons = persons;
    opts.days = days;
    let files = naerdata::generate::generate(&opts)?;
    let p = naerdata::Platform::local(&home, naerdata::contract::Registry::builtin())?;
    let mut by_day: std::collections::BTreeMap<String, Vec<std::path::PathBuf>> =
        std::collections::BTreeMap::new();
    for f in &files {
        by_day.entry(f.day()).or_default().push(f.path.clone());
    }
    for paths in by_day.values() {
        crate::ingest::ingest_paths(&p, &home, paths, None, false).await?;
    }
    std::fs::remove_dir_all(base.join("input"))?;
    let rows_before = table_rows(&p).await?;
    let started = std::time::Instant::now();
    let done =
        naerdata::maintain::maintain(&p, &naerdata::maintain::MaintainOptions::default()).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        table_rows(&p).await? == rows_before,
        "maintenance changed the row counts"
    );
    println!(
        "active files per table after {} daily deliveries ({persons} persons), without and with compaction ({seconds:.1} s):",
        by_day.len()
    );
    println!("{:<28} {:>8} {:>8}", "table", "without", "with");
    for t in &done {
        println!("{:<28} {:>8} {:>8}", t.table, t.files_before, t.files_after);
    }
    let (before, after) = done
        .iter()
        .fold((0, 0), |(b, a), t| (b + t.files_before, a + t.files_after));
    println!("{:<28} {before:>8} {after:>8}", "all tables");
    Ok(())
}

async fn table_rows(p: &naerdata::Platform) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for c in naerdata::catalog::tables_with_data(p).await? {
        let b = naerdata::catalog::query(p, &format!("SELECT count(*) FROM {}", c.table())).await?;
        out.push((
            c.table(),
            arrow::util::display::array_value_to_string(b[0].column(0), 0)?,
        ));
    }
    Ok(out)
}

/// Bytes of one endless line: a header, then `x` without a newline.
struct Endless {
    header: &'static [u8],
    at: u64,
    total: u64,
}

impl std::io::Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.total {
            return Ok(0);
        }
        let n = buf.len().min((self.total - self.at) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let pos = self.at as usize + i;
            *b = self.header.get(pos).copied().unwrap_or(b'x');
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// A file made to hurt, through the streaming pass in this (fresh) process: refused
/// by a named limit, with its peak memory. `endless`: 2 GB of one line; `nested`: a
/// KL Gateway bundle nested 10 million levels deep (under the line limit: 16 MiB).
pub fn run_hostile(case: &str) -> Result<()> {
    let registry = naerdata::contract::Registry::builtin();
    let (dataset, input, size): (&str, Box<dyn std::io::Read + Send>, u64) = match case {
        "endless" => (
            "almenpraksis.diagnose",
            Box::new(Endless {
                header: b"record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n",
                at: 0,
                total: 2_000_000_000,
            }),
            2_000_000_000,
        ),
        "nested" => {
            let depth = 7 << 20;
            let mut s = Vec::with_capacity(2 * depth + 64);
            s.extend_from_slice(br#"{"resourceType":"Bundle","type":"collection","entry":"#);
            s.extend(std::iter::repeat_n(b'[', depth));
            s.extend(std::iter::repeat_n(b']', depth));
            s.extend_from_slice(b"}\n");
            let n = s.len() as u64;
            ("kommune.gateway", Box::new(std::io::Cursor::new(s)), n)
        }
        other => bail!("unknown case {other:?}: endless or nested"),
    };
    let contract = registry.get(dataset).context("the built-in contract")?;
    let key = naerdata::pseudonym::Key::new(1, vec![7; 32])?;
    let spool = tempfile::tempdir()?;
    let started = std::time::Instant::now();
    let report = naerdata::process::run(
        &registry,
        contract,
        input,
        naerdata::process::RunOptions {
            delivery_id: "hostile",
            delivery_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date"),
            received_at: chrono::Utc::now(),
            pseudonymiser: naerdata::pseudonym::Pseudonymiser::new(&key),
            spool: Some(spool.path()),
            quality: true,
            reference: naerdata::reference::ReferenceSet::builtin(),
            threads: naerdata::process::default_threads(),
        },
    )?;
    let why = match (&report.structural, report.problems.first()) {
        (Some(s), _) => format!("{}: {}", s.rule, s.message),
        (None, Some(p)) if report.rows.accepted == 0 => format!("{}: {}", p.rule, p.message),
        _ => bail!("the {case} file was not refused: {:?}", report.rows),
    };
    let peak = peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "hostile {case:<8} {:>6.0} MB in {:>5.2} s, peak {peak:>6.1} MiB (budget 200): refused, {why}",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if peak > 200.0 {
        bail!("the {case} file took {peak:.0} MiB, over the 200 MiB budget");
    }
    Ok(())
}
