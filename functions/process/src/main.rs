//! Lambda entry point of the process function. Configuration: see `naerdata::aws`.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use naerdata::aws::{self, Clients, Resources};
use naerdata::contract::Registry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let started = std::time::Instant::now();
    let clients = Clients::from_env().await;
    let resources = Resources::from_env()?;
    let platform = aws::platform(&clients, &resources, Registry::builtin())?;
    // The key is read once, here, and checked against the fingerprint recorded in the
    // lake bucket: a wrong or regenerated key stops the function before any delivery.
    platform.keys.lake_key().await?;
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "process function ready"
    );
    let platform = &platform;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(naerdata_process::handle(platform, e.payload).await)
    }))
    .await
}
