//! `naerdata keys`: the lake key's custody. Prints fingerprints and versions only,
//! never key material.

use std::path::Path;

use anyhow::{Result, bail};
use clap::Subcommand;
use naerdata::Platform;
use naerdata::contract::Registry;
use naerdata::custody::{self, Fingerprint};
use naerdata::local::KeyFile;
use naerdata::platform::LocalLayout;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// The lake key's version and fingerprint, and what the lake records.
    Show,
    /// A new lake key version: the lake is rebuilt from landing with it and swapped in
    /// whole; the old version stays in the key file as retired (README: key custody).
    Rotate {
        /// The reference date the presentation zone is published again for, if the lake
        /// has one (default: today).
        #[arg(long)]
        publish_date: Option<chrono::NaiveDate>,
    },
    /// AWS only: put the first key into the lake-key secret the stack created empty.
    Init,
}

pub async fn local(home: &Path, what: KeysCommand) -> Result<()> {
    let layout = LocalLayout {
        home: home.to_path_buf(),
    };
    match what {
        KeysCommand::Show => {
            let file = KeyFile::for_lake(layout.lake_key(), layout.lake());
            let ring = file.load()?;
            match &ring {
                Some(ring) => {
                    println!(
                        "key file  {}: current {}",
                        layout.lake_key().display(),
                        Fingerprint::of(&ring.current)
                    );
                    if let Some(next) = &ring.next {
                        println!("          next {}", Fingerprint::of(next));
                    }
                    for k in &ring.retired {
                        println!("          retired {}", Fingerprint::of(k));
                    }
                }
                None => println!(
                    "key file  {}: missing (created on the first ingest of an empty lake)",
                    layout.lake_key().display()
                ),
            }
            let p = Platform::local(home, Registry::builtin())?;
            let record = print_record(&p).await?;
            if let (Some(ring), Some(record)) = (&ring, &record) {
                match record.check_lake_key(&ring.current) {
                    Ok(()) => println!("the key file holds the key the lake records"),
                    Err(e) => println!("{}", e.0),
                }
            }
        }
        KeysCommand::Rotate { publish_date } => {
            let day = publish_date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            eprintln!(
                "rotating the lake key of {}: replaying the lake's deliveries from landing with a new key",
                home.display()
            );
            let r = naerdata::rotate::rotate_local(home, Registry::builtin(), day).await?;
            println!("rotated from {} to {}", r.from, r.to);
            println!(
                "replayed {} deliveries ({} rows) into new curated tables",
                r.deliveries, r.rows
            );
            if let Some(day) = r.republished {
                println!("presentation zone published again for {day}");
            }
            println!(
                "research extracts made before the rotation keep their project pseudonyms; new extracts of the same project get new ones"
            );
        }
        KeysCommand::Init => bail!(
            "locally the lake key is created on the first ingest into an empty lake; `keys init` is for --aws"
        ),
    }
    Ok(())
}

#[cfg(feature = "aws")]
pub async fn aws(
    what: KeysCommand,
    p: &Platform,
    clients: &naerdata::aws::Clients,
    resources: &naerdata::aws::Resources,
) -> Result<()> {
    use anyhow::Context;
    match what {
        KeysCommand::Show => {
            print_record(p).await?;
        }
        KeysCommand::Init => {
            let secret = resources
                .key_secret_id
                .as_deref()
                .context("set NAERDATA_KEY_SECRET_ID (the stack output LakeKeySecret)")?;
            let f = naerdata::aws::secrets::init_lake_secret(
                &clients.secrets,
                secret,
                p.stores.lake.as_ref(),
            )
            .await?;
            println!("secret {secret} holds the first lake key: {f}");
        }
        KeysCommand::Rotate { .. } => bail!(
            "a rotation in AWS is an operation of its own (README, \"Key custody and rotation\"): \
             stop the process function, rebuild the lake with the new version, then swap"
        ),
    }
    Ok(())
}

async fn print_record(p: &Platform) -> Result<Option<custody::KeyRecord>> {
    let at = p.stores.lake.locate(custody::RECORD_KEY);
    let record = custody::read_record(p.stores.lake.as_ref()).await?;
    match &record {
        Some(r) => {
            println!(
                "recorded  {at}: current {} (since {})",
                r.current, r.recorded_at
            );
            for k in &r.retired {
                println!("          retired {k}");
            }
            if let Some(next) = &r.rotating_to {
                println!("          a rotation to {next} is in progress: processing waits for it");
            }
        }
        None => println!("recorded  {at}: nothing yet (recorded on the first processed delivery)"),
    }
    Ok(record)
}
