//! The population register of a generated population, as the data authority extracts
//! it from CPR (`cpr.befolkning`, `cpr.personnummerskift`): residence periods with
//! earlier moves, immigration, emigration and deaths, and a few persons given a new
//! CPR number (a legal change of sex) whom GP systems still report under the old one.

use chrono::{Datelike, Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{GenerateOptions, Person, kommuner, synthetic_cpr};

/// One period of residence.
#[derive(Debug, Clone)]
struct Residence {
    person: usize,
    kommune: usize,
    from: NaiveDate,
    /// Last day, when the period ended before the generated days began.
    to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Life {
    immigrated: Option<NaiveDate>,
    emigrated: Option<NaiveDate>,
    died: Option<NaiveDate>,
}

/// A CPR number change: the person, the day.
#[derive(Debug, Clone)]
struct Change {
    person: usize,
    old: String,
    day: NaiveDate,
}

pub struct Register {
    residences: Vec<Residence>,
    lives: Vec<Life>,
    changes: Vec<Change>,
}

/// One person in this many (at least one) is given a new CPR number before the
/// generated days.
const CHANGE_EVERY: usize = 400;

impl Register {
    /// Draws the register for `people` and gives the persons who change number their
    /// new one (`cpr`, with the other sex) and their old one (`former_cpr`).
    pub fn new(people: &mut [Person], opts: &GenerateOptions) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x00C9_F00D);
        let n_kommuner = kommuner().len();
        let start = opts.start;
        let last = start + Duration::days(i64::from(opts.days.max(1)) - 1);
        let mut residences = Vec::with_capacity(people.len() * 5 / 4);
        let mut lives = Vec::with_capacity(people.len());
        for (i, p) in people.iter().enumerate() {
            let mut life = Life::default();
            let mut from = p.birth;
            if rng.random_bool(0.08) {
                let span = (start - p.birth).num_days().max(2);
                let arrived = p.birth + Duration::days(rng.random_range(1..span));
                life.immigrated = Some(arrived);
                from = arrived;
            }
            // An earlier municipality, left before the generated days.
            if rng.random_bool(0.25) && (start - from).num_days() > 2 {
                let moved = from + Duration::days(rng.random_range(1..(start - from).num_days()));
                let mut k = rng.random_range(0..n_kommuner);
                if k == p.kommune {
                    k = (k + 1) % n_kommuner;
                }
                residences.push(Residence {
                    person: i,
                    kommune: k,
                    from,
                    to: Some(moved - Duration::days(1)),
                });
                from = moved;
            }
            let age = start.year() - p.birth.year();
            if age > 70 && rng.random_bool(0.01) {
                life.died =
                    Some(start + Duration::days(rng.random_range(0..=(last - start).num_days())));
            } else if rng.random_bool(0.005) {
                life.emigrated =
                    Some(start + Duration::days(rng.random_range(0..=(last - start).num_days())));
            }
            residences.push(Residence {
                person: i,
                kommune: p.kommune,
                from,
                to: None,
            });
            lives.push(life);
        }
        let mut changes = Vec::new();
        let mut taken: std::collections::HashSet<String> =
            people.iter().map(|p| p.cpr.clone()).collect();
        // At least one in any population big enough to look at.
        let wanted = (people.len() / CHANGE_EVERY).max(usize::from(people.len() >= 50));
        for _ in 0..wanted {
            let i = rng.random_range(0..people.len());
            if people[i].former_cpr.is_some() || lives[i].died.is_some() {
                continue;
            }
            let p = &mut people[i];
            let new = loop {
                let c = synthetic_cpr(&mut rng, p.birth, !p.female);
                if taken.insert(c.clone()) {
                    break c;
                }
            };
            let day = start - Duration::days(rng.random_range(30..700));
            let old = std::mem::replace(&mut p.cpr, new);
            p.female = !p.female;
            p.former_cpr = Some(old.clone());
            changes.push(Change {
                person: i,
                old,
                day,
            });
        }
        Register {
            residences,
            lives,
            changes,
        }
    }

    /// The register is extracted on the first of each month, and on the first
    /// generated day whatever its date (so every generated lake has a population).
    pub fn extract_due(day: NaiveDate, index: u32) -> bool {
        index == 0 || day.day() == 1
    }

    /// The two files of the extract made on `day`: (dataset, CSV text). What happens
    /// on a day is in the extracts made after it.
    pub fn extract(&self, people: &[Person], day: NaiveDate) -> Vec<(&'static str, String)> {
        let k = kommuner();
        let known = |d: Option<NaiveDate>| d.filter(|d| *d < day);
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let mut bef = String::from(
            "bopael_id;cpr;foedselsdato;koen;kommunekode;bopael_fra;bopael_til;\
             indvandret_dato;udvandret_dato;doedsdato;udtraeksdato\n",
        );
        for (n, r) in self.residences.iter().enumerate() {
            let p = &people[r.person];
            let life = &self.lives[r.person];
            let ended = known(life.died).or(known(life.emigrated));
            let to = r.to.or(ended);
            bef.push_str(&format!(
                "{};{};{};{};{};{};{};{};{};{};{day}\n",
                3_000_000_000u64 + n as u64,
                p.cpr,
                p.birth,
                if p.female { "K" } else { "M" },
                k[r.kommune].code,
                r.from,
                date(to),
                date(life.immigrated),
                date(known(life.emigrated)),
                date(known(life.died)),
            ));
        }
        let mut skift = String::from("skift_id;cpr;nyt_cpr;skiftedato\n");
        for (n, c) in self.changes.iter().enumerate() {
            if c.day < day {
                skift.push_str(&format!(
                    "{};{};{};{}\n",
                    4_000_000_000u64 + n as u64,
                    c.old,
                    people[c.person].cpr,
                    c.day
                ));
            }
        }
        vec![("cpr.befolkning", bef), ("cpr.personnummerskift", skift)]
    }

    /// How many persons were given a new number (for tests and the demo's summary).
    pub fn changes(&self) -> usize {
        self.changes.len()
    }
}
