//! The `naerdata` command as a supplier and an operator use it.

use std::path::Path;
use std::process::{Command, Output};

fn naerdata(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_naerdata"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("the binary runs")
}

const HEADER: &str =
    "record_id;cpr;ydernummer;diagnosekode;diagnosedato;sygdomsomraade;registreret\n";

fn write(dir: &Path, rel: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn validate_prints_a_receipt_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.csv",
        &format!(
            "{HEADER}a;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n"
        ),
    );
    let out = naerdata(
        dir.path(),
        &[
            "validate",
            "--dataset",
            "almenpraksis.diagnose",
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["outcome"], "ok");
    assert_eq!(receipt["rows"]["accepted"], 1);

    let bad = write(dir.path(), "bad.csv", "hello;world\n1;2\n");
    let out = naerdata(
        dir.path(),
        &[
            "validate",
            "--dataset",
            "almenpraksis.diagnose",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["outcome"], "rejected");
    assert!(receipt["reason"].as_str().unwrap().contains("diagnosekode"));
    // validate stores nothing
    assert!(!dir.path().join("lake").exists());

    let out = naerdata(
        dir.path(),
        &["validate", "--dataset", "nope.nope", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown dataset"));
}

#[test]
fn ingest_status_query_and_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let body = format!(
        "{HEADER}a;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n\
         b;680385-4002;012345;R95;2026-03-01;kol;2026-03-02T10:00:00+01:00\n"
    );
    let f = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-06-01/a.csv",
        &body,
    );
    let out = naerdata(&home, &["ingest", f.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("accepted "), "{stdout}");

    // The same content under another name is a duplicate.
    let g = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-06-02/a-copy.csv",
        &body,
    );
    let out = naerdata(&home, &["ingest", g.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("duplicate "));

    // A different file under an existing landing key is refused: raw files are immutable.
    write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-06-01/a.csv",
        &format!("{body}\n"),
    );
    let out = naerdata(&home, &["ingest", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("immutable"));

    let out = naerdata(
        &home,
        &[
            "query",
            "SELECT count(*) AS n, count(DISTINCT person_id) AS p FROM almenpraksis_diagnose",
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| 2 | 2 |"), "{table}");

    let out = naerdata(&home, &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("deliveries: 2"), "{status}");
    assert!(status.contains("duplicate"), "{status}");

    let catalog = std::fs::read_to_string(home.join("lake/catalog.sql")).unwrap();
    assert!(catalog.contains("CREATE OR REPLACE VIEW almenpraksis_diagnose"));
}

#[test]
fn ingest_needs_a_dataset_it_can_tell() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "loose.csv", HEADER);
    let out = naerdata(&dir.path().join("home"), &["ingest", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dataset"));
    let out = naerdata(
        &dir.path().join("home"),
        &[
            "ingest",
            "--dataset",
            "almenpraksis.diagnose",
            f.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file generated by `naerdata <args>` and committed: what the command prints now.
fn assert_committed(args: &[&str], file: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_naerdata"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "naerdata {}", args.join(" "));
    let committed =
        std::fs::read_to_string(format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "{file} is stale: run `naerdata {} --out {file}`",
        args.join(" ")
    );
}

#[test]
fn the_committed_reporting_guides_are_current() {
    // Danish is the suppliers' guide; the English one is kept beside it.
    assert_committed(
        &["contracts", "docs", "--lang", "da"],
        "docs/reporting-guide.md",
    );
    assert_committed(
        &["contracts", "docs", "--lang", "en"],
        "docs/reporting-guide.en.md",
    );
}

#[test]
fn the_committed_data_dictionary_is_current() {
    assert_committed(&["infra", "dictionary"], "docs/presentation-columns.md");
}

#[test]
fn the_committed_glue_catalog_is_current() {
    assert_committed(&["infra", "catalog"], "infra/catalog.yaml");
}

#[test]
fn the_committed_stack_template_is_current() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_naerdata"))
        .args(["infra", "template", "--check", "--file", template])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A hand edit inside a generated region is found, and rewriting undoes it.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("template.yaml");
    let committed = std::fs::read_to_string(template).unwrap();
    std::fs::write(
        &copy,
        committed.replacen("MaxLength: 1224", "MaxLength: 2048", 1),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_naerdata"))
        .args(["infra", "template", "--check", "--file"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("supplier-parameters"));
    let fix = Command::new(env!("CARGO_BIN_EXE_naerdata"))
        .args(["infra", "template", "--file"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(fix.status.success());
    assert!(std::fs::read_to_string(&copy).unwrap() == committed);
}

/// Everything an operator or supplier sees of a run: console output, the home's
/// files outside landing and the key, read as text.
fn outside_landing(home: &Path, console: &[&Output]) -> String {
    let mut all = String::new();
    for o in console {
        all.push_str(&String::from_utf8_lossy(&o.stdout));
        all.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            all.push_str(&name);
            if p.is_dir() && name != "landing" && name != "keys" {
                stack.push(p);
            } else if p.is_file() {
                all.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    all
}

#[test]
fn a_cpr_in_a_file_name_is_withheld_everywhere_and_the_scan_stays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let row = "a;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n";
    let named = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-03-03/patient 690385-4003.csv",
        &format!("{HEADER}{row}"),
    );
    // The header left out, and the CPR in the record id: both rejected, unquoted.
    let headerless = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-03-03/noheader.csv",
        row,
    );
    let in_id = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-03-03/in-id.csv",
        &format!(
            "{HEADER}P-710385-4007;700385-4005;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n"
        ),
    );
    let ingest = naerdata(
        &home,
        &[
            "ingest",
            named.to_str().unwrap(),
            headerless.to_str().unwrap(),
            in_id.to_str().unwrap(),
        ],
    );
    let status = naerdata(&home, &["status"]);
    let report = naerdata(&home, &["report", "--as-of", "2026-03-04"]);
    let scan = naerdata(&home, &["privacy", "scan"]);
    assert_eq!(
        scan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&scan.stdout)
    );
    let stdout = String::from_utf8_lossy(&ingest.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("rejected")).count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("withheld-"), "{stdout}");
    let seen = outside_landing(&home, &[&ingest, &status, &report, &scan]);
    for cpr in ["690385", "670385", "710385", "700385"] {
        assert!(!seen.contains(cpr), "{cpr} outside landing");
    }
    // The raw files are in landing, untouched.
    assert!(
        home.join("landing/almenpraksis/diagnose/2026-03-03/noheader.csv")
            .exists()
    );
}

#[test]
fn the_scan_finds_a_cpr_planted_outside_landing_and_names_only_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let f = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-03-03/ok.csv",
        &format!(
            "{HEADER}a;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n"
        ),
    );
    naerdata(&home, &["ingest", f.to_str().unwrap()]);
    std::fs::write(
        home.join("receipts/leak.json"),
        "{\"note\": \"670385 4001\"}",
    )
    .unwrap();
    let scan = naerdata(&home, &["privacy", "scan"]);
    assert_eq!(scan.status.code(), Some(3));
    let out = String::from_utf8_lossy(&scan.stdout);
    assert!(
        out.contains("receipts") && out.contains("leak.json"),
        "{out}"
    );
    assert!(!out.contains("670385"), "{out}");
}

#[cfg(unix)]
#[test]
fn ingest_reads_only_regular_files_and_nothing_under_its_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let good = write(
        dir.path(),
        "in/almenpraksis/diagnose/2026-03-03/ok.csv",
        &format!(
            "{HEADER}a;670385-4001;012345;T90;2026-03-01;diabetes2;2026-03-02T10:00:00+01:00\n"
        ),
    );
    let out = naerdata(&home, &["ingest", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    // A symlink to the platform's own key, inside a delivery directory and given
    // directly; a FIFO that would block a reader forever.
    let day = dir.path().join("in/almenpraksis/diagnose/2026-03-04");
    std::fs::create_dir_all(&day).unwrap();
    let link = day.join("key.csv");
    std::os::unix::fs::symlink(home.join("keys/lake-key.json"), &link).unwrap();
    let fifo = day.join("pipe.csv");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = naerdata(&home, &["ingest", day.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 entries skipped"));
    let out = naerdata(&home, &["ingest", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    // Anything under the home, e.g. its own landing zone.
    let own = home.join("landing/almenpraksis/diagnose/2026-03-03/ok.csv");
    assert!(own.exists());
    let out = naerdata(&home, &["ingest", own.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside the platform's home"));
}

/// An operator loads a new SOR map with `naerdata reference load`; a bundle from the
/// new SOR code is accepted afterwards by the same binary (no rebuild). A map that
/// lost municipalities is refused and changes nothing.
#[test]
fn reference_load_makes_a_new_sor_code_acceptable() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let bundle = |id: &str| {
        std::fs::read_to_string(format!(
            "{}/../shared/tests/fixtures/kl-ig/jens-hansen/{id}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    // Two different reports (an identical file would be a duplicate).
    let outcome = |day: &str, id: &str| {
        let file = write(
            dir.path(),
            &format!("in/kommune/gateway/{day}/jh.json"),
            &bundle(id),
        );
        let out = naerdata(&home, &["ingest", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let receipts = home.join("receipts/kommune/gateway");
        let mut found = Vec::new();
        for e in std::fs::read_dir(&receipts).unwrap() {
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
            if r["object_key"].as_str().unwrap().contains(day) {
                found.push(r["outcome"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(found.len(), 1);
        found.remove(0)
    };
    assert_eq!(
        outcome("2021-02-10", "5c20b1b0-ec06-4d25-89e2-13521ebcf642"),
        "rejected",
        "the guide's SOR code is unknown"
    );

    let refused = write(
        dir.path(),
        "sor-short.csv",
        "sor_code,kommunekode\n123456789012345,751\n",
    );
    let out = naerdata(
        &home,
        &["reference", "load", "sor", refused.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("97 of the 98 municipalities have no SOR code"),
        "{err}"
    );

    let builtin = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../reference/sor-kommune.csv"
    ))
    .unwrap();
    let map = write(
        dir.path(),
        "sor-2027.csv",
        &format!("{builtin}123456789012345,751,Aarhus,false\n"),
    );
    let out = naerdata(&home, &["reference", "load", "sor", map.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("is current (99 rows)"),
        "{said}"
    );
    let list = naerdata(&home, &["reference", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("sor-2027.csv") && listed.contains("(built in)"),
        "{listed}"
    );

    assert_ne!(
        outcome("2021-02-14", "832c69db-98b5-4aee-ab00-c24967e89d25"),
        "rejected",
        "accepted after the load"
    );
}
