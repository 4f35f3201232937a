//! Lambda entry point of the monitor function. Configuration: see `naerdata::aws`.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use naerdata::aws::{self, Clients, Resources};
use naerdata::contract::Registry;
use naerdata::ports::Queue;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = Clients::from_env().await;
    let resources = Resources::from_env()?;
    let platform = aws::platform(&clients, &resources, Registry::builtin())?;
    let mut dlqs = Vec::new();
    for (name, url) in [
        ("receive", &resources.receive_dlq_url),
        ("process", &resources.process_dlq_url),
    ] {
        if url.is_some() {
            let q: Arc<dyn Queue> = Arc::new(resources.queue(&clients, url, name)?);
            dlqs.push((name.to_string(), q));
        }
    }
    let (platform, dlqs) = (&platform, &dlqs);
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| async move {
        Ok::<_, Error>(naerdata_monitor::handle(platform, dlqs, e.payload).await?)
    }))
    .await
}
