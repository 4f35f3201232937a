//! The ledger in DynamoDB. One table, two kinds of item:
//!
//! - `pk = "D#<delivery_id>"`: a delivery. The id is derived from the object key and
//!   version, so a repeated notification finds the same item.
//! - `pk = "H#<dataset>#<sha256>"`: the first delivery of that content for the
//!   dataset; the same bytes under another key become a `duplicate`.
//!
//! Registration writes both in one transaction; every state change is an
//! `UpdateItem` conditioned on the current state. The sparse index `by_dataset`
//! (`dataset`, `received_at`) lists a dataset's deliveries newest first and answers
//! "what arrived for this dataset on this day".

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, Select, TransactWriteItem, Update};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::ledger::{Delivery, DeliveryState, NewDelivery, Outcome, Registration};
use crate::ports::{Ledger, LedgerError};

/// The index the code queries; the template declares it with these names.
pub const DATASET_INDEX: &str = "by_dataset";

pub struct DynamoLedger {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn backend<E, R>(op: &str, e: SdkError<E, R>) -> LedgerError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    LedgerError::Backend(format!("DynamoDB {op}: {}", DisplayErrorContext(e)))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn delivery_pk(id: &str) -> String {
    format!("D#{id}")
}

fn hash_pk(dataset: &str, sha256: &str) -> String {
    format!("H#{dataset}#{sha256}")
}

fn new_item(d: &NewDelivery, state: DeliveryState, duplicate_of: Option<&str>) -> Item {
    let at = ts(d.received_at);
    let mut item: Item = [
        ("pk", s(delivery_pk(&d.delivery_id))),
        ("delivery_id", s(&d.delivery_id)),
        ("dataset", s(&d.dataset)),
        ("source", s(&d.source)),
        ("object_key", s(&d.object_key)),
        ("object_version", s(&d.object_version)),
        ("file_name", s(&d.file_name)),
        ("delivery_date", s(d.delivery_date.to_string())),
        ("sha256", s(&d.sha256)),
        ("size", n(d.size)),
        ("state", s(state.as_str())),
        ("received_at", s(&at)),
        ("updated_at", s(&at)),
        ("attempts", n(0)),
        ("rows_read", n(0)),
        ("rows_accepted", n(0)),
        ("rows_rejected", n(0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(of) = duplicate_of {
        item.insert("duplicate_of".into(), s(of));
    }
    item
}

fn item_to_delivery(item: &Item) -> Result<Delivery, LedgerError> {
    let bad = |field: &str| LedgerError::Backend(format!("ledger item lacks a valid {field}"));
    let text = |field: &str| -> Result<String, LedgerError> {
        match item.get(field) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(bad(field)),
        }
    };
    let opt_text = |field: &str| match item.get(field) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let num = |field: &str| -> Result<u64, LedgerError> {
        match item.get(field) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| bad(field)),
            None => Ok(0),
            _ => Err(bad(field)),
        }
    };
    let time = |field: &str| -> Result<DateTime<Utc>, LedgerError> {
        DateTime::parse_from_rfc3339(&text(field)?)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad(field))
    };
    Ok(Delivery {
        delivery_id: text("delivery_id")?,
        dataset: text("dataset")?,
        source: text("source")?,
        object_key: text("object_key")?,
        object_version: text("object_version")?,
        file_name: text("file_name")?,
        delivery_date: NaiveDate::parse_from_str(&text("delivery_date")?, "%Y-%m-%d")
            .map_err(|_| bad("delivery_date"))?,
        sha256: text("sha256")?,
        size: num("size")?,
        state: DeliveryState::parse(&text("state")?).ok_or_else(|| bad("state"))?,
        received_at: time("received_at")?,
        updated_at: time("updated_at")?,
        duplicate_of: opt_text("duplicate_of"),
        attempts: num("attempts")? as u32,
        outcome: Outcome {
            rows_read: num("rows_read")?,
            rows_accepted: num("rows_accepted")?,
            rows_rejected: num("rows_rejected")?,
            message: opt_text("message"),
        },
    })
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
        }
    }

    async fn get_item(&self, pk: &str) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(out.item)
    }

    /// Registers `d` as a new delivery that takes the content over from `held` (a
    /// rejected delivery), in one transaction conditional on `held` still owning it.
    /// False when another registration got there first.
    async fn take_content(&self, d: &NewDelivery, held: &Delivery) -> Result<bool, LedgerError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Backend(e.to_string());
        let delivery = Put::builder()
            .table_name(&self.table)
            .set_item(Some(new_item(d, DeliveryState::Received, None)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;
        let owner = Update::builder()
            .table_name(&self.table)
            .key("pk", s(hash_pk(&d.dataset, &d.sha256)))
            .update_expression("SET #owner = :new")
            .condition_expression("#owner = :old")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":new", s(&d.delivery_id))
            .expression_attribute_values(":old", s(&held.delivery_id))
            .build()
            .map_err(build)?;
        let tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(delivery).build())
            .transact_items(TransactWriteItem::builder().update(owner).build());
        match tx.client_request_token(request_token()?).send().await {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(_)) => Ok(false),
                _ => Err(backend("TransactWriteItems", e)),
            },
        }
    }

    /// The result of a conditional state change: false when the condition failed
    /// because another worker got there first, an error when the delivery is unknown.
    async fn conditional<T, R>(
        &self,
        id: &str,
        r: Result<T, SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>>,
    ) -> Result<bool, LedgerError>
    where
        T: Send,
        R: std::fmt::Debug + Send,
    {
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                if self.get(id).await?.is_none() {
                    return Err(LedgerError::Unknown { id: id.to_string() });
                }
                Ok(false)
            }
            Err(e) => Err(backend("UpdateItem", e)),
        }
    }

    async fn known(&self, id: &str) -> Result<Registration, LedgerError> {
        let item = self.get_item(&delivery_pk(id)).await?.ok_or_else(|| {
            LedgerError::Backend(format!(
                "delivery {id} was reported as existing but cannot be read"
            ))
        })?;
        Ok(Registration::Known(item_to_delivery(&item)?))
    }

    /// Queries the dataset index between two `received_at` bounds, newest first.
    async fn query_dataset(
        &self,
        dataset: &str,
        from: Option<String>,
        to: Option<String>,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let mut condition = "dataset = :d".to_string();
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DATASET_INDEX)
            .scan_index_forward(false)
            .expression_attribute_values(":d", s(dataset));
        if let (Some(from), Some(to)) = (from, to) {
            condition.push_str(" AND received_at BETWEEN :from AND :to");
            q = q
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to));
        }
        let mut pages = q
            .key_condition_expression(condition)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| backend("Query", e))?;
            out.push(item_to_delivery(&item)?);
            if out.len() >= limit {
                break;
            }
        }
        // The index orders by received_at only; ties in the same order as SQLite.
        newest_first(&mut out);
        Ok(out)
    }
}

