-- mart: kroniske_patienter
-- title: Borgere med kronisk sygdom i almen praksis og kommunal pleje
-- rows: kommunekode
-- cols: sygdomsomraade
-- counts: borgere, med_hjemmepleje, med_sygepleje
-- rates: andel_med_hjemmepleje = med_hjemmepleje / borgere
-- rates: andel_med_sygepleje = med_sygepleje / borgere
-- Citizens with each of the GP disease areas, per municipality of residence (from the
-- person dimension), and how many of them have a current home-care (§83) or nursing
-- (§138) intervention. A citizen counts once per disease area.
WITH syge AS (
    SELECT DISTINCT d.person_id, d.sygdomsomraade, p.kommunekode
    FROM almenpraksis_diagnose_current d
    JOIN dim_person p ON p.person_id = d.person_id
    WHERE d.person_id IS NOT NULL AND p.kommunekode IS NOT NULL
),
pleje AS (
    SELECT person_id,
           MAX(CASE WHEN lovgrundlag = '§83' THEN 1 ELSE 0 END) AS hjemmepleje,
           MAX(CASE WHEN lovgrundlag = '§138' THEN 1 ELSE 0 END) AS sygepleje
    FROM kommune_indsats_current
    WHERE type IN ('planned', 'completed') AND person_id IS NOT NULL
    GROUP BY person_id
)
SELECT s.kommunekode, s.sygdomsomraade,
       COUNT(*) AS borgere,
       SUM(COALESCE(pl.hjemmepleje, 0)) AS med_hjemmepleje,
       SUM(COALESCE(pl.sygepleje, 0)) AS med_sygepleje
FROM syge s
LEFT JOIN pleje pl ON pl.person_id = s.person_id
GROUP BY s.kommunekode, s.sygdomsomraade
