//! The monitor step (daily): the reception calendar of every delivered dataset and
//! reporting unit, the monthly quality declarations, and what needs an operator
//! (rejected and failed deliveries). It reads the ledger and the `quality_metrics`
//! files, and writes the `quality_reception` and `quality_declaration` tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use futures::{StreamExt, TryStreamExt};

use crate::contract::Contract;
use crate::ledger::{Delivery, DeliveryState};
use crate::platform::{Platform, StepError};
use crate::ports::Queue;
use crate::quality::declaration::{self, Declaration};
use crate::quality::reception::{self, Arrival, Inputs, ReceptionRow, ReceptionStatus};
use crate::quality::{Metric, Status, check, store};
use crate::report::{self, Mode};

/// How far back deliveries are read: the calendar window plus the previous month
/// for the declaration's comparison.
pub const LOOKBACK_DAYS: i64 = 100;
/// Deliveries listed per dataset (newest first).
const LIST_LIMIT: usize = 100_000;
/// Metrics files read at once.
const PARALLEL_READS: usize = 16;

/// A delivery with its metrics (empty when it has no metrics file).
pub struct Seen {
    pub delivery: Delivery,
    pub metrics: Vec<Metric>,
}

pub struct Monitored {
    pub as_of: NaiveDate,
    pub reception: Vec<ReceptionRow>,
    /// This month's and last month's declarations.
    pub declarations: Vec<Declaration>,
    /// Every delivery in the lookback, newest first, with its metrics.
    pub deliveries: Vec<Seen>,
    /// Keys written in the lake store.
    pub written: Vec<String>,
    /// Messages waiting in each dead-letter queue (AWS; filled by the function).
    pub dead_letters: Vec<(String, u64)>,
    /// Deliveries stuck in `processing`: the lease ran out, or the process holding
    /// the claim ended. `replay` finishes them.
    pub stuck: Vec<Delivery>,
}

impl Monitored {
    /// Reporting units (and whole datasets) missing a period as of today.
    pub fn missing(&self) -> impl Iterator<Item = &ReceptionRow> {
        self.reception
            .iter()
            .filter(|r| r.status == ReceptionStatus::Missing)
    }
    pub fn count(&self, status: ReceptionStatus, units: bool) -> usize {
        self.reception
            .iter()
            .filter(|r| r.status == status && r.unit.is_some() == units)
            .count()
    }
    pub fn failed(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries
            .iter()
            .map(|s| &s.delivery)
            .filter(|d| d.state == DeliveryState::Failed)
    }
}

pub fn reception_key(as_of: NaiveDate) -> String {
    crate::layout::reception_key(as_of)
}

pub fn declaration_key(month: NaiveDate) -> String {
    crate::layout::declaration_key(month)
}

async fn deliveries(p: &Platform, c: &Contract, since: NaiveDate) -> Result<Vec<Seen>, StepError> {
    let listed = p.ledger.list(Some(&c.id), LIST_LIMIT).await?;
    let recent: Vec<Delivery> = listed
        .into_iter()
        .filter(|d| d.received_at.date_naive() >= since || d.delivery_date >= since)
        .collect();
    futures::stream::iter(recent)
        .map(|d| async move {
            let key = store::metrics_key(d.delivery_date, &d.delivery_id);
            // A retracted delivery's metrics left the table with its rows (the file
            // stays in history for the retention period).
            let retracted = d.state == crate::ledger::DeliveryState::Retracted;
            let stored = if retracted {
                None
            } else {
                p.stores.lake.get(&key).await?
            };
            let metrics = match stored {
                Some(bytes) => {
                    store::read_metrics(bytes)
                        .map_err(|m| StepError::Internal(format!("reading {key}: {m}")))?
                        .1
                }
                None => Vec::new(),
            };
            Ok::<_, StepError>(Seen {
                delivery: d,
                metrics,
            })
        })
        .buffered(PARALLEL_READS)
        .try_collect()
        .await
}

