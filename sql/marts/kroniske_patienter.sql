-- mart: kroniske_patienter
-- title: Borgere med kronisk sygdom i almen praksis og kommunal pleje
-- caveat: Residence comes from the population register (cpr.befolkning); only persons absent from it are placed by the latest municipal care report. The denominator of a prevalence is the befolkning mart (same municipality and month).
-- forbehold: Bopælen kommer fra befolkningsregistret (cpr.befolkning); kun personer, der ikke er i det, placeres efter kommunens seneste plejeindberetning. Nævneren for en forekomst er befolkning-tabellen (samme kommune og måned).
-- caveat: Diagnoses are those GPs report for the five chronic disease areas.
-- forbehold: Diagnoserne er dem, praktiserende læger indberetter for de fem kroniske sygdomsområder.
-- period: maaned month stock
-- rows: kommunekode
-- rollup: klynge, regionskode
-- cols: sygdomsomraade
-- counts: borgere, med_hjemmepleje, med_sygepleje
-- nested: med_hjemmepleje < borgere
-- nested: med_sygepleje < borgere
-- rates: andel_med_hjemmepleje = med_hjemmepleje / borgere
-- rates: andel_med_sygepleje = med_sygepleje / borgere
-- describe: sygdomsomraade = Kronisk sygdomsområde fra almen praksis; 'I alt' = alle områder | Chronic disease area from general practice; 'I alt' = all areas
-- describe: borgere = Borgere med diagnose i området ved månedens udgang | Citizens with a diagnosis in the area at the month's end
-- describe: med_hjemmepleje = Heraf med hjemmepleje (§83) i måneden | Of them, with home care (§83) in the month
-- describe: med_sygepleje = Heraf med sygepleje (§138) i måneden | Of them, with nursing (§138) in the month
-- At each month's end: citizens with each of the GP disease areas (diagnosed by then), per
-- municipality of residence then (`person_bopael`: the register, else municipal reports), and how
-- many of them had home care (§83) or nursing (§138) during the month. A citizen counts once
-- per disease area (so margins count a citizen once per area). A stock: each month is
-- checked against the others before it is published. `perioder` lists the months.
WITH bopael AS (
    SELECT p.periode, b.person_id, b.kommunekode
    FROM person_bopael b
    JOIN perioder p ON b.gyldig_fra <= p.periode_slut
     AND (b.gyldig_til IS NULL OR b.gyldig_til >= p.periode_slut)
),
syge AS (
    SELECT DISTINCT b.periode, d.person_id, d.sygdomsomraade, b.kommunekode
    FROM almenpraksis_diagnose_current d
    JOIN bopael b ON b.person_id = d.person_id
    JOIN perioder p ON p.periode = b.periode AND d.diagnosedato <= p.periode_slut
    WHERE d.person_id IS NOT NULL
),
pleje AS (
    SELECT p.periode, i.person_id,
           MAX(CASE WHEN i.lovgrundlag = '§83' THEN 1 ELSE 0 END) AS hjemmepleje,
           MAX(CASE WHEN i.lovgrundlag = '§138' THEN 1 ELSE 0 END) AS sygepleje
    FROM kommune_indsats_current i
    JOIN perioder p ON i.startdato <= p.periode_slut
     AND CASE WHEN i.slutdato IS NOT NULL THEN i.slutdato
              WHEN i.type = 'planned' THEN p.periode_slut
              ELSE i.startdato END >= p.periode_start
    WHERE i.type IN ('planned', 'completed') AND i.person_id IS NOT NULL
    GROUP BY p.periode, i.person_id
),
tal AS (
    SELECT s.periode AS maaned, s.kommunekode, s.sygdomsomraade,
           COUNT(*) AS borgere,
           SUM(COALESCE(pl.hjemmepleje, 0)) AS med_hjemmepleje,
           SUM(COALESCE(pl.sygepleje, 0)) AS med_sygepleje
    FROM syge s
    LEFT JOIN pleje pl ON pl.person_id = s.person_id AND pl.periode = s.periode
    GROUP BY s.periode, s.kommunekode, s.sygdomsomraade
)
-- Each municipality's health cluster and region in the period (at its last day): the
-- groups the table is also published for, protected with their members.
SELECT t.*, g.klynge, g.regionskode
FROM tal t
JOIN perioder p ON p.periode = t.maaned
LEFT JOIN dim_geografi g ON g.kommunekode = t.kommunekode
 AND p.periode_slut BETWEEN g.gyldig_fra AND g.gyldig_til
