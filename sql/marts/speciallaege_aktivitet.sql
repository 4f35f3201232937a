-- mart: speciallaege_aktivitet
-- title: Aktivitet hos praktiserende speciallæger
-- rows: regionskode
-- cols: speciale
-- counts: kontakter, patienter
-- Contacts with practising specialists and the number of distinct patients, per region of
-- the patient's residence and specialty.
SELECT COALESCE(p.regionskode, 'ukendt') AS regionskode, k.speciale,
       COUNT(*) AS kontakter,
       COUNT(DISTINCT k.person_id) AS patienter
FROM speciallaege_kontakt_current k
LEFT JOIN dim_person p ON p.person_id = k.person_id
GROUP BY COALESCE(p.regionskode, 'ukendt'), k.speciale
