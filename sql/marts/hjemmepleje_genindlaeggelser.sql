-- mart: hjemmepleje_genindlaeggelser
-- title: Hjemmepleje og hospital: akutte indlæggelser og genindlæggelser inden 30 dage, borgere på 65 år og derover
-- caveat: Citizens aged 65 and over, resident in the municipality (population register, else municipal reports). Home-care recipients are older than the comparison group: compare the *_std rates, directly standardised by age group (65-74, 75-84, 85+, age reached in the quarter's year) and sex to the country's home-care recipients (the quarter's residents for the per-1,000 rates, its discharges for the readmissions). They are withheld where a stratum is too small to be shown on its own. Recipients are also sicker in ways age and sex do not capture.
-- forbehold: Borgere på 65 år og derover med bopæl i kommunen (befolkningsregistret, ellers kommunens indberetninger). Borgere med hjemmepleje er ældre end sammenligningsgruppen: sammenlign *_std-raterne, der er direkte standardiseret for aldersgruppe (65-74, 75-84, 85+, alder nået i kvartalets år) og køn til landets borgere med hjemmepleje (kvartalets borgere for raterne pr. 1.000, dets udskrivninger for genindlæggelserne). De undertrykkes, hvor et stratum er for lille til at blive vist alene. Borgere med hjemmepleje er også syge på måder, alder og køn ikke fanger.
-- caveat: Home care = a §83 intervention planned in the municipality's KL Gateway reports and active on the day (the admission, the discharge, the quarter's end); a municipality that reports late makes its recipients look like non-recipients.
-- forbehold: Hjemmepleje = en §83-indsats, der er planlagt i kommunens indberetninger via KL Gateway og aktiv på dagen (indlæggelsen, udskrivningen, kvartalets sidste dag); en kommune, der indberetter sent, får sine borgere med hjemmepleje til at ligne borgere uden.
-- caveat: Admissions and discharges are acute LPR contacts (ATA1); a readmission is an acute contact beginning 1-30 days after an acute discharge, counted against the discharge.
-- forbehold: Indlæggelser og udskrivninger er akutte LPR-kontakter (ATA1); en genindlæggelse er en akut kontakt, der begynder 1-30 dage efter en akut udskrivning, og tælles ved udskrivningen.
-- period: kvartal quarter
-- follow_up: 30 days
-- rows: kommunekode
-- rollup: klynge, regionskode
-- cols: gruppe
-- strata: aldersgruppe, koen
-- standard: gruppe = hjemmepleje
-- counts: borgere, akutte_indlaeggelser, udskrivninger, genindlagt_30d, genindlaeggelser_30d
-- persons: akutte_indlaeggelser = indlagte_personer
-- persons: udskrivninger = udskrevne_personer
-- persons: genindlagt_30d = genindlagte_personer
-- persons: genindlaeggelser_30d = genindlagte_personer
-- nested: genindlagt_30d < udskrivninger
-- rates: akutte_indlaeggelser_pr_1000 = 1000 * akutte_indlaeggelser / borgere
-- rates: genindlaeggelser_30d_pr_1000 = 1000 * genindlaeggelser_30d / borgere
-- rates: andel_genindlagt_30d = genindlagt_30d / udskrivninger
-- rates: genindlaeggelser_30d_pr_100_udskrivninger = 100 * genindlaeggelser_30d / udskrivninger
-- describe: gruppe = Med eller uden hjemmepleje (§83); 'I alt' = begge | With or without home care (§83); 'I alt' = both
-- describe: borgere = Borgere på 65+ med bopæl i kommunen ved kvartalets udgang | Residents aged 65+ at the quarter's end
-- describe: akutte_indlaeggelser = Akutte indlæggelser (LPR, ATA1), der begyndte i kvartalet | Acute admissions (LPR, ATA1) beginning in the quarter
-- describe: udskrivninger = Udskrivninger fra akutte indlæggelser i kvartalet | Discharges from acute admissions in the quarter
-- describe: genindlagt_30d = Udskrivninger fulgt af en akut indlæggelse inden 30 dage | Discharges followed by an acute admission within 30 days
-- describe: genindlaeggelser_30d = Akutte indlæggelser 1-30 dage efter en udskrivning (hændelser) | Acute admissions 1-30 days after a discharge (events)
-- The seed's second question: how often are home-care recipients admitted acutely, and
-- readmitted within 30 days of a discharge, beside citizens of the same age band without
-- home care? Per municipality of residence and quarter (months are too small for most
-- municipalities' readmissions), for citizens aged 65 and over:
--   borgere: residents at the quarter's end, by whether home care was active then
--     (the denominator of the per-1,000 rates: admissions per quarter);
--   akutte_indlaeggelser: acute admissions beginning in the quarter, by home care on the
--     admission day;
--   udskrivninger: acute discharges in the quarter, by home care on the discharge day;
--   genindlagt_30d: of them, those followed by an acute admission within 30 days;
--   genindlaeggelser_30d: the acute admissions within 30 days after them (events).
-- A quarter closes once the 30 days after it are delivered. Admissions and discharges are
-- events, each with the distinct persons behind it (the *_personer columns, for disclosure
-- control, not published). Portable SQL (DataFusion, Athena); `perioder` lists the quarters.
WITH hjemmepleje AS (
    SELECT DISTINCT person_id, startdato, slutdato
    FROM kommune_indsats_current
    WHERE lovgrundlag = '§83' AND type = 'planned' AND person_id IS NOT NULL
),
bopael AS (
    SELECT b.person_id, b.kommunekode, b.gyldig_fra, b.gyldig_til, d.birth_year,
           COALESCE(d.sex, 'ukendt') AS koen
    FROM person_bopael b
    JOIN dim_person d ON d.person_id = b.person_id
),
beboere AS (
    SELECT p.periode, b.person_id, b.kommunekode, b.koen,
           CASE WHEN EXTRACT(YEAR FROM p.periode_slut) - b.birth_year < 75 THEN '65-74'
                WHEN EXTRACT(YEAR FROM p.periode_slut) - b.birth_year < 85 THEN '75-84'
                ELSE '85+' END AS aldersgruppe,
           MAX(CASE WHEN h.person_id IS NOT NULL THEN 1 ELSE 0 END) AS pleje
    FROM bopael b
    JOIN perioder p ON b.gyldig_fra <= p.periode_slut
     AND (b.gyldig_til IS NULL OR b.gyldig_til >= p.periode_slut)
     AND EXTRACT(YEAR FROM p.periode_slut) - b.birth_year >= 65
    LEFT JOIN hjemmepleje h ON h.person_id = b.person_id
     AND h.startdato <= p.periode_slut AND (h.slutdato IS NULL OR h.slutdato >= p.periode_slut)
    GROUP BY p.periode, p.periode_slut, b.person_id, b.kommunekode, b.koen, b.birth_year
),
akut AS (
    SELECT DISTINCT person_id, dw_ek_kontakt, dato_start, dato_slut
    FROM lpr_kontakt_current
    WHERE prioritet = 'ATA1' AND person_id IS NOT NULL
),
haendelser AS (
    -- Each acute contact's admission day and, once discharged, its discharge day.
    SELECT person_id, dw_ek_kontakt, 'indlagt' AS haendelse, dato_start AS dag FROM akut
    UNION ALL
    SELECT person_id, dw_ek_kontakt, 'udskrevet', dato_slut FROM akut WHERE dato_slut IS NOT NULL
),
paa_dagen AS (
    -- Each event of a resident aged 65+, placed where the person lived that day, and
    -- whether home care was active that day.
    SELECT p.periode, e.haendelse, e.person_id, e.dw_ek_kontakt, e.dag, b.kommunekode, b.koen,
           CASE WHEN EXTRACT(YEAR FROM p.periode_slut) - b.birth_year < 75 THEN '65-74'
                WHEN EXTRACT(YEAR FROM p.periode_slut) - b.birth_year < 85 THEN '75-84'
                ELSE '85+' END AS aldersgruppe,
           MAX(CASE WHEN h.person_id IS NOT NULL THEN 1 ELSE 0 END) AS pleje
    FROM haendelser e
    JOIN perioder p ON e.dag BETWEEN p.periode_start AND p.periode_slut
    JOIN bopael b ON b.person_id = e.person_id AND b.gyldig_fra <= e.dag
     AND (b.gyldig_til IS NULL OR b.gyldig_til >= e.dag)
     AND EXTRACT(YEAR FROM e.dag) - b.birth_year >= 65
    LEFT JOIN hjemmepleje h ON h.person_id = e.person_id
     AND h.startdato <= e.dag AND (h.slutdato IS NULL OR h.slutdato >= e.dag)
    GROUP BY p.periode, p.periode_slut, e.haendelse, e.person_id, e.dw_ek_kontakt, e.dag,
             b.kommunekode, b.koen, b.birth_year
),
indlaeggelser AS (
    SELECT periode, person_id, dw_ek_kontakt, kommunekode, aldersgruppe, koen, pleje
    FROM paa_dagen WHERE haendelse = 'indlagt'
),
udskrivninger AS (
    SELECT periode, person_id, dw_ek_kontakt, dag AS dato_slut, kommunekode, aldersgruppe, koen,
           pleje
    FROM paa_dagen WHERE haendelse = 'udskrevet'
),
genindlaeggelser AS (
    SELECT u.periode, u.dw_ek_kontakt, COUNT(a.dw_ek_kontakt) AS n
    FROM udskrivninger u
    LEFT JOIN akut a ON a.person_id = u.person_id AND a.dw_ek_kontakt <> u.dw_ek_kontakt
     AND a.dato_start > u.dato_slut AND a.dato_start <= u.dato_slut + INTERVAL '30' DAY
    GROUP BY u.periode, u.dw_ek_kontakt
),
celler AS (
    SELECT periode, kommunekode, aldersgruppe, koen, pleje,
           1 AS borger, person_id AS borger_id,
           0 AS indlagt, CAST(NULL AS VARCHAR) AS indlagt_id,
           0 AS udskrevet, CAST(NULL AS VARCHAR) AS udskrevet_id,
           0 AS genindlagt, 0 AS genindlaeggelser, CAST(NULL AS VARCHAR) AS genindlagt_id
    FROM beboere
    UNION ALL
    SELECT periode, kommunekode, aldersgruppe, koen, pleje, 0, NULL, 1, person_id, 0, NULL, 0, 0,
           NULL
    FROM indlaeggelser
    UNION ALL
    SELECT u.periode, u.kommunekode, u.aldersgruppe, u.koen, u.pleje, 0, NULL, 0, NULL, 1, u.person_id,
           CASE WHEN g.n > 0 THEN 1 ELSE 0 END, g.n,
           CASE WHEN g.n > 0 THEN u.person_id END
    FROM udskrivninger u
    JOIN genindlaeggelser g ON g.periode = u.periode AND g.dw_ek_kontakt = u.dw_ek_kontakt
),
tal AS (
    SELECT periode AS kvartal, kommunekode, aldersgruppe, koen,
           CASE WHEN pleje = 1 THEN 'hjemmepleje' ELSE 'ingen hjemmepleje' END AS gruppe,
           SUM(borger) AS borgere,
           SUM(indlagt) AS akutte_indlaeggelser,
           COUNT(DISTINCT indlagt_id) AS indlagte_personer,
           SUM(udskrevet) AS udskrivninger,
           COUNT(DISTINCT udskrevet_id) AS udskrevne_personer,
           SUM(genindlagt) AS genindlagt_30d,
           SUM(genindlaeggelser) AS genindlaeggelser_30d,
           COUNT(DISTINCT genindlagt_id) AS genindlagte_personer
    FROM celler
    GROUP BY periode, kommunekode, aldersgruppe, koen, CASE WHEN pleje = 1 THEN 'hjemmepleje' ELSE 'ingen hjemmepleje' END
)
-- Each municipality's health cluster and region in the period (at its last day): the
-- groups the table is also published for, protected with their members.
SELECT t.*, g.klynge, g.regionskode
FROM tal t
JOIN perioder p ON p.periode = t.kvartal
LEFT JOIN dim_geografi g ON g.kommunekode = t.kommunekode
 AND p.periode_slut BETWEEN g.gyldig_fra AND g.gyldig_til
