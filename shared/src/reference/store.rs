//! Reference versions in the lake: `reference/<kind>/<version>.csv`, never
//! overwritten, and `reference/<kind>/current.json`, the pointer a new version moves.
//! Writing the version before the pointer means a reader sees the old version or
//! the new one, never half of one.
//!
//! Readers ([`current`]) read the pointers at the start of every run and parse only
//! what changed since the last run of the same process, so a Lambda container picks
//! up a new version on its next delivery without a deploy or a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Kind, ReferenceError, ReferenceSet, builtin_version, parse, sha256_hex};
use crate::contract::Registry;
use crate::layout::{reference_current_key, reference_version_key};
use crate::ports::ObjectStore;

/// The pointer to a kind's current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub kind: String,
    pub version: String,
    pub sha256: String,
    pub rows: usize,
    pub loaded_at: DateTime<Utc>,
    /// The file name it was loaded from (control characters escaped).
    pub source_file: String,
}

/// What `naerdata reference load` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version is current.
    New(Current),
    /// The file is the current version already: nothing was written.
    Unchanged(Current),
}

/// Checks a file of `kind` as a new version: what parsing checks (schema,
/// duplicates, municipality coverage, code shapes) and, for the register of units,
/// that each names a dataset with a reporting unit and a unit that dataset's
/// contract would accept. Returns the number of rows.
pub fn check(kind: Kind, text: &str, registry: &Registry) -> Result<usize, ReferenceError> {
    let invalid = |problems| ReferenceError::Invalid { kind, problems };
    let (_, rows) = parse::records(text).map_err(|e| invalid(vec![e]))?;
    let mut texts = BTreeMap::new();
    texts.insert(kind, (String::new(), text));
    let set = ReferenceSet::from_texts(&texts)?;
    if kind == Kind::Units {
        let mut problems = Vec::new();
        for u in &set.units {
            let Some(c) = registry.get(&u.dataset) else {
                problems.push(format!("{}: no such dataset", u.dataset));
                continue;
            };
            let Some(i) = c.reporting_unit else {
                problems.push(format!("{}: the dataset has no reporting unit", u.dataset));
                continue;
            };
            let f = &c.fields[i];
            let fits = f.pattern.as_ref().is_none_or(|p| p.is_match(&u.unit))
                && f.max_length.is_none_or(|n| u.unit.chars().count() <= n);
            if !fits {
                problems.push(format!(
                    "{} {:?}: not a valid {} (the contract's rule for it)",
                    u.dataset, u.unit, f.name
                ));
            }
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
    }
    Ok(rows.len())
}

async fn pointer(store: &dyn ObjectStore, kind: Kind) -> Result<Option<Current>, ReferenceError> {
    let key = reference_current_key(kind.name());
    match store.get(&key).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ReferenceError::Corrupt(format!("{key}: {e}"))),
    }
}

/// Publishes `text` as the new current version of `kind` after [`check`]ing it.
pub fn publish<'a>(
    store: &'a dyn ObjectStore,
    registry: &'a Registry,
    kind: Kind,
    text: &'a str,
    source_file: &'a str,
    now: DateTime<Utc>,
) -> crate::Boxed<'a, Result<Published, ReferenceError>> {
    Box::pin(publish_inner(store, registry, kind, text, source_file, now))
}

/// The body of [`publish`].
async fn publish_inner(
    store: &dyn ObjectStore,
    registry: &Registry,
    kind: Kind,
    text: &str,
    source_file: &str,
    now: DateTime<Utc>,
) -> Result<Published, ReferenceError> {
    let rows = check(kind, text, registry)?;
    let sha256 = sha256_hex(text.as_bytes());
    if let Some(cur) = pointer(store, kind).await?
        && cur.sha256 == sha256
    {
        return Ok(Published::Unchanged(cur));
    }
    let version = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &sha256[..12]);
    store
        .put(
            &reference_version_key(kind.name(), &version),
            Bytes::from(text.to_string()),
        )
        .await?;
    let cur = Current {
        kind: kind.name().to_string(),
        version,
        sha256,
        rows,
        loaded_at: now,
        source_file: crate::privacy::display(source_file),
    };
    let json =
        serde_json::to_vec_pretty(&cur).map_err(|e| ReferenceError::Corrupt(e.to_string()))?;
    store
        .put(&reference_current_key(kind.name()), Bytes::from(json))
        .await?;
    Ok(Published::New(cur))
}

/// Per kind: the loaded pointer, or `None` for the built-in copy.
pub async fn pointers(
    store: &dyn ObjectStore,
) -> Result<BTreeMap<Kind, Option<Current>>, ReferenceError> {
    let mut out = BTreeMap::new();
    for k in Kind::ALL {
        out.insert(k, pointer(store, k).await?);
    }
    Ok(out)
}

/// The last set this process built, by the versions it was built from.
type Cached = (BTreeMap<Kind, String>, Arc<ReferenceSet>);
static LAST: Mutex<Option<Cached>> = Mutex::new(None);
/// Version texts already fetched (immutable, so never stale).
static TEXTS: Mutex<BTreeMap<(Kind, String), Arc<str>>> = Mutex::new(BTreeMap::new());

/// The current reference data of the lake in `store`: each kind's loaded version,
/// or the built-in copy where none was loaded. A version whose bytes do not match
/// its pointer's digest is an error, never silently replaced by the built-in copy.
pub fn current<'a>(
    store: &'a dyn ObjectStore,
) -> crate::Boxed<'a, Result<Arc<ReferenceSet>, ReferenceError>> {
    Box::pin(current_inner(store))
}

