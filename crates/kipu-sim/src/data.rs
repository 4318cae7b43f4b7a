//! Deterministic synthetic data, generated lazily from `(seed, index)`.
//!
//! Nothing is stored per patient: every record is a pure function of the seed, the patient index
//! and the record's slot, so 100,000 patients cost no memory and no start-up time, and a census
//! page is computed from an index range. Global lists (all vital signs of all patients) use a
//! prefix sum of per-patient counts, built once on first use (4 bytes per patient per kind).
//!
//! "Today" for the data is a fixed date ([`ANCHOR`]), never the wall clock, so the same seed
//! gives byte-identical responses on any day.

use std::sync::OnceLock;

use chrono::{Duration as Days, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value, json};

use crate::dict;

/// The simulator's "today" (data is dated relative to it).
pub(crate) const ANCHOR: (i32, u32, u32) = (2025, 6, 30);

/// The simulator's "today" as a date.
pub(crate) fn anchor_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(ANCHOR.0, ANCHOR.1, ANCHOR.2).unwrap_or_default()
}

/// Casefile numbers start here (`1000:<uuid>` is patient index 0).
const CASEFILE_BASE: u64 = 1000;
/// Per-patient record ids are `(index + 1) * SLOTS + slot`.
const SLOTS: u64 = 64;
/// How many group sessions, users, providers exist (fixed, not per patient).
pub(crate) const GROUP_SESSIONS: u64 = 24;
pub(crate) const USERS: u64 = 40;
pub(crate) const PROVIDERS: u64 = 16;

fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several words; used for fault decisions as well as data.
pub(crate) fn hash_words(words: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for w in words {
        h = fmix(h ^ fmix(w.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    }
    h
}

/// A hash of bytes (FNV-1a folded through `fmix`), for request targets.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    fmix(h)
}

/// A small deterministic stream of random numbers for one record.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, kind: u64, a: u64, b: u64) -> Self {
        Self(hash_words(&[seed, kind, a, b]))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        fmix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn weighted<'a>(
        &mut self,
        items: &'a [(&'a str, &'a str, u32)],
    ) -> &'a (&'a str, &'a str, u32) {
        let total: u64 = items.iter().map(|i| u64::from(i.2)).sum();
        let mut r = self.below(total);
        for item in items {
            if r < u64::from(item.2) {
                return item;
            }
            r -= u64::from(item.2);
        }
        &items[0]
    }
}

/// Kinds of per-patient records. The discriminant seeds the record's random stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Insurance = 1,
    CareTeam,
    Diagnosis,
    Program,
    Process,
    Appointment,
    Vital,
    Orthostatic,
    Allergy,
    Cows,
    CiwaAr,
    CiwaB,
    Glucose,
    Evaluation,
    Contact,
    Order,
    Review,
    ConsentRecord,
    Diet,
    GroupSession,
}

pub(crate) const KIND_COUNT: usize = 21;
const PATIENT_STREAM: u64 = 100;
const TOKEN_STREAM: u64 = 101;

impl Kind {
    /// The inclusive range of how many records of this kind a patient has.
    fn count_range(self) -> (i64, i64) {
        match self {
            Self::Insurance => (1, 2),
            Self::CareTeam => (2, 4),
            Self::Diagnosis => (1, 4),
            Self::Program => (1, 3),
            Self::Process => (1, 2),
            Self::Appointment => (1, 5),
            Self::Vital => (2, 6),
            Self::Orthostatic => (0, 2),
            Self::Allergy => (0, 3),
            Self::Cows | Self::CiwaAr => (0, 4),
            Self::CiwaB => (0, 2),
            Self::Glucose => (0, 4),
            Self::Evaluation => (1, 4),
            Self::Contact => (1, 3),
            Self::Order => (1, 5),
            Self::Review => (0, 2),
            Self::ConsentRecord => (1, 3),
            Self::Diet => (0, 2),
            Self::GroupSession => (0, 3),
        }
    }
}

/// The record id of a patient's slot of some kind.
pub(crate) fn record_id(index: u64, slot: u64) -> u64 {
    (index + 1) * SLOTS + slot
}

/// The inverse of [`record_id`].
pub(crate) fn split_record_id(id: u64) -> Option<(u64, u64)> {
    let index = (id / SLOTS).checked_sub(1)?;
    Some((index, id % SLOTS))
}

/// The canaries of one patient, each unique to it and impossible to occur by chance.
#[derive(Debug, Clone)]
pub(crate) struct Canaries {
    pub name: String,
    pub mrn: String,
    pub phone: String,
    pub email: String,
    pub note: String,
}

/// When a patient was admitted, discharged, created and last updated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PatientTimes {
    pub admitted: NaiveDate,
    pub discharged: Option<NaiveDate>,
    pub discharge_type: Option<&'static str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The first draws of a record (see [`Dataset::record_time`]).
