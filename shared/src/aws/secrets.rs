//! The lake key from Secrets Manager, read once per cold start and never logged.
//! The secret holds the same JSON as the local key file: `{"version": 1, "key_hex": "..."}`.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::ports::{KeyError, KeyProvider};
use crate::pseudonym::Key;

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

impl SecretKeyProvider {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretKeyProvider {
            client,
            secret_id: secret_id.into(),
            key: OnceCell::new(),
        }
    }

    async fn fetch(&self) -> Result<Key, KeyError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                KeyError(format!(
                    "reading secret {}: {}",
                    self.secret_id,
                    DisplayErrorContext(e)
                ))
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| KeyError(format!("secret {} has no string value", self.secret_id)))?;
        parse_secret(&self.secret_id, text)
    }
}

#[async_trait]
impl KeyProvider for SecretKeyProvider {
    async fn lake_key(&self) -> Result<Key, KeyError> {
        self.key.get_or_try_init(|| self.fetch()).await.cloned()
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