fn request_token() -> Result<String, LedgerError> {
    let mut bytes = [0u8; 16];
    crate::pseudonym::random_bytes(&mut bytes)
        .map_err(|e| LedgerError::Backend(format!("no randomness for a request token: {e}")))?;
    Ok(hex::encode(bytes))
}

fn newest_first(v: &mut [Delivery]) {
    v.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then_with(|| a.delivery_id.cmp(&b.delivery_id))
    });
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn register(&self, d: &NewDelivery) -> Result<Registration, LedgerError> {
        let not_exists = "attribute_not_exists(pk)";
        let build = |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Backend(e.to_string());
        let delivery = Put::builder()
            .table_name(&self.table)
            .set_item(Some(new_item(d, DeliveryState::Received, None)))
            .condition_expression(not_exists)
            .build()
            .map_err(build)?;
        let owner = Put::builder()
            .table_name(&self.table)
            .item("pk", s(hash_pk(&d.dataset, &d.sha256)))
            .item("owner", s(&d.delivery_id))
            .condition_expression(not_exists)
            .build()
            .map_err(build)?;
        let tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(delivery).build())
            .transact_items(TransactWriteItem::builder().put(owner).build())
            // One token per call: an SDK retry of a transaction that did commit then
            // succeeds again instead of reporting the delivery as already known, while a
            // later notification of the same object (a new call) still finds it known.
            .client_request_token(request_token()?)
            .send()
            .await;
        let reasons = match tx {
            Ok(_) => {
                let item = new_item(d, DeliveryState::Received, None);
                return Ok(Registration::New(item_to_delivery(&item)?));
            }
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or_default().to_string())
                    .collect::<Vec<_>>(),
                _ => return Err(backend("TransactWriteItems", e)),
            },
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        if failed(0) {
            return self.known(&d.delivery_id).await;
        }
        if !failed(1) {
            return Err(LedgerError::Backend(format!(
                "DynamoDB TransactWriteItems cancelled: {reasons:?}"
            )));
        }
        // The content has an owner: record this object as its duplicate.
        let owner = self
            .get_item(&hash_pk(&d.dataset, &d.sha256))
            .await?
            .and_then(|i| match i.get("owner") {
                Some(AttributeValue::S(o)) => Some(o.clone()),
                _ => None,
            })
            .ok_or_else(|| LedgerError::Backend("content owner item has no owner".into()))?;
        // Identical content is "already delivered" unless its owner was rejected (a
        // failed owner stays the owner: receive replays it).
        if let Some(held) = self.get(&owner).await?
            && held.state == DeliveryState::Rejected
            && self.take_content(d, &held).await?
        {
            let item = new_item(d, DeliveryState::Received, None);
            return Ok(Registration::New(item_to_delivery(&item)?));
        }
        let item = new_item(d, DeliveryState::Duplicate, Some(&owner));
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression(not_exists)
            .send()
            .await
        {
            Ok(_) => Ok(Registration::Duplicate(item_to_delivery(&item)?)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                self.known(&d.delivery_id).await
            }
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    async fn take_over(
        &self,
        id: &str,
        read_updated_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(delivery_pk(id)))
            .update_expression("SET updated_at = :at ADD attempts :one")
            .condition_expression("#state = :p AND updated_at = :read")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":p", s(DeliveryState::Processing.as_str()))
            .expression_attribute_values(":read", s(ts(read_updated_at)))
            .expression_attribute_values(":at", s(ts(at)))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        self.conditional(id, r).await
    }

    async fn get(&self, id: &str) -> Result<Option<Delivery>, LedgerError> {
        self.get_item(&delivery_pk(id))
            .await?
            .map(|i| item_to_delivery(&i))
            .transpose()
    }

    async fn transition(
        &self,
        id: &str,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
        outcome: Option<&Outcome>,
    ) -> Result<bool, LedgerError> {
        let mut set = vec!["#state = :to", "updated_at = :at"];
        let mut u = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(delivery_pk(id)))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", s(ts(at)));
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":f{i}")).collect();
        for (p, state) in placeholders.iter().zip(from) {
            u = u.expression_attribute_values(p, s(state.as_str()));
        }
        if let Some(o) = outcome {
            set.extend([
                "rows_read = :rr",
                "rows_accepted = :ra",
                "rows_rejected = :rj",
            ]);
            u = u
                .expression_attribute_values(":rr", n(o.rows_read))
                .expression_attribute_values(":ra", n(o.rows_accepted))
                .expression_attribute_values(":rj", n(o.rows_rejected));
            if let Some(m) = &o.message {
                set.push("message = :msg");
                u = u.expression_attribute_values(":msg", s(m));
            }
        }
        let mut expr = format!("SET {}", set.join(", "));
        if outcome.is_some_and(|o| o.message.is_none()) {
            expr.push_str(" REMOVE message");
        }
        if to == DeliveryState::Processing {
            expr.push_str(" ADD attempts :one");
            u = u.expression_attribute_values(":one", n(1));
        }
        let condition = format!(
            "attribute_exists(pk) AND #state IN ({})",
            placeholders.join(", ")
        );
        let r = u
            .update_expression(expr)
            .condition_expression(condition)
            .send()
            .await;
        self.conditional(id, r).await
    }

    async fn retract(
        &self,
        id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let Some(d) = self.get(id).await? else {
            return Err(LedgerError::Unknown { id: id.to_string() });
        };
        if !d.state.has_rows() {
            return Ok(false);
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Backend(e.to_string());
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(delivery_pk(id)))
            .update_expression("SET #state = :to, updated_at = :at, message = :msg")
            .condition_expression("#state IN (:a, :w)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":to", s(DeliveryState::Retracted.as_str()))
            .expression_attribute_values(":at", s(ts(at)))
            .expression_attribute_values(":msg", s(reason))
            .expression_attribute_values(":a", s(DeliveryState::Accepted.as_str()))
            .expression_attribute_values(":w", s(DeliveryState::AcceptedWithWarnings.as_str()))
            .build()
            .map_err(build)?;
        // The content item goes only if this delivery owns it.
        let release = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(hash_pk(&d.dataset, &d.sha256)))
            .condition_expression("attribute_not_exists(pk) OR #owner = :id")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":id", s(id))
            .build()
            .map_err(build)?;
        match self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().delete(release).build())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("TransactWriteItems", e)),
        }
    }

    async fn list(
        &self,
        dataset: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, LedgerError> {
        if let Some(dataset) = dataset {
            return self.query_dataset(dataset, None, None, limit).await;
        }
        // All datasets: an operator's overview, rare and small enough to scan.
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :d)")
            .expression_attribute_values(":d", s("D#"))
            .select(Select::AllAttributes)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(item_to_delivery(&item.map_err(|e| backend("Scan", e))?)?);
        }
        newest_first(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn received_on(
        &self,
        dataset: &str,
        day: NaiveDate,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let (from, to) = crate::ledger::day_bounds(day);
        self.query_dataset(dataset, Some(from), Some(to), usize::MAX)
            .await
    }
}
