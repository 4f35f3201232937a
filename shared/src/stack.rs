//! The repeated blocks of `infra/template.yaml`, generated from one list of suppliers
//! ([`layout::SUPPLIERS`]) and one of buckets, as `glue` generates the catalog: a new
//! supplier is one entry, not four hand-copied blocks that can drift apart.
//!
//! Each block lives in the template between `# BEGIN GENERATED <name> (naerdata infra
//! template)` and `# END GENERATED <name>`; `naerdata infra template` rewrites them in
//! place and a test fails when the committed template differs from what this module
//! renders. Everything outside the markers stays hand-written.

use crate::layout::{
    self, ATHENA_RESULTS_BUCKET, LAKE_BUCKET, LANDING_BUCKET, QUARANTINE_BUCKET, RECEIPTS_BUCKET,
    SUPPLIERS, Supplier,
};
use crate::metrics::NAMESPACE;

/// What renders one region's text.
pub type Render = fn() -> String;

/// The generated regions, in the template's order, with what renders each.
pub const REGIONS: &[(&str, Render)] = &[
    ("supplier-parameters", supplier_parameters),
    ("bucket-policies", bucket_policies),
    ("supplier-roles", supplier_roles),
    ("silence-alarms", silence_alarms),
];

/// The line that opens a generated region.
pub fn begin_marker(name: &str) -> String {
    format!("# BEGIN GENERATED {name} (naerdata infra template)")
}

/// The line that closes a generated region.
pub fn end_marker(name: &str) -> String {
    format!("# END GENERATED {name}")
}

/// The byte range between the markers of region `name` (the lines after BEGIN up to
/// the END line).
fn span(template: &str, name: &str) -> Result<(usize, usize), String> {
    let (begin, end) = (begin_marker(name), end_marker(name));
    let mut start = None;
    let mut offset = 0;
    for line in template.split_inclusive('\n') {
        let t = line.trim();
        match start {
            None if t == begin => start = Some(offset + line.len()),
            Some(s) if t == end => return Ok((s, offset)),
            _ => {}
        }
        offset += line.len();
    }
    Err(format!("the template has no region `{begin}` ... `{end}`"))
}

/// The template with every generated region rendered afresh.
pub fn render(template: &str) -> Result<String, String> {
    let mut out = template.to_string();
    for (name, block) in REGIONS {
        let (s, e) = span(&out, name)?;
        out.replace_range(s..e, &block());
    }
    Ok(out)
}

/// The regions whose text differs from what they render (a hand edit, or a
/// supplier or bucket added in `layout` and not yet written).
pub fn stale(template: &str) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for (name, block) in REGIONS {
        let (s, e) = span(template, name)?;
        if template[s..e] != block() {
            out.push(*name);
        }
    }
    Ok(out)
}

fn fill(text: &str, s: &Supplier) -> String {
    text.replace("@STEM@", s.stem)
        .replace("@SOURCE@", s.source)
        .replace("@PREFIX@", &layout::source_prefix(s.source))
        .replace("@WHO@", s.who)
        .replace("@ALARM_NAME@", s.alarm_name)
        .replace("@LANDING@", LANDING_BUCKET)
        .replace("@RECEIPTS@", RECEIPTS_BUCKET)
        .replace("@NAMESPACE@", NAMESPACE)
}

const SUPPLIER_PARAMETERS: &str = r#"  @STEM@AccountId:
    Type: String
    AllowedPattern: "^[0-9]{12}$"
    ConstraintDescription: a 12-digit AWS account id
    Description: The AWS account @WHO@ delivers from; it alone may assume its supplier role.
  @STEM@ExternalId:
    Type: String
    NoEcho: true
    MinLength: 16
    MaxLength: 1224
    AllowedPattern: "^[A-Za-z0-9+=,.@:/_-]+$"
    Description: The ExternalId @WHO@ passes to sts:AssumeRole (agreed with it; at least 16 characters).
"#;

/// Per supplier: the account it delivers from and the ExternalId agreed with it.
pub fn supplier_parameters() -> String {
    SUPPLIERS
        .iter()
        .map(|s| fill(SUPPLIER_PARAMETERS, s))
        .collect()
}

