//! What every presentation table and column means, in Danish and English.
//!
//! Readers look in different places: Athena and the BI tools show the Glue table's
//! description and column comments, DuckDB users `duckdb_columns()`, everyone else
//! `docs/presentation-columns.md`. All of them are made from here, so they say the same:
//!
//! - a current table's columns: its contract's fields (`description`, and
//!   `descriptionDa` under `customProperties`), then the person and lineage columns
//!   the platform adds ([`DERIVED`]);
//! - a dimension's: [`DIMENSIONS`];
//! - a mart's: its period, row and column labels and counts from its SQL's
//!   `-- describe: column = dansk | english` headers, its rates and standardised
//!   rates said from their definitions, and the publication columns ([`PUBLISHED`]).
//!
//! A test holds every column of every table the publication writes to having both.

use crate::contract::Registry;
use crate::lake::PresentationTable;
use crate::publication::{PUBLISHED as PUBLICERET, REFERENCE_DATE, REVISION, RULE_SET_COLUMN};
use crate::publish::{MartSpec, TOTAL};

/// A description in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub da: String,
    pub en: String,
}

/// Glue's limit on a column comment.
pub const COMMENT_LIMIT: usize = 255;

impl Text {
    fn new(da: &str, en: &str) -> Self {
        Text {
            da: da.into(),
            en: en.into(),
        }
    }

    /// Both languages on one line, Danish first: a catalog's single comment field.
    pub fn comment(&self) -> String {
        format!("{} / {}", self.da, self.en)
    }
}

/// The person and lineage columns the platform adds to a dataset's rows.
pub const DERIVED: &[(&str, &str, &str)] = &[
    (
        "person_id",
        "Personens pseudonym (nøglet hash af CPR-nummeret); samme person, samme pseudonym i alle kilder",
        "The person's pseudonym (keyed hash of the CPR number); the same in every source",
    ),
    (
        "linked_person_id",
        "Pseudonym for den anden person i posten (fx det nye CPR-nummer ved et personnummerskift)",
        "Pseudonym of the other person in the row (e.g. the new CPR number of a change)",
    ),
    (
        "person_key_version",
        "Versionen af den nøgle, pseudonymet er dannet med",
        "Version of the key the pseudonym was made with",
    ),
    (
        "cpr_status",
        "CPR-nummerets form: valid, valid_no_mod11, replacement, ecpr, missing, invalid_format, invalid_date",
        "The CPR number's form: valid, valid_no_mod11, replacement, ecpr, missing, invalid_format, invalid_date",
    ),
    (
        "birth_year",
        "Fødselsår, fra CPR-nummeret (fra registrets fødselsdato, hvor datasættet har en)",
        "Birth year, from the CPR number (from the register's birth date where the dataset has one)",
    ),
    (
        "birth_month",
        "Fødselsmåned, fra CPR-nummeret (fra registrets fødselsdato, hvor datasættet har en)",
        "Birth month, from the CPR number (from the register's birth date where the dataset has one)",
    ),
    (
        "sex",
        "Køn, fra CPR-nummeret (K/M)",
        "Sex, from the CPR number (K/M)",
    ),
    (
        "age_at_event",
        "Alder i hele år på hændelsens dag",
        "Age in whole years on the day of the event",
    ),
    (
        "record_key",
        "Postens nøgle: leverandørens id for posten inden for datasættet",
        "The record's key: the supplier's id of the record within the dataset",
    ),
    (
        "record_version",
        "Postens version (seneste vinder); rettelser er nye versioner",
        "The record's version (the latest wins); corrections are new versions",
    ),
    (
        "delivery_id",
        "Id for leveringen, posten kom med (står på leverandørens kvittering)",
        "Id of the delivery the row came in (on the supplier's receipt)",
    ),
    (
        "received_at",
        "Tidspunktet, leveringen blev modtaget (UTC)",
        "When the delivery was received (UTC)",
    ),
];

