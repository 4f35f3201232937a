-- mart: faelles_patienter
-- title: Fælles patienter: almen praksis og kommune (dialogværktøj)
-- caveat: GP contacts are reported for chronic patients only (the five disease areas): a clinic's patients here are its chronic patients.
-- forbehold: Kontakter i almen praksis indberettes kun for kroniske patienter (de fem sygdomsområder): en praksis' patienter her er dens kroniske patienter.
-- period: maaned month stock
-- rows: kommunekode
-- rollup: klynge, regionskode
-- cols: ydernummer
-- counts: patienter_med_kommunal_pleje, med_hospitalskontakt
-- nested: med_hospitalskontakt < patienter_med_kommunal_pleje
-- rates: andel_med_hospitalskontakt = med_hospitalskontakt / patienter_med_kommunal_pleje
-- describe: ydernummer = Lægepraksis (ydernummer); 'I alt' = alle praksis | GP clinic (provider number); 'I alt' = all clinics
-- describe: kommunekode = Borgerens kommune (plejen); klyngens navn eller regionskoden (se niveau); 'I alt' = hele landet | The citizen's municipality (of the care); the cluster's name or the region code (see niveau); 'I alt' = the country
-- describe: patienter_med_kommunal_pleje = Praksissens patienter (seneste 12 måneder) med kommunal pleje i måneden | The clinic's patients (last 12 months) with municipal care in the month
-- describe: med_hospitalskontakt = Heraf med en hospitalskontakt i måneden | Of them, with a hospital contact in the month
-- Per municipality and GP clinic, for the 12 months up to each month's end: the clinic's
-- patients (a contact in those months) who received municipal care in them, and how many of
-- them had a hospital contact in the same months. A stock (overlapping windows): each month
-- is checked against the others before it is published. `perioder` lists the months.
WITH patienter AS (
    SELECT DISTINCT p.periode, k.person_id, k.ydernummer
    FROM almenpraksis_kontakt_current k
    JOIN perioder p ON k.kontaktdato > p.periode_slut - INTERVAL '365' DAY
     AND k.kontaktdato <= p.periode_slut
    WHERE k.person_id IS NOT NULL
),
pleje AS (
    SELECT DISTINCT p.periode, i.person_id, i.kommunekode
    FROM kommune_indsats_current i
    JOIN perioder p ON i.startdato <= p.periode_slut
     AND CASE WHEN i.slutdato IS NOT NULL THEN i.slutdato
              WHEN i.type = 'planned' THEN p.periode_slut
              ELSE i.startdato END > p.periode_slut - INTERVAL '365' DAY
    WHERE i.type IN ('planned', 'completed') AND i.person_id IS NOT NULL
),
hospital AS (
    SELECT DISTINCT p.periode, l.person_id
    FROM lpr_kontakt_current l
    JOIN perioder p ON l.dato_start > p.periode_slut - INTERVAL '365' DAY
     AND l.dato_start <= p.periode_slut
),
tal AS (
    SELECT pa.periode AS maaned, pl.kommunekode, pa.ydernummer,
           COUNT(*) AS patienter_med_kommunal_pleje,
           SUM(CASE WHEN h.person_id IS NULL THEN 0 ELSE 1 END) AS med_hospitalskontakt
    FROM patienter pa
    JOIN pleje pl ON pl.person_id = pa.person_id AND pl.periode = pa.periode
    LEFT JOIN hospital h ON h.person_id = pa.person_id AND h.periode = pa.periode
    GROUP BY pa.periode, pa.ydernummer, pl.kommunekode
)
-- Each municipality's health cluster and region in the period (at its last day): the
-- groups the table is also published for, protected with their members.
SELECT t.*, g.klynge, g.regionskode
FROM tal t
JOIN perioder p ON p.periode = t.maaned
LEFT JOIN dim_geografi g ON g.kommunekode = t.kommunekode
 AND p.periode_slut BETWEEN g.gyldig_fra AND g.gyldig_til
