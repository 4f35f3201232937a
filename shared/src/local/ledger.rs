//! The ledger in a SQLite file. Unique keys make registration idempotent; every state
//! change is an `UPDATE ... WHERE state IN (...)`, so two workers cannot both move a
//! delivery.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::ledger::{Delivery, DeliveryState, NewDelivery, Outcome, Registration};
use crate::ports::{Ledger, LedgerError};

pub struct SqliteLedger {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id    TEXT PRIMARY KEY,
    dataset        TEXT NOT NULL,
    source         TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    object_version TEXT NOT NULL,
    file_name      TEXT NOT NULL,
    delivery_date  TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    state          TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    duplicate_of   TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    rows_read      INTEGER NOT NULL DEFAULT 0,
    rows_accepted  INTEGER NOT NULL DEFAULT 0,
    rows_rejected  INTEGER NOT NULL DEFAULT 0,
    message        TEXT,
    UNIQUE (object_key, object_version)
);
CREATE INDEX IF NOT EXISTS deliveries_by_dataset ON deliveries (dataset, received_at);
-- One owner per content per dataset: the first delivery of those bytes.
CREATE TABLE IF NOT EXISTS content_hashes (
    dataset     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    PRIMARY KEY (dataset, sha256)
);
-- Who holds a `processing` claim: this machine's process id and that process's start
-- time, so a claim whose process has ended is taken over at once.
CREATE TABLE IF NOT EXISTS claims (
    delivery_id TEXT PRIMARY KEY,
    pid         INTEGER NOT NULL,
    started     TEXT NOT NULL
);
";

/// The start time of process `pid` (clock ticks since boot, `/proc/<pid>/stat` field
/// 22), which tells a live process from a later one that reused its id. `None` when
/// the process does not exist or the system has no `/proc`.
fn process_started(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
}

/// Whether this system can tell if a process runs (`/proc` of our own process).
fn can_see_processes() -> bool {
    process_started(std::process::id()).is_some()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn backend(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Backend(e.to_string())
}

const COLUMNS: &str = "delivery_id, dataset, source, object_key, object_version, file_name, \
    delivery_date, sha256, size, state, received_at, updated_at, duplicate_of, attempts, \
    rows_read, rows_accepted, rows_rejected, message";

fn row_to_delivery(r: &rusqlite::Row) -> rusqlite::Result<Delivery> {
    let parse_ts = |s: String| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    };
    let state: String = r.get(9)?;
    let date: String = r.get(6)?;
    Ok(Delivery {
        delivery_id: r.get(0)?,
        dataset: r.get(1)?,
        source: r.get(2)?,
        object_key: r.get(3)?,
        object_version: r.get(4)?,
        file_name: r.get(5)?,
        delivery_date: NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        sha256: r.get(7)?,
        size: r.get::<_, i64>(8)? as u64,
        state: DeliveryState::parse(&state).ok_or_else(|| {
            rusqlite::Error::ToSqlConversionFailure(format!("unknown state {state}").into())
        })?,
        received_at: parse_ts(r.get(10)?)?,
        updated_at: parse_ts(r.get(11)?)?,
        duplicate_of: r.get(12)?,
        attempts: r.get::<_, i64>(13)? as u32,
        outcome: Outcome {
            rows_read: r.get::<_, i64>(14)? as u64,
            rows_accepted: r.get::<_, i64>(15)? as u64,
            rows_rejected: r.get::<_, i64>(16)? as u64,
            message: r.get(17)?,
        },
    })
}