const SUPPLIER_ROLE: &str = r#"  @STEM@SupplierRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub naerdata-${EnvironmentName}-supplier-@SOURCE@
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: { AWS: !Sub "arn:${AWS::Partition}:iam::${@STEM@AccountId}:root" }
            Action: sts:AssumeRole
            Condition:
              StringEquals: { "sts:ExternalId": !Ref @STEM@ExternalId }
      Policies:
        - PolicyName: deliver
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Sid: Deliver
                Effect: Allow
                Action: s3:PutObject
                Resource: !Sub "${@LANDING@.Arn}/@PREFIX@*"
              - Sid: ReadReceipts
                Effect: Allow
                Action: s3:GetObject
                Resource: !Sub "${@RECEIPTS@.Arn}/@PREFIX@*"
              - Sid: ListReceipts
                Effect: Allow
                Action: s3:ListBucket
                Resource: !GetAtt @RECEIPTS@.Arn
                Condition: { StringLike: { "s3:prefix": "@PREFIX@*" } }
              - Sid: EncryptDeliveries
                Effect: Allow
                Action: [kms:GenerateDataKey, kms:Decrypt]
                Resource: !GetAtt RawDataKey.Arn
                Condition:
                  StringEquals: { "kms:ViaService": !Sub "s3.${AWS::Region}.amazonaws.com" }
                  StringLike: { "kms:EncryptionContext:aws:s3:arn": !Sub "${@LANDING@.Arn}/@PREFIX@*" }
              - Sid: DecryptReceipts
                Effect: Allow
                Action: kms:Decrypt
                Resource: !GetAtt RawDataKey.Arn
                Condition:
                  StringEquals: { "kms:ViaService": !Sub "s3.${AWS::Region}.amazonaws.com" }
                  StringLike: { "kms:EncryptionContext:aws:s3:arn": !Sub "${@RECEIPTS@.Arn}/@PREFIX@*" }
"#;

/// Per supplier: a role it assumes from its own account, limited to its own landing
/// and receipt prefixes.
pub fn supplier_roles() -> String {
    SUPPLIERS
        .iter()
        .map(|s| fill(SUPPLIER_ROLE, s))
        .collect::<Vec<_>>()
        .join("\n")
}

const SILENCE_ALARM: &str = r#"  Silent@STEM@Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub naerdata-${EnvironmentName}-no-delivery-@SOURCE@
      AlarmDescription: No delivery from @ALARM_NAME@ within its expected cadence.
      Namespace: @NAMESPACE@
      MetricName: Deliveries
      Dimensions: [{ Name: Function, Value: receive }, { Name: Source, Value: @SOURCE@ }]
      Statistic: Sum
      Period: 86400
      EvaluationPeriods: !Ref SilentDaysBeforeAlarm
      Threshold: 1
      ComparisonOperator: LessThanThreshold
      TreatMissingData: breaching
      AlarmActions: [!Ref AlarmTopic]
"#;

