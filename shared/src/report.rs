//! The operator page: one static HTML file, readable without a network connection
//! (inline CSS and SVG, no scripts), drawn from the monitor's output. It shows the
//! reception heatmaps, what is missing or late, rejected and failed deliveries with
//! the command that replays them, quality trends per dataset with the failing checks,
//! and the monthly quality declarations. It holds no person-level value: counts,
//! shares, dataset names, reporting-unit codes and the suppliers' file names.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::ledger::DeliveryState;
use crate::monitor::Monitored;
use crate::quality::reception::{ReceptionRow, ReceptionStatus};
use crate::quality::{Kahn, Status, check};

/// Where the monitor publishes the page in the lake store.
pub use crate::layout::OPERATOR_PAGE_KEY as PAGE_KEY;

/// How the page tells an operator to replay a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Aws,
}

/// Escapes text for HTML (shared with the municipality pages).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A reception cell's colour (the legend's), on the operator and municipality pages.
pub(crate) fn colour(r: &ReceptionRow) -> &'static str {
    match (r.status, r.past_deadline, r.volume_anomaly) {
        (ReceptionStatus::OnTime, _, true) => "#a6bddb",
        (ReceptionStatus::OnTime, _, false) => "#1a9850",
        (ReceptionStatus::Late, _, _) => "#fdae61",
        (ReceptionStatus::Missing, true, _) => "#a50026",
        (ReceptionStatus::Missing, false, _) => "#f46d43",
        (ReceptionStatus::Pending, _, _) => "#e0e0e0",
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1400px}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}\
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.n{text-align:right}code{background:#f4f4f4;padding:0 .2rem}\
.legend span{display:inline-block;width:.9rem;height:.9rem;margin:0 .3rem 0 1rem;vertical-align:middle}\
.kpi{display:inline-block;margin-right:2rem}.kpi b{font-size:1.4rem;display:block}\
.fail{color:#a50026;font-weight:bold}.ok{color:#1a9850}svg text{font-size:10px;font-family:sans-serif}";

/// A heatmap of rows x days, one rect per cell (class `cell`), a title per cell.
fn heatmap(out: &mut String, id: &str, rows: &[(String, Vec<&ReceptionRow>)], days: &[NaiveDate]) {
    const LABEL: usize = 170;
    const W: usize = 14;
    const H: usize = 14;
    let width = LABEL + W * days.len() + 40;
    let height = 30 + H * rows.len();
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"heatmap\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (x, d) in days.iter().enumerate() {
        if x % 7 == 0 {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"12\">{}</text>",
                LABEL + x * W,
                d.format("%d/%m")
            );
        }
    }
    for (y, (label, cells)) in rows.iter().enumerate() {
        let top = 20 + y * H;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text>",
            top + 11,
            esc(label)
        );
        for r in cells {
            let Some(x) = days.iter().position(|d| *d == r.period_start) else {
                continue;
            };
            let _ = write!(
                out,
                "<rect class=\"cell {}\" x=\"{}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"{}\">\
                 <title>{} {}: {}{}, {} rows</title></rect>",
                r.status.as_str(),
                LABEL + x * W,
                W - 2,
                H - 2,
                colour(r),
                esc(label),
                r.period_start,
                r.status.as_str(),
                if r.past_deadline {
                    " (past the deadline)"
                } else {
                    ""
                },
                r.rows
            );
        }
    }
    out.push_str("</svg>");
}

/// A small line chart of percentages per delivery (class `trend`).
/// (name, colour, points) of one line.
type Series<'a> = (&'a str, &'a str, Vec<(DateTime<Utc>, f64)>);

