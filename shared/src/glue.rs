//! The Glue catalog of the lake, generated from the contracts (decision 4: one schema
//! owner). `naerdata infra catalog` writes it to `infra/catalog.yaml`, a CloudFormation
//! template that the SAM template nests; a test fails when the committed file differs
//! from what the contracts give. The curated tables and `quality_metrics` are Delta
//! tables (`table_type = DELTA`): Athena (engine v3) reads their schema, partitions and
//! active files from the Delta log, so it sees only committed deliveries and no
//! function ever registers a partition. Their columns are declared too (from the same
//! contract), for people browsing the catalog. The monitor's quality tables use
//! partition projection on their folders.
//!
//! The presentation zone's current tables and dimensions are unpartitioned; a mart is
//! partitioned by `publication` (projected), one folder per publication. They are
//! declared from [`crate::lake::PresentationTable`]s, which the publish step derives
//! from the SQL it runs (`publish::presentation_tables`).

use serde_json::{Value, json};

use crate::contract::{Contract, Registry};
use crate::glossary;
use crate::lake::{self, PresentationTable};
use crate::layout;

/// A CloudFormation logical id from a table name: `kommune_borger` -> `KommuneBorgerTable`.
pub fn logical_id(table: &str) -> String {
    let mut out: String = table
        .split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    out.push_str("Table");
    out
}

/// `text` on one line, cut with an ellipsis at `limit` characters
/// (docs/presentation-columns.md has every description whole).
fn clip(text: &str, limit: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= limit {
        return flat;
    }
    flat.chars().take(limit - 1).chain(['…']).collect()
}

/// A table's description: Glue takes at most 2,048 characters.
fn table_description(text: &str) -> String {
    clip(text, 2048)
}

/// A column's comment: Glue takes at most 255 characters.
fn comment(text: &str) -> String {
    clip(text, glossary::COMMENT_LIMIT)
}

/// An external Parquet table under `prefix` in the lake bucket: the parts every Glue
/// table here shares, around its name, description, parameters and partition keys.
fn parquet_table(mut input: Value, prefix: &str, columns: Vec<Value>) -> Value {
    input["TableType"] = json!("EXTERNAL_TABLE");
    input["StorageDescriptor"] = json!({
        "Location": {"Fn::Sub": format!("s3://${{LakeBucket}}/{prefix}")},
        "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "SerdeInfo": {
            "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        },
        "Columns": columns,
    });
    json!({
        "Type": "AWS::Glue::Table",
        "Properties": {
            "CatalogId": {"Ref": "AWS::AccountId"},
            "DatabaseName": {"Ref": "DatabaseName"},
            "TableInput": input,
        },
    })
}

/// A Delta table under `prefix` in the lake bucket, for Athena's native Delta reader.
/// The columns (data columns, then `year` and `month`) document the table; Athena
/// takes the schema from the log.
fn delta_table(mut input: Value, prefix: &str, columns: Vec<Value>) -> Value {
    let location = json!({"Fn::Sub": format!("s3://${{LakeBucket}}/{prefix}")});
    input["TableType"] = json!("EXTERNAL_TABLE");
    input["Parameters"]["table_type"] = json!("DELTA");
    input["Parameters"]["classification"] = json!("delta");
    input["StorageDescriptor"] = json!({
        "Location": location,
        "Columns": columns,
        // Spark and Glue's own jobs find the table through the SerDe's `path`.
        "SerdeInfo": {
            "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            "Parameters": {"path": location},
        },
    });
    json!({
        "Type": "AWS::Glue::Table",
        "Properties": {
            "CatalogId": {"Ref": "AWS::AccountId"},
            "DatabaseName": {"Ref": "DatabaseName"},
            "TableInput": input,
        },
    })
}

fn partition_columns() -> impl Iterator<Item = Value> {
    lake::delta::PARTITION_COLUMNS
        .iter()
        .map(|c| json!({"Name": c, "Type": "int", "Comment": "Partition column (event year/month), from the Delta log."}))
}

/// The `AWS::Glue::Table` resource of one contract's lake table.
pub fn table_resource(c: &Contract) -> Value {
    let table = c.table();
    // Danish, then English, as the presentation tables' comments.
    let columns: Vec<Value> = lake::catalog_columns(c)
        .into_iter()
        .map(|(name, ty)| {
            let mut col = json!({"Name": name, "Type": ty});
            if let Some(d) = glossary::contract_column(c, &name) {
                col["Comment"] = json!(comment(&d.comment()));
            }
            col
        })
        .collect();
    let prefix = layout::curated_prefix(&table);
    delta_table(
        json!({
            "Name": table,
            "Description": comment(&format!("{} ({} v{}). {}", c.title, c.id, c.version, c.table_description)),
            "Parameters": {
                "contract": c.id,
                "contract_version": c.version,
            },
        }),
        &prefix,
        columns.into_iter().chain(partition_columns()).collect(),
    )
}