/// The body of [`current`].
async fn current_inner(store: &dyn ObjectStore) -> Result<Arc<ReferenceSet>, ReferenceError> {
    let pointers = pointers(store).await?;
    if pointers.values().all(Option::is_none) {
        return Ok(ReferenceSet::builtin());
    }
    let versions: BTreeMap<Kind, String> = pointers
        .iter()
        .map(|(k, p)| {
            (
                *k,
                p.as_ref()
                    .map_or_else(|| builtin_version(*k), |p| p.version.clone()),
            )
        })
        .collect();
    if let Some((v, set)) = LAST.lock().expect("reference cache").as_ref()
        && *v == versions
    {
        return Ok(set.clone());
    }
    let mut texts: BTreeMap<Kind, (String, Arc<str>)> = BTreeMap::new();
    for (kind, p) in &pointers {
        let Some(p) = p else { continue };
        let cached = TEXTS
            .lock()
            .expect("reference cache")
            .get(&(*kind, p.version.clone()))
            .cloned();
        let text = match cached {
            Some(t) => t,
            None => {
                let key = reference_version_key(kind.name(), &p.version);
                let bytes = store.get(&key).await?.ok_or_else(|| {
                    ReferenceError::Corrupt(format!("{key} is named current but missing"))
                })?;
                if sha256_hex(&bytes) != p.sha256 {
                    return Err(ReferenceError::Corrupt(format!(
                        "{key} does not match the digest in its pointer"
                    )));
                }
                let t: Arc<str> = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ReferenceError::Corrupt(format!("{key} is not UTF-8")))?
                    .into();
                TEXTS
                    .lock()
                    .expect("reference cache")
                    .insert((*kind, p.version.clone()), t.clone());
                t
            }
        };
        texts.insert(*kind, (p.version.clone(), text));
    }
    let borrowed: BTreeMap<Kind, (String, &str)> = texts
        .iter()
        .map(|(k, (v, t))| (*k, (v.clone(), &**t)))
        .collect();
    let set = Arc::new(ReferenceSet::from_texts(&borrowed)?);
    *LAST.lock().expect("reference cache") = Some((versions, set.clone()));
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::FsStore;

    fn now() -> DateTime<Utc> {
        "2026-12-06T08:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn a_loaded_version_is_current_and_the_builtin_copy_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let lake = FsStore::new(dir.path()).unwrap();
        let registry = Registry::builtin();
        let r = current(&lake).await.unwrap();
        assert!(r.version(Kind::Sor).starts_with("builtin-"));
        assert!(!r.gateway.sor.contains_key("5790001234567"));

        let text = format!(
            "{}5790001234567,751,Aarhus,false\n",
            super::super::SOR_KOMMUNE_CSV
        );
        let Published::New(cur) = publish(&lake, &registry, Kind::Sor, &text, "sor.csv", now())
            .await
            .unwrap()
        else {
            panic!("not published")
        };
        assert_eq!(cur.rows, 99);
        assert!(
            cur.version.starts_with("20261206T080000Z-"),
            "{}",
            cur.version
        );
        let r = current(&lake).await.unwrap();
        assert_eq!(r.version(Kind::Sor), cur.version);
        assert_eq!(r.gateway.sor["5790001234567"], "751");
        assert!(r.version(Kind::Fsiii).starts_with("builtin-"));
        // The same file again changes nothing.
        let again = publish(&lake, &registry, Kind::Sor, &text, "sor.csv", now())
            .await
            .unwrap();
        assert_eq!(again, Published::Unchanged(cur.clone()));

        // A refused file leaves the current version as it was.
        let e = publish(
            &lake,
            &registry,
            Kind::Sor,
            "sor_code,kommunekode\n1,101\n",
            "x.csv",
            now(),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("97 of the 98 municipalities have no SOR code"),
            "{e}"
        );
        assert_eq!(
            current(&lake).await.unwrap().version(Kind::Sor),
            cur.version
        );

        // A version changed behind the pointer's back is an error, not the fallback.
        let key = reference_version_key("sor", &cur.version);
        lake.put(&key, Bytes::from(text.replace("751", "101")))
            .await
            .unwrap();
        *LAST.lock().unwrap() = None;
        TEXTS.lock().unwrap().clear();
        let e = current(&lake).await.err().unwrap();
        assert!(e.to_string().contains("does not match the digest"), "{e}");
    }

    #[test]
    fn registered_units_must_fit_their_dataset() {
        let registry = Registry::builtin();
        let text = "dataset,unit,name,kommunekode,valid_from,valid_to\n\
                    almenpraksis.diagnose,12345,A,101,2020-01-01,\n\
                    nosuch.dataset,123456,B,101,2020-01-01,\n\
                    lpr.diagnose,123456,C,101,2020-01-01,\n";
        let e = check(Kind::Units, text, &registry).unwrap_err().to_string();
        assert!(
            e.contains("almenpraksis.diagnose \"12345\": not a valid"),
            "{e}"
        );
        assert!(e.contains("nosuch.dataset: no such dataset"), "{e}");
        assert!(
            e.contains("lpr.diagnose: the dataset has no reporting unit"),
            "{e}"
        );
        let good = "dataset,unit,name,kommunekode,valid_from,valid_to\n\
                    almenpraksis.diagnose,123456,A,101,2020-01-01,\n";
        assert_eq!(check(Kind::Units, good, &registry).unwrap(), 1);
        // The demo's generated register is valid: its clinics plus the silent one.
        let generated = crate::generate::unit_register(&crate::generate::GenerateOptions::new("x"));
        assert_eq!(check(Kind::Units, &generated, &registry).unwrap(), 2 * 9);
    }
}