/// The dimensions' columns, by table (`*`: every dimension).
pub const DIMENSIONS: &[(&str, &str, &str, &str)] = &[
    (
        "*",
        "kommunekode",
        "Kommunekode (3 cifre, Danmarks Statistik)",
        "Municipality code (3 digits, Statistics Denmark)",
    ),
    (
        "dim_geografi",
        "kommunenavn",
        "Kommunens navn",
        "The municipality's name",
    ),
    (
        "*",
        "regionskode",
        "Regionskode (4 cifre)",
        "Region code (4 digits)",
    ),
    (
        "dim_geografi",
        "regionsnavn",
        "Regionens navn",
        "The region's name",
    ),
    (
        "dim_geografi",
        "klynge",
        "Sundhedsklyngen, kommunen hører til (tom før klyngerne eller uden klyngeliste)",
        "The health cluster (sundhedsklynge) of the municipality (empty before the clusters or without the list)",
    ),
    (
        "dim_geografi",
        "sundhedsraad",
        "Sundhedsrådet fra 2027, kommunen hører til",
        "The health council (sundhedsråd, from 2027) of the municipality",
    ),
    (
        "dim_geografi",
        "hospital",
        "Klyngens akuthospital",
        "The cluster's acute hospital",
    ),
    (
        "*",
        "gyldig_fra",
        "Første dag, rækken gælder",
        "First day the row holds",
    ),
    (
        "*",
        "gyldig_til",
        "Sidste dag, rækken gælder (tom: stadig gældende)",
        "Last day the row holds (empty: still current)",
    ),
    (
        "dim_person_skift",
        "person_id",
        "Pseudonym for et tidligere CPR-nummer",
        "Pseudonym of an earlier CPR number",
    ),
    (
        "dim_person_skift",
        "kanonisk_person_id",
        "Pseudonym for personens nyeste CPR-nummer (kæder af skift fulgt)",
        "Pseudonym of the person's newest CPR number (chains of changes followed)",
    ),
    (
        "dim_person_skift",
        "skiftedato",
        "Dagen, det nyeste skift gælder fra",
        "The day the newest change took effect",
    ),
    (
        "*",
        "person_id",
        "Personens pseudonym (under det nyeste CPR-nummer)",
        "The person's pseudonym (under the newest CPR number)",
    ),
    (
        "person_bopael",
        "kilde",
        "Hvor bopælen kommer fra: 'cpr' (befolkningsregistret) eller 'kommune' (kommunens indberetning)",
        "Where the residence comes from: 'cpr' (the population register) or 'kommune' (municipal reports)",
    ),
    (
        "dim_person",
        "kilde",
        "'cpr' hvis personen er i befolkningsregistret, ellers 'andre'",
        "'cpr' when the person is in the population register, else 'andre'",
    ),
    (
        "dim_person",
        "birth_year",
        "Fødselsår (registret, ellers CPR-nummeret)",
        "Birth year (the register, else the CPR number)",
    ),
    (
        "dim_person",
        "sex",
        "Køn (registret, ellers CPR-nummeret)",
        "Sex (the register, else the CPR number)",
    ),
    (
        "dim_person",
        "doedsdato",
        "Dødsdato (befolkningsregistret)",
        "Date of death (population register)",
    ),
    (
        "dim_person",
        "udvandret_dato",
        "Udvandringsdato (befolkningsregistret)",
        "Date of emigration (population register)",
    ),
];

/// The columns every published mart has after its counts and rates.
pub fn published_columns() -> Vec<(&'static str, Text)> {
    vec![
        (
            REVISION,
            Text::new(
                "Revision af perioden: 0 ved første offentliggørelse, +1 ved hver rettelse",
                "Revision of the period: 0 when first published, +1 for each correction",
            ),
        ),
        (
            PUBLICERET,
            Text::new(
                "Dagen, rækken blev offentliggjort (en revision har sin egen dag)",
                "The day the row was published (a revision has its own day)",
            ),
        ),
        (
            RULE_SET_COLUMN,
            Text::new(
                "De regler for diskretionering, rækken er beskyttet efter",
                "The disclosure control rules the row was protected under",
            ),
        ),
        (
            REFERENCE_DATE,
            Text::new(
                "Opgørelsesdagen for denne offentliggørelse (samme som publication)",
                "The reference date of this publication (the same as publication)",
            ),
        ),
        (
            crate::layout::PUBLICATION_PARTITION,
            Text::new(
                "Offentliggørelsen (ÅÅÅÅ-MM-DD): hver er hele tabellen, som den blev offentliggjort den dag",
                "The publication (YYYY-MM-DD): each is the whole table as published that day",
            ),
        ),
    ]
}

/// Period and label columns several marts share; a mart's own `-- describe:` wins.
const MART_LABELS: &[(&str, &str, &str)] = &[
    ("maaned", "Måneden (ÅÅÅÅ-MM)", "The month (YYYY-MM)"),
    ("kvartal", "Kvartalet (ÅÅÅÅ-Qn)", "The quarter (YYYY-Qn)"),
    (
        "kommunekode",
        "Kommunekode; klyngens navn eller regionskoden (se niveau); 'I alt' = hele landet",
        "Municipality code; the cluster's name or the region code (see niveau); 'I alt' = the country",
    ),
    (
        crate::publication::LEVEL,
        "Niveau: kommune, klynge (sundhedsklynge), region eller land; beskyttet sammen med sine kommuner",
        "Level: kommune, klynge (health cluster), region or land (country); protected with its members",
    ),
];

