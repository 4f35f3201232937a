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

/// Every file below the given paths, in a stable order.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for e in
                    std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
                {
                    let path = e?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        out.push(path);
                    }
                }
            }
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{} is neither a file nor a directory", p.display());
        }
    }
    out.sort();
    Ok(out)
}

/// The landing key of a file: from its last directories, or from `--dataset`.
pub fn landing_key(path: &Path, dataset: Option<&str>) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    if let Some(id) = dataset {
        let (source, ds) = id
            .split_once('.')
            .with_context(|| format!("--dataset {id:?} is not <source>.<dataset>"))?;
        let today = chrono::Utc::now().date_naive();
        return Ok(format!("{source}/{ds}/{today}/{name}"));
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
            path.display()
        );
    };
    let key = format!("{source}/{ds}/{day}/{name}");
    receive::parse_landing_key(&key).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; put the file under <source>/<dataset>/<yyyy-mm-dd>/ or pass --dataset",
            path.display()
        )
    })?;
    Ok(key)
}

pub async fn ingest_paths(
    p: &Platform,
    paths: &[PathBuf],
    dataset: Option<&str>,
    progress: bool,
) -> Result<Vec<Ingested>> {
    let all = files(paths)?;
    let mut results = Vec::with_capacity(all.len());
    for (n, path) in all.iter().enumerate() {
        let r = ingest_file(p, path, dataset).await?;
        let line = format!(
            "{:<22} {:<26} {:>8} rows  {}  {}",
            r.state.map_or("?", |s| s.as_str()),
            r.dataset,
            r.rows_read,
            r.delivery_id,
            path.display()
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
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )?;
        let (existing, _) = receive::hash(p.stores.landing.open(&key).await?)?;
        if existing != sha {
            bail!(
                "{}: the landing zone already holds a different file at {key}; raw files are immutable, so send it under another name or day",
                path.display()
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
