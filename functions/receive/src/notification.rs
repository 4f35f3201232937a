//! S3 event notifications as they arrive in SQS message bodies, parsed leniently:
//! only the fields the receive step needs are read, so records from emulators
//! (without `userIdentity`, `requestParameters`, ...) and from SNS fan-out parse too.

use percent_encoding::percent_decode_str;
use serde::Deserialize;

/// One object that an `ObjectCreated:*` event announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub bucket: String,
    /// The key, decoded (S3 sends it URL-encoded with `+` for space).
    pub key: String,
    pub version: Option<String>,
    pub size: Option<u64>,
}

/// What one SQS message body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// The `s3:TestEvent` S3 sends when a notification is configured: nothing to do.
    Test,
    /// Objects created (other event kinds in the same message are skipped).
    Created(Vec<CreatedObject>),
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("the message body is not JSON: {0}")]
    NotJson(String),
    #[error("the message is not an S3 event notification (no Records and no s3:TestEvent)")]
    NotS3,
    /// The key is described by its length only: it may hold a CPR number.
    #[error("record {index}: the object key ({length} bytes) is not valid URL-encoded UTF-8")]
    BadKey { index: usize, length: usize },
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS -> SQS fan-out wraps the S3 event as a string.
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: Option<Entity>,
}

#[derive(Deserialize)]
struct Entity {
    bucket: BucketRef,
    object: ObjectRef,
}

#[derive(Deserialize)]
struct BucketRef {
    name: String,
}

#[derive(Deserialize)]
struct ObjectRef {
    key: String,
    size: Option<u64>,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
}

/// Decodes an S3 notification key: `+` is a space, `%XX` a byte (including `%2F`,
/// which some emitters use for `/`).
pub fn decode_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

pub fn parse(body: &str) -> Result<Notification, NotificationError> {
    let b: Body = serde_json::from_str(body).map_err(|e| {
        // serde_json's own message can quote the body (an object key).
        NotificationError::NotJson(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if b.kind.as_deref() == Some("Notification")
        && let Some(inner) = &b.message
    {
        return parse(inner);
    }
    if b.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    let Some(records) = b.records else {
        return Err(NotificationError::NotS3);
    };
    let mut out = Vec::new();
    for (index, r) in records.into_iter().enumerate() {
        // ObjectCreated:Put, :Post, :Copy, :CompleteMultipartUpload.
        if !r.event_name.starts_with("ObjectCreated:") {
            tracing::info!(event = %r.event_name, "skipping a non-create event");
            continue;
        }
        let Some(s3) = r.s3 else {
            return Err(NotificationError::NotS3);
        };
        let key = decode_key(&s3.object.key).ok_or(NotificationError::BadKey {
            index,
            length: s3.object.key.len(),
        })?;
        out.push(CreatedObject {
            bucket: s3.bucket.name,
            key,
            version: s3
                .object
                .version_id
                .filter(|v| !v.is_empty() && v != "null"),
            size: s3.object.size,
        });
    }
    Ok(Notification::Created(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, extra: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-north-1",
            "eventTime":"2026-03-01T10:00:00.000Z","eventName":"ObjectCreated:Put",{extra}
            "s3":{{"s3SchemaVersion":"1.0","configurationId":"landing",
            "bucket":{{"name":"landing","arn":"arn:aws:s3:::landing"}},
            "object":{{"key":"{key}","size":12,"eTag":"x","versionId":"v1","sequencer":"0A"}}}}}}]}}"#
        )
    }

    #[test]
    fn full_aws_record() {
        let full = event(
            "almenpraksis/diagnose/2026-03-01/a.csv",
            r#""userIdentity":{"principalId":"AWS:X"},"requestParameters":{"sourceIPAddress":"1.2.3.4"},
               "responseElements":{"x-amz-request-id":"R"},"#,
        );
        let Notification::Created(o) = parse(&full).unwrap() else {
            panic!()
        };
        assert_eq!(
            o,
            [CreatedObject {
                bucket: "landing".into(),
                key: "almenpraksis/diagnose/2026-03-01/a.csv".into(),
                version: Some("v1".into()),
                size: Some(12),
            }]
        );
    }

    #[test]
    fn emulator_record_without_identity_fields() {
        let Notification::Created(o) = parse(&event("a/b/2026-03-01/c.csv", "")).unwrap() else {
            panic!()
        };
        assert_eq!(o[0].key, "a/b/2026-03-01/c.csv");
    }

    #[test]
    fn keys_are_url_decoded() {
        let Notification::Created(o) = parse(&event(
            "kommune%2Fgateway%2F2026-03-01%2Fmy+file%3D1%2B2.ndjson",
            "",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(o[0].key, "kommune/gateway/2026-03-01/my file=1+2.ndjson");
        assert!(matches!(
            parse(&event("a/%FF.csv", "")),
            Err(NotificationError::BadKey { index: 0, .. })
        ));
    }

    #[test]
    fn test_event_sns_envelope_and_garbage() {
        let t = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-03-01T10:00:00.000Z","Bucket":"landing","RequestId":"R","HostId":"H"}"#;
        assert_eq!(parse(t).unwrap(), Notification::Test);
        let sns = serde_json::json!({"Type": "Notification", "Message": event("a/b/2026-03-01/c.csv", "")});
        assert!(
            matches!(parse(&sns.to_string()).unwrap(), Notification::Created(v) if v.len() == 1)
        );
        assert!(matches!(
            parse("not json"),
            Err(NotificationError::NotJson(_))
        ));
        assert!(matches!(
            parse(r#"{"hello":1}"#),
            Err(NotificationError::NotS3)
        ));
    }

    #[test]
    fn non_create_events_are_skipped_and_null_versions_dropped() {
        let removed =
            event("a/b/2026-03-01/c.csv", "").replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(parse(&removed).unwrap(), Notification::Created(vec![]));
        let unversioned = event("a/b/2026-03-01/c.csv", "").replace("\"v1\"", "\"null\"");
        let Notification::Created(o) = parse(&unversioned).unwrap() else {
            panic!()
        };
        assert_eq!(o[0].version, None);
    }
}
