//! Lambda entry point of the publish function. Configuration: see `naerdata::aws`
//! (plus `NAERDATA_PROJECT_SECRET_PREFIX`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use naerdata::aws::{self, Clients, Resources};
use naerdata::contract::Registry;
use naerdata_publish::Publisher;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let started = std::time::Instant::now();
    let clients = Clients::from_env().await;
    let resources = Resources::from_env()?;
    let platform = aws::platform(&clients, &resources, Registry::builtin())?;
    let publisher = Publisher::aws(&clients, &resources, platform)?;
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "publish function ready"
    );
    let publisher = &publisher;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| async move {
        // The invocation's end as this process's clock sees it.
        let left = e
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let deadline = std::time::Instant::now() + left;
        publisher
            .handle_until(e.payload, Some(deadline))
            .await
            .map_err(Error::from)
    }))
    .await
}
