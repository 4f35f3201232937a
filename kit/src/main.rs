//! `naerdata-validate`: the suppliers' pre-check, shipped in the supplier kit
//! (`make supplier-kit`). It runs the platform's own pass over a file — the same
//! contracts, reading, validation, CPR checks, FHIR rules and built-in reference
//! data — and prints the receipt the platform would write, without storing
//! anything. Only what that needs is linked: no SQL engine, no AWS SDK.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use naerdata::contract::Registry;
use naerdata::receipt::ReceiptOutcome;

#[derive(Parser)]
#[command(
    name = "naerdata-validate",
    version,
    about = "Check a delivery file against its naerdata contract and print the receipt it would get \
             (exit 0 accepted, 2 rejected, 1 could not check)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check one file. The dataset and the delivery day are taken from a path laid
    /// out as the landing zone is (`<source>/<dataset>/<yyyy-mm-dd>/<file>`) unless
    /// given.
    Check {
        file: PathBuf,
        /// The dataset (`almenpraksis.diagnose`, ...): see `datasets`.
        #[arg(long)]
        dataset: Option<String>,
        /// The delivery day (default: from the path, else today).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// The datasets and their contract versions.
    Datasets,
    /// The reporting guide (Markdown).
    Guide {
        #[arg(long, default_value = "da")]
        lang: String,
    },
    /// The JSON Schema of a receipt.
    ReceiptSchema,
    /// Write example deliveries of every dataset (synthetic persons) under DIR, laid
    /// out as the landing zone is.
    Examples {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 40)]
        persons: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("naerdata-validate: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `(dataset, day)` from `.../<source>/<dataset>/<yyyy-mm-dd>/<file>`.
fn from_path(file: &Path) -> (Option<String>, Option<chrono::NaiveDate>) {
    let parts: Vec<String> = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let n = parts.len();
    if n < 4 {
        return (None, None);
    }
    let day = parts[n - 2].parse().ok();
    let dataset = day.map(|_| format!("{}.{}", parts[n - 4], parts[n - 3]));
    (dataset, day)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let registry = Registry::builtin();
    match cli.command {
        Command::Check {
            file,
            dataset,
            date,
        } => {
            let (path_dataset, path_day) = from_path(&file);
            let Some(dataset) = dataset.or(path_dataset) else {
                bail!(
                    "give --dataset (see `naerdata-validate datasets`), or a path <source>/<dataset>/<yyyy-mm-dd>/<file>"
                );
            };
            let Some(contract) = registry.get(&dataset) else {
                bail!(
                    "unknown dataset {dataset:?}; known: {}",
                    registry.ids().join(", ")
                );
            };
            let receipt = naerdata::precheck::check_file(
                &registry,
                contract,
                &file,
                date.or(path_day),
                chrono::Utc::now(),
            )?;
            println!("{}", receipt.to_json());
            return Ok(if receipt.outcome == ReceiptOutcome::Rejected {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Datasets => {
            for c in registry.iter() {
                println!("{:<26} v{:<7} {}", c.id, c.version, c.title);
            }
        }
        Command::Guide { lang } => {
            let Ok(lang) = lang.parse::<naerdata::docs::Lang>() else {
                bail!("--lang is da or en");
            };
            print!("{}", naerdata::docs::reporting_guide(&registry, lang));
        }
        Command::ReceiptSchema => print!("{}", naerdata::docs::RECEIPT_SCHEMA),
        Command::Examples { out, persons } => {
            let mut opts = naerdata::generate::GenerateOptions::new(&out);
            opts.persons = persons;
            opts.days = 1;
            // Examples of what is accepted: no planted defects.
            opts.defects = 0.0;
            let files = naerdata::generate::generate(&opts)
                .with_context(|| format!("writing examples under {}", out.display()))?;
            for f in &files {
                println!("{:<26} {:>6} rows  {}", f.dataset, f.rows, f.path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