fn trend(out: &mut String, series: &[Series]) {
    const W: f64 = 360.0;
    const H: f64 = 90.0;
    let all: Vec<DateTime<Utc>> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .collect();
    let (Some(t0), Some(t1)) = (all.iter().min(), all.iter().max()) else {
        out.push_str("<p>No deliveries yet.</p>");
        return;
    };
    let span = (*t1 - *t0).num_seconds().max(1) as f64;
    let lo = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(100.0f64, f64::min)
        .min(90.0)
        .floor();
    let x = |t: DateTime<Utc>| 30.0 + (t - *t0).num_seconds() as f64 / span * (W - 40.0);
    let y = |v: f64| 10.0 + (100.0 - v) / (100.0 - lo).max(1.0) * (H - 25.0);
    let _ = write!(
        out,
        "<svg class=\"trend\" width=\"{W}\" height=\"{H}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"30\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"0\" y=\"{}\">100%</text><text x=\"0\" y=\"{}\">{lo}%</text>",
        y(lo),
        W - 10.0,
        y(lo),
        y(100.0) + 4.0,
        y(lo)
    );
    for (name, colour, points) in series {
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{name}</title></polyline>",
            path.join(" ")
        );
        for (t, v) in points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{colour}\"><title>{name} {v:.2} % ({})</title></circle>",
                x(*t),
                y(*v),
                t.format("%Y-%m-%d %H:%M")
            );
        }
    }
    out.push_str("</svg>");
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

fn change(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:+.1}"))
}