fn arrival(c: &Contract, s: &Seen) -> Arrival {
    let table = c.table();
    let own = || s.metrics.iter().filter(|m| m.table == table);
    let rows = own().find(|m| m.check == check::ROWS);
    Arrival {
        delivery_date: s.delivery.delivery_date,
        received_at: s.delivery.received_at,
        rows: s.delivery.outcome.rows_accepted,
        volume_anomaly: rows.is_some_and(|m| m.status == Status::Fail),
        units: own()
            .filter(|m| m.check == check::ROWS_PER_UNIT)
            .filter_map(|m| {
                let unit = m.unit.clone()?;
                Some((
                    unit,
                    m.value.unwrap_or(0.0) as u64,
                    m.status == Status::Fail,
                ))
            })
            .collect(),
    }
}

/// Runs the monitor as of `as_of` and writes its tables.
pub fn monitor<'a>(
    p: &'a Platform,
    as_of: NaiveDate,
) -> crate::Boxed<'a, Result<Monitored, StepError>> {
    Box::pin(monitor_inner(p, as_of))
}

/// The body of [`monitor`].
async fn monitor_inner(p: &Platform, as_of: NaiveDate) -> Result<Monitored, StepError> {
    let mut m = observe(p, as_of).await?;
    write(p, &mut m).await?;
    Ok(m)
}

/// The daily run (the monitor function, `naerdata report`): runs the monitor as of
/// `as_of`, counts the messages waiting in each named dead-letter queue, and writes
/// the operator page to the lake store. Returns what it saw and the page.
pub fn run_and_page<'a>(
    p: &'a Platform,
    as_of: NaiveDate,
    mode: Mode,
    dead_letter_queues: &'a [(String, Arc<dyn Queue>)],
) -> crate::Boxed<'a, Result<(Monitored, String), StepError>> {
    Box::pin(run_and_page_inner(p, as_of, mode, dead_letter_queues))
}

/// The body of [`run_and_page`].
async fn run_and_page_inner(
    p: &Platform,
    as_of: NaiveDate,
    mode: Mode,
    dead_letter_queues: &[(String, Arc<dyn Queue>)],
) -> Result<(Monitored, String), StepError> {
    let mut m = monitor(p, as_of).await?;
    for (name, q) in dead_letter_queues {
        match q.depth().await {
            Ok(n) => m.dead_letters.push((name.clone(), n)),
            // The page and the other metrics are still worth having.
            Err(e) => tracing::warn!(queue = %name, error = %e, "dead-letter queue depth unknown"),
        }
    }
    let html = report::render(&m, mode, p.clock.now());
    p.stores
        .lake
        .put(report::PAGE_KEY, html.clone().into())
        .await?;
    Ok((m, html))
}

/// Computes the calendar and declarations without writing anything (`status`).
pub fn observe<'a>(
    p: &'a Platform,
    as_of: NaiveDate,
) -> crate::Boxed<'a, Result<Monitored, StepError>> {
    Box::pin(observe_inner(p, as_of))
}