pub(crate) struct RecordTime {
    pub rng: Rng,
    pub admitted: NaiveDate,
    pub discharged: Option<NaiveDate>,
    pub stay_days: i64,
    pub when: NaiveDateTime,
}

/// The generator: a seed and how many patients are on the census, plus the few soft-deleted
/// ones that only the vault shows.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub seed: u64,
    pub patients: u64,
    prefix: [OnceLock<Vec<u32>>; KIND_COUNT],
}

const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
const VOWELS: &[u8] = b"aeiou";

impl Dataset {
    pub(crate) fn new(seed: u64, patients: u64) -> Self {
        Self {
            seed,
            patients,
            prefix: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Soft-deleted patients: indices `patients .. patients + deleted()`.
    pub(crate) fn deleted(&self) -> u64 {
        (self.patients / 100).max(2)
    }

    /// All generated patients (census and vault).
    pub(crate) fn generated(&self) -> u64 {
        self.patients + self.deleted()
    }

    fn anchor() -> NaiveDate {
        anchor_date()
    }

    /// `digits` decimal digits of `value`, each shifted by a seed-derived offset: a bijection
    /// on `0..10^digits`, so distinct patients never share the string.
    fn scrambled_digits(&self, stream: u64, value: u64, digits: u32) -> String {
        let mut rng = Rng::new(self.seed, TOKEN_STREAM, stream, 0);
        let mut out = vec![b'0'; digits as usize];
        let mut v = value;
        for slot in out.iter_mut().rev() {
            let d = (v % 10 + rng.below(10)) % 10;
            *slot = b'0' + d as u8;
            v /= 10;
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Four consonant-vowel syllables from `value`, bijective on `0..70^4` (24 million).
    fn syllables(&self, stream: u64, value: u64) -> String {
        let mut rng = Rng::new(self.seed, TOKEN_STREAM, stream, 1);
        let base = (CONSONANTS.len() * VOWELS.len()) as u64;
        let mut v = value;
        let mut out = String::with_capacity(8);
        for _ in 0..4 {
            let s = (v % base + rng.below(base)) % base;
            v /= base;
            out.push(CONSONANTS[(s / VOWELS.len() as u64) as usize] as char);
            out.push(VOWELS[(s % VOWELS.len() as u64) as usize] as char);
        }
        out
    }

    pub(crate) fn canaries(&self, index: u64) -> Canaries {
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 0);
        let female = rng.chance(52);
        let first = if female {
            *rng.pick(dict::FEMALE_FIRST)
        } else {
            *rng.pick(dict::MALE_FIRST)
        };
        let name = format!("Qx{}", self.syllables(1, index));
        let mrn = format!("QX{}", self.scrambled_digits(2, index, 7));
        let digits = self.scrambled_digits(3, index, 7);
        let phone = format!("555-{}-{}", &digits[..3], &digits[3..]);
        let email = format!(
            "{}.{}@example.com",
            first.to_ascii_lowercase().replace('\'', ""),
            name.to_ascii_lowercase()
        );
        let note = format!("Zv{}", self.syllables(4, index));
        Canaries {
            name,
            mrn,
            phone,
            email,
            note,
        }
    }

    pub(crate) fn casefile_id(&self, index: u64) -> String {
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 1);
        let (a, b) = (rng.next(), rng.next());
        format!("{}:{}", CASEFILE_BASE + index, uuid(a, b))
    }

    fn master_id(&self, index: u64) -> String {
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 2);
        let (a, b) = (rng.next(), rng.next());
        uuid(a, b)
    }

    /// The index of a generated patient's casefile id (`number:uuid`, both parts checked).
    pub(crate) fn index_of(&self, casefile_id: &str) -> Option<u64> {
        let (number, _) = casefile_id.split_once(':')?;
        let index = number.parse::<u64>().ok()?.checked_sub(CASEFILE_BASE)?;
        (index < self.generated() && self.casefile_id(index) == casefile_id).then_some(index)
    }

    /// The next casefile number after all generated patients (for created patients).
    pub(crate) fn created_casefile_id(&self, created_ordinal: u64) -> String {
        let index = self.generated() + created_ordinal;
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 1);
        let (a, b) = (rng.next(), rng.next());
        format!("{}:{}", CASEFILE_BASE + index, uuid(a, b))
    }

    pub(crate) fn count(&self, kind: Kind, index: u64) -> u64 {
        if index >= self.generated() {
            return 0;
        }
        let (lo, hi) = kind.count_range();
        Rng::new(self.seed, kind as u64, index, u64::MAX).range(lo, hi) as u64
    }