/// The description of a table, in both languages.
pub fn table(t: &PresentationTable, contracts: &Registry) -> Text {
    let da = match t.kind {
        "current" => t
            .contract
            .as_deref()
            .and_then(|id| contracts.get(id))
            .map(|c| format!("{}: hver posts gældende version", c.title))
            .unwrap_or_default(),
        "marts" => crate::publish::mart(&t.name)
            .map(|m| {
                format!(
                    "{}. Nøgletal pr. periode ({}); offentliggjorte perioder fastfryses, rettelser \
                     er daterede revisioner. NULL = undertrykt; marginaler: '{TOTAL}'. {}",
                    m.title,
                    m.period.column,
                    m.caveats_da.join(" ")
                )
            })
            .unwrap_or_default(),
        _ => DIMENSION_TABLES
            .iter()
            .find(|(n, _)| *n == t.name)
            .map(|(_, d)| d.to_string())
            .unwrap_or_default(),
    };
    Text {
        da,
        en: t.description.clone(),
    }
}

/// The dimensions, in Danish (their English descriptions come with the tables).
const DIMENSION_TABLES: &[(&str, &str)] = &[
    (
        "dim_geografi",
        "Kommune -> region og sundhedsklynge (fra 2027 sundhedsråd) med gyldighedsperioder.",
    ),
    (
        "dim_person_skift",
        "Personer, der har fået nyt CPR-nummer: pseudonymet for hvert gammelt nummer med \
         pseudonymet for det nyeste.",
    ),
    (
        "person_bopael",
        "Bopælskommune over tid: befolkningsregistrets perioder, ellers kommunernes \
         indberetninger.",
    ),
    (
        "dim_person",
        "Én række pr. person: fødselsår, køn, død, udvandring og seneste bopælskommune.",
    ),
];

/// The description of column `column` of table `t`, `None` when nothing describes it.
pub fn column(t: &PresentationTable, column: &str, contracts: &Registry) -> Option<Text> {
    match t.kind {
        "current" => contract_column(
            t.contract.as_deref().and_then(|id| contracts.get(id))?,
            column,
        ),
        "marts" => mart_column(crate::publish::mart(&t.name)?, column),
        _ => DIMENSIONS
            .iter()
            .find(|(table, c, _, _)| *table == t.name && *c == column)
            .or_else(|| {
                DIMENSIONS
                    .iter()
                    .find(|(table, c, _, _)| *table == "*" && *c == column)
            })
            .map(|(_, _, da, en)| Text::new(da, en)),
    }
}

/// A column of a dataset's rows: its contract field's descriptions (`None` unless both
/// are given), else a person or lineage column's.
pub fn contract_column(c: &crate::contract::Contract, column: &str) -> Option<Text> {
    match c.fields.iter().find(|f| f.name == column) {
        Some(f) => Some(Text::new(&f.description_da, &f.description))
            .filter(|t| !t.da.is_empty() && !t.en.is_empty()),
        None => derived(column),
    }
}

/// A person or lineage column's description ([`DERIVED`]).
fn derived(column: &str) -> Option<Text> {
    DERIVED
        .iter()
        .find(|(c, _, _)| *c == column)
        .map(|(_, da, en)| Text::new(da, en))
}

/// A mart's column: declared, a rate or standardised rate, or a publication column.
pub fn mart_column(spec: &MartSpec, column: &str) -> Option<Text> {
    if let Some((_, da, en)) = spec.descriptions.iter().find(|(c, _, _)| c == column) {
        return Some(Text::new(da, en));
    }
    if let Some((_, da, en)) = MART_LABELS.iter().find(|(c, _, _)| *c == column) {
        return Some(Text::new(da, en).replace_total());
    }
    if let Some((_, t)) = published_columns().into_iter().find(|(c, _)| *c == column) {
        return Some(t);
    }
    if let Some(r) = spec.rates.iter().find(|r| r.name == column) {
        let per = if r.per == 1 {
            String::new()
        } else {
            format!("{} × ", r.per)
        };
        let share = spec.nested_in(&r.numerator, &r.denominator);
        let (kind_da, kind_en) = if share {
            ("Andel", "Share")
        } else {
            ("Rate", "Rate")
        };
        return Some(Text {
            da: format!(
                "{kind_da}: {per}{} / {}, af de offentliggjorte tal; NULL = undertrykt",
                r.numerator, r.denominator
            ),
            en: format!(
                "{kind_en}: {per}{} / {}, of the published counts; NULL = suppressed",
                r.numerator, r.denominator
            ),
        });
    }
    let base = column.strip_suffix(crate::standardisation::SUFFIX)?;
    spec.rates.iter().find(|r| r.name == base)?;
    Some(Text {
        da: format!("{base}, direkte standardiseret for alder og køn; NULL = undertrykt"),
        en: format!("{base}, directly standardised for age and sex; NULL = suppressed"),
    })
}

