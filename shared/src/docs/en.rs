//! The guide in English.

use std::fmt::Write;

use super::{
    Label, Rule, Section, Words, delivered, receipt_key_shape, supplier_table, with_column,
};
use crate::contract::{Encoding, FileFormat, Registry};
use crate::layout::LANDING_SHAPE;
use crate::quality::rules::{Cadence, DeadlineFrom, ExpectedUnits, Reception};
use crate::receipt::MAX_PROBLEMS;

pub(super) struct En;

fn cadence(c: Cadence) -> &'static str {
    match c {
        Cadence::Daily => "every day",
        Cadence::Weekly => "every week",
        Cadence::Monthly => "every month",
    }
}

impl Words for En {
    fn preamble(&self, s: &mut String) {
        s.push_str(
            "# naerdata reporting guide\n\n\
             Generated from the dataset contracts (`contracts/*.yaml`, ODCS v3) by \
             `naerdata contracts docs --lang en`. Do not edit by hand: change the contract. \
             The primary version of this guide is the Danish one (`naerdata contracts docs`).\n\n",
        );
    }

    fn heading(&self, section: Section) -> &'static str {
        match section {
            Section::Deliver => "How to deliver",
            Section::Scope => "Which persons and records to include",
            Section::Versions => "Delta or full deliveries, and the first historical load",
            Section::Upload => "Authentication and upload",
            Section::Receipt => "The receipt",
            Section::NothingToReport => "A day with nothing to report",
            Section::Cpr => "CPR numbers: only in the CPR column",
            Section::TakingBack => "Corrections and taking data back",
            Section::Reference => "Reference data and code lists",
            Section::ContractChanges => "Contract changes",
            Section::Contact => "Contact",
            Section::Datasets => "Datasets",
        }
    }

    fn section(&self, s: &mut String, section: Section, registry: &Registry) {
        let see = |section: Section| format!("*{}*", self.heading(section));
        match section {
            Section::Deliver => {
                let _ = writeln!(
                    s,
                    "- Upload each file to `{LANDING_SHAPE}` in the landing bucket (see {upload}). \
                     The day is the delivery day, the day the delivery is for: data for 3 March sent \
                     late still go under `2026-03-03`. A `.gz` file is decompressed on arrival.\n\
                     - Check a file before sending it: `naerdata validate --dataset <source>.<dataset> \
                     [--date <yyyy-mm-dd>] FILE` prints the receipt it would get (exit 0 = accepted, \
                     2 = rejected). It checks against the contracts built into your version of the tool.\n\
                     - Every delivery gets a receipt (see {receipt}) with outcome `ok`, `warning` or \
                     `rejected`, row counts, and up to {MAX_PROBLEMS} problems (line, column, rule, \
                     message); the total is counted.\n\
                     - A file that cannot be read as a whole (empty, wrong encoding, missing required \
                     column) is rejected with one message. Otherwise bad rows are left out and listed; \
                     if more than the dataset's threshold of rows is bad, the whole delivery is rejected \
                     and nothing of it is stored.\n\
                     - Columns the contract does not know are ignored and named in the receipt \
                     (`ignored_columns`); the outcome is then `warning`.\n\
                     - Sending the identical file again is recognised (sha256) and stored once \
                     (`duplicate`).\n\
                     - A correction is a new row with the same record key and a later version; the \
                     latest version wins (see {taking_back}).\n\
                     - The deadline (under each dataset's reception calendar) also decides when a month \
                     is published: the statistics for a month come out once every dataset's deadline \
                     for it has passed, and are then frozen. Data or corrections for a month that \
                     arrive after that come out as a dated revision of it.\n\
                     - CPR numbers are pseudonymised on arrival and never appear in receipts; a CPR \
                     that fails modulus 11 is accepted with a warning, an unreadable one is kept \
                     without a pseudonym and reported.\n",
                    upload = see(Section::Upload),
                    receipt = see(Section::Receipt),
                    taking_back = see(Section::TakingBack),
                );
            }
            Section::Scope => {
                let _ = writeln!(
                    s,
                    "Each row (for the KL Gateway: each bundle) concerns one person, identified by \
                     the CPR number in the dataset's CPR column. A person with a replacement number \
                     (day + 60) or an eCPR number is included with that number; a CPR number without \
                     modulus 11 is valid (such numbers have been issued since 2007) and only gets a \
                     warning. What each source sends:\n\n\
                     - **General practice** (`almenpraksis`: {ap}), from the reporting engine on \
                     PLSP: patients with a diagnosis in one of the five chronic disease areas — type 2 \
                     diabetes (ICPC-2 `T90`), COPD (`R95`), asthma (`R96`), heart failure (`K77`) and \
                     atrial fibrillation (`K78`); the code list also takes the closely related codes \
                     listed under `almenpraksis.diagnose`. One row per diagnosis registration; for \
                     the same patients, one row per billed contact whose service code (`ydelseskode`) \
                     is in the code list, and one row per laboratory result whose NPU code is in the \
                     code list (e.g. HbA1c `NPU27300`).\n\
                     - **Practising specialists** (`speciallaege`: {sl}), from Sentinel: one row per \
                     contact, and one row per diagnosis given at a contact (SKS code, `A` primary, \
                     `B` secondary), linked to it by `kontakt_id`. The contracts do not narrow the \
                     patients or specialties further.\n\
                     - **Municipalities** (`kommune`: {kl}), through the KL Gateway: citizens with \
                     municipal registrations under the Health Act §138 (nursing), §119 (prevention) \
                     and §140 (rehabilitation) and the Social Services Act §83 (personal care and \
                     practical help; §86 rehabilitation and maintenance training). One FHIR Bundle of \
                     type `collection` per citizen per day, with exactly one Patient (the CPR number \
                     and the municipality's SOR code) and everything registered or changed for the \
                     citizen since the last report. The platform reads Condition, CarePlan, \
                     Procedure, Encounter, the follow-up Observation (SNOMED CT `712744002`) and \
                     ServiceRequest (§119 and §140 referrals); other Observations are not stored. The \
                     other `kommune.*` tables are derived from the bundles and are not delivered on \
                     their own. The accepted shape is described in `docs/kl-gateway-input.md`.\n\
                     - **LPR** (`lpr`: {lpr}), delivered by the Danish Health Data Authority itself \
                     for linkage: hospital contacts and their diagnoses, laid out as the LPR3 research \
                     tables `kontakter` and `diagnoser`, with the CPR number in place of the research \
                     pseudonym. The contracts do not narrow the extract further.\n\
                     - **CPR** (`cpr`: {cpr}), delivered by the Danish Health Data Authority from the \
                     CPR register: a full extract on the first of each month with one row per period \
                     of residence in a municipality (birth date, sex, immigration and emigration, \
                     death) and one row per change of CPR number (old number in `cpr`, new in \
                     `nyt_cpr`). It is the population behind the denominators, and the changes keep \
                     one person one person while other suppliers still report the old number. Both \
                     numbers are pseudonymised on arrival.\n\n\
                     Send no more than the contract asks for. Names, addresses, phone numbers, e-mail \
                     addresses and free text have no column; a column the contract does not know is \
                     not stored in the lake, but the file as delivered is kept in the landing zone for \
                     the whole retention period. So leave such columns out.\n",
                    ap = delivered(registry, "almenpraksis"),
                    sl = delivered(registry, "speciallaege"),
                    kl = delivered(registry, "kommune"),
                    lpr = delivered(registry, "lpr"),
                    cpr = delivered(registry, "cpr"),
                );
            }
            Section::Versions => {
                let _ = writeln!(
                    s,
                    "The platform keeps every delivery as it was sent (it only appends) and derives \
                     the current state from each record's key and version:\n\n\
                     - Every record is identified by the dataset's **record key** (the row *Record \
                     key* under each dataset; for the KL Gateway, the resource id).\n\
                     - Every record has a **version**: the column in the row *Version* (e.g. \
                     `registreret`; for the KL Gateway, `meta.lastUpdated`) or, for a dataset without \
                     a version column, the time the delivery was received.\n\
                     - The current record is the one with the highest version; between equal versions, \
                     the one received last. A record sent again with the same key and a later version \
                     thus supersedes the earlier one. A record with an earlier version than the one \
                     the platform has is kept in the history but changes nothing current.\n\
                     - Send **only new and changed records** (a delta) in your regular deliveries. A \
                     full extract is accepted too, but every record in it is stored again, and a \
                     record **missing** from a full extract is **not deleted**: the platform never \
                     infers a deletion from an absence. Withdraw the record explicitly (see \
                     {taking_back}).\n\
                     - A record key with the same version may occur only once in a delivery; repeats \
                     are counted by the quality check for duplicate keys in the receipt.\n\
                     - The KL Gateway sends one bundle per citizen per day with what was registered or \
                     changed since the last report; each resource is versioned by its id and \
                     `meta.lastUpdated`.\n\n\
                     **The first historical load.** There is no separate channel for history: it is \
                     sent as ordinary deliveries under the same contract.\n\n\
                     - File it under the day you send it. Event dates may not lie after the delivery \
                     day, nor before the column's earliest date (the rule `from ...` under each \
                     dataset).\n\
                     - Split it into several files if you like (e.g. one per month), with different \
                     file names. Each file is a delivery with its own receipt, and the rejection \
                     threshold applies to each file. A `.gz` file may not exceed the decompressed size \
                     given under the dataset.\n\
                     - Where the dataset has a version column, send each record with its real version \
                     (e.g. `registreret`), so that later corrections supersede it. Where the version \
                     is the time of receipt, a later delivery always wins: send the history before \
                     your regular deliveries of the same records, never after.\n\
                     - Statistics for months already published are revised (a dated revision) when \
                     the history arrives.\n\
                     - Agree the day of the first load with the operators (see {contact}).\n",
                    taking_back = see(Section::TakingBack),
                    contact = see(Section::Contact),
                );
            }
            Section::Upload => {
                s.push_str(
                    "Each supplier has its own IAM role in the platform's AWS account. The role may \
                     write only under the supplier's own prefix of the landing bucket, and read only \
                     the supplier's own receipts:\n\n",
                );
                supplier_table(
                    s,
                    ["Source", "Role", "Prefix (landing and receipts)"],
                    "<env>",
                );
                let _ = writeln!(
                    s,
                    "- The role can be assumed only from the AWS account you deliver from (registered \
                     with the operators), and only with the ExternalId agreed with you (at least 16 \
                     characters). The operators give you the platform's account number, region and \
                     environment name (`<env>`, e.g. `prod`), the bucket names and the key's ARN (the \
                     stack outputs `LandingBucket`, `ReceiptsBucket` and `LandingKey`).\n\
                     - The buckets are named `naerdata-<env>-<account>-<region>-landing` and \
                     `naerdata-<env>-<account>-<region>-receipts`.\n\
                     - The role may: `s3:PutObject` under its prefix in landing; `s3:GetObject` and \
                     `s3:ListBucket` under its prefix in the receipts bucket; and use the platform's \
                     raw-data key (`kms:GenerateDataKey`, `kms:Decrypt`) only through S3 and only for \
                     objects under its prefix. It cannot read, list or delete files in landing.\n\
                     - **Encryption is required.** Every upload must use SSE-KMS with exactly the \
                     platform's raw-data key, named by its full ARN (stack output `LandingKey`). The \
                     bucket policy refuses (AccessDenied) an upload without the encryption header, \
                     with another key, with an alias or a key id instead of the ARN, or with SSE-S3. \
                     Only HTTPS is allowed.\n\
                     - A file in landing can be neither deleted nor overwritten: uploading to the same \
                     name again makes a new version of the object, and so a new delivery.\n\n\
                     With a profile for the role in `~/.aws/config`:\n\n\
                     ```ini\n\
                     [profile naerdata]\n\
                     role_arn = arn:aws:iam::<account>:role/naerdata-<env>-supplier-almenpraksis\n\
                     external_id = <ExternalId>\n\
                     source_profile = default\n\
                     region = <region>\n\
                     ```\n\n\
                     an upload is:\n\n\
                     ```sh\n\
                     aws s3 cp diagnoser.csv \\\n  \
                     s3://naerdata-<env>-<account>-<region>-landing/almenpraksis/diagnose/2026-03-01/diagnoser.csv \\\n  \
                     --sse aws:kms \\\n  \
                     --sse-kms-key-id arn:aws:kms:<region>:<account>:key/<key-id> \\\n  \
                     --profile naerdata\n\
                     ```\n\n\
                     `aws s3api put-object` does the same (`--server-side-encryption aws:kms \
                     --ssekms-key-id <key ARN>`) and also returns the object's `VersionId`, from which \
                     the delivery id is computed (see {receipt}).\n",
                    receipt = see(Section::Receipt),
                );
            }
            Section::Receipt => {
                let _ = writeln!(
                    s,
                    "Every delivery gets a JSON receipt in the receipts bucket at `{key}`, under your \
                     own prefix.\n\n\
                     - The receipt is written when the delivery has been processed, shortly after the \
                     upload (processing is asynchronous). A duplicate, and a file whose key is outside \
                     the layout, get their receipt at once, on arrival.\n\
                     - Its JSON Schema (draft 2020-12) is published as `docs/receipt.schema.json`. The \
                     main fields: `outcome` (`ok`, `warning`, `rejected`); `state` (`accepted`, \
                     `accepted_with_warnings`, `rejected`, `duplicate`, `retracted`); `reason` (why, for \
                     a rejection or a duplicate); `rows` (`read`, `accepted`, `rejected`, \
                     `with_warnings`); `problems` (at most {MAX_PROBLEMS}: `line`, `column`, `rule`, \
                     `severity`, `message`) with `problems_total` and `problems_by_rule`; \
                     `ignored_columns`; `tables` (rows written per table); `quality` (the quality \
                     checks, and those that failed); `duplicate_of`; `retraction`; \
                     `contract_version`; `reference_versions` (see {reference}).\n\
                     - A rejected delivery stores nothing: all its rows count as rejected.\n\
                     - Receipts are kept for a period set per deployment (730 days by default). When a \
                     delivery is retracted its receipt is rewritten (`state` becomes `retracted`, and \
                     `retraction` is added).\n\n\
                     **Finding the receipt of a file.** Receipts are named by the delivery id, not by \
                     the file name or the file's SHA-256. The delivery id is the first 20 hexadecimal \
                     characters of the SHA-256 of the object key, a NUL byte and the object's S3 \
                     version id:\n\n\
                     ```sh\n\
                     printf '%s\\0%s' 'almenpraksis/diagnose/2026-03-01/diagnoser.csv' '<VersionId>' | sha256sum | cut -c1-20\n\
                     ```\n\n\
                     `aws s3 cp` does not show the version id; `aws s3api put-object` does. Without \
                     it: list `<source>/<dataset>/` in the receipts bucket and open the newest \
                     receipts. Yours is the one whose `object_key` is the key you uploaded and whose \
                     `sha256` is the file's SHA-256 (`sha256sum FILE`); if the same name was sent more \
                     than once, `received_at` tells them apart. A file whose name was withheld (it \
                     looked like a CPR number) can only be found this way, by its `sha256`.\n\n\
                     - An object key outside the layout `{LANDING_SHAPE}` (a part missing, or a day \
                     that is not a date) gets its rejected receipt under `_unrouted/`, which your role \
                     cannot read: ask the operators. A key naming an unknown dataset gets its receipt \
                     under your prefix.\n\
                     - `naerdata validate` prints the same receipt, with the delivery id `validate` \
                     and an empty `object_key`.\n",
                    key = receipt_key_shape(),
                    reference = see(Section::Reference),
                );
            }
            Section::NothingToReport => {
                let _ = writeln!(
                    s,
                    "- **CSV datasets:** send a file holding only the header row (in the dataset's \
                     encoding, with its delimiter). It is accepted with 0 rows and the outcome `ok`, \
                     and the day counts as delivered in the reception calendar.\n\
                     - A file of 0 bytes is rejected (`empty_file`): a delivery needs at least the \
                     header row. So is a file without a header row.\n\
                     - **Note:** a file with exactly the same content (SHA-256) as an earlier delivery \
                     of the same dataset is a duplicate (`duplicate`), and a duplicate does not count \
                     as delivered. A header-only file identical to an earlier header-only file is \
                     therefore a duplicate: only the first such file counts in the reception \
                     calendar.\n\
                     - An empty file says nothing about the individual reporting units (clinics, \
                     hospital units): a unit that has delivered before, or that the platform's register \
                     of reporting units expects, and has no rows in a period shows as missing for that \
                     period (see *Expected* under each dataset).\n\
                     - **KL Gateway** (`kommune.gateway`): a file without bundles is rejected \
                     (`empty_file`); there is no empty gateway delivery. On a day without changes \
                     nothing is sent, and the day shows as missing in the reception calendar; the \
                     deadline is under *Expected*.\n"
                );
            }
            Section::Cpr => {
                s.push_str(
                    "A CPR number may appear in exactly one place: the dataset's CPR column (for KL \
                     Gateway bundles, the Patient's CPR identifier). Everything else is searched for \
                     CPR-shaped values — ten digits whose first six are a date (the day may be +60), \
                     with or without a separator (`-`, space, `/`, `.`, en dash), and the eCPR form \
                     with letters in positions 8 and 9 — in every column, in ids, codes and free text, \
                     in FHIR ids, references and codes, and in the file name and path.\n\n\
                     - **A CPR-shaped value in another column** is the row problem \
                     `cpr_in_wrong_column`: the row is never stored (in a bundle, the whole bundle). \
                     Ten digits inside a longer number, a UUID or a hexadecimal id do not count. A \
                     column whose values are legitimately ten-digit numbers says so in its contract \
                     (`tenDigitNumbers`); there only the separated and eCPR forms count.\n\
                     - **A CPR column that is mostly unusable** (empty, not DDMMYY-SSSS, not a date) \
                     above the dataset's limit (*Unusable CPR numbers* under the dataset) rejects the \
                     whole delivery, with a message that \
                     asks whether columns are swapped or shifted. Such a delivery is never accepted \
                     with warnings.\n\
                     - **A CPR number in a file name or path**: the file is rejected unprocessed, and \
                     its name is withheld (replaced by `withheld-name`) in the receipt, the ledger, \
                     logs and pages. Rename the file and send it again.\n\
                     - **Messages never quote your data.** A problem is described by line, column (or \
                     FHIR path), rule and the value's shape (its length and kinds of characters); look \
                     the value up in your own file. A file without a header row is recognised as such \
                     (line 1 names no column of the contract).\n\n",
                );
            }
            Section::TakingBack => {
                let _ = writeln!(
                    s,
                    "- **A correction** is the record sent again with the same record key and a later \
                     version (see {versions}); where the dataset has no version column, the one \
                     received last wins. The earlier version stays in the history.\n\
                     - **One record** is withdrawn by sending it again, as it was (the same record \
                     key, a later version where the dataset has one), with the column `tilbagekaldt` \
                     set to `true` (KL Gateway: the resource with status `entered-in-error`). The \
                     history keeps both versions; current tables and the statistics drop the record. \
                     The column may be left out of every other file. Datasets with the column \
                     `tilbagekaldt`: {withdraw}; the KL Gateway's derived tables carry it as \
                     `entered_in_error`: {eie}. A dataset with neither cannot withdraw a single record \
                     by a delivery: send a correction, or ask the operators to retract the whole \
                     delivery (below).\n\
                     - **A whole delivery** that should never have been sent (another clinic's file, a \
                     test extract, the wrong month) is retracted by the platform on request: ask the \
                     operators with the delivery id from its receipt and why. Its rows leave every \
                     table at once, its receipt gets the state `retracted` with the reason and the \
                     rows removed, and the next publication leaves it out. The same file sent again \
                     afterwards is processed as a new delivery, not called a duplicate.\n\
                     - Rows taken back stay in the lake's history for the retention period (30 days), \
                     so an earlier extract can be reproduced; data that must not stay even there is \
                     purged at once on request.\n",
                    versions = see(Section::Versions),
                    withdraw = with_column(registry, "tilbagekaldt"),
                    eie = with_column(registry, "entered_in_error"),
                );
            }
            Section::Reference => {
                let _ = writeln!(
                    s,
                    "- **CSV datasets:** a column with a code list (`one of ...` under the dataset) \
                     takes only the codes listed; any other value is the row problem `code_list`. \
                     These lists are part of the contract and change with it. SKS diagnosis codes in \
                     CSV files are checked for their shape (the pattern), not against an SKS \
                     release.\n\
                     - **KL Gateway:** codes are checked against the reference lists the platform has \
                     loaded: the KL terminology's FSIII code system (the UUIDs and the legacy keys \
                     such as `J1.1`), the §119/§140 catalogue, the SKS diagnoses (for referral \
                     diagnoses) and the municipalities' SOR codes. The operators can load a new \
                     version of a list without a new platform release; it applies from the next \
                     delivery processed.\n\
                     - A **well-formed** FSIII code (a UUID, or a key such as `J1.1`) that is **not in \
                     the loaded list**, for instance from a newer terminology, is accepted: the row is \
                     kept, the area (`omraade`) or legal basis (`lovgrundlag`) it would give is \
                     recorded as `unknown`, and the receipt flags it with the warning rule \
                     `code_not_in_list` on its column (e.g. `fsiii_kode`). The same holds for an SKS \
                     referral diagnosis missing from the loaded SKS list (column \
                     `henvisningsdiagnose`).\n\
                     - A coding under a code system other than FSIII (`urn:oid:1.2.208.176.2.21` or \
                     `http://kl.dk/fhir/common/caresocial/CodeSystem/FSIII`), a malformed code, or a \
                     listed FSIII code of the wrong kind (e.g. an intervention code where a condition \
                     is expected) is an error (rule `code`): the bundle is left out. So is a SOR code \
                     missing from the loaded list (rule `municipality`).\n\
                     - The receipt of a KL Gateway delivery names the versions it was checked against \
                     in `reference_versions` (`sor`, `fsiii`, `catalogue`, `sks`); a version starting \
                     with `builtin-` is the copy built into the platform.\n\
                     - `naerdata validate` checks against the lists built into your version of the \
                     tool, which may be older than those the platform has loaded: a code it flags \
                     `code_not_in_list` may be known to the platform. The platform's receipt is what \
                     counts. See also {changes}.\n",
                    changes = see(Section::ContractChanges),
                );
            }
            Section::ContractChanges => {
                s.push_str(
                    "Each contract has a version (`version`, e.g. `1.2.0`, shown under each dataset) \
                     and a status (`status`; all are `active` today). The contracts are built into \
                     the platform and into the `naerdata` tool, and a contract carries no date from \
                     which it applies: a new version applies from the moment the operators deploy the \
                     platform release that carries it, to every delivery processed from then on — \
                     whatever the delivery day in its key, so also to a late delivery for an earlier \
                     day and to a delivery processed again. The receipt's `contract_version` names the \
                     version a delivery was checked against.\n\n\
                     So a change goes like this:\n\n\
                     1. The operators announce it to your contact person with the new contract \
                     version, a new edition of this guide and the day the new version is deployed.\n\
                     2. With the announcement comes a new `naerdata` tool carrying the new contracts: \
                     run `naerdata validate` on your files against the new version before that day.\n\
                     3. On that day the operators deploy the new version. Deliveries processed before \
                     it are checked against the old version, those processed after it against the \
                     new one.\n\n\
                     A column the contract does not (yet) know is ignored and named in the receipt \
                     (`ignored_columns`, outcome `warning`), so a new column can be sent before the \
                     day it becomes part of the contract.\n\n\
                     The reference lists the KL Gateway deliveries are checked against (FSIII, the \
                     §119/§140 catalogue, SKS, SOR) are not part of the contracts: the operators load \
                     new versions of them without a new release, and a new version applies from the \
                     next delivery processed (see *Reference data and code lists*).\n\n",
                );
            }
            Section::Contact => {
                s.push_str(
                    "The operators' functional mailbox: `naerdata-drift@<organisation>`. The actual \
                     address is set per deployment and given to you when you are connected. Write to \
                     it about access (account, ExternalId, role), missing receipts, retracting a \
                     delivery and contract changes. Always give the delivery id from the receipt (or \
                     the object key) and the dataset. Never send CPR numbers or extracts of your files \
                     by e-mail: the receipt points to line and column, so you can find the value in \
                     your own file.\n\n",
                );
            }
            Section::Datasets => {
                s.push_str(
                    "Each dataset follows, with its path, format and columns. The contracts' own texts \
                     (title, purpose, usage, limitations and column descriptions) are quoted as they \
                     stand in the contract. A derived dataset is not delivered on its own: it is \
                     produced from the KL Gateway deliveries.\n\n",
                );
            }
        }
    }

    fn label(&self, label: Label) -> &'static str {
        match label {
            Label::Purpose => "Purpose",
            Label::Usage => "Usage",
            Label::Limitations => "Limitations",
            Label::Path => "Path",
            Label::Format => "Format",
            Label::Encoding => "Encoding",
            Label::DecimalSeparator => "Decimal separator",
            Label::RecordKey => "Record key",
            Label::UnusableCpr => "Unusable CPR numbers",
            Label::Version => "Version",
            Label::EventDate => "Event date (partitions the lake)",
            Label::ReportingUnit => "Reporting unit",
            Label::CprColumn => "CPR column",
            Label::BirthDateColumn => "Birth date column",
            Label::Expected => "Expected",
            Label::Quality => "Quality checks (max % of rows, else the check FAILs in the receipt)",
            Label::RejectThreshold => "Rejection threshold",
            Label::MaxDecompressed => "Largest decompressed size (.gz)",
            Label::Extracts => "Research extracts may carry",
            Label::Table => "Table",
            Label::Column => "Column",
            Label::Type => "Type",
            Label::Required => "Required",
            Label::Rules => "Rules",
            Label::Example => "Example",
            Label::Description => "Description",
        }
    }

    fn decimal_comma(&self) -> bool {
        false
    }

    fn contract_line(&self, title: &str, version: &str, status: &str) -> String {
        format!("**{title}** — contract version {version} ({status})")
    }

    fn format(&self, format: &FileFormat) -> String {
        match format {
            FileFormat::Csv { delimiter } => {
                format!("CSV with a header row, delimiter `{}`", *delimiter as char)
            }
            FileFormat::Ndjson => "NDJSON (one JSON object per line)".into(),
            FileFormat::Fhir { tables } => format!(
                "FHIR R4 Bundles of type collection, one per line (NDJSON), or one Bundle per file; \
                 see docs/kl-gateway-input.md. Each bundle fans out to {}",
                tables
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FileFormat::Derived { from } => {
                format!("not delivered on its own: flattened from `{from}` deliveries")
            }
        }
    }

    fn encoding(&self, encoding: Encoding) -> &'static str {
        match encoding {
            Encoding::Utf8 => "UTF-8 (a BOM is allowed; other encodings are rejected)",
            Encoding::Windows1252 => "windows-1252 (a UTF-8 file with BOM is also read correctly)",
        }
    }

    fn received_at(&self) -> &'static str {
        "the time the delivery was received"
    }

    fn unusable_cpr(&self, percent: &str) -> String {
        format!("more than {percent} % of rows (bundles) rejects the delivery")
    }

    fn cpr_column(&self, name: &str) -> String {
        format!("`{name}` (pseudonymised on arrival)")
    }

    fn birth_date_column(&self, name: &str) -> String {
        format!("`{name}` (checked; only its year and month are stored)")
    }

    fn expected(&self, r: &Reception) -> String {
        let units = match r.units {
            ExpectedUnits::Kommuner => "each of the 98 municipalities",
            ExpectedUnits::Seen => {
                "each reporting unit that has delivered before or is in the register of reporting \
                 units"
            }
        };
        let after = match r.deadline.after {
            DeadlineFrom::PeriodEnd => "the end of the period",
            DeadlineFrom::MonthEnd => "the end of the month",
        };
        format!(
            "a delivery {} (by {} day(s) after it); {units} {}; late after {} day(s) after {after}",
            cadence(r.cadence),
            r.grace_days,
            cadence(r.unit_cadence.unwrap_or(r.cadence)),
            r.deadline.days
        )
    }

    fn quality(&self, t: [&str; 4]) -> String {
        format!(
            "completeness {} %, conformance {} %, plausibility {} %, duplicate keys {} %",
            t[0], t[1], t[2], t[3]
        )
    }

    fn reject_threshold(&self, percent: &str) -> String {
        format!("{percent} % of rows")
    }

    fn extracts(&self, columns: &str) -> String {
        format!("{columns} (identifiers re-keyed per project, timestamps as dates; never the CPR)")
    }

    fn rule(&self, rule: Rule<'_>) -> String {
        match rule {
            Rule::Pattern(p) => format!("pattern `{p}`"),
            Rule::MaxLength(n) => format!("at most {n} characters"),
            Rule::From(d) => format!("from {d}"),
            Rule::NotAfterDelivery => "not after the delivery day".into(),
            Rule::TenDigitNumbers => {
                "ten-digit numbers allowed (only separated CPR shapes are refused)".into()
            }
            Rule::Range(min, max) => format!("range {min}..{max}"),
            Rule::Identifier(space) => format!("identifier (`{space}`)"),
            Rule::OneOf(system, codes) => match system {
                Some(system) => format!("one of {system}: {codes}"),
                None => format!("one of {codes}"),
            },
        }
    }

    fn yes_no(&self, yes: bool) -> &'static str {
        if yes { "yes" } else { "no" }
    }

    fn description<'f>(&self, f: &'f crate::contract::Field) -> &'f str {
        &f.description
    }
}
