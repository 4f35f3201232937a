-- The process step's job for one almenpraksis.diagnose delivery, in DuckDB's SQL, for
-- the comparison in `make bench` (bench/compare_duckdb.py runs it; placeholders in
-- braces are filled in there: {input}, {output}, {key_hex}, {delivery_date}).
--
-- The same job as naerdata's pass, as far as SQL goes: a typed read of the CSV (dates,
-- timestamps with offsets), the contract's patterns and code lists
-- (contracts/almenpraksis.diagnose.yaml), the CPR checked and its birth date and sex
-- derived (day+60 marks a replacement number, the seventh digit gives the century), a
-- keyed hash of the normalised CPR (SHA-256 over key and number: DuckDB has no HMAC;
-- naerdata's HMAC is two SHA-256 blocks more per row), the age at the event, and the
-- rows written as zstd Parquet partitioned by year and month of the event. Not done
-- here, and done by naerdata: the quality metrics, the CPR detector on every other
-- column, per-row problems with line numbers, the quarantine, the receipt.
COPY (
    WITH raw AS (
        SELECT *
        FROM read_csv('{input}', delim = ';', header = true, quote = '"',
                      columns = {{'record_id': 'VARCHAR', 'cpr': 'VARCHAR',
                                  'ydernummer': 'VARCHAR', 'diagnosekode': 'VARCHAR',
                                  'diagnosedato': 'VARCHAR', 'sygdomsomraade': 'VARCHAR',
                                  'registreret': 'VARCHAR'}})
    ),
    typed AS (
        SELECT
            trim(record_id) AS record_id,
            replace(trim(cpr), '-', '') AS cpr10,
            trim(ydernummer) AS ydernummer,
            trim(diagnosekode) AS diagnosekode,
            TRY_CAST(trim(diagnosedato) AS DATE) AS diagnosedato,
            trim(sygdomsomraade) AS sygdomsomraade,
            TRY_CAST(trim(registreret) AS TIMESTAMPTZ) AS registreret
        FROM raw
    ),
    cpr AS (
        -- A CPR that is not ten digits is kept without a person (naerdata: a warning).
        SELECT
            *,
            TRY_CAST(substr(cpr10, 1, 2) AS INTEGER) AS dd,
            TRY_CAST(substr(cpr10, 3, 2) AS INTEGER) AS mm,
            TRY_CAST(substr(cpr10, 5, 2) AS INTEGER) AS yy,
            TRY_CAST(substr(cpr10, 7, 1) AS INTEGER) AS c7,
            TRY_CAST(substr(cpr10, 10, 1) AS INTEGER) AS last
        FROM typed
    ),
    born AS (
        SELECT
            *,
            CASE WHEN regexp_full_match(cpr10, '[0-9]{{10}}') THEN TRY_CAST(make_date(
                CASE
                    WHEN c7 <= 3 THEN 1900
                    WHEN c7 IN (4, 9) THEN CASE WHEN yy <= 36 THEN 2000 ELSE 1900 END
                    ELSE CASE WHEN yy <= 57 THEN 2000 ELSE 1800 END
                END + yy,
                mm,
                CASE WHEN dd > 60 THEN dd - 60 ELSE dd END) AS DATE) END AS birth
        FROM cpr
    )
    SELECT
        record_id,
        CASE WHEN birth IS NOT NULL THEN sha256(unhex('{key_hex}') || cpr10) END AS person_id,
        ydernummer,
        diagnosekode,
        diagnosedato,
        sygdomsomraade,
        registreret,
        year(birth) AS birth_year,
        month(birth) AS birth_month,
        CASE WHEN birth IS NULL THEN NULL WHEN last % 2 = 1 THEN 'M' ELSE 'K' END AS sex,
        date_diff('year', birth, diagnosedato)
            - CASE WHEN strftime(diagnosedato, '%m%d') < strftime(birth, '%m%d') THEN 1 ELSE 0 END
            AS age_at_event,
        year(diagnosedato) AS year,
        month(diagnosedato) AS month
    FROM born
    WHERE regexp_full_match(record_id, '[A-Za-z0-9_-]{{1,64}}')
      AND regexp_full_match(ydernummer, '[0-9]{{6}}')
      AND diagnosekode IN ('T89', 'T90', 'R95', 'R96', 'K77', 'K78', 'K86', 'K87')
      AND sygdomsomraade IN ('diabetes1', 'diabetes2', 'kol', 'astma', 'hjertesvigt',
                             'atrieflimren', 'hypertension')
      AND diagnosedato BETWEEN DATE '1900-01-01' AND DATE '{delivery_date}'
      AND registreret IS NOT NULL
) TO '{output}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year, month));