    /// Prefix sums of `count(kind, i)` over census patients, built on first use.
    fn prefix(&self, kind: Kind) -> &[u32] {
        self.prefix[kind as usize].get_or_init(|| {
            let mut sums = Vec::with_capacity(self.patients as usize + 1);
            let mut total = 0u32;
            sums.push(0);
            for i in 0..self.patients {
                total += self.count(kind, i) as u32;
                sums.push(total);
            }
            sums
        })
    }

    /// How many records of a kind all census patients have together.
    pub(crate) fn total(&self, kind: Kind) -> u64 {
        u64::from(*self.prefix(kind).last().unwrap_or(&0))
    }

    /// The `(index, slot)` pairs of the global positions `start..end` of a kind.
    pub(crate) fn global_range(&self, kind: Kind, start: u64, end: u64) -> Vec<(u64, u64)> {
        let sums = self.prefix(kind);
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        // The patient whose records contain position `start`.
        let mut index = sums
            .partition_point(|s| u64::from(*s) <= start)
            .saturating_sub(1) as u64;
        let mut pos = start;
        while pos < end && index < self.patients {
            let first = u64::from(sums[index as usize]);
            let n = u64::from(sums[index as usize + 1]) - first;
            let mut slot = pos - first;
            while slot < n && pos < end {
                out.push((index, slot));
                slot += 1;
                pos += 1;
            }
            index += 1;
        }
        out
    }

    fn days_ago(&self, days: i64) -> NaiveDate {
        Self::anchor() - Days::days(days)
    }

    fn at(date: NaiveDate, rng: &mut Rng) -> NaiveDateTime {
        date.and_hms_opt(rng.range(7, 20) as u32, (rng.below(12) * 5) as u32, 0)
            .unwrap_or_default()
    }

