-- mart: faelles_patienter
-- title: Fælles patienter: almen praksis og kommune (dialogværktøj)
-- rows: ydernummer
-- cols: kommunekode
-- counts: patienter_med_kommunal_pleje, med_hospitalskontakt
-- rates: andel_med_hospitalskontakt = med_hospitalskontakt / patienter_med_kommunal_pleje
-- Per GP clinic and municipality: the clinic's patients (a contact in the 12 months before
-- the reference date) who receive municipal care, and how many of them had a hospital
-- contact in the same 12 months.
WITH patienter AS (
    SELECT DISTINCT k.person_id, k.ydernummer
    FROM almenpraksis_kontakt_current k, params
    WHERE k.person_id IS NOT NULL
      AND k.kontaktdato > params.reference_date - INTERVAL '365' DAY
      AND k.kontaktdato <= params.reference_date
),
pleje AS (
    SELECT DISTINCT person_id, kommunekode
    FROM kommune_indsats_current
    WHERE type IN ('planned', 'completed') AND person_id IS NOT NULL
),
hospital AS (
    SELECT DISTINCT l.person_id
    FROM lpr_kontakt_current l, params
    WHERE l.dato_start > params.reference_date - INTERVAL '365' DAY
      AND l.dato_start <= params.reference_date
)
SELECT p.ydernummer, pl.kommunekode,
       COUNT(*) AS patienter_med_kommunal_pleje,
       SUM(CASE WHEN h.person_id IS NULL THEN 0 ELSE 1 END) AS med_hospitalskontakt
FROM patienter p
JOIN pleje pl ON pl.person_id = p.person_id
LEFT JOIN hospital h ON h.person_id = p.person_id
GROUP BY p.ydernummer, pl.kommunekode