/// The `AWS::Glue::Table` of one presentation table: a Delta table (current tables) or
/// one Parquet object in its folder, its description and every column's in Danish and English ([`glossary`]).
pub fn presentation_resource(t: &PresentationTable, registry: &Registry) -> Value {
    let columns: Vec<Value> = t
        .schema
        .fields()
        .iter()
        .map(|f| {
            let mut col = json!({"Name": f.name(), "Type": lake::sql_type(f.data_type())});
            if let Some(d) = glossary::column(t, f.name(), registry) {
                col["Comment"] = json!(comment(&d.comment()));
            }
            col
        })
        .collect();
    let mut parameters =
        json!({"classification": "parquet", "zone": "presentation", "kind": t.kind});
    if let Some(id) = &t.contract {
        parameters["contract"] = json!(id);
    }
    let mut input = json!({
        "Name": t.name,
        "Description": table_description(&glossary::table(t, registry).comment()),
        "Parameters": parameters,
    });
    if t.kind == "marts" {
        // Every publication is a partition, projected from its folder name: a new one
        // is readable as soon as it is written, with no catalog write, and the earlier
        // ones stay. The newest: WHERE publication = (SELECT max(publication) ...).
        let key = layout::PUBLICATION_PARTITION;
        input["PartitionKeys"] = json!([{
            "Name": key,
            "Type": "string",
            "Comment": crate::publish::mart(&t.name)
                .and_then(|m| glossary::mart_column(m, key))
                .map(|d| comment(&d.comment())),
        }]);
        let p = &mut input["Parameters"];
        p["projection.enabled"] = json!("true");
        p[format!("projection.{key}.type")] = json!("date");
        p[format!("projection.{key}.format")] = json!("yyyy-MM-dd");
        p[format!("projection.{key}.range")] = json!("2026-01-01,NOW");
        p[format!("projection.{key}.interval")] = json!("1");
        p[format!("projection.{key}.interval.unit")] = json!("DAYS");
        p["storage.location.template"] = json!({
            "Fn::Sub": format!("s3://${{LakeBucket}}/{}{key}=${{!{key}}}/", t.prefix())
        });
    }
    if t.kind == "current" {
        // Delta tables publish maintains by merging (`current.rs`): Athena reads the
        // files the log names, never one a merge has replaced.
        input["Parameters"]["zone"] = json!("presentation");
        return delta_table(input, &t.prefix(), columns);
    }
    parquet_table(input, &t.prefix(), columns)
}

/// The quality tables: `quality_metrics` (a Delta table, one commit per delivery),
/// and the monitor's `quality_reception` and `quality_declaration`, projected on the
/// folder each file is written under. The monitor's files carry `as_of` / `month` as
/// columns, so their partition keys have names of their own.
pub fn quality_resources() -> Vec<(String, Value)> {
    use crate::quality::{declaration, reception, store};
    // (name, folder, description, schema, partition key, its folder template, its projection)
    let metrics = store::metrics_table();
    let metrics_columns: Vec<Value> = metrics
        .schema
        .fields()
        .iter()
        .map(|f| json!({"Name": f.name(), "Type": lake::sql_type(f.data_type())}))
        .chain(partition_columns())
        .collect();
    let mut out = vec![(
        logical_id(&metrics.name),
        delta_table(
            json!({
                "Name": metrics.name,
                "Description": "Every quality check of every delivery (Kahn category, violated rows, denominator, threshold, status, drift band); partitioned by the delivery month.",
                "Parameters": {"zone": "quality"},
            }),
            &metrics.prefix,
            metrics_columns,
        ),
    )];
    let tables = [
        (
            "quality_reception",
            layout::RECEPTION_PREFIX,
            "The reception calendar per dataset and reporting unit as of each monitor run (on_time, late, missing, pending).",
            reception::schema(),
            json!([{"Name": "as_of_day", "Type": "string"}]),
            "as_of=${!as_of_day}/",
            json!({
                "projection.as_of_day.type": "date",
                "projection.as_of_day.range": "2020-01-01,NOW",
                "projection.as_of_day.format": "yyyy-MM-dd",
            }),
        ),
        (
            "quality_declaration",
            layout::DECLARATION_PREFIX,
            "The monthly quality declaration per dataset: coverage, timeliness, completeness, validity and the change on the previous month.",
            declaration::schema(),
            json!([{"Name": "declared_month", "Type": "string"}]),
            "month=${!declared_month}/",
            json!({
                "projection.declared_month.type": "date",
                "projection.declared_month.range": "2020-01,NOW",
                "projection.declared_month.format": "yyyy-MM",
                "projection.declared_month.interval": "1",
                "projection.declared_month.interval.unit": "MONTHS",
            }),
        ),
    ];
    out.extend(tables.into_iter().map(
        |(name, prefix, description, schema, keys, template, projection)| {
            let columns: Vec<Value> = schema
                .fields()
                .iter()
                .map(|f| json!({"Name": f.name(), "Type": lake::sql_type(f.data_type())}))
                .collect();
            let mut parameters = json!({
                "classification": "parquet",
                "zone": "quality",
                "projection.enabled": "true",
                "storage.location.template": {
                    "Fn::Sub": format!("s3://${{LakeBucket}}/{prefix}{template}")
                },
            });
            for (k, v) in projection.as_object().expect("an object") {
                parameters[k] = v.clone();
            }
            let input = json!({
                "Name": name,
                "Description": description,
                "Parameters": parameters,
                "PartitionKeys": keys,
            });
            (logical_id(name), parquet_table(input, prefix, columns))
        },
    ));
    out
}

