//! `naerdata`: the platform on one machine, and the suppliers' pre-check.

mod bench;
mod ingest;
mod keys;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use naerdata::Platform;
use naerdata::contract::Registry;
use naerdata::generate::{self, GenerateOptions};
use naerdata::ledger::DeliveryState;
use naerdata::process;
use naerdata::receipt::ReceiptOutcome;

#[derive(Parser)]
#[command(
    name = "naerdata",
    version,
    about = "Collect, check, pseudonymise and lay out primary-sector health data"
)]
struct Cli {
    /// The platform's home directory (landing, lake, receipts, ledger, key).
    #[arg(
        long,
        env = "NAERDATA_HOME",
        default_value = ".naerdata",
        global = true
    )]
    home: PathBuf,
    /// Log as JSON lines (as in Lambda) instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Operate on the AWS deployment named by the `NAERDATA_*` environment variables
    /// (see the README) instead of the local home: `status`, `replay`, `redrive`,
    /// `retract`, `maintain`, `purge`, `migrate` (withheld columns), `extract` (sends
    /// the request to the publish function's extract queue), `keys`, `reference`,
    /// `privacy scan`.
    #[arg(long, global = true)]
    aws: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate synthetic deliveries, ingest them all, and print a summary.
    Demo {
        #[arg(long, default_value_t = 5_000)]
        persons: usize,
        #[arg(long, default_value_t = 28)]
        days: u32,
        /// Days of history in each supplier's first delivery (its initial load): a year,
        /// so the quarters before the first day are published with their 90 days of
        /// follow-up and a full before-window.
        #[arg(long, default_value_t = 365)]
        history_days: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Mix in deliveries from a careless supplier (no header, swapped columns, a
        /// CPR in an id, a code or the file name): all rejected, none stored.
        #[arg(long)]
        careless: bool,
    },
    /// Write synthetic deliveries laid out like the landing zone.
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2_000)]
        persons: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Share of rows with a defect.
        #[arg(long, default_value_t = 0.01)]
        defects: f64,
        /// First delivery day (YYYY-MM-DD).
        #[arg(long, default_value = "2026-10-01")]
        start: chrono::NaiveDate,
        /// Also write careless variants of some deliveries (see `demo --careless`).
        #[arg(long)]
        careless: bool,
        /// Plant no effects (by default completed §140 courses lower acute admissions by
        /// 30 % and home care doubles 30-day readmissions; see `generate::Effects`).
        #[arg(long)]
        no_effects: bool,
        /// Days of history before the first delivery day, sent in each first delivery.
        #[arg(long, default_value_t = 0)]
        history_days: u32,
    },
    /// Ingest files (or directories of files) as deliveries.
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The dataset, when the path is not .../<source>/<dataset>/<yyyy-mm-dd>/<file>.
        #[arg(long)]
        dataset: Option<String>,
        /// Print a JSON line with rows/s and peak memory at the end (for benchmarks).
        #[arg(long, hide = true)]
        stats: bool,
    },
    /// Check a file against its contract without storing anything: the receipt on stdout.
    /// Exit 0 when accepted (ok or warning), 2 when rejected, 1 on an internal error.
    Validate {
        #[arg(long)]
        dataset: String,
        file: PathBuf,
        /// The delivery day the file would have (default: today).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// Run SQL over the lake tables (DataFusion) and print the result.
    Query { sql: String },
    /// Publish current tables, the linked model and the disclosure-controlled marts.
    Publish {
        /// The reference date of the marts (default: today).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Rebuild every current table from its whole history instead of merging
        /// what changed since the last publication.
        #[arg(long)]
        full: bool,
        /// Print a JSON line with seconds and peak memory at the end (for benchmarks).
        #[arg(long, hide = true)]
        stats: bool,
    },
    /// Write a research extract: approved tables and columns, project pseudonyms.
    Extract {
        /// The project spec (YAML: project, title, datasets: [{dataset, columns}]).
        #[arg(long)]
        project: PathBuf,
        /// Read the lake as it was: a time (RFC 3339, or a date meaning its start in
        /// UTC), or the versions an earlier extract's manifest records
        /// (`table=version,...`, as printed by `extract`). Within the retention period.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// The reception calendar, quality declarations and the operator page: computes
    /// them as of a day, writes the quality tables and the HTML page.
    Report {
        /// The day to report on (default: today).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Also copy the page here (with `--kommune`, that municipality's page).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print (and with `--out` copy) this municipality's own page (its code, e.g.
        /// 101). Every municipality's page is written either way, under
        /// `reports/kommuner/<code>/`.
        #[arg(long)]
        kommune: Option<String>,
    },
    /// The ledger: deliveries by state, the latest per dataset, and what is missing.
    Status {
        /// List this many recent deliveries.
        #[arg(long, default_value_t = 10)]
        recent: usize,
    },
    /// Re-run a failed delivery (with --aws: send it to the process queue).
    Replay { delivery_id: String },
    /// Take an accepted delivery's rows back out of every lake table (one Delta commit
    /// per table), say why in its receipt and the ledger (state `retracted`). The same
    /// file sent again is processed as a new delivery. Works with --aws too.
    Retract {
        delivery_id: String,
        /// Why: shown to the supplier in the receipt (no CPR numbers).
        #[arg(long)]
        reason: String,
    },
    /// Compact small files and delete files no longer referenced after the retention
    /// period (the scheduled maintenance; works with --aws too).
    Maintain {
        /// Days an unreferenced file is kept: also how long an extract or publication
        /// can be reproduced with --as-of.
        #[arg(long, default_value_t = naerdata::maintain::DEFAULT_RETENTION_DAYS)]
        retention_days: i64,
        /// Only delete expired files, do not compact.
        #[arg(long)]
        no_compact: bool,
    },
    /// Remove a delivery's or a person's rows and every file of their history at once,
    /// overriding retention; records what was purged and why under `_purges/`.
    Purge {
        #[arg(
            long,
            conflicts_with = "person_id",
            required_unless_present = "person_id"
        )]
        delivery: Option<String>,
        /// The person's `person_id` (lake pseudonym).
        #[arg(long)]
        person_id: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Turn a home whose curated tables are plain Parquet (before Delta Lake) into
    /// Delta tables in place: one commit per delivery found; then take the columns a
    /// contract now withholds (a birth date) out of the tables that have them, history
    /// included. Safe to run again. With --aws: the second part.
    Migrate,
    /// Back up what cannot be rebuilt from landing: the ledger (a consistent copy,
    /// safe while the platform runs) and the keys, with a manifest of digests. In AWS
    /// the ledger has DynamoDB point-in-time recovery and the key is in Secrets
    /// Manager.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup back (digests checked first); an existing ledger is replaced only
    /// with --force.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Move the messages of a dead-letter queue back to its queue (AWS only).
    Redrive {
        #[arg(value_enum)]
        queue: RedriveQueue,
    },
    /// Privacy checks: `scan` reports every CPR-shaped value outside landing (lake,
    /// quality tables, receipts, quarantine, reports, extracts, the ledger) by place,
    /// never by value. Exit 0 when clean, 3 when anything was found.
    Privacy {
        #[command(subcommand)]
        what: PrivacyCommand,
    },
    /// Contracts: list them, or render the supplier reporting guide.
    Contracts {
        #[command(subcommand)]
        what: ContractsCommand,
    },
    /// Reference data (SOR map, FSIII, §119/§140 catalogue, SKS, register of expected
    /// reporting units): `list` the current versions, `load` a new one (checked first;
    /// the process step uses it from its next delivery, no deploy).
    Reference {
        #[command(subcommand)]
        what: ReferenceCommand,
    },
    /// The lake key: show its fingerprint, rotate it (README: key custody).
    Keys {
        #[command(subcommand)]
        what: keys::KeysCommand,
    },
    /// Infrastructure files generated from the contracts.
    Infra {
        #[command(subcommand)]
        what: InfraCommand,
    },
    /// Benchmark the process step on large generated deliveries.
    Bench {
        /// Row counts to run, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1000000,5000000")]
        rows: Vec<u64>,
        /// Where the generated files are kept between runs.
        #[arg(long, default_value = "bench-data")]
        dir: PathBuf,
        /// Runs per size; the median and the best are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Bundles in the KL Gateway benchmark delivery (0 skips it).
        #[arg(long, default_value_t = 10_000)]
        bundles: usize,
        /// Thread counts to run each delivery at (`NAERDATA_THREADS` of the child).
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
    },
    /// Files per Delta table after a month of generated daily deliveries, without and
    /// with compaction.
    BenchFiles {
        #[arg(long, default_value_t = 2_000)]
        persons: usize,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value = "bench-data")]
        dir: PathBuf,
    },
    /// A file made to hurt (`endless`: 2 GB of one line; `nested`: a bundle nested
    /// millions deep) through the process pass: refused, with its peak memory.
    BenchHostile {
        #[arg(long, default_value = "endless")]
        case: String,
    },
    /// Benchmark publish on a generated population (ingested once, kept in --dir).
    BenchPublish {
        #[arg(long, default_value_t = 1_000_000)]
        persons: usize,
        /// Days of deliveries generated for the population.
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value = "bench-data")]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Instead: for each number of days of history (e.g. `1,30`), time merging one
        /// more day into the current tables against rebuilding them (`--full`).
        #[arg(long, value_delimiter = ',')]
        history: Vec<u32>,
    },
}

