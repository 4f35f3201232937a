-- mart: befolkning
-- title: Befolkningen efter kommune og alder (nævneren)
-- caveat: From the population register (cpr.befolkning): persons resident in the municipality at the month's end, alive and not emigrated. Persons known only from municipal care reports are not counted.
-- forbehold: Fra befolkningsregistret (cpr.befolkning): personer med bopæl i kommunen ved månedens udgang, i live og ikke udvandret. Personer, der kun kendes fra kommunernes plejeindberetninger, tælles ikke med.
-- caveat: Age is the age reached in the month's year (from the birth year).
-- forbehold: Alderen er den alder, personen når i månedens år (ud fra fødselsåret).
-- period: maaned month stock
-- rows: kommunekode
-- rollup: klynge, regionskode
-- cols: aldersgruppe
-- counts: indbyggere
-- describe: aldersgruppe = Aldersgruppe (alder nået i månedens år); 'I alt' = alle aldre | Age group (age reached in the month's year); 'I alt' = all ages
-- describe: indbyggere = Borgere med bopæl i kommunen ved månedens udgang (befolkningsregistret) | Residents of the municipality at the month's end (population register)
-- At each month's end: the residents of each municipality by age group, the population
-- denominator of the other marts' municipality rows (same municipality and month). A
-- stock: each month is checked against the others before it is published.
WITH beboere AS (
    SELECT p.periode, b.person_id, b.kommunekode,
           EXTRACT(YEAR FROM p.periode_slut) - d.birth_year AS alder
    FROM person_bopael b
    JOIN perioder p ON b.gyldig_fra <= p.periode_slut
     AND (b.gyldig_til IS NULL OR b.gyldig_til >= p.periode_slut)
    JOIN dim_person d ON d.person_id = b.person_id
    WHERE b.kilde = 'cpr'
      AND (d.doedsdato IS NULL OR d.doedsdato > p.periode_slut)
      AND (d.udvandret_dato IS NULL OR d.udvandret_dato > p.periode_slut)
),
tal AS (
    SELECT periode AS maaned, kommunekode,
           CASE WHEN alder < 18 THEN '0-17'
                WHEN alder < 65 THEN '18-64'
                WHEN alder < 80 THEN '65-79'
                ELSE '80+' END AS aldersgruppe,
           COUNT(DISTINCT person_id) AS indbyggere
    FROM beboere
    GROUP BY periode, kommunekode,
             CASE WHEN alder < 18 THEN '0-17'
                  WHEN alder < 65 THEN '18-64'
                  WHEN alder < 80 THEN '65-79'
                  ELSE '80+' END
)
-- Each municipality's health cluster and region in the period (at its last day): the
-- groups the table is also published for, protected with their members.
SELECT t.*, g.klynge, g.regionskode
FROM tal t
JOIN perioder p ON p.periode = t.maaned
LEFT JOIN dim_geografi g ON g.kommunekode = t.kommunekode
 AND p.periode_slut BETWEEN g.gyldig_fra AND g.gyldig_til
