//! Vejledningen på dansk (the guide in Danish, the primary language).

use std::fmt::Write;

use super::{
    Label, Rule, Section, Words, delivered, receipt_key_shape, supplier_table, with_column,
};
use crate::contract::{Encoding, FileFormat, Registry};
use crate::layout::LANDING_SHAPE;
use crate::quality::rules::{Cadence, DeadlineFrom, ExpectedUnits, Reception};
use crate::receipt::MAX_PROBLEMS;

pub(super) struct Da;

fn cadence(c: Cadence) -> &'static str {
    match c {
        Cadence::Daily => "hver dag",
        Cadence::Weekly => "hver uge",
        Cadence::Monthly => "hver måned",
    }
}

impl Words for Da {
    fn preamble(&self, s: &mut String) {
        s.push_str(
            "# Indberetningsvejledning for naerdata\n\n\
             Vejledningen er dannet ud fra datasættenes kontrakter (`contracts/*.yaml`, ODCS v3) \
             med `naerdata contracts docs`. Ret ikke i den i hånden: ret kontrakten. Vejledningen \
             findes også på engelsk (`naerdata contracts docs --lang en`).\n\n",
        );
    }

    fn heading(&self, section: Section) -> &'static str {
        match section {
            Section::Deliver => "Sådan leverer I",
            Section::Scope => "Hvilke personer og poster skal med",
            Section::Versions => "Ændringsleverancer, fulde udtræk og første historiske indlæsning",
            Section::Upload => "Adgang og upload",
            Section::Receipt => "Kvitteringen",
            Section::NothingToReport => "En dag uden noget at indberette",
            Section::Cpr => "CPR-numre: kun i CPR-kolonnen",
            Section::TakingBack => "Rettelser og tilbagekaldelse",
            Section::Reference => "Referencedata og kodelister",
            Section::ContractChanges => "Ændringer i kontrakterne",
            Section::Contact => "Kontakt",
            Section::Datasets => "Datasæt",
        }
    }

    fn section(&self, s: &mut String, section: Section, registry: &Registry) {
        let see = |section: Section| format!("*{}*", self.heading(section));
        match section {
            Section::Deliver => {
                let _ = writeln!(
                    s,
                    "- Upload hver fil til `{LANDING_SHAPE}` i modtagebucketten (landing), se \
                     {upload}. Datoen er leveringsdagen, dvs. den dag, leverancen gælder for: data for \
                     3. marts, der sendes for sent, lægges stadig under `2026-03-03`. En `.gz`-fil \
                     pakkes ud ved modtagelsen.\n\
                     - Kontrollér en fil, før I sender den: `naerdata validate --dataset \
                     <source>.<dataset> [--date <yyyy-mm-dd>] FIL` udskriver den kvittering, filen \
                     ville få (returkode 0 = godkendt, 2 = afvist). Værktøjet kontrollerer mod \
                     de kontrakter, der er bygget ind i jeres version af værktøjet.\n\
                     - Hver levering får en kvittering (se {receipt}) med udfaldet `ok`, `warning` \
                     eller `rejected`, antal rækker og op til {MAX_PROBLEMS} fejl og advarsler (linje, \
                     kolonne, regel, meddelelse); resten tælles med.\n\
                     - En fil, der ikke kan læses som helhed (tom, forkert tegnsæt, en påkrævet kolonne \
                     mangler), afvises med én meddelelse. Ellers udelades rækker med fejl og nævnes i \
                     kvitteringen; er andelen af rækker med fejl større end datasættets \
                     afvisningstærskel, afvises hele leveringen, og intet af den gemmes.\n\
                     - Kolonner, som kontrakten ikke kender, ignoreres og nævnes i kvitteringen \
                     (`ignored_columns`); udfaldet bliver da `warning`.\n\
                     - Sendes nøjagtig samme fil igen, genkendes den (SHA-256) og gemmes kun én gang \
                     (`duplicate`).\n\
                     - En rettelse er en ny række med samme postnøgle og en senere version; den \
                     seneste version gælder (se {taking_back}).\n\
                     - Fristen (under *Forventet* for hvert datasæt) afgør også, hvornår en måned \
                     offentliggøres: statistikken for en måned udkommer, når alle datasæts frister for \
                     måneden er overskredet, og ligger derefter fast. Data eller rettelser for \
                     måneden, der kommer senere, udkommer som en dateret revision af den.\n\
                     - CPR-numre pseudonymiseres ved modtagelsen og står aldrig i kvitteringer. Et \
                     CPR-nummer, der ikke overholder modulus 11, godkendes med en advarsel; et \
                     ulæseligt CPR-nummer gemmes uden pseudonym og nævnes i kvitteringen.\n",
                    upload = see(Section::Upload),
                    receipt = see(Section::Receipt),
                    taking_back = see(Section::TakingBack),
                );
            }
            Section::Scope => {
                let _ = writeln!(
                    s,
                    "Hver række (for KL Gateway: hver bundle) vedrører én person, som identificeres \
                     ved CPR-nummeret i datasættets CPR-kolonne. En person med erstatningsnummer (dag \
                     + 60) eller eCPR-nummer medtages med det nummer. Et CPR-nummer uden modulus 11 er \
                     gyldigt (sådanne numre er udstedt siden 2007) og giver kun en advarsel. Det skal \
                     de enkelte kilder sende:\n\n\
                     - **Almen praksis** (`almenpraksis`: {ap}), fra indberetningsmotoren på PLSP: \
                     patienter med en diagnose inden for de fem kroniske sygdomsområder — type \
                     2-diabetes (ICPC-2 `T90`), KOL (`R95`), astma (`R96`), hjertesvigt (`K77`) og \
                     atrieflimren (`K78`). Kodelisten omfatter også de nært beslægtede koder, der står \
                     under `almenpraksis.diagnose`. Én række pr. diagnoseregistrering; for de samme \
                     patienter én række pr. afregnet kontakt, hvis ydelseskode (`ydelseskode`) står i \
                     kodelisten, og én række pr. laboratoriesvar, hvis NPU-kode står i kodelisten (fx \
                     HbA1c `NPU27300`).\n\
                     - **Praktiserende speciallæger** (`speciallaege`: {sl}), fra Sentinel: én række \
                     pr. kontakt og én række pr. diagnose givet ved en kontakt (SKS-kode, `A` \
                     behandlingsdiagnose, `B` bidiagnose), knyttet til kontakten med `kontakt_id`. \
                     Kontrakterne afgrænser ikke patienter eller specialer yderligere.\n\
                     - **Kommuner** (`kommune`: {kl}), gennem KL Gateway: borgere med kommunale \
                     registreringer efter sundhedslovens § 138 (sygepleje), § 119 (forebyggelse) og \
                     § 140 (genoptræning) og servicelovens § 83 (personlig og praktisk hjælp; § 86 \
                     genoptræning og vedligeholdelsestræning). Én FHIR-bundle af typen `collection` \
                     pr. borger pr. dag med præcis én Patient (CPR-nummeret og kommunens SOR-kode) og \
                     alt, hvad der er registreret eller ændret for borgeren siden sidste rapport. \
                     Platformen læser Condition, CarePlan, Procedure, Encounter, Observation for \
                     opfølgning (SNOMED CT `712744002`) og ServiceRequest (henvisninger efter § 119 og \
                     § 140); andre Observations gemmes ikke. De øvrige `kommune.*`-tabeller dannes ud \
                     fra bundlerne og leveres ikke selvstændigt. Den accepterede opbygning er beskrevet \
                     i `docs/kl-gateway-input.md`.\n\
                     - **LPR** (`lpr`: {lpr}), leveres af Sundhedsdatastyrelsen selv til samkøring: \
                     hospitalskontakter og deres diagnoser, opbygget som LPR3-forskningstabellerne \
                     `kontakter` og `diagnoser`, med CPR-nummeret i stedet for forskningspseudonymet. \
                     Kontrakterne afgrænser ikke udtrækket yderligere.\n\
                     - **CPR** (`cpr`: {cpr}), leveres af Sundhedsdatastyrelsen fra CPR-registret: \
                     et fuldt udtræk den første i hver måned med én række pr. bopælsperiode i en \
                     kommune (fødselsdato, køn, ind- og udvandring, død) og én række pr. \
                     personnummerskift (gammelt nummer i `cpr`, nyt i `nyt_cpr`). Det er \
                     befolkningen bag nævnerne, og skiftene holder én person til én person, også \
                     når andre leverandører endnu indberetter det gamle nummer. Begge numre \
                     pseudonymiseres ved modtagelsen.\n\n\
                     Send ikke mere, end kontrakten beder om. Navne, adresser, telefonnumre, \
                     e-mailadresser og fritekst har ingen kolonne. En kolonne, som kontrakten ikke \
                     kender, gemmes ikke i datasøen, men filen opbevares, som den er leveret, i \
                     modtagezonen i hele opbevaringsperioden. Udelad derfor sådanne kolonner.\n",
                    ap = delivered(registry, "almenpraksis"),
                    sl = delivered(registry, "speciallaege"),
                    kl = delivered(registry, "kommune"),
                    lpr = delivered(registry, "lpr"),
                    cpr = delivered(registry, "cpr"),
                );
            }
            Section::Versions => {
                let _ = writeln!(
                    s,
                    "Platformen gemmer hver levering, som den er sendt (der tilføjes kun, intet \
                     overskrives), og danner den aktuelle tilstand ud fra hver posts nøgle og version:\n\n\
                     - Hver post identificeres ved datasættets **postnøgle** (rækken *Postnøgle* under \
                     hvert datasæt; for KL Gateway ressourcens id).\n\
                     - Hver post har en **version**: kolonnen i rækken *Version* (fx `registreret`; for \
                     KL Gateway `meta.lastUpdated`) eller, for et datasæt uden versionskolonne, det \
                     tidspunkt, leveringen blev modtaget.\n\
                     - Den aktuelle post er den med den højeste version; har to poster samme version, \
                     gælder den senest modtagne. En post, der sendes igen med samme nøgle og en senere \
                     version, afløser altså den tidligere. En post med en ældre version end den, \
                     platformen allerede har, gemmes i historikken, men ændrer ikke den aktuelle \
                     tilstand.\n\
                     - Send **kun nye og ændrede poster** i de løbende leverancer \
                     (ændringsleverancer). Et fuldt udtræk modtages også, men alle poster i det gemmes \
                     igen, og en post, der **mangler** i et fuldt udtræk, **slettes ikke**: platformen \
                     udleder aldrig en sletning af, at en post mangler. Tilbagekald posten udtrykkeligt \
                     (se {taking_back}).\n\
                     - Samme postnøgle med samme version må kun forekomme én gang i en levering; \
                     gentagelser tælles med i kvalitetstjekket for dublerede nøgler i kvitteringen.\n\
                     - KL Gateway sender én bundle pr. borger pr. dag med det, der er registreret eller \
                     ændret siden sidste rapport; hver ressource versioneres med sit id og \
                     `meta.lastUpdated`.\n\n\
                     **Første historiske indlæsning.** Der er ingen særskilt kanal til historiske data: \
                     de sendes som almindelige leveringer efter samme kontrakt.\n\n\
                     - Læg filerne under den dag, I sender dem. Hændelsesdatoer må ikke ligge efter \
                     leveringsdagen og ikke før kolonnens tidligste dato (reglen `fra ...` under hvert \
                     datasæt).\n\
                     - Del gerne historikken op i flere filer (fx én pr. måned) med forskellige \
                     filnavne. Hver fil er en selvstændig levering med sin egen kvittering, og \
                     afvisningstærsklen gælder for hver fil. En `.gz`-fil må udpakket højst fylde den \
                     størrelse, der står under datasættet.\n\
                     - Har datasættet en versionskolonne, så send hver post med dens rigtige version \
                     (fx `registreret`), så senere rettelser afløser den. Er versionen \
                     modtagelsestidspunktet, vinder en senere levering altid: send derfor historikken \
                     før de løbende leverancer af de samme poster, aldrig efter.\n\
                     - Statistik for måneder, der allerede er offentliggjort, revideres (dateret \
                     revision), når historikken kommer.\n\
                     - Aftal dagen for den første indlæsning med driften (se {contact}).\n",
                    taking_back = see(Section::TakingBack),
                    contact = see(Section::Contact),
                );
            }
            Section::Upload => {
                s.push_str(
                    "Hver leverandør har sin egen IAM-rolle i platformens AWS-konto. Rollen må kun \
                     skrive under leverandørens eget præfiks i modtagebucketten (landing) og kun læse \
                     leverandørens egne kvitteringer:\n\n",
                );
                supplier_table(
                    s,
                    ["Kilde", "Rolle", "Præfiks (landing og kvitteringer)"],
                    "<miljø>",
                );
                let _ = writeln!(
                    s,
                    "- Rollen kan kun antages fra den AWS-konto, I leverer fra (registreret hos \
                     driften), og kun med det ExternalId, der er aftalt med jer (mindst 16 tegn). \
                     Driften oplyser platformens kontonummer, region og miljønavn (`<miljø>`, fx \
                     `prod`), bucketnavnene og nøglens ARN (stakkens outputs `LandingBucket`, \
                     `ReceiptsBucket` og `LandingKey`).\n\
                     - Bucketterne hedder `naerdata-<miljø>-<konto>-<region>-landing` og \
                     `naerdata-<miljø>-<konto>-<region>-receipts`.\n\
                     - Rollen må: `s3:PutObject` under sit præfiks i landing; `s3:GetObject` og \
                     `s3:ListBucket` under sit præfiks i kvitteringsbucketten; og bruge platformens \
                     nøgle til rå data (`kms:GenerateDataKey`, `kms:Decrypt`), men kun gennem S3 og kun \
                     til objekter under sit præfiks. Den kan ikke læse, liste eller slette filer i \
                     landing.\n\
                     - **Kryptering er påkrævet.** Hver upload skal bruge SSE-KMS med netop \
                     platformens nøgle til rå data, angivet med dens fulde ARN (outputtet \
                     `LandingKey`). Bucketpolitikken afviser (AccessDenied) en upload uden \
                     krypteringsheader, med en anden nøgle, med et alias eller et nøgle-id i stedet \
                     for ARN'en eller med SSE-S3. Kun HTTPS er tilladt.\n\
                     - En fil i landing kan hverken slettes eller overskrives: uploades der igen til \
                     samme navn, bliver det en ny version af objektet og dermed en ny levering.\n\n\
                     Med en profil for rollen i `~/.aws/config`:\n\n\
                     ```ini\n\
                     [profile naerdata]\n\
                     role_arn = arn:aws:iam::<konto>:role/naerdata-<miljø>-supplier-almenpraksis\n\
                     external_id = <ExternalId>\n\
                     source_profile = default\n\
                     region = <region>\n\
                     ```\n\n\
                     ser en upload sådan ud:\n\n\
                     ```sh\n\
                     aws s3 cp diagnoser.csv \\\n  \
                     s3://naerdata-<miljø>-<konto>-<region>-landing/almenpraksis/diagnose/2026-03-01/diagnoser.csv \\\n  \
                     --sse aws:kms \\\n  \
                     --sse-kms-key-id arn:aws:kms:<region>:<konto>:key/<nøgle-id> \\\n  \
                     --profile naerdata\n\
                     ```\n\n\
                     `aws s3api put-object` gør det samme (`--server-side-encryption aws:kms \
                     --ssekms-key-id <nøglens ARN>`) og returnerer desuden objektets `VersionId`, som \
                     leverings-id'et beregnes ud fra (se {receipt}).\n",
                    receipt = see(Section::Receipt),
                );
            }
            Section::Receipt => {
                let _ = writeln!(
                    s,
                    "Hver levering får en kvittering i JSON i kvitteringsbucketten under `{key}`, i \
                     jeres eget præfiks.\n\n\
                     - Kvitteringen skrives, når leveringen er behandlet, kort efter upload \
                     (behandlingen sker asynkront). En dublet og en fil, hvis nøgle ikke følger \
                     opbygningen, får kvittering med det samme ved modtagelsen.\n\
                     - Kvitteringens JSON Schema (draft 2020-12) er offentliggjort som \
                     `docs/receipt.schema.json`. De vigtigste felter: `outcome` (`ok`, `warning`, \
                     `rejected`); `state` (`accepted`, `accepted_with_warnings`, `rejected`, \
                     `duplicate`, `retracted`); `reason` (begrundelsen for en afvisning eller en \
                     dublet); `rows` (`read`, `accepted`, `rejected`, `with_warnings`); `problems` \
                     (højst {MAX_PROBLEMS}: `line`, `column`, `rule`, `severity`, `message`) samt \
                     `problems_total` og `problems_by_rule`; `ignored_columns`; `tables` (rækker \
                     skrevet pr. tabel); `quality` (kvalitetstjekkene og dem, der fejlede); \
                     `duplicate_of`; `retraction`; `contract_version`; `reference_versions` (se \
                     {reference}).\n\
                     - En afvist levering gemmer intet: alle dens rækker tælles som afviste.\n\
                     - Kvitteringer opbevares i en periode, der fastsættes for hver installation (som \
                     standard 730 dage). Trækkes en levering tilbage, skrives kvitteringen om (`state` \
                     bliver `retracted`, og `retraction` tilføjes).\n\n\
                     **Find kvitteringen for en bestemt fil.** Kvitteringer er navngivet efter \
                     leverings-id'et, ikke efter filnavnet eller filens SHA-256. Leverings-id'et er de \
                     første 20 hextegn af SHA-256 af objektnøglen, en nul-byte og objektets \
                     S3-versions-id:\n\n\
                     ```sh\n\
                     printf '%s\\0%s' 'almenpraksis/diagnose/2026-03-01/diagnoser.csv' '<VersionId>' | sha256sum | cut -c1-20\n\
                     ```\n\n\
                     `aws s3 cp` viser ikke versions-id'et; det gør `aws s3api put-object`. Uden \
                     versions-id: list `<source>/<dataset>/` i kvitteringsbucketten, og åbn de nyeste \
                     kvitteringer. Jeres er den, hvis `object_key` er den nøgle, I uploadede, og hvis \
                     `sha256` er filens SHA-256 (`sha256sum FIL`); er samme navn sendt flere gange, \
                     skelner `received_at` mellem dem. En fil, hvis navn blev tilbageholdt (det lignede \
                     et CPR-nummer), kan kun findes på denne måde, ved sin `sha256`.\n\n\
                     - En objektnøgle, der ikke følger opbygningen `{LANDING_SHAPE}` (en del mangler, \
                     eller dagen er ikke en dato), får sin afvisningskvittering under `_unrouted/`, som \
                     jeres rolle ikke kan læse: kontakt driften. En nøgle med et ukendt datasæt får \
                     kvittering under jeres præfiks.\n\
                     - `naerdata validate` udskriver den samme kvittering med leverings-id'et \
                     `validate` og en tom `object_key`.\n",
                    key = receipt_key_shape(),
                    reference = see(Section::Reference),
                );
            }
            Section::NothingToReport => {
                let _ = writeln!(
                    s,
                    "- **CSV-datasæt:** Send en fil, der kun indeholder overskriftsrækken (i \
                     datasættets tegnsæt og med dets skilletegn). Den modtages med 0 rækker og \
                     udfaldet `ok`, og dagen tæller som leveret i modtagelseskalenderen.\n\
                     - En fil på 0 byte afvises (`empty_file`): en levering skal mindst have \
                     overskriftsrækken. Det samme gælder en fil uden overskriftsrække.\n\
                     - **Bemærk:** En fil med nøjagtig samme indhold (SHA-256) som en tidligere \
                     levering af samme datasæt er en dublet (`duplicate`), og en dublet tæller ikke \
                     som leveret. En fil med kun overskriftsrækken, der er identisk med en tidligere \
                     sådan fil, er derfor en dublet: kun den første tæller i \
                     modtagelseskalenderen.\n\
                     - En tom fil siger intet om de enkelte indberetningsenheder (klinikker, \
                     hospitalsafdelinger): en enhed, der har leveret før, eller som platformens \
                     register over indberetningsenheder forventer, og som ikke har rækker i en \
                     periode, står som manglende for perioden (se *Forventet* under hvert \
                     datasæt).\n\
                     - **KL Gateway** (`kommune.gateway`): En fil uden bundles afvises (`empty_file`); \
                     der findes ingen tom gateway-levering. En dag uden ændringer sendes der intet, og \
                     dagen står som manglende i modtagelseskalenderen; fristen står under \
                     *Forventet*.\n"
                );
            }
            Section::Cpr => {
                s.push_str(
                    "Et CPR-nummer må kun stå ét sted: i datasættets CPR-kolonne (for KL \
                     Gateway-bundles: Patient-ressourcens CPR-identifikator). Alt andet gennemsøges \
                     for værdier, der ligner et CPR-nummer — ti cifre, hvor de første seks er en dato \
                     (dagen kan være forhøjet med 60 som i erstatningsnumre), med eller uden \
                     skilletegn (`-`, mellemrum, `/`, `.`, tankestreg), og eCPR-formen med bogstaver på 8. og 9. plads — i alle \
                     kolonner, i id'er, koder og fritekst, i FHIR-id'er, -referencer og -koder og i \
                     filnavn og sti.\n\n\
                     - **En CPR-lignende værdi i en anden kolonne** er rækkefejlen \
                     `cpr_in_wrong_column`: rækken gemmes aldrig (i en bundle: hele bundlen). Ti \
                     cifre inde i et længere tal, et UUID eller et hexadecimalt id tæller ikke. En \
                     kolonne, hvis værdier med rette er ticifrede tal, er markeret sådan i sin \
                     kontrakt (`tenDigitNumbers`); dér tæller kun formerne med skilletegn og eCPR.\n\
                     - **En CPR-kolonne, der for en stor del er ubrugelig** (tom, ikke på formen \
                     DDMMÅÅ-SSSS, ikke en dato): overstiger andelen datasættets grænse (*Ubrugelige \
                     CPR-numre* under datasættet), afvises hele leveringen med en meddelelse, der \
                     spørger, om kolonner er byttet om eller forskudt. En sådan levering godkendes \
                     aldrig med advarsler.\n\
                     - **Et CPR-nummer i et filnavn eller en sti:** filen afvises uden at blive \
                     behandlet, og navnet tilbageholdes (erstattes af `withheld-name`) i kvitteringen, \
                     i leveringsregistret, i logfiler og på sider. Omdøb filen, og send den igen.\n\
                     - **Meddelelser citerer aldrig jeres data.** Et problem beskrives ved linje, \
                     kolonne (eller FHIR-sti), regel og værdiens form (længde og slags tegn); slå \
                     værdien op i jeres egen fil. En fil uden overskriftsrække genkendes som sådan \
                     (linje 1 nævner ingen af kontraktens kolonner).\n\n",
                );
            }
            Section::TakingBack => {
                let _ = writeln!(
                    s,
                    "- **En rettelse** er posten sendt igen med samme postnøgle og en senere version \
                     (se {versions}); har datasættet ingen versionskolonne, gælder den senest \
                     modtagne. Den tidligere version bevares i historikken.\n\
                     - **En enkelt post** tilbagekaldes ved at sende den igen, som den var (samme \
                     postnøgle og en senere version, hvor datasættet har en), med kolonnen \
                     `tilbagekaldt` sat til `true` (KL Gateway: ressourcen med status \
                     `entered-in-error`). Historikken beholder begge versioner; de aktuelle tabeller \
                     og statistikken udelader posten. Kolonnen kan udelades i alle andre filer. \
                     Datasæt med kolonnen `tilbagekaldt`: {withdraw}; KL Gateways afledte tabeller har \
                     den som `entered_in_error`: {eie}. Et datasæt uden nogen af dem kan ikke \
                     tilbagekalde en enkelt post ved en levering: send en rettelse, eller bed driften \
                     trække hele leveringen tilbage (se nedenfor).\n\
                     - **En hel levering**, der aldrig burde have været sendt (en anden kliniks fil, et \
                     testudtræk, den forkerte måned), trækkes tilbage af platformen efter anmodning: \
                     skriv til driften med leverings-id'et fra kvitteringen og begrundelsen. \
                     Leveringens rækker forsvinder straks fra alle tabeller, kvitteringen får \
                     tilstanden `retracted` med begrundelsen og antallet af fjernede rækker, og næste \
                     offentliggørelse udelader den. Sendes samme fil igen bagefter, behandles den som \
                     en ny levering og ikke som en dublet.\n\
                     - Rækker, der er taget tilbage, bliver i datasøens historik i \
                     opbevaringsperioden (30 dage), så et tidligere udtræk kan genskabes. Data, der \
                     heller ikke må blive dér, slettes straks efter anmodning.\n",
                    versions = see(Section::Versions),
                    withdraw = with_column(registry, "tilbagekaldt"),
                    eie = with_column(registry, "entered_in_error"),
                );
            }
            Section::Reference => {
                let _ = writeln!(
                    s,
                    "- **CSV-datasæt:** En kolonne med en kodeliste (`en af ...` under datasættet) \
                     tager kun de anførte koder; enhver anden værdi er rækkefejlen `code_list`. \
                     Kodelisterne er en del af kontrakten og ændres sammen med den. SKS-diagnosekoder \
                     i CSV-filer kontrolleres for deres form (mønsteret), ikke mod en SKS-udgave.\n\
                     - **KL Gateway:** Koderne kontrolleres mod de referencelister, platformen har \
                     indlæst: KL-terminologiens FSIII-kodesystem (UUID'erne og de gamle koder som \
                     `J1.1`), kataloget for § 119 og § 140, SKS-diagnoserne (til \
                     henvisningsdiagnoser) og kommunernes SOR-koder. Driften kan indlæse en ny version \
                     af en liste uden en ny platformsversion; den gælder fra den næste levering, der \
                     behandles.\n\
                     - En **velformet** FSIII-kode (et UUID eller en kode som `J1.1`), der **ikke står \
                     i den indlæste liste**, fx fordi den kommer fra en nyere terminologi, godkendes: \
                     rækken gemmes, det område (`omraade`) eller lovgrundlag (`lovgrundlag`), koden \
                     ville give, registreres som `unknown`, og kvitteringen markerer koden med \
                     advarselsreglen `code_not_in_list` på dens kolonne (fx `fsiii_kode`). Det samme \
                     gælder en SKS-henvisningsdiagnose, der mangler i den indlæste SKS-liste (kolonnen \
                     `henvisningsdiagnose`).\n\
                     - En kodning under et andet kodesystem end FSIII (`urn:oid:1.2.208.176.2.21` \
                     eller `http://kl.dk/fhir/common/caresocial/CodeSystem/FSIII`), en kode, der ikke \
                     er velformet, og en kendt FSIII-kode af den forkerte slags (fx en indsatskode, \
                     hvor der ventes en tilstand) er fejl (reglen `code`): bundlen udelades. Det samme \
                     gælder en SOR-kode, der ikke står i den indlæste liste (reglen \
                     `municipality`).\n\
                     - Kvitteringen for en KL Gateway-levering angiver i `reference_versions`, hvilke \
                     versioner leveringen er kontrolleret mod (`sor`, `fsiii`, `catalogue`, `sks`); en \
                     version, der begynder med `builtin-`, er den udgave, der er bygget ind i \
                     platformen.\n\
                     - `naerdata validate` kontrollerer mod de lister, der er bygget ind i jeres \
                     version af værktøjet, og de kan være ældre end dem, platformen har indlæst: en \
                     kode, som værktøjet markerer med `code_not_in_list`, kan være kendt af \
                     platformen. Det er platformens kvittering, der gælder. Se også {changes}.\n",
                    changes = see(Section::ContractChanges),
                );
            }
            Section::ContractChanges => {
                s.push_str(
                    "Hver kontrakt har et versionsnummer (`version`, fx `1.2.0`, vist under hvert \
                     datasæt) og en status (`status`; i dag er alle `active`). Kontrakterne er bygget \
                     ind i platformen og i `naerdata`-værktøjet, og en kontrakt har ingen dato, den \
                     gælder fra: en ny version gælder fra det tidspunkt, hvor driften tager den \
                     platformsversion i brug, der indeholder den, og for alle leveringer, der \
                     behandles derefter — uanset leveringsdagen i nøglen, altså også for en sen \
                     levering for en tidligere dag og for en levering, der behandles igen. \
                     Kvitteringens `contract_version` viser, hvilken version en levering er \
                     kontrolleret efter.\n\n\
                     En ændring forløber derfor sådan:\n\n\
                     1. Driften varsler ændringen til jeres kontaktperson med den nye kontraktversion, \
                     en ny udgave af denne vejledning og den dag, den nye version tages i brug.\n\
                     2. Med varslingen følger en ny udgave af `naerdata`-værktøjet med de nye \
                     kontrakter: kør `naerdata validate` på jeres filer efter den nye version før den \
                     dag.\n\
                     3. Den dag tager driften den nye version i brug. Leveringer, der behandles før, \
                     kontrolleres efter den gamle version, og leveringer, der behandles efter, efter \
                     den nye.\n\n\
                     En kolonne, som kontrakten (endnu) ikke kender, ignoreres og nævnes i kvitteringen \
                     (`ignored_columns`, udfaldet `warning`). En ny kolonne kan derfor sendes, før den \
                     bliver en del af kontrakten.\n\n\
                     Referencelisterne, som KL Gateway-leveringerne kontrolleres mod (FSIII, kataloget \
                     for § 119 og § 140, SKS og SOR), er ikke en del af kontrakterne: driften indlæser \
                     nye versioner af dem uden en ny platformsversion, og en ny version gælder fra den \
                     næste levering, der behandles (se *Referencedata og kodelister*).\n\n",
                );
            }
            Section::Contact => {
                s.push_str(
                    "Driftens funktionspostkasse: `naerdata-drift@<organisation>`. Den konkrete \
                     adresse fastsættes for hver installation og oplyses, når I bliver tilsluttet. \
                     Skriv dertil om adgang (konto, ExternalId, rolle), manglende kvitteringer, \
                     tilbagetrækning af en levering og ændringer i kontrakterne. Oplys altid \
                     leverings-id'et fra kvitteringen (eller objektnøglen) og datasættet. Send aldrig \
                     CPR-numre eller uddrag af jeres filer med e-mail: kvitteringen peger på linje og \
                     kolonne, så I kan finde værdien i jeres egen fil.\n\n",
                );
            }
            Section::Datasets => {
                s.push_str(
                    "Herefter følger hvert datasæt med sti, format og kolonner. Kontrakternes egne \
                     tekster (titel, formål, anvendelse, begrænsninger og kolonnebeskrivelser) \
                     gengives, som de står i kontrakten, og er for de flestes vedkommende på engelsk. \
                     Et afledt datasæt leveres ikke selvstændigt: det dannes ud fra KL \
                     Gateway-leveringerne.\n\n",
                );
            }
        }
    }

    fn label(&self, label: Label) -> &'static str {
        match label {
            Label::Purpose => "Formål",
            Label::Usage => "Anvendelse",
            Label::Limitations => "Begrænsninger",
            Label::Path => "Sti",
            Label::Format => "Format",
            Label::Encoding => "Tegnsæt",
            Label::DecimalSeparator => "Decimaltegn",
            Label::RecordKey => "Postnøgle",
            Label::UnusableCpr => "Ubrugelige CPR-numre",
            Label::Version => "Version",
            Label::EventDate => "Hændelsesdato (opdeler datasøen)",
            Label::ReportingUnit => "Indberetningsenhed",
            Label::CprColumn => "CPR-kolonne",
            Label::BirthDateColumn => "Fødselsdato-kolonne",
            Label::Expected => "Forventet",
            Label::Quality => "Kvalitetstjek (højst % af rækkerne, ellers FAIL i kvitteringen)",
            Label::RejectThreshold => "Afvisningstærskel",
            Label::MaxDecompressed => "Største udpakkede størrelse (.gz)",
            Label::Extracts => "Forskningsudtræk må indeholde",
            Label::Table => "Tabel",
            Label::Column => "Kolonne",
            Label::Type => "Type",
            Label::Required => "Påkrævet",
            Label::Rules => "Regler",
            Label::Example => "Eksempel",
            Label::Description => "Beskrivelse",
        }
    }

    fn decimal_comma(&self) -> bool {
        true
    }

    fn contract_line(&self, title: &str, version: &str, status: &str) -> String {
        format!("**{title}** — kontraktversion {version} ({status})")
    }

    fn format(&self, format: &FileFormat) -> String {
        match format {
            FileFormat::Csv { delimiter } => {
                format!(
                    "CSV med overskriftsrække, skilletegn `{}`",
                    *delimiter as char
                )
            }
            FileFormat::Ndjson => "NDJSON (ét JSON-objekt pr. linje)".into(),
            FileFormat::Fhir { tables } => format!(
                "FHIR R4-bundles af typen collection, én pr. linje (NDJSON), eller én bundle pr. \
                 fil; se docs/kl-gateway-input.md. Hver bundle fordeles på {}",
                tables
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FileFormat::Derived { from } => {
                format!("leveres ikke selvstændigt: dannes ud fra leveringer af `{from}`")
            }
        }
    }

    fn encoding(&self, encoding: Encoding) -> &'static str {
        match encoding {
            Encoding::Utf8 => "UTF-8 (BOM er tilladt; andre tegnsæt afvises)",
            Encoding::Windows1252 => "windows-1252 (en UTF-8-fil med BOM læses også korrekt)",
        }
    }

    fn received_at(&self) -> &'static str {
        "det tidspunkt, leveringen blev modtaget"
    }

    fn unusable_cpr(&self, percent: &str) -> String {
        format!("mere end {percent} % af rækkerne (bundlerne) afviser leveringen")
    }

    fn cpr_column(&self, name: &str) -> String {
        format!("`{name}` (pseudonymiseres ved modtagelsen)")
    }

    fn birth_date_column(&self, name: &str) -> String {
        format!("`{name}` (kontrolleres; kun år og måned gemmes)")
    }

    fn expected(&self, r: &Reception) -> String {
        let units = match r.units {
            ExpectedUnits::Kommuner => "hver af de 98 kommuner",
            ExpectedUnits::Seen => {
                "hver indberetningsenhed, der har leveret før eller står i registret over \
                 indberetningsenheder,"
            }
        };
        let after = match r.deadline.after {
            DeadlineFrom::PeriodEnd => "periodens udløb",
            DeadlineFrom::MonthEnd => "månedens udløb",
        };
        format!(
            "en levering {} (senest {} dag(e) efter perioden); {units} {}; for sent, når den \
             kommer mere end {} dag(e) efter {after}",
            cadence(r.cadence),
            r.grace_days,
            cadence(r.unit_cadence.unwrap_or(r.cadence)),
            r.deadline.days
        )
    }

    fn quality(&self, t: [&str; 4]) -> String {
        format!(
            "fuldstændighed {} %, konformitet {} %, plausibilitet {} %, dublerede nøgler {} %",
            t[0], t[1], t[2], t[3]
        )
    }

    fn reject_threshold(&self, percent: &str) -> String {
        format!("{percent} % af rækkerne")
    }

    fn extracts(&self, columns: &str) -> String {
        format!(
            "{columns} (identifikatorer omnøgles pr. projekt, tidspunkter bliver til datoer; \
             aldrig CPR-nummeret)"
        )
    }

    fn rule(&self, rule: Rule<'_>) -> String {
        match rule {
            Rule::Pattern(p) => format!("mønster `{p}`"),
            Rule::MaxLength(n) => format!("højst {n} tegn"),
            Rule::From(d) => format!("fra {d}"),
            Rule::NotAfterDelivery => "ikke efter leveringsdagen".into(),
            Rule::TenDigitNumbers => {
                "ticifrede tal er tilladt (kun CPR-former med skilletegn afvises)".into()
            }
            Rule::Range(min, max) => format!("interval {min}..{max}"),
            Rule::Identifier(space) => format!("identifikator (`{space}`)"),
            Rule::OneOf(system, codes) => match system {
                Some(system) => format!("en af {system}: {codes}"),
                None => format!("en af {codes}"),
            },
        }
    }

    fn yes_no(&self, yes: bool) -> &'static str {
        if yes { "ja" } else { "nej" }
    }

    fn description<'f>(&self, f: &'f crate::contract::Field) -> &'f str {
        if f.description_da.is_empty() {
            &f.description
        } else {
            &f.description_da
        }
    }
}