#[derive(Subcommand)]
enum ReferenceCommand {
    /// The current version of each kind (built-in or loaded).
    List,
    /// Check FILE as a new version of KIND and make it current.
    Load {
        /// sor, fsiii, catalogue, sks, units or clusters.
        kind: String,
        file: PathBuf,
        /// Check only; publish nothing.
        #[arg(long)]
        check: bool,
    },
}

/// `naerdata reference ...` on the lake of `p` (local or AWS alike).
async fn reference(p: &Platform, what: ReferenceCommand) -> Result<()> {
    use naerdata::reference::{Kind, builtin_version, store};
    match what {
        ReferenceCommand::List => {
            for (kind, cur) in store::pointers(p.stores.lake.as_ref()).await? {
                match cur {
                    Some(c) => println!(
                        "{:<10} {:<32} {:>6} rows  loaded {} from {}",
                        kind.name(),
                        c.version,
                        c.rows,
                        c.loaded_at.format("%Y-%m-%d %H:%M"),
                        c.source_file
                    ),
                    None => println!(
                        "{:<10} {:<32} (built in)",
                        kind.name(),
                        builtin_version(kind)
                    ),
                }
            }
        }
        ReferenceCommand::Load { kind, file, check } => {
            let Some(k) = Kind::parse(&kind) else {
                bail!(
                    "unknown reference kind {kind:?}; known: {}",
                    Kind::ALL.map(Kind::name).join(", ")
                );
            };
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "reading {} ({})",
                    naerdata::privacy::display(&file.display().to_string()),
                    k.describe()
                )
            })?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if check {
                let rows = store::check(k, &text, &p.contracts)?;
                println!("{kind}: {rows} rows, valid (nothing published)");
                return Ok(());
            }
            match store::publish(
                p.stores.lake.as_ref(),
                &p.contracts,
                k,
                &text,
                &name,
                p.clock.now(),
            )
            .await?
            {
                store::Published::New(c) => println!(
                    "{kind}: version {} is current ({} rows), at {}",
                    c.version,
                    c.rows,
                    p.stores
                        .lake
                        .locate(&naerdata::layout::reference_version_key(
                            &c.kind, &c.version
                        ))
                ),
                store::Published::Unchanged(c) => {
                    println!(
                        "{kind}: the file is the current version {} already",
                        c.version
                    )
                }
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Scan everything outside landing for CPR-shaped values.
    Scan {
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the privacy scan on `p` and prints it; exit 3 when anything was found.
async fn privacy_scan(p: &Platform, json: bool) -> Result<ExitCode> {
    let r = naerdata::privacy::scan::scan(p).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for f in &r.findings {
            println!("{:<10} {}  {}: {}", f.store, f.location, f.part, f.count);
        }
        println!(
            "privacy scan: {} object(s) ({} Parquet), {} ledger entr(ies): {}",
            r.objects,
            r.parquet_files,
            r.ledger_entries,
            if r.clean() {
                "no CPR-shaped value outside landing".to_string()
            } else {
                format!("{} place(s) with CPR-shaped values", r.findings.len())
            }
        );
    }
    Ok(if r.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[derive(Subcommand)]
enum InfraCommand {
    /// The Glue tables of the lake (CloudFormation, nested by infra/template.yaml).
    Catalog {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The data dictionary: every presentation table and column in Danish and English
    /// (docs/presentation-columns.md; the same texts as the Glue and DuckDB comments).
    Dictionary {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every statement publish runs, and after a publication the tables the marts
    /// read and each mart's cells as DataFusion computes them (before disclosure
    /// control: for operators), for checking the SQL on another engine
    /// (tests/independent/check_sql.py: sqlglot to Trino, DuckDB).
    Sql {
        #[arg(long)]
        out: PathBuf,
    },
    /// The generated regions of the SAM template (supplier parameters and roles,
    /// bucket policies, silence alarms), rewritten in place from `layout`.
    Template {
        #[arg(long, default_value = "infra/template.yaml")]
        file: PathBuf,
        /// Change nothing; fail naming the regions that differ.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RedriveQueue {
    Receive,
    Process,
    Extract,
}

#[derive(Subcommand)]
enum ContractsCommand {
    List,
    /// The Markdown reporting guide for suppliers.
    Docs {
        #[arg(long)]
        out: Option<PathBuf>,
        /// The guide's language: da (Danish, the primary one) or en.
        #[arg(long, default_value = "da")]
        lang: naerdata::docs::Lang,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NAERDATA_LOG")
        // delta-rs's kernel logs an ERROR when it opens a table that has no commit
        // yet, which every first delivery to a table does; the caller handles it. It
        // warns on every scan of a table without column statistics, which the lake's
        // tables lack on purpose (person ids must not be copied into the log).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,buoyant_kernel::snapshot::builder=off,\
                 deltalake_core::kernel::snapshot::stats_projection=error",
            )
        });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// Runs the monitor as of `as_of`, writes its tables and the operator page, and
/// returns where the page is.
async fn report(
    p: &Platform,
    as_of: chrono::NaiveDate,
    out: Option<&std::path::Path>,
    kommune: Option<&str>,
) -> Result<String> {
    let (m, html) =
        naerdata::monitor::run_and_page(p, as_of, naerdata::report::Mode::Local, &[]).await?;
    naerdata::catalog::write_duckdb_catalog(p).await?;
    // Every municipality's own page, from what is published now.
    let reference = naerdata::reference::store::current(p.stores.lake.as_ref()).await?;
    let codes: Vec<String> = naerdata::reference::kommuner()
        .iter()
        .map(|k| k.code.clone())
        .collect();
    if let Some(k) = kommune
        && !codes.iter().any(|c| c == k)
    {
        anyhow::bail!("--kommune {k}: no such municipality code in reference/kommuner.csv");
    }
    naerdata::municipal::write_pages(p, &m, &reference, &codes).await?;
    let (key, html) = match kommune {
        Some(k) => {
            let key = naerdata::layout::kommune_page_key(k);
            let body = p
                .stores
                .lake
                .get(&key)
                .await?
                .context("the page just written")?;
            (key, String::from_utf8_lossy(&body).into_owned())
        }
        None => (naerdata::report::PAGE_KEY.to_string(), html),
    };
    if let Some(path) = out {
        std::fs::write(path, &html).with_context(|| format!("writing {}", path.display()))?;
        return Ok(path.display().to_string());
    }
    Ok(p.stores.lake.locate(&key))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("naerdata: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if cli.aws {
        return operate_aws(cli.command).await;
    }
    let contracts = Registry::builtin();
    let local =
        || Platform::local(&cli.home, Registry::builtin()).context("opening the local platform");
    match cli.command {
        Command::Demo {
            persons,
            days,
            history_days,
            seed,
            careless,
        } => {
            let p = local()?;
            // The suppliers' side lives beside the platform home, not inside it:
            // these files hold CPR numbers until they are delivered.
            let input = demo_input(&cli.home);
            let mut opts = GenerateOptions::new(&input);
            opts.persons = persons;
            opts.days = days;
            opts.seed = seed;
            opts.history_days = history_days;
            eprintln!(
                "generating {days} days of deliveries (the first with {history_days} days of \
                 history) for {persons} synthetic persons in {}",
                input.display()
            );
            let mut files = generate::generate(&opts)?;
            // The register of the GP clinics expected to deliver, with one that never
            // does: the operator page shows it missing.
            naerdata::reference::store::publish(
                p.stores.lake.as_ref(),
                &p.contracts,
                naerdata::reference::Kind::Units,
                &generate::unit_register(&opts),
                "enheder.csv",
                p.clock.now(),
            )
            .await?;
            if careless {
                files.extend(generate::careless::careless(&files)?);
            }
            // Each day's files arrive on their day (06:00 UTC), so the reception
            // calendar and the drift history look like a week of real operation.
            let mut by_day: std::collections::BTreeMap<String, Vec<PathBuf>> =
                std::collections::BTreeMap::new();
            for f in &files {
                by_day.entry(f.day()).or_default().push(f.path.clone());
            }
            let mut results = Vec::new();
            for (day, paths) in &by_day {
                let mut on_day = p.clone();
                if let Ok(d) = day.parse::<chrono::NaiveDate>() {
                    on_day.clock = std::sync::Arc::new(naerdata::ports::FixedClock(
                        d.and_hms_opt(6, 0, 0).expect("a valid time").and_utc(),
                    ));
                }
                results.extend(ingest::ingest_paths(&on_day, &cli.home, paths, None, true).await?);
            }
            let last_day = opts.start + chrono::Duration::days(i64::from(days.max(1)) - 1);
            // A period is published only once closed (its data past every reception
            // deadline): publish as of the first day the periods of these deliveries
            // are, as the daily publication will on that day.
            let publish_day = naerdata::publication::all_closed_after(
                &naerdata::publish::marts(),
                &p.contracts,
                last_day,
            );
            eprintln!(
                "publishing current tables and marts as of {publish_day}, the first day every \
                 period of the deliveries (up to {last_day}) is closed"
            );
            let published = naerdata::publish::publish(&p, publish_day).await?;
            naerdata::catalog::write_duckdb_catalog(&p).await?;
            summary::print_demo(&p, &cli.home, &results, &published, last_day).await?;
            // The morning after the last delivery day.
            let as_of = last_day + chrono::Duration::days(1);
            let page = report(&p, as_of, None, None).await?;
            println!("\noperator page (reception, quality, declarations as of {as_of}): {page}");
            println!(
                "each municipality's own page (deliveries; indicators beside its cluster and the country): {}",
                p.stores
                    .lake
                    .locate(&naerdata::layout::kommune_page_key("101"))
            );
        }
        Command::Generate {
            out,
            persons,
            seed,
            days,
            defects,
            start,
            careless,
            no_effects,
            history_days,
        } => {
            let mut files = generate::generate(&GenerateOptions {
                out: out.clone(),
                persons,
                seed,
                days,
                defects,
                start,
                effects: if no_effects {
                    generate::Effects::NONE
                } else {
                    generate::Effects::PLANTED
                },
                kommuner: None,
                history_days,
            })?;
            if careless {
                files.extend(generate::careless::careless(&files)?);
            }
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            println!(
                "wrote {} files with {rows} rows under {}",
                files.len(),
                out.display()
            );
        }
        Command::Ingest {
            paths,
            dataset,
            stats,
        } => {
            let p = local()?;
            let started = std::time::Instant::now();
            let results =
                ingest::ingest_paths(&p, &cli.home, &paths, dataset.as_deref(), false).await?;
            if stats {
                bench::print_stats(&results, started.elapsed());
            }
            if results
                .iter()
                .any(|r| r.state == Some(DeliveryState::Failed))
            {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Validate {
            dataset,
            file,
            date,
        } => {
            let Some(contract) = contracts.get(&dataset) else {
                bail!(
                    "unknown dataset {dataset:?}; known: {}",
                    contracts.ids().join(", ")
                );
            };
            return validate(&contracts, contract, &file, date);
        }
        Command::Privacy {
            what: PrivacyCommand::Scan { json },
        } => {
            return privacy_scan(&local()?, json).await;
        }
        Command::Query { sql } => {
            let p = local()?;
            let batches = naerdata::catalog::query(&p, &sql).await?;
            println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
        }
        Command::Publish { date, full, stats } => {
            let p = local()?;
            let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let started = std::time::Instant::now();
            let published = naerdata::publish::publish_with(
                &p,
                date,
                naerdata::publish::PublishOptions {
                    full,
                    ..Default::default()
                },
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            naerdata::catalog::write_duckdb_catalog(&p).await?;
            summary::print_published(&published);
            if stats {
                bench::print_publish_stats(&published, seconds);
            }
        }
        Command::Extract { project, as_of } => {
            let p = local()?;
            let text = std::fs::read_to_string(&project)
                .with_context(|| format!("reading {}", project.display()))?;
            let spec =
                naerdata::extract::ProjectSpec::from_yaml(&text).map_err(anyhow::Error::msg)?;
            let keys = naerdata::local::KeyFile::new(naerdata::extract::project_key_path(
                &cli.home.join("keys"),
                &spec.project,
            ));
            let as_of = parse_as_of(as_of.as_deref())?;
            let m = naerdata::extract::extract_as_of(&p, &spec, &keys, &as_of).await?;
            for t in &m.tables {
                println!(
                    "{:<28} {:>9} rows  {}",
                    t.table,
                    t.rows,
                    p.stores.lake.locate(&t.key)
                );
            }
            println!(
                "codebook: {}; spec sha256 {}",
                p.stores.lake.locate(&m.codebook[1]),
                m.spec_sha256
            );
            println!(
                "lake versions (reproduce with --as-of): {}",
                as_of_arg(&m.lake_versions)
            );
        }
        Command::Status { recent } => {
            let p = local()?;
            summary::print_status(&p, recent).await?;
            let m = naerdata::monitor::observe(&p, chrono::Utc::now().date_naive()).await?;
            summary::print_reception(&m);
        }
        Command::Report {
            as_of,
            out,
            kommune,
        } => {
            let p = local()?;
            let as_of = as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let page = report(&p, as_of, out.as_deref(), kommune.as_deref()).await?;
            println!("{page}");
        }
        Command::Replay { delivery_id } => {
            let p = local()?;
            replayable(&p, &delivery_id).await?;
            let outcome = process::process(&p, &delivery_id).await?;
            naerdata::catalog::write_duckdb_catalog(&p).await?;
            println!("{delivery_id}: {outcome:?}");
        }
        Command::Retract {
            delivery_id,
            reason,
        } => {
            let p = local()?;
            retract(&p, &delivery_id, &reason).await?;
            naerdata::catalog::write_duckdb_catalog(&p).await?;
        }
        Command::Maintain {
            retention_days,
            no_compact,
        } => {
            let p = local()?;
            maintain(&p, retention_days, no_compact).await?;
            naerdata::catalog::write_duckdb_catalog(&p).await?;
        }
        Command::Purge {
            delivery,
            person_id,
            reason,
        } => {
            let p = local()?;
            purge(&p, delivery, person_id, &reason).await?;
            naerdata::catalog::write_duckdb_catalog(&p).await?;
        }
        Command::Backup { out } => {
            let m = naerdata::local::backup::backup(&cli.home, &out, chrono::Utc::now())?;
            for f in &m.files {
                println!(
                    "{:<40} {:>10} bytes  sha256 {}",
                    f.path,
                    f.bytes,
                    &f.sha256[..16]
                );
            }
            println!("backup of {} in {}", cli.home.display(), out.display());
        }
        Command::Restore { from, force } => {
            let m = naerdata::local::backup::restore(&cli.home, &from, force)?;
            println!(
                "restored {} file(s) from the backup of {} into {}",
                m.files.len(),
                m.created_at.format("%Y-%m-%d %H:%M"),
                cli.home.display()
            );
        }
        Command::Migrate => {
            let p = local()?;
            let m = naerdata::migrate::migrate(&p).await?;
            for t in &m {
                println!(
                    "{:<28} {:>4} deliveries committed, {:>5} files, version {}",
                    t.table, t.deliveries, t.files, t.version
                );
            }
            if m.is_empty() {
                println!("nothing to migrate: every table is a Delta table");
            }
            withhold(&p).await?;
            naerdata::catalog::write_duckdb_catalog(&p).await?;
        }
        Command::Keys { what } => keys::local(&cli.home, what).await?,
        Command::Infra {
            what: InfraCommand::Catalog { out },
        } => {
            let presentation = naerdata::publish::presentation_tables(&contracts).await?;
            write_or_print(
                out,
                &naerdata::glue::catalog_template(&contracts, &presentation),
            )?;
        }
        Command::Infra {
            what: InfraCommand::Dictionary { out },
        } => {
            let presentation = naerdata::publish::presentation_tables(&contracts).await?;
            write_or_print(
                out,
                &naerdata::glossary::dictionary(&presentation, &contracts),
            )?;
        }
        Command::Infra {
            what: InfraCommand::Sql { out },
        } => {
            let p = local()?;
            let m = naerdata::portable::write(&p, &out).await?;
            println!(
                "{} statements, {} marts' cells{} -> {}",
                m.statements.len(),
                m.marts.len(),
                m.reference_date
                    .as_deref()
                    .map(|d| format!(" as of {d}"))
                    .unwrap_or_default(),
                out.join("manifest.json").display()
            );
        }
        Command::Infra {
            what: InfraCommand::Template { file, check },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if check {
                let stale = naerdata::stack::stale(&text).map_err(anyhow::Error::msg)?;
                if !stale.is_empty() {
                    bail!(
                        "{}: generated region(s) {} differ: run `naerdata infra template`",
                        file.display(),
                        stale.join(", ")
                    );
                }
                println!("{}: generated regions are current", file.display());
            } else {
                let rendered = naerdata::stack::render(&text).map_err(anyhow::Error::msg)?;
                if rendered == text {
                    println!("{}: generated regions are current", file.display());
                } else {
                    std::fs::write(&file, rendered)
                        .with_context(|| format!("writing {}", file.display()))?;
                    println!("wrote {}", file.display());
                }
            }
        }
        Command::Redrive { .. } => {
            bail!(
                "redrive moves messages between SQS queues: run it with --aws (locally, `replay` a failed delivery)"
            )
        }
        Command::Reference { what } => reference(&local()?, what).await?,
        Command::Contracts { what } => match what {
            ContractsCommand::List => {
                for c in contracts.iter() {
                    println!("{:<26} v{:<7} {}", c.id, c.version, c.title);
                }
            }
            ContractsCommand::Docs { out, lang } => {
                write_or_print(out, &naerdata::docs::reporting_guide(&contracts, lang))?;
            }
        },
        Command::Bench {
            rows,
            dir,
            runs,
            bundles,
            threads,
        } => {
            bench::run(&rows, &dir, runs, &threads)?;
            if bundles > 0 {
                bench::run_gateway(bundles, &dir, runs, &threads)?;
            }
        }
        Command::BenchPublish {
            persons,
            days,
            dir,
            runs,
            history,
        } => {
            if history.is_empty() {
                bench::run_publish(persons, days, &dir, runs).await?
            } else {
                bench::run_publish_history(persons, &history, &dir).await?
            }
        }
        Command::BenchFiles { persons, days, dir } => bench::run_files(persons, days, &dir).await?,
        Command::BenchHostile { case } => bench::run_hostile(&case)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A generated file (`--out`), or the same text on stdout.
fn write_or_print(out: Option<PathBuf>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Checks that a delivery may be replayed: failed, registered but never processed, or
/// stuck in `processing` (its lease ran out, or the process holding it has ended).
async fn replayable(p: &Platform, delivery_id: &str) -> Result<naerdata::ledger::Delivery> {
    let Some(d) = p.ledger.get(delivery_id).await? else {
        bail!("delivery {delivery_id} is not in the ledger (see `naerdata status`)");
    };
    // A delivery stuck in `processing` (its worker died) is taken over by the replay.
    if naerdata::process::claim_is_stale(p, &d).await? {
        return Ok(d);
    }
    d.replay_eligibility()?;
    Ok(d)
}

/// The operator's commands against an AWS deployment: the same ledger, read through
/// the same adapters as the functions; work is handed to the functions via SQS.
async fn retract(p: &Platform, id: &str, reason: &str) -> Result<()> {
    let r = naerdata::retract::retract(p, id, reason).await?;
    let rows: u64 = r.rows_deleted.values().sum();
    println!(
        "{id}: {} ({rows} rows deleted from {} tables); receipt {}",
        r.delivery.state,
        r.rows_deleted.len(),
        p.stores.receipts.locate(&r.delivery.receipt_key())
    );
    for (table, n) in &r.rows_deleted {
        println!("  {table:<28} {n:>9} rows");
    }
    Ok(())
}

async fn maintain(p: &Platform, retention_days: i64, no_compact: bool) -> Result<()> {
    let o = naerdata::maintain::MaintainOptions {
        retention: chrono::Duration::days(retention_days),
        compact: !no_compact,
        vacuum: true,
    };
    for t in naerdata::maintain::maintain(p, &o).await? {
        println!(
            "{:<28} files {:>5} -> {:>5}  compacted {:>5}  vacuumed {:>5}  version {}",
            t.table, t.files_before, t.files_after, t.files_compacted, t.files_vacuumed, t.version
        );
    }
    Ok(())
}

async fn purge(
    p: &Platform,
    delivery: Option<String>,
    person_id: Option<String>,
    reason: &str,
) -> Result<()> {
    use naerdata::maintain::PurgeTarget;
    let target = match (delivery, person_id) {
        (Some(d), None) => PurgeTarget::Delivery(d),
        (None, Some(pid)) => PurgeTarget::Person(pid),
        _ => bail!("give --delivery ID or --person-id P"),
    };
    let r = naerdata::maintain::purge(p, &target, reason).await?;
    println!("purged {} {} ({})", r.kind, r.target, r.reason);
    for (table, t) in &r.tables {
        println!(
            "  {table:<28} {:>9} rows deleted, {:>4} files removed from history",
            t.rows_deleted, t.files_removed
        );
    }
    Ok(())
}

fn parse_as_of(s: Option<&str>) -> Result<naerdata::catalog::AsOf> {
    match s {
        Some(s) => naerdata::catalog::AsOf::parse(s).map_err(anyhow::Error::msg),
        None => Ok(naerdata::catalog::AsOf::Newest),
    }
}

fn as_of_arg(v: &std::collections::BTreeMap<String, u64>) -> String {
    v.iter()
        .map(|(t, n)| format!("{t}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Built without the AWS SDK (`make demo`): say how to get the operator's build.
#[cfg(not(feature = "aws"))]
async fn operate_aws(_command: Command) -> Result<ExitCode> {
    bail!(
        "this naerdata was built without AWS support (the embedded default); build the operator's \
         command with `cargo build --release -p naerdata-cli --features aws` (or `make build-cli`)"
    )
}

#[cfg(feature = "aws")]
async fn operate_aws(command: Command) -> Result<ExitCode> {
    use naerdata::aws::{self, Clients, ProcessMessage, Resources};
    use naerdata::ports::Queue;
    let clients = Clients::from_env().await;
    let resources = Resources::from_env()?;
    let p = aws::platform(&clients, &resources, Registry::builtin())?;
    match command {
        Command::Status { recent } => summary::print_status(&p, recent).await?,
        Command::Privacy {
            what: PrivacyCommand::Scan { json },
        } => return privacy_scan(&p, json).await,
        Command::Replay { delivery_id } => {
            let d = replayable(&p, &delivery_id).await?;
            let queue = resources.queue(
                &clients,
                &resources.process_queue_url,
                "NAERDATA_PROCESS_QUEUE_URL",
            )?;
            queue
                .send_process(
                    &ProcessMessage {
                        delivery_id: delivery_id.clone(),
                    },
                    &d.dataset,
                )
                .await?;
            println!("{delivery_id}: sent to the process queue");
        }
        Command::Retract {
            delivery_id,
            reason,
        } => retract(&p, &delivery_id, &reason).await?,
        Command::Maintain {
            retention_days,
            no_compact,
        } => maintain(&p, retention_days, no_compact).await?,
        Command::Purge {
            delivery,
            person_id,
            reason,
        } => purge(&p, delivery, person_id, &reason).await?,
        // In AWS every table is a Delta table already: what is left to migrate is
        // a column a contract now withholds.
        Command::Migrate => withhold(&p).await?,
        Command::Redrive { queue } => {
            let (dlq, to) = match queue {
                RedriveQueue::Receive => (
                    resources.queue(
                        &clients,
                        &resources.receive_dlq_url,
                        "NAERDATA_RECEIVE_DLQ_URL",
                    )?,
                    resources.queue(
                        &clients,
                        &resources.receive_queue_url,
                        "NAERDATA_RECEIVE_QUEUE_URL",
                    )?,
                ),
                RedriveQueue::Process => (
                    resources.queue(
                        &clients,
                        &resources.process_dlq_url,
                        "NAERDATA_PROCESS_DLQ_URL",
                    )?,
                    resources.queue(
                        &clients,
                        &resources.process_queue_url,
                        "NAERDATA_PROCESS_QUEUE_URL",
                    )?,
                ),
                RedriveQueue::Extract => (
                    resources.queue(
                        &clients,
                        &resources.extract_dlq_url,
                        "NAERDATA_EXTRACT_DLQ_URL",
                    )?,
                    resources.queue(
                        &clients,
                        &resources.extract_queue_url,
                        "NAERDATA_EXTRACT_QUEUE_URL",
                    )?,
                ),
            };
            let moved = dlq.redrive_to(&to).await?;
            println!(
                "moved {moved} message(s) from {} to {}",
                dlq.url(),
                to.url()
            );
        }
        Command::Extract { project, as_of } => {
            // Checked here, so a typo fails now rather than in the function.
            parse_as_of(as_of.as_deref())?;
            // The approved spec goes on record in the lake bucket; the request names it.
            let text = std::fs::read_to_string(&project)
                .with_context(|| format!("reading {}", project.display()))?;
            let spec =
                naerdata::extract::ProjectSpec::from_yaml(&text).map_err(anyhow::Error::msg)?;
            let request = naerdata::extract::ExtractRequest {
                project: spec.project.clone(),
                spec_key: naerdata::extract::spec_key(&spec.project),
                as_of,
            };
            p.stores
                .lake
                .put(&request.spec_key, text.into_bytes().into())
                .await?;
            let queue = resources.queue(
                &clients,
                &resources.extract_queue_url,
                "NAERDATA_EXTRACT_QUEUE_URL",
            )?;
            queue.send(&serde_json::to_string(&request)?, &[]).await?;
            println!(
                "{}: spec at {}, request sent to the extract queue; the extract will be under {}",
                spec.project,
                p.stores.lake.locate(&request.spec_key),
                p.stores
                    .lake
                    .locate(&naerdata::layout::extract_prefix(&spec.project))
            );
        }
        Command::Keys { what } => keys::aws(what, &p, &clients, &resources).await?,
        Command::Reference { what } => reference(&p, what).await?,
        _ => bail!(
            "with --aws only status, replay, redrive, retract, maintain, purge, migrate, extract, keys, reference and privacy scan run; the other commands are local"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes the columns contracts now withhold (a birth date) out of the tables that
/// still have them, history included, and says what it did.
async fn withhold(p: &Platform) -> anyhow::Result<()> {
    let w = naerdata::migrate::withhold::withhold(p).await?;
    for t in &w {
        let columns = if t.columns.is_empty() {
            "(history only)".to_string()
        } else {
            t.columns.join(", ")
        };
        println!(
            "{:<28} withheld {columns}: version {}, {} old file(s) deleted",
            t.table,
            t.version.map_or("-".into(), |v| v.to_string()),
            t.files_deleted
        );
    }
    if w.is_empty() {
        println!("no table holds a column its contract withholds");
    }
    Ok(())
}

/// The supplier's pre-check: the same pass as the process step, without storing.
fn validate(
    registry: &Registry,
    contract: &naerdata::contract::Contract,
    file: &std::path::Path,
    date: Option<chrono::NaiveDate>,
) -> Result<ExitCode> {
    let receipt =
        naerdata::precheck::check_file(registry, contract, file, date, chrono::Utc::now())?;
    println!("{}", receipt.to_json());
    Ok(if receipt.outcome == ReceiptOutcome::Rejected {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn demo_input(home: &std::path::Path) -> PathBuf {
    let name = home
        .file_name()
        .map_or_else(|| "naerdata".into(), |n| n.to_string_lossy().into_owned());
    home.with_file_name(format!("{name}-input"))
}
