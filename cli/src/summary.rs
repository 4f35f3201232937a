//! What `demo` and `status` print.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use arrow::array::AsArray;
use naerdata::Platform;
use naerdata::ledger::DeliveryState;

use crate::ingest::Ingested;

pub async fn print_demo(
    p: &Platform,
    home: &Path,
    results: &[Ingested],
    published: &naerdata::publish::Published,
    last_day: chrono::NaiveDate,
) -> Result<()> {
    #[derive(Default)]
    struct Row {
        deliveries: BTreeMap<&'static str, u64>,
        accepted: u64,
        rejected: u64,
    }
    let mut by: BTreeMap<&str, Row> = BTreeMap::new();
    for r in results {
        let e = by.entry(r.dataset.as_str()).or_default();
        *e.deliveries
            .entry(r.state.map_or("?", |s| s.as_str()))
            .or_default() += 1;
        e.accepted += r.rows_accepted;
        e.rejected += r.rows_rejected;
    }
    println!("\nnaerdata demo: {} deliveries ingested\n", results.len());
    println!(
        "{:<26} {:>10} {:>14} {:>13}  outcomes",
        "dataset", "deliveries", "rows accepted", "rows rejected"
    );
    for (ds, r) in &by {
        let outcomes: Vec<String> = r
            .deliveries
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect();
        println!(
            "{ds:<26} {:>10} {:>14} {:>13}  {}",
            r.deliveries.values().sum::<u64>(),
            r.accepted,
            r.rejected,
            outcomes.join(" ")
        );
    }
    let lake = p.stores.lake.locate(naerdata::layout::CURATED_ZONE);
    println!("\nParquet lake:   {lake}/<table>/year=YYYY/month=MM/*.parquet");
    println!(
        "DuckDB catalog: {}",
        p.stores.lake.locate(naerdata::catalog::CATALOG_KEY)
    );
    println!("Receipts:       {}", p.stores.receipts.locate(""));
    println!("Ledger:         {}", home.join("ledger.sqlite").display());
    let sql = "SELECT sygdomsomraade, count(DISTINCT person_id) AS persons, count(*) AS rows \
               FROM almenpraksis_diagnose GROUP BY sygdomsomraade ORDER BY persons DESC";
    println!(
        "\nExample query:  naerdata --home {} query \"{sql}\"\n",
        home.display()
    );
    let batches = naerdata::catalog::query(p, sql).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    print_published(published);
    if let Some((_, rehab)) = published.batches.iter().find(|(n, _)| n == "rehab_effekt") {
        // The quarters whose 90 days of follow-up lie within the delivered days: the
        // publication is as of the day the last quarter closes, but the generated data
        // stop before its follow-up does.
        let follow_up = chrono::Duration::days(
            naerdata::publish::mart("rehab_effekt").map_or(90, |m| i64::from(m.follow_up_days)),
        );
        let covered =
            |label: &str| quarter_end(label).is_some_and(|end| end + follow_up <= last_day);
        println!(
            "\nRehabilitation effect, the country and its regions (§140 courses ended in quarters \
             whose 90 days of follow-up lie within the deliveries, up to {last_day}; acute hospital \
             and GP contacts in the 90 days before the admission and the 30/90 days after the \
             course; blank = suppressed):"
        );
        let column = |n: &str| {
            rehab
                .column_by_name(n)
                .and_then(|c| c.as_string_opt::<i32>())
        };
        let mut shown = arrow::array::BooleanBuilder::new();
        if let (Some(q), Some(level)) = (column("kvartal"), column("niveau")) {
            for i in 0..rehab.num_rows() {
                shown.append_value(
                    covered(q.value(i)) && ["land", "region"].contains(&level.value(i)),
                );
            }
        }
        let shown = arrow::compute::filter_record_batch(rehab, &shown.finish())?;
        // The counts and the rates per 100 courses; the shares, the standardised rates
        // and the rule set are in the published table.
        let keep: Vec<usize> = [
            "kvartal",
            "kommunekode",
            "forloeb_afsluttet",
            "akut_hospital_foer_90d",
            "akut_hospital_30d",
            "akut_hospital_90d",
            "almen_praksis_foer_90d",
            "almen_praksis_90d",
            "akutte_kontakter_foer_90d_pr_100",
            "akutte_kontakter_90d_pr_100",
        ]
        .iter()
        .filter_map(|n| shown.schema().index_of(n).ok())
        .collect();
        println!(
            "{}",
            arrow::util::pretty::pretty_format_batches(&[shown.project(&keep)?])?
        );
        println!(
            "(clusters and municipalities are in the published table: `SELECT * FROM rehab_effekt`; \
             later quarters are published too, their after-windows still open in the demo's data)"
        );
        if let Some(spec) = naerdata::publish::mart("rehab_effekt") {
            for caveat in &spec.caveats {
                println!("note: {caveat}");
            }
        }
        println!("rule set: {}", naerdata::disclosure::RULE_SET);
    }
    Ok(())
}