/// Per supplier: an alarm when it delivered nothing for a day.
pub fn silence_alarms() -> String {
    SUPPLIERS
        .iter()
        .map(|s| fill(SILENCE_ALARM, s))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a bucket's policy refuses besides plain HTTP.
enum Guard {
    /// Only TLS.
    Tls,
    /// Uploads encrypted with anything but KMS.
    Kms,
    /// Uploads without the platform's raw data key, and deleting a delivery.
    RawDeliveries,
}

/// The buckets with a policy of their own, in the template's order.
const BUCKET_POLICIES: &[(&str, Guard)] = &[
    (LANDING_BUCKET, Guard::RawDeliveries),
    (LAKE_BUCKET, Guard::Kms),
    (RECEIPTS_BUCKET, Guard::Kms),
    (QUARANTINE_BUCKET, Guard::Kms),
    (ATHENA_RESULTS_BUCKET, Guard::Tls),
];

const TLS_ONLY: &str = r#"  @BUCKET@Policy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref @BUCKET@
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: DenyInsecureTransport
            Effect: Deny
            Principal: "*"
            Action: "s3:*"
            Resource: [!GetAtt @BUCKET@.Arn, !Sub "${@BUCKET@.Arn}/*"]
            Condition: { Bool: { "aws:SecureTransport": "false" } }
"#;

const KMS_ONLY: &str = r#"          - Sid: DenyOtherEncryption
            Effect: Deny
            Principal: "*"
            Action: s3:PutObject
            Resource: !Sub "${@BUCKET@.Arn}/*"
            Condition:
              StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption": "aws:kms" }
"#;

const RAW_DELIVERIES: &str = r#"          # Uploads name the platform's raw data key by its ARN (the stack output
          # LandingKey); a request without it, with another key or with SSE-S3 is refused.
          - Sid: DenyUploadsWithoutThePlatformKey
            Effect: Deny
            Principal: "*"
            Action: s3:PutObject
            Resource: !Sub "${@BUCKET@.Arn}/*"
            Condition:
              StringNotEquals:
                "s3:x-amz-server-side-encryption-aws-kms-key-id": !GetAtt RawDataKey.Arn
          - Sid: DenyDeletingRawDeliveries
            Effect: Deny
            Principal: "*"
            Action: [s3:DeleteObject, s3:DeleteObjectVersion]
            Resource: !Sub "${@BUCKET@.Arn}/*"
"#;

/// Per bucket: TLS only, and what else its zone refuses.
pub fn bucket_policies() -> String {
    BUCKET_POLICIES
        .iter()
        .map(|(bucket, guard)| {
            let extra = match guard {
                Guard::Tls => "",
                Guard::Kms => KMS_ONLY,
                Guard::RawDeliveries => RAW_DELIVERIES,
            };
            format!("{TLS_ONLY}{extra}").replace("@BUCKET@", bucket)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");

    #[test]
    fn the_committed_template_is_current() {
        let text = std::fs::read_to_string(TEMPLATE).unwrap();
        assert_eq!(
            stale(&text).unwrap(),
            Vec::<&str>::new(),
            "infra/template.yaml has hand-edited or stale generated regions: run `naerdata infra template`"
        );
        assert_eq!(render(&text).unwrap(), text);
    }

    #[test]
    fn a_hand_edit_inside_a_region_is_found_and_undone() {
        let text = std::fs::read_to_string(TEMPLATE).unwrap();
        let edited = text.replacen("no-delivery-lpr", "no-delivery-LPR", 1);
        assert_ne!(edited, text);
        assert_eq!(stale(&edited).unwrap(), vec!["silence-alarms"]);
        assert_eq!(render(&edited).unwrap(), text);
    }

    #[test]
    fn regions_render_every_supplier_and_bucket() {
        let roles = supplier_roles();
        assert_eq!(roles.matches("SupplierRole:\n").count(), SUPPLIERS.len());
        assert!(roles.contains("      RoleName: !Sub naerdata-${EnvironmentName}-supplier-lpr\n"));
        assert!(
            roles.contains("                Resource: !Sub \"${LandingBucket.Arn}/kommune/*\"\n")
        );
        assert!(roles.contains("\"s3:prefix\": \"almenpraksis/*\""));
        let alarms = silence_alarms();
        assert!(alarms.contains("  SilentSpeciallaegeAlarm:\n"));
        assert!(alarms.contains("      Namespace: naerdata\n"));
        let policies = bucket_policies();
        assert_eq!(
            policies.matches("Sid: DenyInsecureTransport").count(),
            BUCKET_POLICIES.len()
        );
        assert_eq!(policies.matches("Sid: DenyOtherEncryption").count(), 3);
        assert!(policies.contains("  AthenaResultsBucketPolicy:\n"));
        let parameters = supplier_parameters();
        assert!(parameters.starts_with("  AlmenpraksisAccountId:\n"));
        assert!(parameters.contains(
            "    Description: The ExternalId LPR passes to sts:AssumeRole (agreed with it; at least 16 characters).\n"
        ));
    }

    #[test]
    fn every_contract_source_is_a_supplier() {
        let mut sources: Vec<String> = crate::contract::Registry::builtin()
            .iter()
            .map(|c| c.source.clone())
            .collect();
        sources.sort();
        sources.dedup();
        let mut suppliers: Vec<String> = SUPPLIERS.iter().map(|s| s.source.to_string()).collect();
        suppliers.sort();
        assert_eq!(sources, suppliers);
    }

    #[test]
    fn a_missing_marker_is_an_error() {
        assert!(
            render("Resources:\n")
                .unwrap_err()
                .contains("supplier-parameters")
        );
    }
}
