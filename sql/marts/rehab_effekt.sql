-- mart: rehab_effekt
-- title: Genoptræning efter §140: afsluttede forløb og efterfølgende kontakter
-- caveat: Before = the 90 days before the hospital admission the course follows (the latest contact that ended in the 30 days before the course began; the 90 days before the course when there is none), after = the 30/90 days after the course ended, for the same persons. There is no comparison group: a change may also be regression to the mean.
-- forbehold: Før = de 90 dage før den hospitalsindlæggelse, forløbet følger efter (den seneste kontakt, der sluttede i de 30 dage før forløbet begyndte; de 90 dage før forløbet, hvis der ingen er), efter = de 30/90 dage efter forløbets afslutning, for de samme personer. Der er ingen sammenligningsgruppe: et fald kan også være regression mod middelværdien.
-- caveat: The *_std rates are directly standardised by age group (0-64, 65-79, 80+, age reached in the quarter's year) and sex to the country's courses in the quarter, so municipalities can be compared; they are withheld where a stratum is too small to be shown on its own, and equal the crude rate in the country's row.
-- forbehold: *_std-raterne er direkte standardiseret for aldersgruppe (0-64, 65-79, 80+, alder nået i kvartalets år) og køn til landets forløb i kvartalet, så kommuner kan sammenlignes; de undertrykkes, hvor et stratum er for lille til at blive vist alene, og er lig den rå rate i landets række.
-- caveat: In the first 90 days of the lake's history the before-window is cut short by the start of the data, so early quarters understate the before-rates.
-- forbehold: I søens første 90 dage afkortes før-vinduet af datas start, så tidlige kvartaler undervurderer før-raterne.
-- caveat: GP contacts are reported for chronic patients only.
-- forbehold: Kontakter i almen praksis indberettes kun for kroniske patienter.
-- period: kvartal quarter
-- follow_up: 90 days
-- rows: kommunekode
-- rollup: klynge, regionskode
-- strata: aldersgruppe, koen
-- counts: forloeb_afsluttet, akut_hospital_foer_90d, akut_hospital_30d, akut_hospital_90d, almen_praksis_foer_90d, almen_praksis_30d, almen_praksis_90d, akutte_kontakter_foer_90d, akutte_kontakter_90d
-- persons: forloeb_afsluttet = forloeb_personer
-- persons: akut_hospital_foer_90d = akut_hospital_foer_90d_personer
-- persons: almen_praksis_foer_90d = almen_praksis_foer_90d_personer
-- persons: akut_hospital_30d = akut_hospital_30d_personer
-- persons: akut_hospital_90d = akut_hospital_90d_personer
-- persons: almen_praksis_30d = almen_praksis_30d_personer
-- persons: almen_praksis_90d = almen_praksis_90d_personer
-- persons: akutte_kontakter_foer_90d = akut_hospital_foer_90d_personer
-- persons: akutte_kontakter_90d = akut_hospital_90d_personer
-- nested: akut_hospital_30d < akut_hospital_90d < forloeb_afsluttet
-- nested: almen_praksis_30d < almen_praksis_90d < forloeb_afsluttet
-- nested: akut_hospital_foer_90d < forloeb_afsluttet
-- nested: almen_praksis_foer_90d < forloeb_afsluttet
-- rates: andel_akut_hospital_foer_90d = akut_hospital_foer_90d / forloeb_afsluttet
-- rates: andel_akut_hospital_30d = akut_hospital_30d / forloeb_afsluttet
-- rates: andel_akut_hospital_90d = akut_hospital_90d / forloeb_afsluttet
-- rates: andel_almen_praksis_foer_90d = almen_praksis_foer_90d / forloeb_afsluttet
-- rates: andel_almen_praksis_30d = almen_praksis_30d / forloeb_afsluttet
-- rates: andel_almen_praksis_90d = almen_praksis_90d / forloeb_afsluttet
-- rates: akutte_kontakter_foer_90d_pr_100 = 100 * akutte_kontakter_foer_90d / forloeb_afsluttet
-- rates: akutte_kontakter_90d_pr_100 = 100 * akutte_kontakter_90d / forloeb_afsluttet
-- describe: forloeb_afsluttet = Afsluttede genoptræningsforløb (§140) i kvartalet | Completed rehabilitation courses (§140) in the quarter
-- describe: akut_hospital_foer_90d = Forløb med en akut hospitalskontakt de 90 dage før indlæggelsen | Courses with an acute hospital contact in the 90 days before the admission
-- describe: akut_hospital_30d = Forløb med en akut hospitalskontakt inden 30 dage efter | Courses followed by an acute hospital contact within 30 days
-- describe: akut_hospital_90d = Forløb med en akut hospitalskontakt inden 90 dage efter | Courses followed by an acute hospital contact within 90 days
-- describe: almen_praksis_foer_90d = Forløb med en kontakt i almen praksis de 90 dage før (kun kroniske patienter) | Courses with a GP contact in the 90 days before (chronic patients only)
-- describe: almen_praksis_30d = Forløb med en kontakt i almen praksis inden 30 dage efter (kun kroniske patienter) | Courses followed by a GP contact within 30 days (chronic patients only)
-- describe: almen_praksis_90d = Forløb med en kontakt i almen praksis inden 90 dage efter (kun kroniske patienter) | Courses followed by a GP contact within 90 days (chronic patients only)
-- describe: akutte_kontakter_foer_90d = Akutte hospitalskontakter de 90 dage før indlæggelsen (hændelser) | Acute hospital contacts in the 90 days before the admission (events)
-- describe: akutte_kontakter_90d = Akutte hospitalskontakter inden 90 dage efter forløbet (hændelser) | Acute hospital contacts within 90 days after the course (events)
-- §140 rehabilitation courses (pathways) that ended in the quarter, per municipality, and
-- how many of them were followed by an acute hospital contact (LPR, ATA1) or a GP contact
-- within 30 and 90 days after the course ended — beside how many had one in the 90 days
-- before the admission the course follows (the same persons' baseline). The before-window
-- ends at that admission so the admission itself, which every course follows, does not
-- count as a "before" contact: with a constant risk, before and after are equal in
-- expectation. The acute contacts are also counted as events, per 100 courses (a person
-- may have several). Only courses whose 90 days of follow-up lie before the reference
-- date count: a quarter is computed only once it is closed (its end + 90 days + the
-- reception deadline). Courses are events: each count comes with the distinct persons
-- behind it (the *_personer columns, used for disclosure control, not published).
-- Portable SQL (DataFusion, Athena); `perioder` (periode, periode_start, periode_slut)
-- lists the quarters to compute.
WITH forloeb AS (
    -- Age from the birth year at the quarter, so a person is in one stratum per quarter.
    SELECT DISTINCT p.periode, i.person_id, i.kommunekode,
           i.startdato, i.slutdato,
           CASE WHEN d.birth_year IS NULL THEN 'ukendt'
                WHEN EXTRACT(YEAR FROM p.periode_start) - d.birth_year < 65 THEN '0-64'
                WHEN EXTRACT(YEAR FROM p.periode_start) - d.birth_year < 80 THEN '65-79'
                ELSE '80+' END AS aldersgruppe,
           COALESCE(d.sex, 'ukendt') AS koen
    FROM kommune_indsats_current i
    JOIN perioder p ON i.slutdato BETWEEN p.periode_start AND p.periode_slut
    LEFT JOIN dim_person d ON d.person_id = i.person_id
    WHERE i.lovgrundlag = '§140' AND i.type = 'pathway' AND i.status = 'completed'
      AND i.slutdato IS NOT NULL AND i.person_id IS NOT NULL
),
indeks AS (
    -- The admission the course follows: the latest contact that ended in the 30 days
    -- before the course began. The before-window ends where it began.
    SELECT f.person_id, f.startdato, f.slutdato,
           COALESCE(MAX(l.dato_start), f.startdato) AS foer_slut
    FROM forloeb f
    LEFT JOIN lpr_kontakt_current l ON l.person_id = f.person_id
     AND l.dato_slut <= f.startdato AND l.dato_slut >= f.startdato - INTERVAL '30' DAY
    GROUP BY f.person_id, f.startdato, f.slutdato
),
hospital AS (
    SELECT x.person_id, x.startdato, x.slutdato,
           MAX(CASE WHEN l.dato_start >= x.foer_slut - INTERVAL '90' DAY AND l.dato_start < x.foer_slut THEN 1 ELSE 0 END) AS f90,
           MAX(CASE WHEN l.dato_start > x.slutdato AND l.dato_start <= x.slutdato + INTERVAL '30' DAY THEN 1 ELSE 0 END) AS d30,
           MAX(CASE WHEN l.dato_start > x.slutdato AND l.dato_start <= x.slutdato + INTERVAL '90' DAY THEN 1 ELSE 0 END) AS d90,
           SUM(CASE WHEN l.dato_start >= x.foer_slut - INTERVAL '90' DAY AND l.dato_start < x.foer_slut THEN 1 ELSE 0 END) AS n_f90,
           SUM(CASE WHEN l.dato_start > x.slutdato AND l.dato_start <= x.slutdato + INTERVAL '90' DAY THEN 1 ELSE 0 END) AS n_d90
    FROM indeks x
    LEFT JOIN lpr_kontakt_current l ON l.person_id = x.person_id AND l.prioritet = 'ATA1'
    GROUP BY x.person_id, x.startdato, x.slutdato
),
praksis AS (
    SELECT x.person_id, x.startdato, x.slutdato,
           MAX(CASE WHEN k.kontaktdato >= x.foer_slut - INTERVAL '90' DAY AND k.kontaktdato < x.foer_slut THEN 1 ELSE 0 END) AS f90,
           MAX(CASE WHEN k.kontaktdato > x.slutdato AND k.kontaktdato <= x.slutdato + INTERVAL '30' DAY THEN 1 ELSE 0 END) AS d30,
           MAX(CASE WHEN k.kontaktdato > x.slutdato AND k.kontaktdato <= x.slutdato + INTERVAL '90' DAY THEN 1 ELSE 0 END) AS d90
    FROM indeks x
    LEFT JOIN almenpraksis_kontakt_current k ON k.person_id = x.person_id
    GROUP BY x.person_id, x.startdato, x.slutdato
),
tal AS (
    SELECT f.periode AS kvartal, f.kommunekode, f.aldersgruppe, f.koen,
           COUNT(*) AS forloeb_afsluttet,
           COUNT(DISTINCT f.person_id) AS forloeb_personer,
           SUM(h.f90) AS akut_hospital_foer_90d,
           COUNT(DISTINCT CASE WHEN h.f90 = 1 THEN f.person_id END) AS akut_hospital_foer_90d_personer,
           SUM(h.d30) AS akut_hospital_30d,
           COUNT(DISTINCT CASE WHEN h.d30 = 1 THEN f.person_id END) AS akut_hospital_30d_personer,
           SUM(h.d90) AS akut_hospital_90d,
           COUNT(DISTINCT CASE WHEN h.d90 = 1 THEN f.person_id END) AS akut_hospital_90d_personer,
           SUM(g.f90) AS almen_praksis_foer_90d,
           COUNT(DISTINCT CASE WHEN g.f90 = 1 THEN f.person_id END) AS almen_praksis_foer_90d_personer,
           SUM(g.d30) AS almen_praksis_30d,
           COUNT(DISTINCT CASE WHEN g.d30 = 1 THEN f.person_id END) AS almen_praksis_30d_personer,
           SUM(g.d90) AS almen_praksis_90d,
           COUNT(DISTINCT CASE WHEN g.d90 = 1 THEN f.person_id END) AS almen_praksis_90d_personer,
           SUM(h.n_f90) AS akutte_kontakter_foer_90d,
           SUM(h.n_d90) AS akutte_kontakter_90d
    FROM forloeb f
    JOIN hospital h ON h.person_id = f.person_id AND h.startdato = f.startdato AND h.slutdato = f.slutdato
    JOIN praksis g ON g.person_id = f.person_id AND g.startdato = f.startdato AND g.slutdato = f.slutdato
    GROUP BY f.periode, f.kommunekode, f.aldersgruppe, f.koen
)
-- Each municipality's health cluster and region in the period (at its last day): the
-- groups the table is also published for, protected with their members.
SELECT t.*, g.klynge, g.regionskode
FROM tal t
JOIN perioder p ON p.periode = t.kvartal
LEFT JOIN dim_geografi g ON g.kommunekode = t.kommunekode
 AND p.periode_slut BETWEEN g.gyldig_fra AND g.gyldig_til