impl SqliteLedger {
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        // WAL + a busy timeout let a CLI and a test read while another process writes.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(SqliteLedger {
            conn: Mutex::new(conn),
        })
    }

    /// Records this process as the holder of the claim on `id`.
    fn record_claim(conn: &Connection, id: &str) -> Result<(), LedgerError> {
        let pid = std::process::id();
        conn.execute(
            "INSERT OR REPLACE INTO claims (delivery_id, pid, started) VALUES (?1, ?2, ?3)",
            params![id, pid as i64, process_started(pid).unwrap_or_default()],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn get_sync(conn: &Connection, id: &str) -> Result<Option<Delivery>, LedgerError> {
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM deliveries WHERE delivery_id = ?1"),
            [id],
            row_to_delivery,
        )
        .optional()
        .map_err(backend)
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn register(&self, d: &NewDelivery) -> Result<Registration, LedgerError> {
        let mut conn = self.conn.lock().expect("ledger lock");
        let tx = conn.transaction().map_err(backend)?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO deliveries (delivery_id, dataset, source, object_key, \
                 object_version, file_name, delivery_date, sha256, size, state, received_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'received', ?10, ?10)",
                params![
                    d.delivery_id,
                    d.dataset,
                    d.source,
                    d.object_key,
                    d.object_version,
                    d.file_name,
                    d.delivery_date.to_string(),
                    d.sha256,
                    d.size as i64,
                    ts(d.received_at),
                ],
            )
            .map_err(backend)?;
        if inserted == 0 {
            // Same delivery id, or the same object key+version under another id.
            let known = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM deliveries WHERE delivery_id = ?1 \
                         OR (object_key = ?2 AND object_version = ?3)"
                    ),
                    params![d.delivery_id, d.object_key, d.object_version],
                    row_to_delivery,
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            return Ok(Registration::Known(known));
        }
        let owner = tx
            .execute(
                "INSERT OR IGNORE INTO content_hashes (dataset, sha256, delivery_id) VALUES (?1, ?2, ?3)",
                params![d.dataset, d.sha256, d.delivery_id],
            )
            .map_err(backend)?;
        let mut duplicate = owner == 0;
        if duplicate {
            // Identical content is "already delivered" unless its holder was
            // rejected. A failed holder stays the holder: it may have committed rows
            // before it failed, so its content is retried through it (receive replays
            // it), never through a second delivery.
            let state: String = tx
                .query_row(
                    "SELECT d.state FROM content_hashes c \
                     JOIN deliveries d ON d.delivery_id = c.delivery_id \
                     WHERE c.dataset = ?1 AND c.sha256 = ?2",
                    params![d.dataset, d.sha256],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if state == DeliveryState::Rejected.as_str() {
                tx.execute(
                    "UPDATE content_hashes SET delivery_id = ?3 WHERE dataset = ?1 AND sha256 = ?2",
                    params![d.dataset, d.sha256, d.delivery_id],
                )
                .map_err(backend)?;
                duplicate = false;
            }
        }
        if duplicate {
            tx.execute(
                "UPDATE deliveries SET state = 'duplicate', duplicate_of = \
                 (SELECT delivery_id FROM content_hashes WHERE dataset = ?2 AND sha256 = ?3) \
                 WHERE delivery_id = ?1",
                params![d.delivery_id, d.dataset, d.sha256],
            )
            .map_err(backend)?;
        }
        let stored = Self::get_sync(&tx, &d.delivery_id)?.expect("inserted above");
        tx.commit().map_err(backend)?;
        Ok(if duplicate {
            Registration::Duplicate(stored)
        } else {
            Registration::New(stored)
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Delivery>, LedgerError> {
        let conn = self.conn.lock().expect("ledger lock");
        Self::get_sync(&conn, id)
    }

    async fn transition(
        &self,
        id: &str,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
        outcome: Option<&Outcome>,
    ) -> Result<bool, LedgerError> {
        let conn = self.conn.lock().expect("ledger lock");
        let states = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let o = outcome.cloned().unwrap_or_default();
        let n = conn
            .execute(
                &format!(
                    "UPDATE deliveries SET state = ?2, updated_at = ?3, \
                     attempts = attempts + (?2 = 'processing'), \
                     rows_read = CASE WHEN ?4 THEN ?5 ELSE rows_read END, \
                     rows_accepted = CASE WHEN ?4 THEN ?6 ELSE rows_accepted END, \
                     rows_rejected = CASE WHEN ?4 THEN ?7 ELSE rows_rejected END, \
                     message = CASE WHEN ?4 THEN ?8 ELSE message END \
                     WHERE delivery_id = ?1 AND state IN ({states})"
                ),
                params![
                    id,
                    to.as_str(),
                    ts(at),
                    outcome.is_some(),
                    o.rows_read as i64,
                    o.rows_accepted as i64,
                    o.rows_rejected as i64,
                    o.message,
                ],
            )
            .map_err(backend)?;
        if n == 0 && Self::get_sync(&conn, id)?.is_none() {
            return Err(LedgerError::Unknown { id: id.to_string() });
        }
        if n == 1 && to == DeliveryState::Processing {
            Self::record_claim(&conn, id)?;
        }
        Ok(n == 1)
    }

    async fn take_over(
        &self,
        id: &str,
        read_updated_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let conn = self.conn.lock().expect("ledger lock");
        let n = conn
            .execute(
                "UPDATE deliveries SET updated_at = ?3, attempts = attempts + 1 \
                 WHERE delivery_id = ?1 AND state = 'processing' AND updated_at = ?2",
                params![id, ts(read_updated_at), ts(at)],
            )
            .map_err(backend)?;
        if n == 0 && Self::get_sync(&conn, id)?.is_none() {
            return Err(LedgerError::Unknown { id: id.to_string() });
        }
        if n == 1 {
            Self::record_claim(&conn, id)?;
        }
        Ok(n == 1)
    }

    async fn claim_abandoned(&self, id: &str) -> Result<bool, LedgerError> {
        if !can_see_processes() {
            return Ok(false);
        }
        let conn = self.conn.lock().expect("ledger lock");
        let claim: Option<(i64, String)> = conn
            .query_row(
                "SELECT c.pid, c.started FROM claims c JOIN deliveries d \
                 ON d.delivery_id = c.delivery_id WHERE c.delivery_id = ?1 AND d.state = 'processing'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        Ok(match claim {
            // A claim from before claims were recorded: wait for the lease.
            None => false,
            Some((pid, started)) => {
                u32::try_from(pid).ok().and_then(process_started).as_deref()
                    != Some(started.as_str())
            }
        })
    }

    async fn retract(
        &self,
        id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let mut conn = self.conn.lock().expect("ledger lock");
        let tx = conn.transaction().map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE deliveries SET state = 'retracted', updated_at = ?2, message = ?3 \
                 WHERE delivery_id = ?1 AND state IN ('accepted', 'accepted_with_warnings')",
                params![id, ts(at), reason],
            )
            .map_err(backend)?;
        if n == 0 {
            let known = Self::get_sync(&tx, id)?.is_some();
            return if known {
                Ok(false)
            } else {
                Err(LedgerError::Unknown { id: id.to_string() })
            };
        }
        tx.execute(
            "DELETE FROM content_hashes WHERE delivery_id = ?1",
            params![id],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(true)
    }

    async fn list(
        &self,
        dataset: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let conn = self.conn.lock().expect("ledger lock");
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE (?1 IS NULL OR dataset = ?1) \
                 ORDER BY received_at DESC, delivery_id LIMIT ?2"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![dataset, limit as i64], row_to_delivery)
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn received_on(
        &self,
        dataset: &str,
        day: NaiveDate,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let conn = self.conn.lock().expect("ledger lock");
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE dataset = ?1 \
                 AND received_at BETWEEN ?2 AND ?3 ORDER BY received_at DESC, delivery_id"
            ))
            .map_err(backend)?;
        let (from, to) = crate::ledger::day_bounds(day);
        let rows = stmt
            .query_map(params![dataset, from, to], row_to_delivery)
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_like_a_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap();
        crate::ledger::conformance::check(&l).await;
    }

    /// A claim held by a process that has ended is abandoned at once; one held by a
    /// running process (this one) is not.
    #[tokio::test]
    async fn a_claim_of_an_ended_process_is_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let d = NewDelivery {
            delivery_id: "a".into(),
            dataset: "almenpraksis.diagnose".into(),
            source: "almenpraksis".into(),
            object_key: "k".into(),
            object_version: "v".into(),
            file_name: "f.csv".into(),
            delivery_date: t0.date_naive(),
            sha256: "h".into(),
            size: 1,
            received_at: t0,
        };
        l.register(&d).await.unwrap();
        assert!(
            l.transition(
                "a",
                &[DeliveryState::Received],
                DeliveryState::Processing,
                t0,
                None
            )
            .await
            .unwrap()
        );
        assert!(
            !l.claim_abandoned("a").await.unwrap(),
            "this process holds it"
        );
        // The holder ended (a pid no process has).
        l.conn
            .lock()
            .unwrap()
            .execute(
                "UPDATE claims SET pid = 4194303999 WHERE delivery_id = 'a'",
                [],
            )
            .unwrap();
        assert!(l.claim_abandoned("a").await.unwrap());
        assert!(l.take_over("a", t0, t0).await.unwrap());
        assert!(
            !l.claim_abandoned("a").await.unwrap(),
            "taken over by this process"
        );
    }
}
