-- mart: rehab_effekt
-- title: Genoptræning efter §140: afsluttede forløb og efterfølgende kontakter
-- rows: kommunekode
-- cols: kvartal
-- counts: forloeb_afsluttet, akut_hospital_30d, akut_hospital_90d, almen_praksis_30d, almen_praksis_90d
-- rates: andel_akut_hospital_30d = akut_hospital_30d / forloeb_afsluttet
-- rates: andel_akut_hospital_90d = akut_hospital_90d / forloeb_afsluttet
-- rates: andel_almen_praksis_30d = almen_praksis_30d / forloeb_afsluttet
-- rates: andel_almen_praksis_90d = almen_praksis_90d / forloeb_afsluttet
-- §140 rehabilitation courses (pathways) that ended, per municipality and quarter of the
-- end date, and how many of those citizens had an acute hospital contact (LPR, ATA1) or
-- a GP contact within 30 and 90 days after the course ended. Portable SQL (DataFusion, Athena).
WITH forloeb AS (
    SELECT DISTINCT person_id, kommunekode, slutdato,
           CAST(EXTRACT(YEAR FROM slutdato) AS VARCHAR) || '-Q' || CAST(EXTRACT(QUARTER FROM slutdato) AS VARCHAR) AS kvartal
    FROM kommune_indsats_current
    WHERE lovgrundlag = '§140' AND type = 'pathway' AND status = 'completed'
      AND slutdato IS NOT NULL AND person_id IS NOT NULL
),
hospital AS (
    SELECT f.person_id, f.slutdato,
           MAX(CASE WHEN l.dato_start > f.slutdato AND l.dato_start <= f.slutdato + INTERVAL '30' DAY THEN 1 ELSE 0 END) AS d30,
           MAX(CASE WHEN l.dato_start > f.slutdato AND l.dato_start <= f.slutdato + INTERVAL '90' DAY THEN 1 ELSE 0 END) AS d90
    FROM forloeb f
    LEFT JOIN lpr_kontakt_current l ON l.person_id = f.person_id AND l.prioritet = 'ATA1'
    GROUP BY f.person_id, f.slutdato
),
praksis AS (
    SELECT f.person_id, f.slutdato,
           MAX(CASE WHEN k.kontaktdato > f.slutdato AND k.kontaktdato <= f.slutdato + INTERVAL '30' DAY THEN 1 ELSE 0 END) AS d30,
           MAX(CASE WHEN k.kontaktdato > f.slutdato AND k.kontaktdato <= f.slutdato + INTERVAL '90' DAY THEN 1 ELSE 0 END) AS d90
    FROM forloeb f
    LEFT JOIN almenpraksis_kontakt_current k ON k.person_id = f.person_id
    GROUP BY f.person_id, f.slutdato
)
SELECT f.kommunekode, f.kvartal,
       COUNT(*) AS forloeb_afsluttet,
       SUM(h.d30) AS akut_hospital_30d,
       SUM(h.d90) AS akut_hospital_90d,
       SUM(g.d30) AS almen_praksis_30d,
       SUM(g.d90) AS almen_praksis_90d
FROM forloeb f
JOIN hospital h ON h.person_id = f.person_id AND h.slutdato = f.slutdato
JOIN praksis g ON g.person_id = f.person_id AND g.slutdato = f.slutdato
GROUP BY f.kommunekode, f.kvartal
