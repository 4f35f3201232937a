-- mart: speciallaege_aktivitet
-- title: Aktivitet hos praktiserende speciallæger
-- period: maaned month
-- rows: regionskode
-- cols: speciale
-- counts: kontakter, patienter
-- persons: kontakter = patienter
-- describe: regionskode = Regionen, klinikken ligger i; 'I alt' = hele landet | The clinic's region; 'I alt' = the whole country
-- describe: speciale = Speciale; 'I alt' = alle specialer | Specialty; 'I alt' = all specialties
-- describe: kontakter = Kontakter hos praktiserende speciallæger i måneden | Contacts with practising specialists in the month
-- describe: patienter = Forskellige patienter bag kontakterne | Distinct patients behind the contacts
-- Contacts with practising specialists in the month and the distinct patients behind them,
-- per region of the patient's residence at the month's end (`person_bopael`) and specialty. Contacts are
-- events: they are published only where at least 5 patients are behind them. Contacts of
-- persons without a usable CPR are left out. `perioder` lists the months.
WITH bopael AS (
    SELECT p.periode, b.person_id, b.kommunekode
    FROM person_bopael b
    JOIN perioder p ON b.gyldig_fra <= p.periode_slut
     AND (b.gyldig_til IS NULL OR b.gyldig_til >= p.periode_slut)
)
SELECT p.periode AS maaned, COALESCE(g.regionskode, 'ukendt') AS regionskode, k.speciale,
       COUNT(*) AS kontakter,
       COUNT(DISTINCT k.person_id) AS patienter
FROM speciallaege_kontakt_current k
JOIN perioder p ON k.kontaktdato BETWEEN p.periode_start AND p.periode_slut
LEFT JOIN bopael b ON b.person_id = k.person_id AND b.periode = p.periode
LEFT JOIN dim_geografi g ON g.kommunekode = b.kommunekode
 AND p.periode_slut BETWEEN g.gyldig_fra AND g.gyldig_til
WHERE k.person_id IS NOT NULL
GROUP BY p.periode, COALESCE(g.regionskode, 'ukendt'), k.speciale