/// Renders the page.
pub fn render(m: &Monitored, mode: Mode, generated_at: DateTime<Utc>) -> String {
    let mut o = String::new();
    let replay = |id: &str| match mode {
        Mode::Local => format!("naerdata replay {id}"),
        Mode::Aws => format!("naerdata --aws replay {id}"),
    };
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>naerdata reception and quality {}</title><style>{CSS}</style></head><body>\
         <h1>naerdata — reception and quality, {}</h1>\
         <p>Generated {} from the ledger and the quality tables. No person-level data is shown.</p>",
        m.as_of,
        m.as_of,
        generated_at.format("%Y-%m-%d %H:%M UTC")
    );

    // Key figures.
    let week = m.as_of - Duration::days(6);
    let recent: Vec<_> = m
        .deliveries
        .iter()
        .filter(|s| s.delivery.received_at.date_naive() >= week)
        .collect();
    let count =
        |f: &dyn Fn(DeliveryState) -> bool| recent.iter().filter(|s| f(s.delivery.state)).count();
    let _ = write!(
        o,
        "<section id=\"kpis\"><div class=\"kpi\"><b>{}</b>deliveries, last 7 days</div>\
         <div class=\"kpi\"><b>{}</b>accepted</div><div class=\"kpi\"><b>{}</b>rejected</div>\
         <div class=\"kpi\"><b>{}</b>failed (replayable)</div>\
         <div class=\"kpi\"><b>{}</b>periods missing (all units, window)</div><div class=\"kpi\"><b>{}</b>late</div></section>",
        recent.len(),
        count(&|s| matches!(
            s,
            DeliveryState::Accepted | DeliveryState::AcceptedWithWarnings
        )),
        count(&|s| s == DeliveryState::Rejected),
        m.failed().count(),
        m.count(ReceptionStatus::Missing, true) + m.count(ReceptionStatus::Missing, false),
        m.count(ReceptionStatus::Late, true) + m.count(ReceptionStatus::Late, false),
    );

    // Heatmaps.
    // Columns are days: weekly unit periods are listed in the table, not drawn here.
    let mut days: Vec<NaiveDate> = m
        .reception
        .iter()
        .filter(|r| r.cadence == "daily")
        .map(|r| r.period_start)
        .collect();
    days.sort();
    days.dedup();
    let mut by_dataset: BTreeMap<String, Vec<&ReceptionRow>> = BTreeMap::new();
    let mut by_unit: BTreeMap<String, Vec<&ReceptionRow>> = BTreeMap::new();
    for r in &m.reception {
        match &r.unit {
            None => by_dataset.entry(r.dataset.clone()).or_default().push(r),
            Some(u) if r.cadence == "daily" => by_unit
                .entry(format!("{} {u}", r.dataset))
                .or_default()
                .push(r),
            Some(_) => {}
        }
    }
    o.push_str(
        "<h2 id=\"reception\">Reception</h2><p class=\"legend\">\
         <span style=\"background:#1a9850\"></span>on time<span style=\"background:#a6bddb\"></span>on time, unusual volume\
         <span style=\"background:#fdae61\"></span>late<span style=\"background:#f46d43\"></span>missing\
         <span style=\"background:#a50026\"></span>missing past the deadline<span style=\"background:#e0e0e0\"></span>not due yet</p>\
         <h3>Per dataset and day</h3>",
    );
    let rows: Vec<(String, Vec<&ReceptionRow>)> = by_dataset.into_iter().collect();
    heatmap(&mut o, "heatmap-datasets", &rows, &days);
    if !by_unit.is_empty() {
        o.push_str("<h3>Per municipality and day</h3>");
        let rows: Vec<(String, Vec<&ReceptionRow>)> = by_unit.into_iter().collect();
        heatmap(&mut o, "heatmap-units", &rows, &days);
    }

    // Units that delivered nothing in the window (a clinic in the register that never
    // delivered): listed apart, so they are not lost among the late periods below.
    let mut silent: BTreeMap<(&str, &str), (usize, bool)> = BTreeMap::new();
    for r in &m.reception {
        if let Some(u) = r.unit.as_deref() {
            let e = silent.entry((r.dataset.as_str(), u)).or_insert((0, false));
            e.0 += usize::from(r.status == ReceptionStatus::Missing);
            e.1 |= r.deliveries > 0;
        }
    }
    let silent: Vec<_> = silent
        .into_iter()
        .filter(|(_, (missing, delivered))| *missing > 0 && !delivered)
        .collect();
    let _ = write!(
        o,
        "<h2 id=\"silent\">Expected units with no delivery in the window ({})</h2>\
         <table id=\"silent-table\"><tr><th>dataset</th><th>unit</th><th>periods missing</th></tr>",
        silent.len()
    );
    for ((dataset, unit), (missing, _)) in &silent {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{missing}</td></tr>",
            esc(dataset),
            esc(unit)
        );
    }
    o.push_str("</table>");

    // Missing and late.
    let mut open: Vec<&ReceptionRow> = m
        .reception
        .iter()
        .filter(|r| matches!(r.status, ReceptionStatus::Missing | ReceptionStatus::Late))
        .collect();
    open.sort_by(|a, b| {
        b.past_deadline
            .cmp(&a.past_deadline)
            .then(b.period_start.cmp(&a.period_start))
    });
    let _ = write!(
        o,
        "<h2 id=\"missing\">Missing and late ({})</h2><table id=\"missing-table\"><tr><th>dataset</th><th>unit</th>\
         <th>period</th><th>expected by</th><th>deadline</th><th>status</th></tr>",
        open.len()
    );
    for r in open.iter().take(200) {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}{}</td></tr>",
            esc(&r.dataset),
            esc(r.unit.as_deref().unwrap_or("(all)")),
            r.period_start,
            r.expected_by,
            r.deadline,
            if r.past_deadline { "fail" } else { "" },
            r.status.as_str(),
            if r.past_deadline {
                ", past the deadline"
            } else {
                ""
            }
        );
    }
    o.push_str("</table>");
    if open.len() > 200 {
        let _ = write!(
            o,
            "<p>… and {} more (table quality_reception).</p>",
            open.len() - 200
        );
    }

    // Rejected and failed deliveries.
    o.push_str(
        "<h2 id=\"rejected\">Rejected deliveries</h2><table id=\"rejected-table\"><tr><th>received</th>\
         <th>dataset</th><th>file</th><th>rows read</th><th>rows rejected</th><th>why</th></tr>",
    );
    for s in m
        .deliveries
        .iter()
        .filter(|s| s.delivery.state == DeliveryState::Rejected)
        .take(100)
    {
        let d = &s.delivery;
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            d.received_at.format("%Y-%m-%d %H:%M"),
            esc(&d.dataset),
            // Receive withholds a CPR-shaped name; `display` is the last guard (and
            // escapes control characters).
            esc(&crate::privacy::display(&d.file_name)),
            d.outcome.rows_read,
            d.outcome.rows_rejected,
            esc(d.outcome.message.as_deref().unwrap_or("see the receipt"))
        );
    }
    o.push_str("</table><h2 id=\"failed\">Failed deliveries (replay them)</h2><table id=\"failed-table\"><tr><th>received</th><th>dataset</th><th>attempts</th><th>error</th><th>replay</th></tr>");
    for d in m.failed() {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            d.received_at.format("%Y-%m-%d %H:%M"),
            esc(&d.dataset),
            d.attempts,
            esc(d.outcome.message.as_deref().unwrap_or("")),
            esc(&replay(&d.delivery_id))
        );
    }
    o.push_str("</table>");
    let _ = write!(
        o,
        "<h2 id=\"stuck\">Stuck in processing ({}): the worker is gone, replay finishes them</h2>\
         <table id=\"stuck-table\"><tr><th>received</th><th>dataset</th><th>claimed</th><th>attempts</th><th>replay</th></tr>",
        m.stuck.len()
    );
    for d in &m.stuck {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            d.received_at.format("%Y-%m-%d %H:%M"),
            esc(&d.dataset),
            d.updated_at.format("%Y-%m-%d %H:%M"),
            d.attempts,
            esc(&replay(&d.delivery_id))
        );
    }
    o.push_str("</table>");
    if mode == Mode::Aws {
        o.push_str("<table id=\"dlq-table\"><tr><th>dead-letter queue</th><th>messages</th><th>move them back</th></tr>");
        for (name, n) in &m.dead_letters {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{n}</td><td><code>naerdata --aws redrive {}</code></td></tr>",
                esc(name),
                esc(name)
            );
        }
        o.push_str("</table>");
    }

    // Quality trends.
    o.push_str("<h2 id=\"quality\">Quality per dataset</h2>");
    let mut datasets: BTreeMap<&str, Vec<&crate::monitor::Seen>> = BTreeMap::new();
    for s in m.deliveries.iter().filter(|s| !s.metrics.is_empty()) {
        datasets.entry(&s.delivery.dataset).or_default().push(s);
    }
    for (dataset, seen) in &datasets {
        let share = |s: &crate::monitor::Seen, cat: Kahn, name: &str| {
            let (mut bad, mut den) = (0u64, 0u64);
            for x in s
                .metrics
                .iter()
                .filter(|x| x.category == cat && x.check == name)
            {
                bad += x.violated;
                den += x.denominator;
            }
            (den > 0).then(|| 100.0 * (den - bad.min(den)) as f64 / den as f64)
        };
        let mut completeness = Vec::new();
        let mut validity = Vec::new();
        for s in seen.iter().rev() {
            let t = s.delivery.received_at;
            if let Some(v) = share(s, Kahn::Completeness, check::COMPLETENESS) {
                completeness.push((t, v));
            }
            if let Some(v) = share(s, Kahn::ConformanceValue, check::CONFORMANCE) {
                validity.push((t, v));
            }
        }
        let _ = write!(
            o,
            "<h3>{}</h3><p>Completeness (blue) and validity (green) per delivery, in %.</p>",
            esc(dataset)
        );
        trend(
            &mut o,
            &[
                ("completeness", "#4575b4", completeness),
                ("validity", "#1a9850", validity),
            ],
        );
        let latest = seen[0];
        let failing: Vec<_> = latest
            .metrics
            .iter()
            .filter(|x| matches!(x.status, Status::Fail | Status::Error))
            .collect();
        let _ = write!(
            o,
            "<p>Latest delivery {} ({}): {} checks, <span class=\"{}\">{} failing</span>.</p>",
            esc(&latest.delivery.delivery_id),
            latest.delivery.received_at.format("%Y-%m-%d"),
            latest.metrics.len(),
            if failing.is_empty() { "ok" } else { "fail" },
            failing.len()
        );
        if !failing.is_empty() {
            o.push_str("<table class=\"failing\"><tr><th>table</th><th>check</th><th>category</th><th>field / unit</th><th>%</th><th>threshold / expected</th></tr>");
            for x in failing.iter().take(25) {
                let expected = match (x.threshold, x.lower, x.upper) {
                    (_, Some(lo), Some(hi)) => {
                        format!("{lo:.0}–{hi:.0} (value {:.0})", x.value.unwrap_or(0.0))
                    }
                    (Some(t), _, _) => format!("≤ {t}"),
                    _ => "–".into(),
                };
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(&x.table),
                    esc(&x.check),
                    x.category.as_str(),
                    esc(x.field.as_deref().or(x.unit.as_deref()).unwrap_or("")),
                    opt_pct(x.pct),
                    esc(&expected)
                );
            }
            o.push_str("</table>");
        }
    }

    // Declarations.
    o.push_str(
        "<h2 id=\"declaration\">Monthly quality declaration</h2><table id=\"declaration-table\"><tr><th>month</th>\
         <th>dataset</th><th>deliveries</th><th>rows</th><th>coverage %</th><th>units coverage %</th>\
         <th>on time %</th><th>completeness %</th><th>validity %</th><th>Δ coverage</th>\
         <th>Δ completeness</th><th>Δ validity</th></tr>",
    );
    let mut decl = m.declarations.clone();
    decl.sort_by(|a, b| b.month.cmp(&a.month).then(a.dataset.cmp(&b.dataset)));
    for d in &decl {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            d.month.format("%Y-%m"),
            esc(&d.dataset),
            d.deliveries,
            d.rows,
            opt_pct(d.coverage_pct),
            opt_pct(d.unit_coverage_pct),
            opt_pct(d.on_time_pct),
            opt_pct(d.completeness_pct),
            opt_pct(d.validity_pct),
            change(d.coverage_change),
            change(d.completeness_change),
            change(d.validity_change)
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_file_named_like_a_cpr_is_withheld() {
        let d = crate::ledger::Delivery {
            delivery_id: "d1".into(),
            dataset: "almenpraksis.diagnose".into(),
            source: "almenpraksis".into(),
            object_key: "almenpraksis/diagnose/2026-03-01/6703854001.csv".into(),
            object_version: String::new(),
            file_name: "6703854001.csv".into(),
            delivery_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            sha256: String::new(),
            size: 1,
            state: DeliveryState::Rejected,
            received_at: Utc::now(),
            updated_at: Utc::now(),
            duplicate_of: None,
            attempts: 1,
            outcome: Default::default(),
        };
        let m = Monitored {
            as_of: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            reception: Vec::new(),
            declarations: Vec::new(),
            deliveries: vec![crate::monitor::Seen {
                delivery: d,
                metrics: Vec::new(),
            }],
            written: Vec::new(),
            dead_letters: Vec::new(),
            stuck: Vec::new(),
        };
        let html = render(&m, Mode::Local, Utc::now());
        assert!(!html.contains("6703854001"));
        assert!(html.contains("withheld"));
    }

    #[test]
    fn an_empty_platform_renders_a_page_with_its_sections() {
        let m = Monitored {
            as_of: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            reception: Vec::new(),
            declarations: Vec::new(),
            deliveries: Vec::new(),
            written: Vec::new(),
            dead_letters: vec![("process".into(), 3)],
            stuck: Vec::new(),
        };
        let html = render(&m, Mode::Aws, Utc::now());
        for id in [
            "reception",
            "missing",
            "rejected",
            "failed",
            "stuck",
            "silent",
            "quality",
            "declaration",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("naerdata --aws redrive process"));
        assert!(!html.contains("<script"));
    }
}
