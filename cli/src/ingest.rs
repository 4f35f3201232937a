//! Local ingest: copy a file into the landing zone, then run receive and process on
//! it, exactly as the AWS functions do after an upload.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use naerdata::Platform;
use naerdata::ledger::DeliveryState;
use naerdata::process;
use naerdata::receive::{self, Received};

/// What happened to one file.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub dataset: String,
    pub delivery_id: String,
    pub state: Option<DeliveryState>,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub message: Option<String>,
    /// Wall time of the process step alone (not the copy into landing or receive).
    pub process_seconds: f64,
}

/// Every regular file below the given paths, in a stable order.
///
/// Only regular files are read: a symlink could point into the platform's own home
/// (its keys, its lake) or anywhere else, and a FIFO or device would block or never
/// end. Nothing under `home` is read, so an ingest can never feed the platform its
/// own key file or lake.
fn files(paths: &[PathBuf], home: &Path) -> Result<Vec<PathBuf>> {
    let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let inside_home = |p: &Path| -> Result<()> {
        let real = std::fs::canonicalize(p).with_context(|| format!("resolving {}", shown(p)))?;
        if real.starts_with(&home) {
            bail!(
                "{} is inside the platform's home {}; ingest reads deliveries from outside it (the home holds the landing zone, the lake and the key)",
                shown(p),
                home.display()
            );
        }
        Ok(())
    };
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for p in paths {
        let meta = std::fs::symlink_metadata(p)
            .with_context(|| format!("{} does not exist or cannot be read", shown(p)))?;
        if meta.is_dir() {
            inside_home(p)?;
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for e in
                    std::fs::read_dir(&dir).with_context(|| format!("reading {}", shown(&dir)))?
                {
                    let e = e?;
                    let path = e.path();
                    let kind = e.file_type()?;
                    if kind.is_dir() {
                        if std::fs::canonicalize(&path).is_ok_and(|r| r.starts_with(&home)) {
                            skipped += 1;
                        } else {
                            stack.push(path);
                        }
                    } else if kind.is_file() {
                        out.push(path);
                    } else {
                        // Symlinks, FIFOs, sockets, devices.
                        skipped += 1;
                    }
                }
            }
        } else if meta.is_file() {
            inside_home(p)?;
            out.push(p.clone());
        } else {
            bail!(
                "{} is not a regular file or a directory (a symlink, FIFO or device); ingest reads only regular files",
                shown(p)
            );
        }
    }
    if skipped > 0 {
        eprintln!(
            "note: {skipped} entr{} skipped (symlinks, FIFOs, devices, or the platform's own home); only regular files are ingested",
            if skipped == 1 { "y" } else { "ies" }
        );
    }
    out.sort();
    Ok(out)
}

/// A path as printed: control characters escaped, a CPR-shaped name withheld.
pub fn shown(p: &Path) -> String {
    naerdata::privacy::display(&p.display().to_string())
}

/// The landing key of a file: from its last directories, or from `--dataset`.
pub fn landing_key(path: &Path, dataset: Option<&str>) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", shown(path)))?;
    if let Some(id) = dataset {
        let (source, ds) = id
            .split_once('.')
            .with_context(|| format!("--dataset {id:?} is not <source>.<dataset>"))?;
        let today = chrono::Utc::now().date_naive();
        return Ok(naerdata::layout::landing_key(source, ds, today, name));
    }
    let parts: Vec<&str> = path
        .iter()
        .rev()
        .skip(1)
        .take(3)
        .map(|s| s.to_str().unwrap_or(""))
        .collect();
    let [day, ds, source] = parts.as_slice() else {
        bail!(
            "{}: cannot tell the dataset; put the file under <source>/<dataset>/<yyyy-mm-dd>/ or pass --dataset",
            shown(path)
        );
    };
    let key = format!("{source}/{ds}/{day}/{name}");
    receive::parse_landing_key(&key).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; put the file under <source>/<dataset>/<yyyy-mm-dd>/ or pass --dataset",
            shown(path)
        )
    })?;
    Ok(key)
}

/// Ingests every regular file below `paths` into the platform whose home is `home`
/// (nothing under it is read).
pub async fn ingest_paths(
    p: &Platform,
    home: &Path,
    paths: &[PathBuf],
    dataset: Option<&str>,
    progress: bool,
) -> Result<Vec<Ingested>> {
    let all = files(paths, home)?;
    let mut results = Vec::with_capacity(all.len());
    for (n, path) in all.iter().enumerate() {
        let r = ingest_file(p, path, dataset).await?;
        let line = format!(
            "{:<22} {:<26} {:>8} rows  {}  {}",
            r.state.map_or("?", |s| s.as_str()),
            r.dataset,
            r.rows_read,
            r.delivery_id,
            shown(path)
        );
        if progress {
            eprintln!("[{}/{}] {line}", n + 1, all.len());
        } else {
            println!("{line}");
        }
        if let Some(m) = &r.message
            && !progress
            && r.state != Some(DeliveryState::Duplicate)
        {
            println!("    {m}");
        }
        results.push(r);
    }
    naerdata::catalog::write_duckdb_catalog(p).await?;
    Ok(results)
}

async fn ingest_file(p: &Platform, path: &Path, dataset: Option<&str>) -> Result<Ingested> {
    let key = landing_key(path, dataset)?;
    // Raw files are immutable: never overwrite a different file under the same key.
    if p.stores.landing.head(&key).await?.is_some() {
        let (sha, _) = receive::hash(
            std::fs::File::open(path).with_context(|| format!("opening {}", shown(path)))?,
        )?;
        let (existing, _) = receive::hash(p.stores.landing.open(&key).await?)?;
        if existing != sha {
            bail!(
                "{}: the landing zone already holds a different file at {}; raw files are immutable, so send it under another name or day",
                shown(path),
                naerdata::privacy::display(&key)
            );
        }
    } else {
        p.stores.landing.put_file(&key, path).await?;
    }
    let received = receive::receive(p, &key, None).await?;
    let mut process_seconds = 0.0;
    let id = match &received {
        Received::ToProcess(id) => {
            let started = std::time::Instant::now();
            // A failure is recorded in the ledger (state failed) and shown below.
            if let Err(e) = process::process(p, id).await {
                tracing::warn!(delivery_id = %id, error = %e, "process failed");
            }
            process_seconds = started.elapsed().as_secs_f64();
            id.clone()
        }
        // Sent again while its earlier run left it `processing` (that process was
        // killed): the claim is taken over and the delivery finished now.
        Received::Known(id, DeliveryState::Processing) => {
            let started = std::time::Instant::now();
            if let Err(e) = process::process(p, id).await {
                tracing::warn!(delivery_id = %id, error = %e, "process failed");
            }
            process_seconds = started.elapsed().as_secs_f64();
            id.clone()
        }
        Received::Known(id, _) | Received::Unroutable(id) => id.clone(),
        Received::Duplicate { delivery_id, .. } => delivery_id.clone(),
    };
    let d = p
        .ledger
        .get(&id)
        .await?
        .context("the delivery vanished from the ledger")?;
    Ok(Ingested {
        dataset: d.dataset.clone(),
        delivery_id: d.delivery_id.clone(),
        state: Some(d.state),
        rows_read: d.outcome.rows_read,
        rows_accepted: d.outcome.rows_accepted,
        rows_rejected: d.outcome.rows_rejected,
        process_seconds,
        message: d
            .outcome
            .message
            .clone()
            .or_else(|| d.duplicate_of.map(|o| format!("identical to delivery {o}"))),
    })
}
