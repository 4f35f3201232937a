//! The IAM statements of infra/template.yaml name only the zones `layout` declares,
//! and every zone `layout` declares for the roles is granted somewhere: a renamed
//! zone cannot leave a policy pointing at the old prefix.

use naerdata::layout::{self, LAKE_BUCKET, LAKE_IAM_PREFIXES, WHOLE_BUCKET};
use regex::Regex;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
const ROLE: &str = "AWS::IAM::Role";

/// An object ARN of a bucket in the template.
struct ObjectArn {
    resource: String,
    kind: String,
    bucket: String,
    path: String,
}

/// Every `${<X>Bucket.Arn}/<path>` and `arn:${AWS::Partition}:s3:::${<X>Bucket}/<path>`
/// under `Resources`, with the resource (and its type) it is in.
fn object_arns(text: &str) -> Vec<ObjectArn> {
    let arn = Regex::new(
        r#"(?:\$\{(\w+Bucket)\.Arn\}|arn:\$\{AWS::Partition\}:s3:::\$\{(\w+Bucket)\})/([^"'\s\]},]*)"#,
    )
    .unwrap();
    let resource = Regex::new(r"^  (\w+):\s*$").unwrap();
    let kind = Regex::new(r"^    Type: (\S+)").unwrap();
    let mut out = Vec::new();
    let (mut in_resources, mut current, mut current_kind) = (false, String::new(), String::new());
    for line in text.lines() {
        if !line.is_empty() && !line.starts_with(' ') && !line.starts_with('#') {
            in_resources = line.starts_with("Resources:");
            continue;
        }
        if !in_resources {
            continue;
        }
        if let Some(c) = resource.captures(line) {
            current = c[1].to_string();
            current_kind.clear();
            continue;
        }
        if let Some(c) = kind.captures(line) {
            current_kind = c[1].to_string();
        }
        for c in arn.captures_iter(line) {
            let bucket = c.get(1).or_else(|| c.get(2)).unwrap().as_str();
            out.push(ObjectArn {
                resource: current.clone(),
                kind: current_kind.clone(),
                bucket: bucket.to_string(),
                path: c[3].to_string(),
            });
        }
    }
    out
}

fn template_arns() -> Vec<ObjectArn> {
    let text = std::fs::read_to_string(TEMPLATE).unwrap();
    let arns = object_arns(&text);
    // The template has dozens; a handful means the pattern no longer matches its form.
    assert!(
        arns.len() > 40,
        "only {} bucket object ARNs found in infra/template.yaml",
        arns.len()
    );
    arns
}

#[test]
fn iam_paths_name_only_the_zones_layout_declares() {
    let declared = layout::iam_prefixes();
    let mut wrong = Vec::new();
    for a in template_arns() {
        let Some((_, allowed)) = declared.iter().find(|(b, _)| *b == a.bucket.as_str()) else {
            wrong.push(format!(
                "{}: {} is not a bucket layout::iam_prefixes declares",
                a.resource, a.bucket
            ));
            continue;
        };
        let ok = if a.path.is_empty() || a.path.as_str() == WHOLE_BUCKET {
            // Bucket policies deny and the trail logs across a whole bucket; a role is
            // granted a whole bucket only where layout says so (never the lake).
            a.kind.as_str() != ROLE || allowed.iter().any(|p| p.as_str() == WHOLE_BUCKET)
        } else {
            allowed
                .iter()
                .any(|p| p.as_str() != WHOLE_BUCKET && a.path.starts_with(p.as_str()))
        };
        if !ok {
            wrong.push(format!(
                "{} ({}): {}/{}",
                a.resource, a.kind, a.bucket, a.path
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "object paths outside the zones of layout:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_zone_layout_grants_is_named_by_a_role() {
    let arns = template_arns();
    let granted = |bucket: &str, prefix: &str| {
        arns.iter().any(|a| {
            a.kind.as_str() == ROLE && a.bucket.as_str() == bucket && a.path.starts_with(prefix)
        })
    };
    for prefix in LAKE_IAM_PREFIXES {
        assert!(
            granted(LAKE_BUCKET, prefix),
            "no role in infra/template.yaml is granted {prefix} of the lake"
        );
    }
    for s in layout::SUPPLIERS {
        let prefix = layout::source_prefix(s.source);
        assert!(granted(layout::LANDING_BUCKET, &prefix), "landing {prefix}");
        assert!(
            granted(layout::RECEIPTS_BUCKET, &prefix),
            "receipts {prefix}"
        );
    }
}

#[test]
fn the_lake_is_never_granted_whole_to_a_role() {
    let whole: Vec<String> = template_arns()
        .into_iter()
        .filter(|a| {
            a.kind.as_str() == ROLE
                && a.bucket.as_str() == LAKE_BUCKET
                && (a.path.is_empty() || a.path.as_str() == WHOLE_BUCKET)
        })
        .map(|a| a.resource)
        .collect();
    assert!(whole.is_empty(), "whole lake granted to {whole:?}");
}

#[test]
fn the_pattern_finds_both_arn_forms() {
    let text = "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      A: !Sub \"${LakeBucket.Arn}/curated/*\"\n      B: !Sub \"arn:${AWS::Partition}:s3:::${LakeBucket}/quality/metrics/*\"\n      C: !Sub \"${LedgerTable.Arn}/index/*\"\n";
    let found: Vec<(String, String, String)> = object_arns(text)
        .into_iter()
        .map(|a| (a.resource, a.bucket, a.path))
        .collect();
    assert_eq!(
        found,
        [
            (
                "R".to_string(),
                "LakeBucket".to_string(),
                "curated/*".to_string()
            ),
            (
                "R".to_string(),
                "LakeBucket".to_string(),
                "quality/metrics/*".to_string()
            ),
        ]
    );
}
