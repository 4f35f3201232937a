//! Keys in Secrets Manager, read once per cold start and never logged: the lake key,
//! and one key per research project (created on the project's first extract). A secret
//! holds the same JSON as the local key file: `{"version": 1, "key_hex": "..."}`.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::custody::{self, Fingerprint, KeyRecord};
use crate::ports::{KeyError, KeyProvider, ObjectStore};
use crate::pseudonym::{Key, MIN_KEY_BYTES};

pub struct SecretKeyProvider {
    client: Client,
    secret_id: String,
    key: OnceCell<Key>,
}

#[derive(Deserialize)]
struct Stored {
    version: u32,
    key_hex: String,
}

/// Parses the secret's text. Errors name the secret, never its content.
pub fn parse_secret(secret_id: &str, text: &str) -> Result<Key, KeyError> {
    let s: Stored = serde_json::from_str(text).map_err(|_| {
        KeyError(format!(
            "secret {secret_id} is not a key: expected JSON {{\"version\": N, \"key_hex\": \"...\"}}"
        ))
    })?;
    let bytes = hex::decode(s.key_hex.trim())
        .map_err(|_| KeyError(format!("secret {secret_id}: key_hex is not hex")))?;
    Key::new(s.version, bytes).map_err(|e| KeyError(format!("secret {secret_id}: {e}")))
}

/// The secret's text, or `None` when there is no such secret.
async fn read(client: &Client, secret_id: &str) -> Result<Option<String>, KeyError> {
    match client.get_secret_value().secret_id(secret_id).send().await {
        Ok(out) => out
            .secret_string()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| KeyError(format!("secret {secret_id} has no string value"))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(KeyError(format!(
            "reading secret {secret_id}: {}",
            DisplayErrorContext(e)
        ))),
    }
}

impl SecretKeyProvider {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretKeyProvider {
            client,
            secret_id: secret_id.into(),
            key: OnceCell::new(),
        }
    }

    async fn fetch(&self) -> Result<Key, KeyError> {
        let text = read(&self.client, &self.secret_id)
            .await?
            .ok_or_else(|| {
                KeyError(format!(
                    "secret {} holds no key (the stack creates it empty): put the first key with `naerdata --aws keys init`, \
                     or restore the key the lake was built with",
                    self.secret_id
                ))
            })?;
        parse_secret(&self.secret_id, &text)
    }
}

#[async_trait]
impl KeyProvider for SecretKeyProvider {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        self.key.get_or_try_init(|| self.fetch()).await.cloned()
    }
}

/// Puts the first lake key (version 1, 256 random bits) into the secret the stack
/// creates empty, and records its fingerprint in the lake. Refuses when the lake
/// already records a key or the secret already holds one: that key must be restored,
/// never replaced, or every person would get new pseudonyms.
pub async fn init_lake_secret(
    client: &Client,
    secret_id: &str,
    lake: &dyn ObjectStore,
) -> Result<Fingerprint, KeyError> {
    if let Some(record) = custody::read_record(lake).await? {
        return Err(KeyError(format!(
            "the lake already records a key ({}); restore that key into secret {secret_id} \
             (e.g. from a previous version of the secret) instead of creating a new one",
            record.current
        )));
    }
    if read(client, secret_id).await?.is_some() {
        return Err(KeyError(format!(
            "secret {secret_id} already holds a key; nothing was changed"
        )));
    }
    let mut bytes = vec![0u8; MIN_KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| KeyError(format!("no randomness for a new lake key: {e}")))?;
    let body = serde_json::json!({"version": 1, "key_hex": hex::encode(&bytes)}).to_string();
    let key = Key::new(1, bytes).map_err(|e| KeyError(e.to_string()))?;
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(body)
        .send()
        .await
        .map_err(|e| {
            KeyError(format!(
                "putting the first key into secret {secret_id}: {}",
                DisplayErrorContext(e)
            ))
        })?;
    let record = KeyRecord::new(&key, chrono::Utc::now());
    custody::write_record(lake, &record).await?;
    Ok(record.current)
}

/// A research project's key: the secret `<prefix><project>`, created with 256 random
/// bits on the project's first extract, KMS-encrypted with the data key. Apart from the
/// lake key, so two projects' releases link neither to each other nor to the lake.
pub struct ProjectSecretKey {
    client: Client,
    secret_id: String,
    kms_key: Option<String>,
    key: OnceCell<Key>,
}

impl ProjectSecretKey {
    pub fn new(client: Client, prefix: &str, project: &str, kms_key: Option<String>) -> Self {
        ProjectSecretKey {
            client,
            secret_id: format!("{prefix}{project}"),
            kms_key,
            key: OnceCell::new(),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    async fn load_or_create(&self) -> Result<Key, KeyError> {
        if let Some(text) = read(&self.client, &self.secret_id).await? {
            return parse_secret(&self.secret_id, &text);
        }
        let mut bytes = vec![0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| KeyError(format!("no randomness for a new project key: {e}")))?;
        let body = serde_json::json!({"version": 1, "key_hex": hex::encode(&bytes)}).to_string();
        let created = self
            .client
            .create_secret()
            .name(&self.secret_id)
            .description("naerdata research project key (HMAC-SHA-256 of person_id); created on the first extract")
            .secret_string(body)
            .set_kms_key_id(self.kms_key.clone())
            .send()
            .await;
        match created {
            Ok(_) => Key::new(1, bytes).map_err(|e| KeyError(e.to_string())),
            // Another extract of the same project created it first: use theirs.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                let text = read(&self.client, &self.secret_id).await?.ok_or_else(|| {
                    KeyError(format!(
                        "secret {} exists but cannot be read",
                        self.secret_id
                    ))
                })?;
                parse_secret(&self.secret_id, &text)
            }
            Err(e) => Err(KeyError(format!(
                "creating secret {}: {}",
                self.secret_id,
                DisplayErrorContext(e)
            ))),
        }
    }
}

#[async_trait]
impl KeyProvider for ProjectSecretKey {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        self.key
            .get_or_try_init(|| self.load_or_create())
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_errors_do_not_echo_the_value() {
        let e = parse_secret(
            "naerdata/lake-key",
            "{\"version\":1,\"key_hex\":\"zz-secret-zz\"}",
        )
        .err()
        .unwrap();
        assert!(!e.0.contains("zz-secret-zz"), "{}", e.0);
        let e = parse_secret("naerdata/lake-key", "not json zz-secret-zz")
            .err()
            .unwrap();
        assert!(!e.0.contains("zz-secret-zz"), "{}", e.0);
        let k = parse_secret(
            "s",
            &format!("{{\"version\":3,\"key_hex\":\"{}\"}}", "ab".repeat(32)),
        )
        .unwrap();
        assert_eq!(k.version, 3);
    }
}