/// The body of [`observe`].
async fn observe_inner(p: &Platform, as_of: NaiveDate) -> Result<Monitored, StepError> {
    let since = as_of - Duration::days(LOOKBACK_DAYS);
    let kommuner: Vec<String> = crate::reference::kommuner()
        .iter()
        .map(|k| k.code.clone())
        .collect();
    // The register of expected reporting units, as loaded now.
    let reference = crate::reference::store::current(p.stores.lake.as_ref())
        .await
        .map_err(|e| StepError::Internal(e.to_string()))?;
    let this_month = declaration::month_of(as_of);
    let last_month = declaration::previous_month(this_month);
    let last_month_end = this_month - Duration::days(1);

    let mut out = Monitored {
        as_of,
        reception: Vec::new(),
        declarations: Vec::new(),
        deliveries: Vec::new(),
        written: Vec::new(),
        dead_letters: Vec::new(),
        stuck: Vec::new(),
    };
    for c in p.contracts.iter() {
        let Some(rec) = &c.reception else { continue };
        let seen = deliveries(p, c, since).await?;
        let accepted: Vec<Arrival> = seen
            .iter()
            .filter(|s| {
                matches!(
                    s.delivery.state,
                    DeliveryState::Accepted | DeliveryState::AcceptedWithWarnings
                )
            })
            .map(|s| arrival(c, s))
            .collect();
        let registered: Vec<(String, NaiveDate, Option<NaiveDate>)> = reference
            .units_of(&c.id, since, as_of)
            .map(|u| (u.unit.clone(), u.valid_from, u.valid_to))
            .collect();
        let inputs = Inputs {
            source: &c.source,
            dataset: &c.id,
            reception: rec,
            arrivals: &accepted,
            kommuner: &kommuner,
            registered: &registered,
        };
        let calendar = reception::calendar(&inputs, as_of);

        // Declarations: last month as of its end, this month so far.
        let mut by_month: BTreeMap<NaiveDate, Vec<&[Metric]>> = BTreeMap::new();
        for s in seen.iter().filter(|s| s.delivery.state.is_final()) {
            by_month
                .entry(declaration::month_of(s.delivery.delivery_date))
                .or_default()
                .push(&s.metrics);
        }
        let table = c.table();
        let empty = Vec::new();
        // A dataset that only started delivering this month expected nothing before.
        let started = accepted.iter().any(|a| a.delivery_date <= last_month_end);
        let previous_calendar = if started {
            reception::calendar(&inputs, last_month_end)
        } else {
            Vec::new()
        };
        let previous = declaration::declare(
            last_month,
            &c.source,
            &c.id,
            &table,
            &previous_calendar,
            by_month.get(&last_month).unwrap_or(&empty),
        );
        let mut current = declaration::declare(
            this_month,
            &c.source,
            &c.id,
            &table,
            &calendar,
            by_month.get(&this_month).unwrap_or(&empty),
        );
        out.reception.extend(calendar);
        declaration::compare(&mut current, &previous);
        out.declarations.push(previous);
        out.declarations.push(current);
        out.deliveries.extend(seen);
    }
    out.deliveries
        .sort_by_key(|s| std::cmp::Reverse(s.delivery.received_at));
    for s in &out.deliveries {
        if crate::process::claim_is_stale(p, &s.delivery).await? {
            out.stuck.push(s.delivery.clone());
        }
    }
    Ok(out)
}

/// Writes the reception calendar and both months' declarations.
pub async fn write(p: &Platform, out: &mut Monitored) -> Result<(), StepError> {
    let as_of = out.as_of;
    let this_month = declaration::month_of(as_of);
    let last_month = declaration::previous_month(this_month);

    let put = |key: String, bytes| async move {
        p.stores.lake.put(&key, bytes).await?;
        Ok::<_, StepError>(key)
    };
    let bytes = store::parquet(&reception::batch(&out.reception)).map_err(StepError::Internal)?;
    out.written.push(put(reception_key(as_of), bytes).await?);
    for month in [last_month, this_month] {
        let rows: Vec<Declaration> = out
            .declarations
            .iter()
            .filter(|d| d.month == month)
            .cloned()
            .collect();
        let bytes = store::parquet(&declaration::batch(&rows)).map_err(StepError::Internal)?;
        out.written.push(put(declaration_key(month), bytes).await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::local::MemoryQueue;

    #[tokio::test]
    async fn a_run_counts_dead_letters_and_writes_the_page() {
        let home = tempfile::tempdir().unwrap();
        let p = Platform::local(home.path(), Registry::builtin()).unwrap();
        let dlq = Arc::new(MemoryQueue::new("receive-dlq"));
        dlq.send("{}", &[]).await.unwrap();
        let q: Arc<dyn Queue> = dlq.clone();
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 8).unwrap();

        let (m, html) = run_and_page(&p, as_of, Mode::Aws, &[("receive".to_string(), q)])
            .await
            .unwrap();
        assert_eq!(m.dead_letters, [("receive".to_string(), 1)]);
        assert_eq!(dlq.len(), 1, "counting takes nothing off the queue");
        assert!(m.written.contains(&reception_key(as_of)), "{:?}", m.written);
        let stored = p.stores.lake.get(report::PAGE_KEY).await.unwrap().unwrap();
        assert_eq!(stored, html.as_bytes());
        assert!(html.contains("naerdata --aws redrive receive"));

        // Locally there are no dead-letter queues: the page has no table for them.
        let (m, html) = run_and_page(&p, as_of, Mode::Local, &[]).await.unwrap();
        assert!(m.dead_letters.is_empty());
        assert!(!html.contains("dlq-table"));
    }
}