impl Text {
    fn replace_total(self) -> Self {
        Text {
            da: self.da.replace("'I alt'", &format!("'{TOTAL}'")),
            en: self.en.replace("'I alt'", &format!("'{TOTAL}'")),
        }
    }
}

/// The data dictionary (`docs/presentation-columns.md`): every presentation table and
/// column, in both languages.
pub fn dictionary(tables: &[PresentationTable], contracts: &Registry) -> String {
    let mut out = String::from(
        "# Præsentationszonens tabeller og kolonner / The presentation zone's tables and columns\n\n\
         Generated by `naerdata infra dictionary --out docs/presentation-columns.md` from the \
         contracts and the marts' SQL; do not edit. The same texts are the Glue column comments \
         and the DuckDB catalog's comments.\n",
    );
    for kind in ["current", "dim", "marts"] {
        for t in tables.iter().filter(|t| t.kind == kind) {
            let d = table(t, contracts);
            out.push_str(&format!(
                "\n## `{}` ({kind})\n\n{}\n\n{}\n\n| kolonne / column | type | dansk | English |\n|---|---|---|---|\n",
                t.name, d.da, d.en
            ));
            let mut columns: Vec<(String, String)> = t
                .schema
                .fields()
                .iter()
                .map(|f| {
                    (
                        f.name().clone(),
                        crate::lake::sql_type(f.data_type()).to_string(),
                    )
                })
                .collect();
            if kind == "marts" {
                columns.push((
                    crate::layout::PUBLICATION_PARTITION.into(),
                    "string (partition)".into(),
                ));
            }
            for (name, ty) in columns {
                let text = column(t, &name, contracts)
                    .unwrap_or_else(|| Text::new("(mangler)", "(missing)"));
                out.push_str(&format!(
                    "| `{name}` | {ty} | {} | {} |\n",
                    text.da.replace('|', "\\|"),
                    text.en.replace('|', "\\|")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_presentation_column_is_described_in_both_languages_within_glues_limit() {
        let contracts = Registry::builtin();
        let tables = crate::publish::presentation_tables(&contracts)
            .await
            .unwrap();
        assert!(tables.iter().any(|t| t.kind == "marts"));
        let mut missing = Vec::new();
        for t in &tables {
            let d = table(t, &contracts);
            if d.da.is_empty() || d.en.is_empty() {
                missing.push(format!("table {}", t.name));
            }
            let mut names: Vec<String> =
                t.schema.fields().iter().map(|f| f.name().clone()).collect();
            if t.kind == "marts" {
                names.push(crate::layout::PUBLICATION_PARTITION.into());
            }
            for c in names {
                match column(t, &c, &contracts) {
                    None => missing.push(format!("{}.{c}", t.name)),
                    Some(text) if text.da.is_empty() || text.en.is_empty() => {
                        missing.push(format!("{}.{c} (one language)", t.name))
                    }
                    // The contracts' descriptions are written for suppliers and may be
                    // longer (Glue shows them cut, the dictionary whole); ours fit.
                    Some(text)
                        if t.kind != "current"
                            && text.comment().chars().count() > COMMENT_LIMIT =>
                    {
                        missing.push(format!(
                            "{}.{c}: {} characters, more than Glue takes",
                            t.name,
                            text.comment().chars().count()
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }

    #[test]
    fn rates_are_said_from_their_definition() {
        let spec = crate::publish::marts()
            .into_iter()
            .find(|m| m.name == "rehab_effekt")
            .unwrap();
        let t = mart_column(&spec, "akutte_kontakter_90d_pr_100").unwrap();
        assert!(
            t.en.starts_with("Rate: 100 × akutte_kontakter_90d / forloeb_afsluttet"),
            "{}",
            t.en
        );
        let t = mart_column(&spec, "andel_akut_hospital_30d_std").unwrap();
        assert!(t.da.contains("standardiseret"), "{}", t.da);
        assert_eq!(mart_column(&spec, "no_such_column_std"), None);
    }
}