/// The whole catalog template (YAML), deterministic for a set of contracts and the
/// presentation tables published from them.
pub fn catalog_template(registry: &Registry, presentation: &[PresentationTable]) -> String {
    let mut resources = serde_json::Map::new();
    let mut contracts: Vec<&Contract> = registry.iter().collect();
    contracts.sort_by_key(|c| c.table());
    for c in contracts {
        resources.insert(logical_id(&c.table()), table_resource(c));
    }
    for t in presentation {
        let id = logical_id(&t.name);
        assert!(
            !resources.contains_key(&id),
            "two catalog tables would be {id}"
        );
        resources.insert(id, presentation_resource(t, registry));
    }
    for (id, resource) in quality_resources() {
        assert!(
            !resources.contains_key(&id),
            "two catalog tables would be {id}"
        );
        resources.insert(id, resource);
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "naerdata lake tables (Glue): curated tables with partition projection, and the presentation zone. GENERATED by `naerdata infra catalog` from contracts/ -- do not edit.",
        "Parameters": {
            "DatabaseName": {"Type": "String", "Description": "The Glue database of the lake"},
            "LakeBucket": {"Type": "String", "Description": "The lake bucket's name"},
        },
        "Resources": resources,
    });
    let yaml = serde_yaml_ng::to_string(&template).expect("a JSON value serialises as YAML");
    // YAML 1.1 readers (PyYAML, so cfn-lint) would take an unquoted 2010-09-09 as a date.
    let yaml = yaml.replacen(
        "AWSTemplateFormatVersion: 2010-09-09",
        "AWSTemplateFormatVersion: '2010-09-09'",
        1,
    );
    format!("# GENERATED by `naerdata infra catalog` from contracts/ -- do not edit.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_gets_a_delta_table() {
        let r = Registry::builtin();
        let yaml = catalog_template(&r, &[]);
        let v: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let resources = v["Resources"].as_object().unwrap();
        assert_eq!(
            resources.len(),
            r.iter().count() + quality_resources().len()
        );
        let t = &resources["AlmenpraksisDiagnoseTable"]["Properties"]["TableInput"];
        assert_eq!(t["Name"], "almenpraksis_diagnose");
        let cols: Vec<&str> = t["StorageDescriptor"]["Columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Name"].as_str().unwrap())
            .collect();
        assert!(cols.contains(&"person_id"));
        assert!(
            !cols.contains(&"cpr"),
            "the CPR column never reaches the lake"
        );
        assert_eq!(
            &cols[cols.len() - 2..],
            ["year", "month"],
            "the Delta partition columns come last"
        );
        assert_eq!(t["Parameters"]["table_type"], "DELTA");
        assert_eq!(
            t["StorageDescriptor"]["Location"]["Fn::Sub"],
            "s3://${LakeBucket}/curated/almenpraksis_diagnose/"
        );
        assert!(
            t.get("PartitionKeys").is_none(),
            "Athena reads partitions from the log"
        );
        let m = &resources["QualityMetricsTable"]["Properties"]["TableInput"];
        assert_eq!(m["Parameters"]["table_type"], "DELTA");
        assert_eq!(logical_id("kommune_borger"), "KommuneBorgerTable");
    }
}
