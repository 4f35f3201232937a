//! Lambda entry point of the receive function. Configuration: see `naerdata::aws`.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use naerdata::aws::{self, Clients, Resources};
use naerdata::contract::Registry;
use naerdata_receive::Receiver;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let started = std::time::Instant::now();
    let clients = Clients::from_env().await;
    let resources = Resources::from_env()?;
    let process_queue = resources.queue(
        &clients,
        &resources.process_queue_url,
        "NAERDATA_PROCESS_QUEUE_URL",
    )?;
    let receiver = Receiver {
        platform: aws::platform(&clients, &resources, Registry::builtin())?,
        process_queue: std::sync::Arc::new(process_queue),
        landing_bucket: resources.landing_bucket.clone(),
    };
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "receive function ready"
    );
    let receiver = &receiver;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(receiver.handle(e.payload).await)
    }))
    .await
}