pub fn print_published(published: &naerdata::publish::Published) {
    println!("\nPresentation zone:");
    for (t, n) in &published.tables {
        match published.current.iter().find(|m| &m.table == t) {
            Some(m) => println!("  {t:<34} {n:>9} rows  {}", m.how),
            None => println!("  {t:<34} {n:>9} rows"),
        }
    }
    for m in &published.marts {
        let o = &m.outcome;
        println!(
            "  mart {:<29} {:>9} rows  {} period(s): {} new, {} revised, {} frozen; \
             suppressed in what is new: {} primary, {} secondary  ({})",
            m.name,
            m.rows,
            m.periods,
            o.new_periods.len(),
            o.revised.len(),
            o.frozen,
            o.primary_suppressed,
            o.secondary_suppressed,
            m.key
        );
    }
}

pub async fn print_status(p: &Platform, recent: usize) -> Result<()> {
    let all = p.ledger.list(None, usize::MAX >> 1).await?;
    let mut states: BTreeMap<DeliveryState, u64> = BTreeMap::new();
    let mut latest: BTreeMap<&str, &naerdata::ledger::Delivery> = BTreeMap::new();
    for d in &all {
        *states.entry(d.state).or_default() += 1;
        latest.entry(d.dataset.as_str()).or_insert(d);
    }
    println!("deliveries: {}", all.len());
    for (s, n) in &states {
        println!("  {s:<24} {n}");
    }
    println!("\nlatest per dataset:");
    for (ds, d) in &latest {
        println!(
            "  {ds:<26} {}  {:<22} {} rows  {}",
            d.received_at.format("%Y-%m-%d %H:%M"),
            d.state.as_str(),
            d.outcome.rows_accepted,
            d.delivery_id
        );
    }
    let failed: Vec<_> = all
        .iter()
        .filter(|d| d.state == DeliveryState::Failed)
        .collect();
    if !failed.is_empty() {
        println!("\nfailed (replay with `naerdata replay <id>`):");
        for d in failed {
            println!(
                "  {}  {}  {}",
                d.delivery_id,
                naerdata::privacy::display(&d.object_key),
                naerdata::privacy::display(d.outcome.message.as_deref().unwrap_or(""))
            );
        }
    }
    let mut stuck = Vec::new();
    for d in all.iter().filter(|d| d.state == DeliveryState::Processing) {
        if naerdata::process::claim_is_stale(p, d).await? {
            stuck.push(d);
        }
    }
    if !stuck.is_empty() {
        println!("\nstuck in processing, their worker gone (finish with `naerdata replay <id>`):");
        for d in stuck {
            println!(
                "  {}  {}  since {}",
                d.delivery_id,
                naerdata::privacy::display(&d.object_key),
                d.updated_at.format("%Y-%m-%d %H:%M")
            );
        }
    }
    println!("\nrecent:");
    for d in all.iter().take(recent) {
        println!(
            "  {}  {:<22} {:<26} {}",
            d.delivery_id,
            d.state.as_str(),
            d.dataset,
            naerdata::privacy::display(&d.file_name)
        );
    }
    Ok(())
}

/// What the reception calendar says as of today: per dataset, and the units missing.
pub fn print_reception(m: &naerdata::monitor::Monitored) {
    println!(
        "\nreception as of {} (naerdata report writes the page):",
        m.as_of
    );
    let mut per: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for r in &m.reception {
        let n = per.entry(r.dataset.as_str()).or_default();
        n[r.status as usize] += 1;
    }
    println!(
        "  {:<26} {:>8} {:>6} {:>8} {:>8}   (periods, whole dataset and per unit)",
        "dataset", "on time", "late", "missing", "pending"
    );
    for (ds, n) in &per {
        println!("  {ds:<26} {:>8} {:>6} {:>8} {:>8}", n[0], n[1], n[2], n[3]);
    }
    let missing: Vec<_> = m
        .missing()
        .filter(|r| r.period_start + chrono::Duration::days(7) >= m.as_of)
        .collect();
    if !missing.is_empty() {
        println!("\nmissing in the last 7 days:");
        for r in missing.iter().take(30) {
            println!(
                "  {:<26} {:<10} {}  expected by {}{}",
                r.dataset,
                r.unit.as_deref().unwrap_or("(all)"),
                r.period_start,
                r.expected_by,
                if r.past_deadline {
                    ", PAST THE DEADLINE"
                } else {
                    ""
                }
            );
        }
        if missing.len() > 30 {
            println!("  ... and {} more", missing.len() - 30);
        }
    }
}

/// The last day of quarter `label` ("2026-Q2").
fn quarter_end(label: &str) -> Option<chrono::NaiveDate> {
    let (year, q) = label.split_once("-Q")?;
    let (year, q): (i32, u32) = (year.parse().ok()?, q.parse().ok()?);
    let (y, m) = if q >= 4 {
        (year + 1, 1)
    } else {
        (year, q * 3 + 1)
    };
    chrono::NaiveDate::from_ymd_opt(y, m, 1)?.pred_opt()
}