    /// The admission date of a patient (also bounds its records).
    fn admission(&self, index: u64) -> (NaiveDate, Option<NaiveDate>) {
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 3);
        let admitted = self.days_ago(rng.range(1, 420));
        let stay = rng.range(4, 75);
        let discharged = admitted + Days::days(stay);
        let discharged = (discharged < Self::anchor() && rng.chance(70)).then_some(discharged);
        (admitted, discharged)
    }

    /// The dates and times of a patient's stay and record, drawn from their own streams so
    /// filters can evaluate them without building the patient.
    pub(crate) fn patient_times(&self, index: u64) -> PatientTimes {
        let (admitted, discharged) = self.admission(index);
        let mut arng = Rng::new(self.seed, PATIENT_STREAM, index, 4);
        let admitted_at = Self::at(admitted, &mut arng);
        let discharge_type = discharged.map(|_| *arng.pick(dict::DISCHARGE_TYPES));
        let updated_at = admitted_at + Days::hours(arng.range(1, 200));
        PatientTimes {
            admitted,
            discharged,
            discharge_type,
            created_at: admitted_at - Days::days(1),
            updated_at,
        }
    }

    /// The patient's `location_id` (1-based), the 16th draw of the patient stream (see
    /// [`Dataset::patient`]; a test holds the two together).
    pub(crate) fn patient_location(&self, index: u64) -> u64 {
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 0);
        for _ in 0..15 {
            rng.next();
        }
        rng.below(dict::LOCATIONS.len() as u64) + 1
    }

    pub(crate) fn patient(&self, index: u64) -> Map<String, Value> {
        let c = self.canaries(index);
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 0);
        let female = rng.chance(52);
        let first = if female {
            *rng.pick(dict::FEMALE_FIRST)
        } else {
            *rng.pick(dict::MALE_FIRST)
        };
        let surname = *rng.pick(dict::LAST);
        let middle = if female {
            *rng.pick(dict::FEMALE_FIRST)
        } else {
            *rng.pick(dict::MALE_FIRST)
        };
        let age = rng.range(18, 95);
        let dob = self.days_ago(age * 365 + rng.range(0, 364));
        let (city, state, zip3) = *rng.pick(dict::CITIES);
        let street = format!(
            "{} {} {}",
            rng.range(100, 9899),
            rng.pick(dict::STREETS),
            rng.pick(dict::STREET_SUFFIXES)
        );
        let zip = format!("{zip3}{:02}", rng.below(100));
        let ssn = format!(
            "9{:02}-{:02}-{:04}",
            rng.below(100),
            rng.range(1, 99),
            rng.range(1, 9999)
        );
        let (program, level) = *rng.pick(dict::PROGRAMS);
        let location = rng.below(dict::LOCATIONS.len() as u64);
        let times = self.patient_times(index);
        let (admitted, discharged) = (times.admitted, times.discharged);
        let insurances: Vec<Value> = (0..self.count(Kind::Insurance, index))
            .map(|slot| Value::Object(self.record(Kind::Insurance, index, slot)))
            .collect();
        let mut p = Map::new();
        p.insert("casefile_id".into(), self.casefile_id(index).into());
        p.insert("patient_master_id".into(), self.master_id(index).into());
        p.insert("first_name".into(), first.into());
        p.insert("middle_name".into(), middle.into());
        p.insert("last_name".into(), format!("{surname}-{}", c.name).into());
        p.insert("preferred_name".into(), first.into());
        p.insert("dob".into(), dob.to_string().into());
        p.insert(
            "gender".into(),
            if female { "Female" } else { "Male" }.into(),
        );
        p.insert("mr_number".into(), c.mrn.into());
        p.insert("ssn".into(), ssn.into());
        p.insert("address_street".into(), street.into());
        p.insert("address_city".into(), city.into());
        p.insert("address_state".into(), state.into());
        p.insert("address_zip".into(), zip.into());
        p.insert("phone".into(), c.phone.into());
        p.insert("email".into(), c.email.into());
        p.insert("admission_date".into(), admitted.to_string().into());
        p.insert(
            "discharge_date".into(),
            discharged.map(|d| d.to_string()).into(),
        );
        p.insert("discharge_type".into(), times.discharge_type.into());
        p.insert("program".into(), program.into());
        p.insert("level_of_care".into(), level.into());
        p.insert("location_id".into(), (location + 1).into());
        p.insert(
            "location_name".into(),
            dict::LOCATIONS[location as usize].0.into(),
        );
        p.insert("insurances".into(), Value::Array(insurances));
        p.insert("created_at".into(), ts(times.created_at).into());
        p.insert("updated_at".into(), ts(times.updated_at).into());
        p
    }

    /// The admission view: the patient plus how and from where they came.
    pub(crate) fn admission_record(&self, index: u64) -> Map<String, Value> {
        let mut p = self.patient(index);
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 5);
        let kind = *rng.pick(&["elective", "elective", "urgent", "emergency"]);
        p.insert("admission_type".into(), kind.into());
        p.insert(
            "referral_source".into(),
            (*rng.pick(dict::REFERRAL_SOURCES)).into(),
        );
        p
    }

    /// A soft-deleted patient, as the vault lists it.
    pub(crate) fn vault_record(&self, index: u64) -> Map<String, Value> {
        let mut p = self.patient(index);
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 6);
        let deleted = Self::at(self.days_ago(rng.range(1, 60)), &mut rng);
        p.insert("deleted_at".into(), ts(deleted).into());
        p
    }

    fn note(&self, index: u64, rng: &mut Rng) -> String {
        format!(
            "{} Ref {}.",
            rng.pick(dict::NOTE_FRAGMENTS),
            self.canaries(index).note
        )
    }

    /// The first draws of a record's stream: its stay and its time (`when`), which is the
    /// record's `updated_at` (and, for most kinds, `created_at`). Cheap: filters use it to
    /// scan many records without building them.
    pub(crate) fn record_time(&self, kind: Kind, index: u64, slot: u64) -> RecordTime {
        let mut rng = Rng::new(self.seed, kind as u64, index, slot);
        let (admitted, discharged) = self.admission(index);
        let stay_days = discharged
            .map_or((Self::anchor() - admitted).num_days(), |d| {
                (d - admitted).num_days()
            })
            .max(1);
        let when = Self::at(admitted + Days::days(rng.range(0, stay_days)), &mut rng);
        RecordTime {
            rng,
            admitted,
            discharged,
            stay_days,
            when,
        }
    }

    /// An appointment's start (its `start_time`), from the record's stream.
    pub(crate) fn appointment_start(&self, index: u64, slot: u64) -> NaiveDateTime {
        let RecordTime {
            mut rng,
            admitted,
            stay_days,
            ..
        } = self.record_time(Kind::Appointment, index, slot);
        rng.pick(dict::APPOINTMENT_TYPES);
        Self::at(
            admitted + Days::days(rng.range(0, stay_days + 14)),
            &mut rng,
        )
    }

    /// One record of a kind; `slot < count(kind, index)`.
    pub(crate) fn record(&self, kind: Kind, index: u64, slot: u64) -> Map<String, Value> {
        let RecordTime {
            mut rng,
            admitted,
            discharged,
            stay_days,
            when,
        } = self.record_time(kind, index, slot);
        let pid = self.casefile_id(index);
        let id = record_id(index, slot);
        let v = match kind {
            Kind::Insurance => {
                let subscriber = self.patient_name(index);
                json!({
                    "id": id, "patient_id": pid, "payor_name": rng.pick(dict::PAYORS),
                    "policy_no": format!("{}{:09}", ["W", "XEH", "U", "H", "ZGP"][rng.below(5) as usize], rng.below(1_000_000_000)),
                    "group_no": format!("GRP-{:06}", rng.below(1_000_000)),
                    "subscriber_name": subscriber,
                    "priority": if slot == 0 { "primary" } else { "secondary" },
                    "start_date": (admitted - Days::days(rng.range(30, 900))).to_string(),
                    "end_date": Value::Null,
                    "updated_at": ts(when),
                })
            }
            Kind::CareTeam => {
                let user = self.care_team_user(index, slot);
                json!({
                    "id": id, "patient_id": pid, "user_id": user,
                    "user_name": self.user_name(user),
                    "role": dict::ROLES[self.user_role(user)],
                    "start_date": admitted.to_string(),
                    "end_date": discharged.map(|d| d.to_string()),
                })
            }
            Kind::Diagnosis => {
                let (code, description, _) = rng.weighted(dict::DIAGNOSES);
                let onset = admitted - Days::days(rng.range(0, 2000));
                json!({
                    "id": id, "patient_id": pid, "code": code, "description": description,
                    "diagnosis_date": if slot == 0 { admitted.to_string() } else { onset.to_string() },
                    "status": if discharged.is_some() && rng.chance(30) { "resolved" } else { "active" },
                    "is_primary": slot == 0,
                    "created_at": ts(Self::at(admitted, &mut rng)), "updated_at": ts(when),
                })
            }
            Kind::Program => {
                let (program, level) = *rng.pick(dict::PROGRAMS);
                let start = admitted + Days::days(slot as i64 * 7);
                json!({
                    "id": id, "patient_id": pid, "program": program, "level_of_care": level,
                    "start_date": start.to_string(),
                    "end_date": if slot + 1 < self.count(kind, index) { Some((start + Days::days(7)).to_string()) } else { discharged.map(|d| d.to_string()) },
                })
            }
            Kind::Process => json!({
                "id": id, "patient_id": pid, "name": rng.pick(dict::PROCESSES),
                "status": if rng.chance(60) { "completed" } else { "in_progress" },
                "started_at": ts(when),
                "process_details": {"steps_total": rng.range(3, 9), "steps_completed": rng.range(0, 3)},
            }),
            Kind::Appointment => {
                let (kind_name, minutes) = *rng.pick(dict::APPOINTMENT_TYPES);
                let start = Self::at(
                    admitted + Days::days(rng.range(0, stay_days + 14)),
                    &mut rng,
                );
                let status = if start.date() > Self::anchor() {
                    "Scheduled"
                } else {
                    *rng.pick(&[
                        "Completed",
                        "Completed",
                        "Completed",
                        "Cancelled",
                        "No show",
                    ])
                };
                json!({
                    "id": id, "patient_id": pid,
                    "provider_id": self.appointment_provider(index, slot),
                    "user_id": self.appointment_user(index, slot),
                    "appointment_type": kind_name, "status": status,
                    "start_time": ts(start), "end_time": ts(start + Days::minutes(i64::from(minutes))),
                    "location_id": rng.range(1, dict::LOCATIONS.len() as i64),
                    "notes": self.note(index, &mut rng),
                })
            }
            Kind::Vital => {
                let systolic = rng.range(98, 168);
                json!({
                    "id": id, "patient_id": pid,
                    "systolic_blood_pressure": systolic,
                    "diastolic_blood_pressure": (systolic * 2 / 3 - rng.range(0, 12)).clamp(55, 105),
                    "heart_rate": rng.range(56, 118),
                    "temperature": tenth(rng.range(970, 1004)),
                    "respiratory_rate": rng.range(12, 22),
                    "oxygen_saturation": rng.range(92, 100),
                    "weight": tenth(rng.range(1050, 2900)),
                    "height": rng.range(58, 76),
                    "comments": if rng.chance(40) { Value::from(self.note(index, &mut rng)) } else { Value::Null },
                    "recorded_at": ts(when), "created_at": ts(when), "updated_at": ts(when),
                })
            }
            Kind::Orthostatic => {
                let lying = rng.range(105, 150);
                json!({
                    "id": id, "patient_id": pid,
                    "value": format!("lying {lying}/{} standing {}/{}", lying * 2 / 3, lying - rng.range(0, 25), lying * 2 / 3 - rng.range(0, 10)),
                    "interval_label": rng.pick(&["Admission", "Day 1", "Day 2", "Day 3"]),
                    "recorded_at": ts(when), "comments": Value::Null, "created_at": ts(when),
                })
            }
            Kind::Allergy => {
                let (allergen, category) = *rng.pick(dict::ALLERGENS);
                json!({
                    "id": id, "patient_id": pid, "allergen": allergen, "allergen_type": category,
                    "reaction": rng.pick(dict::REACTIONS),
                    "severity": rng.pick(&["mild", "moderate", "severe"]),
                    "status": "active", "created_at": ts(Self::at(admitted, &mut rng)),
                })
            }
            Kind::Cows | Kind::CiwaAr | Kind::CiwaB | Kind::Glucose => {
                let (score_key, score) = match kind {
                    Kind::Cows => ("score", rng.range(0, 24)),
                    Kind::CiwaAr => ("score", rng.range(0, 28)),
                    Kind::CiwaB => ("score", rng.range(0, 40)),
                    _ => ("value", rng.range(68, 260)),
                };
                let mut m = json!({
                    "id": id, "patient_id": pid, score_key: score,
                    "interval_label": format!("q{}h", [4, 6, 8][rng.below(3) as usize]),
                    "recorded_at": ts(when),
                    "comments": if rng.chance(35) { Value::from(self.note(index, &mut rng)) } else { Value::Null },
                    "created_at": ts(when),
                });
                if kind == Kind::Glucose {
                    m["unit"] = "mg/dL".into();
                    m["meal_relation"] =
                        (*rng.pick(&["fasting", "before meal", "after meal", "bedtime"])).into();
                }
                m
            }
            Kind::Evaluation => {
                let template = rng.below(dict::EVALUATIONS.len() as u64);
                let (name, _, max) = dict::EVALUATIONS[template as usize];
                let completed = rng.chance(85);
                json!({
                    "id": id, "evaluation_id": template + 1, "patient_id": pid, "name": name,
                    "status": if completed { "completed" } else { "in_progress" },
                    "score": if max > 0 { Value::from(rng.range(0, i64::from(max))) } else { Value::Null },
                    "evaluation_content": self.note(index, &mut rng),
                    "created_at": ts(when), "updated_at": ts(when),
                    "completed_at": if completed { Value::from(ts(when + Days::minutes(rng.range(10, 90)))) } else { Value::Null },
                })
            }
            Kind::Contact => {
                let (city, state, zip3) = *rng.pick(dict::CITIES);
                let names = if rng.chance(50) {
                    dict::FEMALE_FIRST
                } else {
                    dict::MALE_FIRST
                };
                let first = *rng.pick(names);
                let last = *rng.pick(dict::LAST);
                json!({
                    "id": id, "patient_id": pid, "first_name": first, "last_name": last,
                    "relationship": rng.pick(dict::RELATIONSHIPS),
                    "contact_type": rng.pick(dict::CONTACT_TYPES),
                    // Space-separated, unlike patient phones, so a contact phone can never equal
                    // a patient's phone canary.
                    "phone": format!("+1 555 {:03} {:04}", rng.below(1000), rng.below(10000)),
                    "email": format!("{}.{}{}@example.net", first.to_ascii_lowercase(), last.to_ascii_lowercase().replace('\'', ""), rng.below(100)),
                    "address_street": format!("{} {} {}", rng.range(100, 9899), rng.pick(dict::STREETS), rng.pick(dict::STREET_SUFFIXES)),
                    "address_city": city, "address_state": state,
                    "address_zip": format!("{zip3}{:02}", rng.below(100)),
                    "notes": self.note(index, &mut rng),
                })
            }
            Kind::Order => {
                let medication = rng.chance(70);
                let mut m = json!({
                    "id": id, "patient_id": pid,
                    "order_type": if medication { "medication" } else { "lab" },
                    "status": rng.pick(&["active", "active", "completed", "discontinued"]),
                    "ordered_at": ts(when),
                    "provider_id": self.appointment_provider(index, slot),
                    "notes": self.note(index, &mut rng),
                });
                if medication {
                    let (name, dose, unit, route, freq) = *rng.pick(dict::MEDICATIONS);
                    m["name"] = name.into();
                    m["medication"] = name.into();
                    m["dose"] = dose.into();
                    m["dose_unit"] = unit.into();
                    m["route"] = route.into();
                    m["frequency"] = freq.into();
                } else {
                    m["name"] = (*rng.pick(dict::LABS)).into();
                    m["frequency"] = "once".into();
                }
                m
            }
            Kind::Review => {
                let (_, level) = *rng.pick(dict::PROGRAMS);
                let review = admitted + Days::days(rng.range(1, 14) + slot as i64 * 7);
                json!({
                    "id": id, "patient_id": pid, "payor_name": rng.pick(dict::PAYORS),
                    "level_of_care": level, "authorized_days": rng.range(3, 14),
                    "review_date": review.to_string(),
                    "next_review_date": (review + Days::days(rng.range(3, 7))).to_string(),
                    "status": rng.pick(&["approved", "approved", "pending", "denied", "peer review requested"]),
                })
            }
            Kind::ConsentRecord => {
                let form = rng.below(dict::CONSENT_FORMS.len() as u64);
                json!({
                    "id": id, "patient_id": pid, "consent_form_id": form + 1,
                    "name": dict::CONSENT_FORMS[form as usize],
                    "status": if rng.chance(90) { "signed" } else { "revoked" },
                    "signed_at": ts(Self::at(admitted, &mut rng)),
                    "expires_on": (admitted + Days::days(365)).to_string(),
                })
            }
            Kind::Diet => json!({
                "id": id, "patient_id": pid, "diet": rng.pick(dict::DIETS),
                "start_date": admitted.to_string(),
                "end_date": discharged.map(|d| d.to_string()),
                "notes": if rng.chance(30) { Value::from(self.note(index, &mut rng)) } else { Value::Null },
            }),
            Kind::GroupSession => {
                let session = self.patient_group_session(index, slot);
                let mut m = self.group_session(session);
                m.insert("patient_id".into(), pid.into());
                m.insert(
                    "attendance".into(),
                    (*rng.pick(&["present", "present", "present", "absent", "excused"])).into(),
                );
                m.insert("updated_at".into(), ts(when).into());
                return m;
            }
        };
        let mut m = obj(v);
        // Every per-patient record carries `updated_at` (its time, `when`), so clients can
        // sync "updated since"; kinds that already set it keep theirs.
        if !m.contains_key("updated_at") {
            m.insert("updated_at".into(), ts(when).into());
        }
        m
    }

    /// "First Last-token", drawn from the same stream as [`Dataset::patient`] without building
    /// the whole patient (which itself embeds insurance records that name the subscriber).
    fn patient_name(&self, index: u64) -> String {
        let mut rng = Rng::new(self.seed, PATIENT_STREAM, index, 0);
        let female = rng.chance(52);
        let first = if female {
            *rng.pick(dict::FEMALE_FIRST)
        } else {
            *rng.pick(dict::MALE_FIRST)
        };
        let surname = *rng.pick(dict::LAST);
        format!("{first} {surname}-{}", self.canaries(index).name)
    }

    pub(crate) fn appointment_provider(&self, index: u64, slot: u64) -> u64 {
        1 + Rng::new(self.seed, 200, index, slot).below(PROVIDERS)
    }

    pub(crate) fn appointment_user(&self, index: u64, slot: u64) -> u64 {
        1 + Rng::new(self.seed, 201, index, slot).below(USERS)
    }

    fn care_team_user(&self, index: u64, slot: u64) -> u64 {
        // Spread slots so one patient's team has distinct members.
        let start = Rng::new(self.seed, 202, index, 0).below(USERS);
        1 + (start + slot * 7) % USERS
    }

    pub(crate) fn patient_group_session(&self, index: u64, slot: u64) -> u64 {
        let start = Rng::new(self.seed, 203, index, 0).below(GROUP_SESSIONS);
        1 + (start + slot * 5) % GROUP_SESSIONS
    }

    pub(crate) fn group_session(&self, id: u64) -> Map<String, Value> {
        let mut rng = Rng::new(self.seed, 300, id, 0);
        let start = Self::at(self.days_ago(rng.range(0, 60)), &mut rng);
        obj(json!({
            "id": id, "name": dict::GROUP_TOPICS[(id as usize - 1) % dict::GROUP_TOPICS.len()],
            "facilitator_id": 1 + rng.below(USERS),
            "location_id": rng.range(1, dict::LOCATIONS.len() as i64),
            "start_time": ts(start), "end_time": ts(start + Days::minutes(90)),
            "capacity": rng.range(8, 16),
        }))
    }

    pub(crate) fn user_role(&self, user: u64) -> usize {
        dict::USER_TITLES[self.user_title(user)].1
    }

    fn user_title(&self, user: u64) -> usize {
        if user <= PROVIDERS {
            (user as usize - 1) % 3
        } else {
            3 + Rng::new(self.seed, 301, user, 0).below(dict::USER_TITLES.len() as u64 - 3) as usize
        }
    }

    pub(crate) fn user_name(&self, user: u64) -> String {
        let mut rng = Rng::new(self.seed, 302, user, 0);
        let names = if rng.chance(60) {
            dict::FEMALE_FIRST
        } else {
            dict::MALE_FIRST
        };
        let first = *rng.pick(names);
        format!("{first} {}", rng.pick(dict::LAST))
    }

    /// The roles a user holds: the title's role, and for some a second one.
    pub(crate) fn user_roles(&self, user: u64) -> Vec<u64> {
        let main = self.user_role(user) as u64 + 1;
        let mut roles = vec![main];
        if Rng::new(self.seed, 303, user, 0).chance(25) && main != 1 {
            roles.push(1);
        }
        roles
    }

    pub(crate) fn user(&self, user: u64) -> Map<String, Value> {
        let name = self.user_name(user);
        let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
        let title = dict::USER_TITLES[self.user_title(user)].0;
        let mut rng = Rng::new(self.seed, 304, user, 0);
        obj(json!({
            "id": user, "first_name": first, "last_name": last,
            "email": format!("{}.{}@staff.example.org", first.to_ascii_lowercase(), last.to_ascii_lowercase().replace('\'', "")),
            "title": title,
            "npi": if user <= PROVIDERS { Value::from(format!("1{:09}", self.seed.wrapping_add(user * 7919) % 1_000_000_000)) } else { Value::Null },
            "enabled": !user.is_multiple_of(13),
            "role_ids": self.user_roles(user),
            "created_at": ts(Self::at(self.days_ago(rng.range(400, 2000)), &mut rng)),
        }))
    }

    pub(crate) fn provider(&self, provider: u64) -> Map<String, Value> {
        let u = self.user(provider);
        obj(json!({
            "id": provider, "first_name": u["first_name"], "last_name": u["last_name"],
            "npi": u["npi"], "specialty": dict::SPECIALTIES[(provider as usize - 1) % dict::SPECIALTIES.len()],
            "email": u["email"], "user_id": provider,
        }))
    }
}

/// A settings-list entry: `id`, `name` and any extra fields.
pub(crate) fn named(id: usize, name: &str, extra: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), (id + 1).into());
    m.insert("name".into(), name.into());
    if let Value::Object(extra) = extra {
        m.extend(extra);
    }
    m
}

pub(crate) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn tenth(v: i64) -> Value {
    Value::from(v as f64 / 10.0)
}

/// ISO 8601 with the US Eastern standard offset (the data's "local" time).
pub(crate) fn ts(t: NaiveDateTime) -> String {
    format!("{}-05:00", t.format("%Y-%m-%dT%H:%M:%S"))
}

fn uuid(a: u64, b: u64) -> String {
    // Version 4 / RFC 4122 variant bits, so validators accept it.
    let a = (a & !0xF000) | 0x4000;
    let b = (b & !(0xC000 << 48)) | (0x8000 << 48);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn canaries_are_unique_across_many_patients() {
        let d = Dataset::new(7, 20_000);
        let mut seen = HashSet::new();
        for i in 0..d.generated() {
            let c = d.canaries(i);
            for s in [c.name, c.mrn, c.phone, c.email, c.note] {
                assert!(seen.insert(s), "duplicate canary at {i}");
            }
        }
    }

    #[test]
    fn casefile_ids_resolve_back_to_their_index() {
        let d = Dataset::new(1, 300);
        for i in [0, 1, 150, 299, 300, 301] {
            assert_eq!(d.index_of(&d.casefile_id(i)), Some(i));
        }
        let wrong_uuid = format!("{}:00000000-0000-4000-8000-000000000000", 1000);
        assert_eq!(d.index_of(&wrong_uuid), None);
        assert_eq!(d.index_of("999999:x"), None);
    }

    #[test]
    fn global_ranges_walk_every_record_once() {
        let d = Dataset::new(3, 50);
        let total = d.total(Kind::Vital);
        let all = d.global_range(Kind::Vital, 0, total);
        assert_eq!(all.len() as u64, total);
        let expected: Vec<_> = (0..50)
            .flat_map(|i| (0..d.count(Kind::Vital, i)).map(move |s| (i, s)))
            .collect();
        assert_eq!(all, expected);
        assert_eq!(d.global_range(Kind::Vital, 5, 9), expected[5..9].to_vec());
    }

    #[test]
    fn cheap_times_agree_with_the_built_records() {
        let d = Dataset::new(21, 400);
        for i in 0..400 {
            let p = d.patient(i);
            let t = d.patient_times(i);
            assert_eq!(p["location_id"], d.patient_location(i));
            assert_eq!(p["updated_at"], ts(t.updated_at));
            assert_eq!(p["admission_date"], t.admitted.to_string());
            for kind in [Kind::Vital, Kind::Insurance, Kind::Review, Kind::CareTeam] {
                for slot in 0..d.count(kind, i) {
                    let r = d.record(kind, i, slot);
                    assert_eq!(r["updated_at"], ts(d.record_time(kind, i, slot).when));
                }
            }
            for slot in 0..d.count(Kind::Appointment, i) {
                let r = d.record(Kind::Appointment, i, slot);
                assert_eq!(r["start_time"], ts(d.appointment_start(i, slot)));
            }
        }
    }

    #[test]
    fn vitals_are_physiologically_plausible() {
        let d = Dataset::new(9, 200);
        for i in 0..200 {
            for s in 0..d.count(Kind::Vital, i) {
                let v = d.record(Kind::Vital, i, s);
                let sys = v["systolic_blood_pressure"].as_i64().unwrap();
                let dia = v["diastolic_blood_pressure"].as_i64().unwrap();
                assert!((90..=180).contains(&sys) && (50..=110).contains(&dia) && dia < sys);
                let t = v["temperature"].as_f64().unwrap();
                assert!((96.0..=101.0).contains(&t));
            }
        }
    }
}
