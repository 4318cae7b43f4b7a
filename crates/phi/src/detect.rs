//! Detection of the 18 HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)(i)) in free text.
//!
//! # How it works
//!
//! Every detector is either a `regex` pattern (a finite automaton: no backtracking, no
//! look-around) with an optional validation step in code (SSN area rules, the VIN check digit,
//! IPv6 parsing), or the name detector, which tokenises capitalised words and looks them up in
//! embedded dictionaries (US Census first names and surnames) with context cues. Multi-word cue
//! phrases ("seen by", "patient:") are found with one `aho-corasick` automaton.
//!
//! # Invariants
//!
//! * Running time is linear in the input: automata only, and every repetition in a pattern is
//!   bounded (`{1,64}`, never `+`), so re-scanning after a match is bounded by a constant.
//!   A property test and a fuzz target (`fuzz/fuzz_targets/detect.rs`) exercise this.
//! * Spans are byte offsets on `char` boundaries of the input; invalid UTF-8 is accepted at the
//!   byte entry point ([`Detector::detect_bytes`]) and decoded lossily first.
//! * Detection is recall-first: where a value is ambiguous it is reported with a lower
//!   confidence rather than dropped; callers choose the threshold ([`DEFAULT_THRESHOLD`]).
//!
//! # Decisions
//!
//! * **NPI** numbers identify providers, are published in a public registry (NPPES) and are not
//!   identifiers *of the individual*; they are not detected. **DEA** numbers are provider licence
//!   numbers and are detected as [`PhiKind::License`] because the brief of Safe Harbor item (K)
//!   covers licence numbers without distinguishing whose. Provider *names* are detected (i2b2
//!   practice): a signature on a note narrows down the patient.
//! * Five-digit numbers are ZIP codes only with context (a state before them, or "ZIP"), so
//!   doses and lab values are left alone.
//! * Bare years are not identifiers (Safe Harbor keeps the year); ages over 89 are.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

/// The confidence at or above which a span is treated as PHI by [`Detector::detect`] callers
/// that do not choose their own (the scrubber, the logging layer, `phigate phi eval`).
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// The kind of identifier, following the Safe Harbor list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhiKind {
    /// (A) Names of the patient, relatives, employers, household members, providers.
    Name,
    /// (B) Geographic subdivisions smaller than a state: street addresses and cities.
    Address,
    /// (B) ZIP codes (5 and 9 digits).
    Zip,
    /// (C) Date elements other than the year.
    Date,
    /// (C) Ages over 89.
    Age,
    /// (D) Telephone numbers.
    Phone,
    /// (E) Fax numbers.
    Fax,
    /// (F) Email addresses.
    Email,
    /// (G) Social Security numbers.
    Ssn,
    /// (H) Medical record numbers.
    Mrn,
    /// (I) Health plan beneficiary numbers.
    HealthPlan,
    /// (J) Account numbers.
    Account,
    /// (K) Certificate and licence numbers.
    License,
    /// (L) Vehicle identifiers and serial numbers, including licence plates.
    Vehicle,
    /// (M) Device identifiers and serial numbers.
    Device,
    /// (N) Web URLs.
    Url,
    /// (O) IP addresses.
    Ip,
    /// (P) Biometric identifiers.
    Biometric,
    /// (Q) Full-face photographs and comparable images (references to image files).
    Photo,
    /// (R) Any other unique identifying number, characteristic or code.
    OtherId,
}

impl PhiKind {
    /// Every kind, in a stable order (used by reports).
    pub const ALL: [PhiKind; 20] = [
        PhiKind::Name,
        PhiKind::Address,
        PhiKind::Zip,
        PhiKind::Date,
        PhiKind::Age,
        PhiKind::Phone,
        PhiKind::Fax,
        PhiKind::Email,
        PhiKind::Ssn,
        PhiKind::Mrn,
        PhiKind::HealthPlan,
        PhiKind::Account,
        PhiKind::License,
        PhiKind::Vehicle,
        PhiKind::Device,
        PhiKind::Url,
        PhiKind::Ip,
        PhiKind::Biometric,
        PhiKind::Photo,
        PhiKind::OtherId,
    ];

    /// The upper-case tag used by the `[TAG]` redaction mode and in reports.
    pub const fn tag(self) -> &'static str {
        match self {
            PhiKind::Name => "NAME",
            PhiKind::Address => "ADDRESS",
            PhiKind::Zip => "ZIP",
            PhiKind::Date => "DATE",
            PhiKind::Age => "AGE",
            PhiKind::Phone => "PHONE",
            PhiKind::Fax => "FAX",
            PhiKind::Email => "EMAIL",
            PhiKind::Ssn => "SSN",
            PhiKind::Mrn => "MRN",
            PhiKind::HealthPlan => "HEALTH_PLAN",
            PhiKind::Account => "ACCOUNT",
            PhiKind::License => "LICENSE",
            PhiKind::Vehicle => "VEHICLE",
            PhiKind::Device => "DEVICE",
            PhiKind::Url => "URL",
            PhiKind::Ip => "IP",
            PhiKind::Biometric => "BIOMETRIC",
            PhiKind::Photo => "PHOTO",
            PhiKind::OtherId => "ID",
        }
    }

    /// Parses a tag produced by [`PhiKind::tag`].
    pub fn from_tag(tag: &str) -> Option<PhiKind> {
        PhiKind::ALL
            .into_iter()
            .find(|k| k.tag().eq_ignore_ascii_case(tag))
    }
}

impl fmt::Display for PhiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// One detected identifier. Offsets are bytes into the text that was scanned; the span itself
/// holds no text, so it can be logged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    /// Start byte offset (inclusive).
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    /// What was found.
    pub kind: PhiKind,
    /// 0.0 to 1.0: how sure the detector is.
    pub confidence: f32,
    /// Which detector produced it (a static name such as `"phone"` or `"name.title"`).
    pub detector: &'static str,
}

impl Span {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty span (never produced by the detector).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// What a pattern's match means.
struct Pattern {
    regex: Regex,
    kind: PhiKind,
    confidence: f32,
    detector: &'static str,
    /// Capture group holding the identifier (0 = whole match): context words are not PHI.
    group: usize,
    validate: Option<fn(&[u8]) -> bool>,
}

const MONTH: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";
const TIME: &str = r"(?:,?\s{1,3}(?:at\s{1,3})?(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?(?:\s{0,2}(?:[ap]\.?m\.?|[AP]\.?M\.?))?)?";
const STATES: &str = r"(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[AT]|W[AIVY])";
const STATE_NAMES: &str = r"(?:Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming)";
/// An identifier value after a cue word: letters, digits, dashes; validated to hold a digit.
/// The digit is required by the pattern itself, so a cue followed by a word ("Insurance
/// Member ID: W123") lets the automaton start again at the next cue instead of consuming it.
const ID_VALUE: &str =
    r"((?:[A-Za-z0-9][A-Za-z0-9\-]{0,24})?[0-9](?:[A-Za-z0-9\-]{0,24}[A-Za-z0-9])?)";
const CUE_SEP: &str = r"(?-u:\b)\s{0,3}(?i:no\.?|number|num|#|id)?\s{0,3}[:#]?\s{0,3}";

fn build(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .unwrap_or_else(|e| panic!("built-in PHI pattern does not compile: {e}"))
}

fn patterns() -> Vec<Pattern> {
    let p = |re: String, kind, confidence, detector, group, validate| Pattern {
        regex: build(&re),
        kind,
        confidence,
        detector,
        group,
        validate,
    };
    let b = r"(?-u:\b)";
    let mut v = Vec::new();

    // --- dates (C) ---
    v.push(p(
        format!(
            r"{b}(?:0?[1-9]|1[0-2])[/\-.](?:0?[1-9]|[12][0-9]|3[01])[/\-.](?:19|20)?[0-9]{{2}}{b}{TIME}"
        ),
        PhiKind::Date,
        0.9,
        "date.numeric",
        0,
        None,
    ));
    v.push(p(
        format!(
            r"{b}(?:19|20)[0-9]{{2}}[/\-.](?:0[1-9]|1[0-2])[/\-.](?:0[1-9]|[12][0-9]|3[01])(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{{1,9}})?)?(?:Z|[+\-][0-2][0-9]:?[0-5][0-9])?)?{TIME}"
        ),
        PhiKind::Date,
        0.95,
        "date.iso",
        0,
        None,
    ));
    // Month/day without a year only after a word that makes it a date: "1/2 tab" is a dose.
    v.push(p(
        format!(
            r"(?i:on|since|from|until|till|dated|seen|by|of|DOS|DOB|admitted|discharged|next|last|appt|review|visit|due|before|after|through|thru|starting|effective|wk\s{{1,3}}of|week\s{{1,3}}of|(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?\.?,?)\s{{1,3}}((?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12][0-9]|3[01])){b}{TIME}"
        ),
        PhiKind::Date,
        0.8,
        "date.month_day",
        1,
        None,
    ));
    v.push(p(
        format!(
            r"(?i){b}{MONTH}\s{{0,3}}(?:[0-9]{{1,2}}(?:st|nd|rd|th)?)(?:,?\s{{1,3}}(?:19|20)[0-9]{{2}})?{b}{TIME}"
        ),
        PhiKind::Date,
        0.85,
        "date.month_day_name",
        0,
        Some(month_is_capitalised_or_abbrev),
    ));
    v.push(p(
        format!(
            r"(?i){b}[0-9]{{1,2}}(?:st|nd|rd|th)?\s{{1,3}}(?:of\s{{1,3}})?{MONTH}(?:,?\s{{1,3}}(?:19|20)?[0-9]{{2}})?{b}"
        ),
        PhiKind::Date,
        0.85,
        "date.day_month_name",
        0,
        Some(contains_capital_month),
    ));
    v.push(p(
        format!(r"{b}(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?,?\s{{1,3}}(?:19|20)[0-9]{{2}}{b}"),
        PhiKind::Date,
        0.85,
        "date.month_year",
        0,
        None,
    ));
    // A named holiday pins a month and day ("relapsed on New Year's Eve"). Capitalised only:
    // "an easter egg hunt" in lower case is left to the reader.
    v.push(p(
        format!(
            r"{b}(?:New\s{{1,3}}Year(?:'|’)?s(?:\s{{1,3}}(?:Day|Eve))?|Christmas(?:\s{{1,3}}(?:Eve|Day))?|Xmas(?:\s{{1,3}}Eve)?|Thanksgiving(?:\s{{1,3}}Day)?|Halloween|Valentine(?:'|’)?s\s{{1,3}}Day|Independence\s{{1,3}}Day|Memorial\s{{1,3}}Day|Labor\s{{1,3}}Day|Mother(?:'|’)?s\s{{1,3}}Day|Father(?:'|’)?s\s{{1,3}}Day|Veterans(?:'|’)?\s{{1,3}}Day|Easter(?:\s{{1,3}}Sunday)?|Good\s{{1,3}}Friday|St\.?\s{{1,3}}Patrick(?:'|’)?s\s{{1,3}}Day|(?:Martin\s{{1,3}}Luther\s{{1,3}}King(?:,?\s{{1,3}}Jr\.?)?|MLK)\s{{1,3}}Day|Presidents(?:'|’)?\s{{1,3}}Day|Juneteenth|Cinco\s{{1,3}}de\s{{1,3}}Mayo){b}"
        ),
        PhiKind::Date,
        0.75,
        "date.holiday",
        0,
        None,
    ));
    // A month name alone is a date element ("in May"), but only after a temporal preposition:
    // "May" is also a first name.
    v.push(p(
        format!(r"(?i:in|since|during|until|through|early|mid|late|last|next|of)\s{{1,3}}(January|February|March|April|May|June|July|August|September|October|November|December){b}"),
        PhiKind::Date,
        0.7,
        "date.month_alone",
        1,
        None,
    ));

    // --- phone / fax (D, E) ---
    v.push(p(
        format!(
            r"(?:(?:\+1|{b}1)[\s.\-]{{0,2}})?(?:\([2-9][0-9]{{2}}\)\s{{0,2}}|{b}[2-9][0-9]{{2}}[\s.\-]{{1,2}})[2-9][0-9]{{2}}[\s.\-][0-9]{{4}}{b}(?:\s{{0,2}}(?i:x|ext\.?|extension)\s{{0,2}}[0-9]{{1,6}})?"
        ),
        PhiKind::Phone,
        0.9,
        "phone",
        0,
        None,
    ));
    v.push(p(
        format!(r"(?i:phone|tel|cell|mobile|fax|call|home|work|pager|contact)\s{{0,3}}(?:#|no\.?|number)?\s{{0,3}}:?\s{{0,3}}({b}[2-9][0-9]{{9}}){b}"),
        PhiKind::Phone,
        0.85,
        "phone.context",
        1,
        None,
    ));

    // --- email (F), URL (N), IP (O) ---
    v.push(p(
        r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}(?-u:\b)".into(),
        PhiKind::Email,
        0.95,
        "email",
        0,
        None,
    ));
    v.push(p(
        r#"(?i:https?://|ftp://|www\.)[^\s<>"'()\[\]{}]{2,2048}"#.into(),
        PhiKind::Url,
        0.95,
        "url",
        0,
        None,
    ));
    v.push(p(
        format!(
            r"{b}(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{{2}}|[1-9]?[0-9])\.){{3}}(?:25[0-5]|2[0-4][0-9]|1[0-9]{{2}}|[1-9]?[0-9]){b}"
        ),
        PhiKind::Ip,
        0.9,
        "ipv4",
        0,
        Some(not_followed_by_dot_digit),
    ));
    v.push(p(
        r"(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|[0-9A-Fa-f]{1,4})(?::?[0-9A-Fa-f]{1,4}){0,7}".into(),
        PhiKind::Ip,
        0.9,
        "ipv6",
        0,
        Some(valid_ipv6),
    ));

    // --- SSN (G) ---
    v.push(p(
        format!(r"{b}[0-9]{{3}}[\- ][0-9]{{2}}[\- ][0-9]{{4}}{b}"),
        PhiKind::Ssn,
        0.95,
        "ssn",
        0,
        Some(valid_ssn),
    ));
    v.push(p(
        format!(r"(?i:ssn|ss#|social security(?: number| no\.?| #)?)\s{{0,3}}[:#]?\s{{0,3}}({b}[0-9]{{9}}){b}"),
        PhiKind::Ssn,
        0.95,
        "ssn.context",
        1,
        Some(valid_ssn),
    ));

    // --- numbers by context (H, I, J, K, L, M, R) ---
    let cued = |cues: &str| format!(r"{b}(?i:{cues}){CUE_SEP}{ID_VALUE}");
    v.push(p(
        cued(r"MRN|MR#|MR|medical record|med rec|chart|hospital (?:no|number)|patient id|pt id"),
        PhiKind::Mrn,
        0.95,
        "mrn.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        cued(r"member|subscriber|policy|group|medicaid|medicare|MBI|HICN|insurance|plan|beneficiary|BIN|PCN"),
        PhiKind::HealthPlan,
        0.9,
        "health_plan.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        cued(r"acct|account|acc|billing|invoice|encounter|FIN|visit"),
        PhiKind::Account,
        0.9,
        "account.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        cued(
            r"driver'?s license|license|licence|lic|DL|certificate|cert|DEA|passport|registration",
        ),
        PhiKind::License,
        0.9,
        "license.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        format!(r"{b}[ABFGMPRX][A-Z][0-9]{{7}}{b}"),
        PhiKind::License,
        0.9,
        "dea",
        0,
        Some(valid_dea),
    ));
    v.push(p(
        format!(r"{b}[A-HJ-NPR-Z0-9]{{17}}{b}"),
        PhiKind::Vehicle,
        0.95,
        "vin",
        0,
        Some(valid_vin),
    ));
    v.push(p(
        format!(r"{b}(?i:VIN|license plate|licence plate|plate|tag number|vehicle){CUE_SEP}([A-Za-z0-9][A-Za-z0-9\- ]{{0,7}}[A-Za-z0-9])"),
        PhiKind::Vehicle,
        0.85,
        "vehicle.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        format!(r"{b}(?i:(?:pacemaker|implant|pump|device|insulin pump)\s{{1,3}})?(?i:serial|S/N|SN|device|UDI|implant|pacemaker|pump|model/serial|lot){CUE_SEP}([A-Za-z0-9][A-Za-z0-9\-/]{{2,38}}[A-Za-z0-9])"),
        PhiKind::Device,
        0.85,
        "device.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        format!(r"{b}(?i:fingerprint|retinal scan|retina scan|iris scan|voiceprint|voice print|biometric|palm print|face template)(?:\s{{0,3}}(?:id|template|hash|ref))?{CUE_SEP}([A-Za-z0-9][A-Za-z0-9\-]{{4,62}}[A-Za-z0-9])"),
        PhiKind::Biometric,
        0.9,
        "biometric.context",
        1,
        Some(has_digit),
    ));
    v.push(p(
        r"(?i)[A-Za-z0-9_\-]{1,64}\.(?:jpe?g|png|heic|gif|tiff?|bmp|dcm|webp)(?-u:\b)".into(),
        PhiKind::Photo,
        0.8,
        "photo.file",
        0,
        None,
    ));
    v.push(p(
        format!(r"{b}(?i:case|claim|rx|prescription|prior auth(?:orization)?|auth|referral|casefile|identifier|record|ID){CUE_SEP}([A-Za-z0-9][A-Za-z0-9\-:]{{3,62}}[A-Za-z0-9])"),
        PhiKind::OtherId,
        0.8,
        "other_id.context",
        1,
        Some(has_digit),
    ));
    // Kipu casefile ids: "<number>:<uuid>".
    v.push(p(
        format!(
            r"{b}[0-9]{{1,12}}:[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}}{b}"
        ),
        PhiKind::OtherId,
        0.95,
        "kipu.casefile_id",
        0,
        None,
    ));

    // --- ZIP and addresses (B) ---
    v.push(p(
        format!(r"(?:{b}{STATES}|{STATE_NAMES})\.?,?\s{{1,3}}({b}[0-9]{{5}}(?:-[0-9]{{4}})?){b}"),
        PhiKind::Zip,
        0.95,
        "zip.state",
        1,
        None,
    ));
    v.push(p(
        format!(r"(?i:zip(?:\s?code)?|postal code|zip\+4)\s{{0,3}}[:#]?\s{{0,3}}({b}[0-9]{{5}}(?:-[0-9]{{4}})?){b}"),
        PhiKind::Zip,
        0.95,
        "zip.context",
        1,
        None,
    ));
    v.push(p(
        format!(r"{b}[0-9]{{1,6}}[A-Za-z]?\s{{1,3}}(?:[NSEW]\.?\s{{1,3}})?(?:[A-Z][A-Za-z]{{1,20}}\s{{1,3}}){{1,3}}(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Dr|Drive|Ln|Lane|Ct|Court|Way|Pl|Place|Ter|Terrace|Pkwy|Parkway|Cir|Circle|Hwy|Highway|Trl|Trail|Loop|Sq|Square)\.?(?:,?\s{{1,3}}(?:Apt|Unit|Suite|Ste|#)\.?\s{{0,3}}[A-Za-z0-9]{{1,6}})?{b}"),
        PhiKind::Address,
        0.9,
        "address.street",
        0,
        None,
    ));
    v.push(p(
        format!(r"(?i:P\.?O\.? Box)\s{{1,3}}[0-9]{{1,8}}{b}"),
        PhiKind::Address,
        0.9,
        "address.po_box",
        0,
        None,
    ));
    // "Springfield, IL 62704": the city before a state and ZIP.
    v.push(p(
        format!(r"{b}([A-Z][a-z]{{2,20}}(?:\s[A-Z][a-z]{{2,20}}){{0,2}}),\s{{1,3}}{STATES}\.?\s{{1,3}}[0-9]{{5}}"),
        PhiKind::Address,
        0.85,
        "address.city",
        1,
        None,
    ));
    v.push(p(
        format!(r"(?i:lives in|resides in|living in|moved to|from the town of|city of|hometown)\s{{1,3}}([A-Z][a-z]{{2,20}}(?:\s[A-Z][a-z]{{2,20}}){{0,2}}){b}"),
        PhiKind::Address,
        0.75,
        "address.city_context",
        1,
        Some(starts_upper),
    ));

    // --- ages over 89 (C) ---
    v.push(p(
        format!(r"{b}(9[0-9]|1[0-4][0-9])(?:\s{{0,2}}-?\s{{0,2}})(?i:y/?o|yrs?|years?)(?:\s{{0,2}}-?\s{{0,2}}(?i:old))?{b}"),
        PhiKind::Age,
        0.9,
        "age",
        1,
        None,
    ));
    v.push(p(
        format!(r"(?i:age[ds]?|aged)\s{{0,3}}:?\s{{0,3}}(9[0-9]|1[0-4][0-9]){b}"),
        PhiKind::Age,
        0.9,
        "age.context",
        1,
        None,
    ));
    v.push(p(
        format!(r"{b}(9[0-9]|1[0-4][0-9])\s{{0,2}}(?:F|M|yF|yM|y\.o\.){b}"),
        PhiKind::Age,
        0.8,
        "age.sex",
        1,
        None,
    ));
    v
}

fn has_digit(s: &[u8]) -> bool {
    s.iter().any(u8::is_ascii_digit)
}

fn starts_upper(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_uppercase)
}

/// "may 5" in lower case is usually the verb; month names must be capitalised unless
/// abbreviated with a period.
fn month_is_capitalised_or_abbrev(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_uppercase)
}

fn contains_capital_month(s: &[u8]) -> bool {
    s.iter().any(u8::is_ascii_uppercase)
}

fn not_followed_by_dot_digit(_s: &[u8]) -> bool {
    true
}

fn valid_ipv6(s: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(s) else {
        return false;
    };
    text.matches(':').count() >= 2
        && text.chars().any(|c| c.is_ascii_hexdigit())
        && text.parse::<std::net::Ipv6Addr>().is_ok()
}

/// SSA rules: area 000, 666 and 900-999 are never issued, nor group 00 or serial 0000.
fn valid_ssn(s: &[u8]) -> bool {
    let digits: Vec<u8> = s
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect();
    if digits.len() != 9 {
        return false;
    }
    let area = u32::from(digits[0]) * 100 + u32::from(digits[1]) * 10 + u32::from(digits[2]);
    let group = digits[3] * 10 + digits[4];
    let serial = digits[5..].iter().fold(0u32, |a, d| a * 10 + u32::from(*d));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// DEA registration number checksum: (d1 + d3 + d5) + 2 * (d2 + d4 + d6), last digit = d7.
fn valid_dea(s: &[u8]) -> bool {
    let d: Vec<u32> = s[2..].iter().map(|b| u32::from(b - b'0')).collect();
    d.len() == 7 && (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]
}

/// ISO 3779 / 49 CFR 565 check digit (position 9) of a North American VIN.
pub(crate) fn valid_vin(s: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return None,
        })
    }
    if s.len() != 17 || !s.iter().any(u8::is_ascii_digit) || !s.iter().any(u8::is_ascii_alphabetic)
    {
        return false;
    }
    let mut sum = 0;
    for (c, w) in s.iter().zip(WEIGHTS) {
        match value(*c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    let check = sum % 11;
    let expected = if check == 10 {
        b'X'
    } else {
        b'0' + check as u8
    };
    s[8] == expected
}

static FIRST_NAMES: &str = include_str!("../data/first_names.txt");
static SURNAMES: &str = include_str!("../data/surnames.txt");

/// Capitalised words that are in the name dictionaries but are far more often something else
/// in a clinical note: common English words, months and days, drug brand names, eponyms.
/// They count as names only with context (a title, a cue, or an unambiguous name beside them).
#[rustfmt::skip]
static AMBIGUOUS: &[&str] = &[
    // months, days, seasons
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "summer",
    "winter",
    "spring",
    "autumn",
    "fall",
    // common English words that are also names
    "will",
    "bill",
    "mark",
    "grant",
    "hope",
    "faith",
    "joy",
    "rose",
    "iris",
    "ivy",
    "dawn",
    "sunny",
    "chance",
    "young",
    "long",
    "short",
    "brown",
    "white",
    "black",
    "green",
    "gray",
    "grey",
    "bell",
    "hill",
    "wood",
    "woods",
    "stone",
    "rice",
    "price",
    "cash",
    "day",
    "cook",
    "page",
    "hall",
    "ward",
    "king",
    "love",
    "lane",
    "park",
    "parks",
    "case",
    "chase",
    "law",
    "low",
    "mays",
    "may",
    "best",
    "hunt",
    "fields",
    "field",
    "marsh",
    "rivers",
    "banks",
    "bush",
    "ball",
    "bond",
    "bolt",
    "booth",
    "bowl",
    "burns",
    "rush",
    "cross",
    "dean",
    "drake",
    "duke",
    "fox",
    "frank",
    "gay",
    "glass",
    "gold",
    "good",
    "guy",
    "hart",
    "hale",
    "hardy",
    "holiday",
    "house",
    "hood",
    "hunter",
    "jack",
    "joe",
    "key",
    "lamb",
    "little",
    "lord",
    "major",
    "mann",
    "march",
    "mason",
    "miles",
    "moon",
    "moss",
    "nash",
    "noble",
    "north",
    "norman",
    "page",
    "pope",
    "porter",
    "power",
    "powers",
    "pratt",
    "rich",
    "ray",
    "reed",
    "reid",
    "ross",
    "salt",
    "sharp",
    "shaw",
    "small",
    "snow",
    "spears",
    "stark",
    "steel",
    "storm",
    "street",
    "summers",
    "swift",
    "strong",
    "tanner",
    "temple",
    "thorn",
    "tower",
    "tucker",
    "vance",
    "wall",
    "walls",
    "waters",
    "wells",
    "west",
    "wise",
    "wolf",
    "worth",
    "carter",
    "baker",
    "barber",
    "bishop",
    "butler",
    "carpenter",
    "chandler",
    "clay",
    "cole",
    "cooper",
    "farmer",
    "fisher",
    "fletcher",
    "foster",
    "gardner",
    "glover",
    "hayes",
    "head",
    "hester",
    "hopper",
    "knight",
    "mayo",
    "merritt",
    "miller",
    "myers",
    "nurse",
    "patient",
    "pierce",
    "potter",
    "sawyer",
    "shepherd",
    "slater",
    "smith",
    "spencer",
    "sterling",
    "taylor",
    "turner",
    "walker",
    "weaver",
    "webb",
    "winter",
    "summer",
    "april",
    "august",
    "june",
    "christian",
    "august",
    "ruby",
    "pearl",
    "crystal",
    "amber",
    "jewel",
    "ginger",
    "olive",
    "violet",
    "lily",
    "daisy",
    "heather",
    "holly",
    "autumn",
    "golden",
    "sterling",
    "royal",
    "prince",
    "earl",
    "baron",
    "sage",
    "pepper",
    "candy",
    "honey",
    "star",
    "angel",
    "precious",
    "destiny",
    "trinity",
    "patience",
    "charity",
    "mercy",
    "blessing",
    "gene",
    "don",
    "art",
    "bob",
    "rob",
    "sue",
    "al",
    "ed",
    "sam",
    "max",
    "pat",
    "dee",
    "kay",
    "lou",
    "ty",
    "van",
    "le",
    "la",
    "de",
    "du",
    "di",
    "do",
    "mo",
    "so",
    "ha",
    "ho",
    "li",
    "lo",
    "ma",
    "me",
    "mi",
    "ng",
    "oh",
    "yu",
    "wan",
    "un",
    "an",
    "in",
    "on",
    "or",
    "as",
    "at",
    "by",
    "to",
    "up",
    "us",
    "no",
    "go",
    "he",
    "we",
    "my",
    "it",
    "is",
    "be",
    "am",
    "ok",
    "dr",
    "mr",
    "ms",
    "mrs",
    "st",
    "pa",
    "er",
    "or",
    "icu",
    "bed",
    "floor",
    "wing",
    "room",
    "unit",
    "plan",
    "pain",
    "stable",
    "normal",
    "denies",
    "reports",
    "states",
    "will",
    "lee",
    "burden",
    "beers",
    "camp",
    "craft",
    "dale",
    "dodge",
    "ford",
    "lincoln",
    "benz",
    "hospital",
    "clinic",
    "center",
    "health",
    "medical",
    "state",
    "county",
    "city",
    "mobile",
    "urgent",
    "home",
    "church",
    "school",
    "college",
    "union",
    "general",
    "memorial",
    "saint",
    "grace",
    "haven",
    "valley",
    "mountain",
    "river",
    "lake",
    "bay",
    "beach",
    "forest",
    "glen",
    "sun",
    "rain",
    "cloud",
    "sky",
    "ocean",
    "land",
    "english",
    "french",
    "irish",
    "welsh",
    "german",
    "dutch",
    "scott",
    "england",
    "india",
    "china",
    "jordan",
    "israel",
    "georgia",
    "virginia",
    "carolina",
    "dakota",
    "austin",
    "houston",
    "dallas",
    "denver",
    "phoenix",
    "madison",
    "cleveland",
    "orlando",
    "chester",
    "lancaster",
    "york",
    "kent",
    "berkeley",
    "brooklyn",
    "paris",
    "vienna",
    "florence",
    "sydney",
    "charlotte",
    "helena",
    "victoria",
    "alexandria",
    "columbia",
    "augusta",
    "savannah",
    "aurora",
    "eugene",
    "tyler",
    "marion",
    "troy",
    "salem",
    "logan",
    "lawrence",
    "laramie",
    "reno",
    "tempe",
    "flint",
    "gary",
    "hammond",
    "chan",
    "man",
    "person",
    "son",
    "daughter",
    "wife",
    "husband",
    "mother",
    "father",
    "brother",
    "sister",
    "friend",
    "partner",
    "nurse",
    "doctor",
    "provider",
    "client",
    "resident",
    "patient",
    "family",
    "note",
    "notes",
    "history",
    "exam",
    "assessment",
    "review",
    "follow",
    "return",
    "continue",
    "start",
    "stop",
    "check",
    "call",
    "see",
    "seen",
    "given",
    "taken",
    "take",
    "give",
    "per",
    "via",
    "post",
    "pre",
    "prior",
    "last",
    "next",
    "early",
    "late",
    "new",
    "old",
    "morning",
    "evening",
    "night",
    "noon",
    "today",
    "tomorrow",
    "yesterday",
    "week",
    "month",
    "year",
    "time",
    "date",
    "age",
    "sex",
    "male",
    "female",
];

/// Capitalised words that are never names in a clinical note: drug names (brand and generic)
/// that look like names, medical eponyms, clinical vocabulary. Checked before the dictionaries.
#[rustfmt::skip]
static NEVER_NAMES: &[&str] = &[
    // drugs that look like names
    "ativan",
    "norco",
    "valium",
    "xanax",
    "klonopin",
    "librium",
    "suboxone",
    "subutex",
    "sublocade",
    "vivitrol",
    "narcan",
    "naloxone",
    "naltrexone",
    "buprenorphine",
    "methadone",
    "gabapentin",
    "neurontin",
    "lyrica",
    "seroquel",
    "zoloft",
    "prozac",
    "paxil",
    "celexa",
    "lexapro",
    "wellbutrin",
    "trazodone",
    "desyrel",
    "remeron",
    "ambien",
    "lunesta",
    "adderall",
    "ritalin",
    "vyvanse",
    "lamictal",
    "depakote",
    "tegretol",
    "abilify",
    "risperdal",
    "zyprexa",
    "haldol",
    "geodon",
    "latuda",
    "lithium",
    "cymbalta",
    "effexor",
    "pristiq",
    "buspar",
    "vistaril",
    "atarax",
    "benadryl",
    "tylenol",
    "motrin",
    "advil",
    "aleve",
    "percocet",
    "vicodin",
    "oxycontin",
    "dilaudid",
    "tramadol",
    "ultram",
    "keppra",
    "dilantin",
    "topamax",
    "zofran",
    "phenergan",
    "reglan",
    "protonix",
    "prilosec",
    "nexium",
    "pepcid",
    "zantac",
    "lasix",
    "coumadin",
    "warfarin",
    "eliquis",
    "xarelto",
    "plavix",
    "lipitor",
    "zocor",
    "crestor",
    "norvasc",
    "lopressor",
    "toprol",
    "tenormin",
    "catapres",
    "clonidine",
    "lisinopril",
    "zestril",
    "prinivil",
    "cozaar",
    "diovan",
    "metformin",
    "glucophage",
    "januvia",
    "jardiance",
    "ozempic",
    "trulicity",
    "lantus",
    "humalog",
    "novolog",
    "levemir",
    "synthroid",
    "levoxyl",
    "prednisone",
    "medrol",
    "decadron",
    "keflex",
    "augmentin",
    "bactrim",
    "cipro",
    "levaquin",
    "zithromax",
    "flagyl",
    "diflucan",
    "valtrex",
    "chantix",
    "antabuse",
    "campral",
    "acamprosate",
    "disulfiram",
    "thiamine",
    "folate",
    "multivitamin",
    "librax",
    "robaxin",
    "flexeril",
    "zanaflex",
    "soma",
    "baclofen",
    "lucemyra",
    "lofexidine",
    "sonata",
    "restoril",
    "halcion",
    "serax",
    "tranxene",
    "doral",
    "belsomra",
    "silenor",
    "hydroxyzine",
    "propranolol",
    "inderal",
    "prazosin",
    "minipress",
    "aricept",
    "namenda",
    "sinemet",
    "requip",
    "mirapex",
    "cogentin",
    "benztropine",
    "ventolin",
    "proair",
    "albuterol",
    "advair",
    "symbicort",
    "spiriva",
    "singulair",
    "flonase",
    "claritin",
    "zyrtec",
    "allegra",
    "colace",
    "senna",
    "dulcolax",
    "miralax",
    "imodium",
    "lomotil",
    "bentyl",
    "carafate",
    "tums",
    "maalox",
    "mylanta",
    "aspirin",
    "ecotrin",
    "heparin",
    "lovenox",
    "insulin",
    // medical eponyms
    "parkinson",
    "parkinsons",
    "parkinson's",
    "crohn",
    "crohns",
    "crohn's",
    "alzheimer",
    "alzheimers",
    "alzheimer's",
    "hodgkin",
    "hodgkins",
    "hodgkin's",
    "addison",
    "addisons",
    "addison's",
    "cushing",
    "cushings",
    "cushing's",
    "graves",
    "hashimoto",
    "hashimotos",
    "hashimoto's",
    "huntington",
    "huntingtons",
    "huntington's",
    "tourette",
    "tourettes",
    "tourette's",
    "wernicke",
    "wernicke's",
    "korsakoff",
    "korsakoff's",
    "bell's",
    "babinski",
    "romberg",
    "murphy's",
    "mcburney",
    "kernig",
    "brudzinski",
    "homan",
    "homans",
    "glasgow",
    "apgar",
    "down",
    "asperger",
    "aspergers",
    "asperger's",
    "raynaud",
    "raynaud's",
    "sjogren",
    "guillain",
    "barre",
    "epstein",
    "barr",
    "kaposi",
    "meniere",
    "meniere's",
    "paget",
    "pagets",
    "wilson's",
    "whipple",
    "willis",
    "foley",
    "swan",
    "ganz",
    "gram",
    "pap",
    "holter",
    "doppler",
    "heimlich",
    "trendelenburg",
    "valsalva",
    "lewy",
    "pick's",
    "marfan",
    "turner's",
    "klinefelter",
    "tay",
    "sachs",
    "gilbert's",
    "reye",
    "reye's",
    "stevens",
    "johnson's",
    "mallory",
    "weiss",
    "barrett",
    "barrett's",
    "cheyne",
    "stokes",
    "kussmaul",
    "osler",
    "virchow",
    "beck",
    "beck's",
    "hamilton",
    "ciwa",
    "cows",
    "phq",
    "gad",
    "audit",
    "dast",
    "mini",
    "mental",
    "folstein",
    "snellen",
    "weber",
    "rinne",
    "allen",
    "allen's",
    "tinel",
    "phalen",
    "lachman",
    "mcmurray",
    "thompson's",
    "hoffman",
    "hoffmann",
    "clonus",
    // titles (the cue list uses them; the words themselves are not names)
    "dr",
    "mr",
    "mrs",
    "ms",
    "miss",
    "prof",
    "mx",
    "sr",
    "jr",
    "rev",
    "sgt",
    "driver",
    "drivers",
    "driver's",
    // clinical and document vocabulary
    "patient",
    "pt",
    "name",
    "doctor",
    "nurse",
    "client",
    "provider",
    "history",
    "physical",
    "assessment",
    "plan",
    "diagnosis",
    "allergies",
    "medications",
    "vitals",
    "labs",
    "impression",
    "subjective",
    "objective",
    "chief",
    "complaint",
    "hpi",
    "ros",
    "pmh",
    "psh",
    "fh",
    "sh",
    "discharge",
    "admission",
    "admitted",
    "follow",
    "up",
    "signed",
    "electronically",
    "by",
    "md",
    "do",
    "rn",
    "np",
    "pa",
    "lcsw",
    "lpc",
    "lmft",
    "cadc",
    "phd",
    "psyd",
    "mft",
    "bsn",
    "the",
    "and",
    "with",
    "without",
    "for",
    "from",
    "to",
    "of",
    "in",
    "on",
    "at",
    "is",
    "was",
    "a",
    "an",
    "no",
    "not",
    "she",
    "he",
    "her",
    "his",
    "they",
    "them",
    "their",
    "we",
    "our",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "will",
    "would",
    "should",
    "could",
    "call",
    "contact",
    "phone",
    "fax",
    "email",
    "address",
    "zip",
    "dob",
    "mrn",
    "ssn",
    "age",
    "ciwa-ar",
    "detox",
    "rehab",
    "iop",
    "php",
    "residential",
    "outpatient",
    "inpatient",
    "alcohol",
    "opioid",
    "opioids",
    "cocaine",
    "heroin",
    "fentanyl",
    "cannabis",
    "marijuana",
    "benzodiazepine",
    "benzodiazepines",
    "withdrawal",
    "use",
    "disorder",
    "severe",
    "moderate",
    "mild",
    "acute",
    "chronic",
    "denies",
    "reports",
    "states",
    "endorses",
    "appears",
    "noted",
    "tolerated",
    "continue",
    "continued",
    "started",
    "increase",
    "decrease",
    "taper",
    "hold",
    "mg",
    "ml",
    "tab",
    "tabs",
    "bid",
    "tid",
    "qid",
    "qhs",
    "prn",
    "po",
    "im",
    "iv",
    "sq",
    "blood",
    "pressure",
    "heart",
    "rate",
    "temp",
    "weight",
    "height",
    "bmi",
    "glucose",
    "sodium",
    "potassium",
    "hemoglobin",
    "platelets",
    "wbc",
    "rbc",
    "inr",
    "alt",
    "ast",
    "ggt",
    "tsh",
    "a1c",
    "ekg",
    "ecg",
    "ct",
    "mri",
    "xray",
    "ultrasound",
    "room",
    "bed",
    "group",
    "session",
    "therapy",
    "counseling",
    "meeting",
    "meetings",
    "aa",
    "na",
    "smart",
    "recovery",
    "sober",
    "sobriety",
    "relapse",
    "craving",
    "cravings",
    "mood",
    "affect",
    "insight",
    "judgment",
    "oriented",
    "alert",
    "calm",
    "anxious",
    "depressed",
    "tearful",
    "cooperative",
    "labile",
    "guarded",
    "euthymic",
    "dysphoric",
    "irritable",
    "hopeful",
    "vital",
    "signs",
    "within",
    "limits",
    "negative",
    "positive",
    "results",
    "result",
    "pending",
    "ordered",
    "order",
    "orders",
    "medication",
    "dose",
    "dosage",
    "route",
    "frequency",
    "refill",
    "refills",
    "pharmacy",
    "insurance",
    "payor",
    "medicaid",
    "medicare",
    "aetna",
    "cigna",
    "humana",
    "anthem",
    "kaiser",
    "tricare",
    "blue",
    "cross",
    "shield",
    "united",
    "healthcare",
    "optum",
    "magellan",
    "beacon",
    "ambetter",
    "molina",
    "centene",
    "wellcare",
    "oscar",
    "emergency",
    "department",
    "ed",
    "er",
    "icu",
    "ccu",
    "or",
    "pacu",
    "unit",
    "floor",
    "wing",
    "north",
    "south",
    "east",
    "west",
    "main",
    "street",
    "avenue",
    "road",
    "suite",
    "apt",
    "box",
    "po",
    "city",
    "state",
    "county",
    "lab",
    "laboratory",
    "radiology",
    "pathology",
    "cardiology",
    "neurology",
    "psychiatry",
    "psychology",
    "medicine",
    "surgery",
    "clinic",
    "hospital",
    "center",
    "centre",
    "health",
    "medical",
    "behavioral",
    "services",
    "service",
    "program",
    "level",
    "care",
    "team",
    "staff",
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
    "sun",
    "am",
    "pm",
    "noon",
    "midnight",
    "yes",
    "ok",
    "okay",
    "see",
    "also",
    "per",
    "via",
    "re",
    "cc",
    "bcc",
    "note",
    "addendum",
];

/// Words after which the next capitalised words are names: titles and cue phrases.
#[rustfmt::skip]
static CUES: &[&str] = &[
    "mr.",
    "mr ",
    "mrs.",
    "mrs ",
    "ms.",
    "ms ",
    "miss ",
    "dr.",
    "dr ",
    "prof.",
    "mx.",
    "patient:",
    "patient name:",
    "pt:",
    "pt name:",
    "name:",
    "client:",
    "client name:",
    "resident:",
    "seen by",
    "examined by",
    "evaluated by",
    "signed by",
    "electronically signed by",
    "signed:",
    "signature:",
    "attending:",
    "attending physician:",
    "provider:",
    "therapist:",
    "counselor:",
    "case manager:",
    "nurse:",
    "rn:",
    "referred by",
    "dictated by",
    "transcribed by",
    "cosigned by",
    "son ",
    "daughter ",
    "wife ",
    "husband ",
    "mother ",
    "father ",
    "brother ",
    "sister ",
    "spouse ",
    "partner ",
    "grandson ",
    "granddaughter ",
    "grandmother ",
    "grandfather ",
    "aunt ",
    "uncle ",
    "niece ",
    "nephew ",
    "cousin ",
    "fiance ",
    "fiancee ",
    "girlfriend ",
    "boyfriend ",
    "guardian ",
    "friend ",
    "sponsor ",
    "son,",
    "daughter,",
    "wife,",
    "husband,",
    "mother,",
    "father,",
    "emergency contact:",
    "contact:",
    "guardian:",
    "spouse:",
    "employer:",
    "works for",
    "employed by",
    "poa:",
    "cc:",
    "to:",
    "from:",
    "dear ",
    "regards,",
    "thanks,",
    "sincerely,",
    "-- ",
    "— ",
];

struct NameDetector {
    first: HashSet<&'static str>,
    last: HashSet<&'static str>,
    ambiguous: HashSet<&'static str>,
    never: HashSet<&'static str>,
    cues: AhoCorasick,
    token: Regex,
}

fn dictionary(data: &'static str) -> HashSet<&'static str> {
    data.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// One capitalised word (or initial) found by the tokenizer.
#[derive(Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    initial: bool,
}

impl NameDetector {
    fn new() -> Self {
        let cues = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(CUES)
            .unwrap_or_else(|e| panic!("built-in cue list does not compile: {e}"));
        Self {
            first: dictionary(FIRST_NAMES),
            last: dictionary(SURNAMES),
            ambiguous: AMBIGUOUS.iter().copied().collect(),
            never: NEVER_NAMES.iter().copied().collect(),
            cues,
            // A capitalised word (O'Brien, Smith-Jones, McDonald, SMITH) or an initial ("J.").
            token: build(
                r"(?-u:\b)(?:[A-Z](?:[a-z]{1,20}|[A-Z]{1,20})(?:['\-][A-Z]?[a-z]{1,20})?|[A-Z]\.)",
            ),
        }
    }

    fn classify(&self, word: &str) -> Class {
        let lower = word.to_ascii_lowercase();
        let base = lower.trim_end_matches("'s");
        if self.never.contains(base) {
            return Class::Never;
        }
        let in_dict = self.first.contains(base)
            || self.last.contains(base)
            || base
                .split('-')
                .all(|part| self.last.contains(part) || self.first.contains(part));
        if !in_dict {
            return Class::Unknown;
        }
        if self.ambiguous.contains(base) {
            Class::Ambiguous
        } else {
            Class::Name
        }
    }

    fn detect(&self, text: &str, out: &mut Vec<Span>) {
        let bytes = text.as_bytes();
        let tokens: Vec<Token> = self
            .token
            .find_iter(bytes)
            .map(|m| Token {
                start: m.start(),
                end: m.end(),
                initial: m.as_bytes().ends_with(b"."),
            })
            .collect();
        // Cue ends: a name starting right after one of these is a name whatever the dictionary
        // says. The first TITLE_CUES entries of CUES are titles, which also override the
        // never-a-name list ("Dr. Cross", "Ms. Driver").
        let mut cue_ends: Vec<(usize, Cue)> = Vec::new();
        for m in self.cues.find_iter(bytes) {
            let at_word_start = m.start() == 0 || !bytes[m.start() - 1].is_ascii_alphanumeric();
            if at_word_start {
                let kind = if m.pattern().as_usize() < TITLE_CUES {
                    Cue::Title
                } else {
                    Cue::Word
                };
                cue_ends.push((m.end(), kind));
            }
        }
        let is_title = |t: &Token| {
            matches!(
                &text[t.start..t.end],
                "Mr" | "Mrs" | "Ms" | "Dr" | "Miss" | "Prof" | "Mx" | "MR" | "MRS" | "MS" | "DR"
            )
        };
        let mut i = 0;
        while i < tokens.len() {
            // Group tokens into runs separated only by single spaces (or ", " for "Last, First");
            // a title ends a run so that the name after it starts one.
            let mut j = i + 1;
            while j < tokens.len() && j - i < 4 && !is_title(&tokens[j - 1]) {
                let gap = &bytes[tokens[j - 1].end..tokens[j].start];
                if gap == b" " || (gap == b", " && j == i + 1 && !tokens[i].initial) {
                    j += 1;
                } else {
                    break;
                }
            }
            let run = &tokens[i..j];
            let start = run[0].start;
            // Cue ends are in increasing order (leftmost-longest matches do not overlap), so
            // the candidates are the few just before `start`: a binary search keeps this linear.
            let upto = cue_ends.partition_point(|(e, _)| *e <= start);
            let cue = cue_ends[upto.saturating_sub(3)..upto]
                .iter()
                .filter(|(e, _)| start - e <= 2 && bytes[*e..start].iter().all(|b| *b == b' '))
                .map(|(_, k)| *k)
                .max()
                .unwrap_or(Cue::None);
            let classes: Vec<Class> = run
                .iter()
                .map(|t| {
                    if t.initial {
                        Class::Initial
                    } else {
                        self.classify(&text[t.start..t.end])
                    }
                })
                .collect();
            if let Some(span) = self
                .score_cued(run, &classes, cue)
                .or_else(|| self.score_run(text, run, &classes))
            {
                out.push(span);
            }
            i = j;
        }
    }

    /// A run right after a cue is a name if any word in it could be one; after a title, always.
    fn score_cued(&self, run: &[Token], classes: &[Class], cue: Cue) -> Option<Span> {
        if cue == Cue::None {
            return None;
        }
        let mut hi = run.len();
        while hi > 0 && matches!(classes[hi - 1], Class::Never | Class::Initial) {
            hi -= 1;
        }
        if hi == 0 && cue == Cue::Title && !matches!(classes[0], Class::Initial) {
            hi = 1;
        }
        let name_like = classes[..hi].iter().any(|c| !matches!(c, Class::Never));
        if hi == 0 || !(cue == Cue::Title || name_like) {
            return None;
        }
        Some(Span {
            start: run[0].start,
            end: run[hi - 1].end,
            kind: PhiKind::Name,
            confidence: 0.9,
            detector: if cue == Cue::Title {
                "name.title"
            } else {
                "name.cue"
            },
        })
    }

    fn score_run(&self, text: &str, run: &[Token], classes: &[Class]) -> Option<Span> {
        // Trim words that can never be names from both ends.
        let mut lo = 0;
        let mut hi = run.len();
        while lo < hi && matches!(classes[lo], Class::Never) {
            lo += 1;
        }
        while hi > lo && matches!(classes[hi - 1], Class::Never | Class::Initial) {
            hi -= 1;
        }
        if lo >= hi || classes[lo..hi].iter().any(|c| matches!(c, Class::Never)) {
            return None;
        }
        let strong = classes[lo..hi]
            .iter()
            .filter(|c| matches!(c, Class::Name))
            .count();
        let named = classes[lo..hi]
            .iter()
            .filter(|c| matches!(c, Class::Name | Class::Ambiguous))
            .count();
        let words = classes[lo..hi]
            .iter()
            .filter(|c| !matches!(c, Class::Initial))
            .count();
        let all_caps_run = run[lo..hi].iter().all(|t| {
            text[t.start..t.end]
                .bytes()
                .all(|b| !b.is_ascii_lowercase())
        });
        let (confidence, detector) = if strong >= 1 && named >= 2 {
            (0.9, "name.dictionary_pair")
        } else if strong >= 1 && words >= 2 && named >= 1 {
            (0.75, "name.dictionary_pair")
        } else if strong == 1 && words == 1 && !all_caps_run {
            (0.6, "name.dictionary")
        } else if strong == 1 && words == 1 {
            (0.4, "name.dictionary_caps")
        } else {
            return None;
        };
        Some(Span {
            start: run[lo].start,
            end: run[hi - 1].end,
            kind: PhiKind::Name,
            confidence,
            detector,
        })
    }
}

/// What precedes a run of capitalised words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cue {
    None,
    Word,
    Title,
}

/// How many entries at the start of [`CUES`] are titles.
const TITLE_CUES: usize = 11;

#[derive(Clone, Copy, Debug)]
enum Class {
    Name,
    Ambiguous,
    Unknown,
    Never,
    Initial,
}

/// The detector: compiled patterns and dictionaries. Building one takes milliseconds; share it
/// ([`Detector::global`]).
pub struct Detector {
    patterns: Vec<Pattern>,
    names: NameDetector,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

static GLOBAL: LazyLock<Detector> = LazyLock::new(Detector::new);

impl Detector {
    /// Compiles every pattern and loads the dictionaries.
    pub fn new() -> Self {
        Self {
            patterns: patterns(),
            names: NameDetector::new(),
        }
    }

    /// A process-wide detector, compiled on first use.
    pub fn global() -> &'static Detector {
        &GLOBAL
    }

    /// Every identifier found in `text`, non-overlapping, sorted by start offset, at any
    /// confidence. Filter with [`DEFAULT_THRESHOLD`] or your own.
    pub fn detect_all(&self, text: &str) -> Vec<Span> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        for pattern in &self.patterns {
            for caps in pattern.regex.captures_iter(bytes) {
                let Some(m) = caps.get(pattern.group) else {
                    continue;
                };
                let (start, end) =
                    trim_trailing_punctuation(bytes, m.start(), m.end(), pattern.kind);
                if start >= end {
                    continue;
                }
                if let Some(validate) = pattern.validate
                    && !validate(&bytes[start..end])
                {
                    continue;
                }
                let (start, end) = snap_to_char_boundaries(text, start, end);
                found.push(Span {
                    start,
                    end,
                    kind: pattern.kind,
                    confidence: pattern.confidence,
                    detector: pattern.detector,
                });
            }
        }
        self.names.detect(text, &mut found);
        for span in &mut found {
            if span.kind == PhiKind::Phone && preceded_by_fax(bytes, span.start) {
                span.kind = PhiKind::Fax;
                span.detector = "fax";
            }
        }
        resolve_overlaps(found)
    }

    /// The identifiers in `text` at or above [`DEFAULT_THRESHOLD`].
    pub fn detect(&self, text: &str) -> Vec<Span> {
        let mut spans = self.detect_all(text);
        spans.retain(|s| s.confidence >= DEFAULT_THRESHOLD);
        spans
    }

    /// Detection over bytes that may not be UTF-8 (file contents): invalid sequences become
    /// U+FFFD first, so the returned spans index the returned text, not `input`.
    pub fn detect_bytes<'a>(&self, input: &'a [u8]) -> (Cow<'a, str>, Vec<Span>) {
        let text = String::from_utf8_lossy(input);
        let spans = self.detect(&text);
        (text, spans)
    }
}

/// "fax" within the few words before a phone number ("Fax: …", "faxed to court at …") makes it a
/// fax number; the window is short so a fax mentioned earlier in a sentence does not relabel it.
fn preceded_by_fax(bytes: &[u8], start: usize) -> bool {
    let from = start.saturating_sub(24);
    bytes[from..start]
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"fax"))
}

fn trim_trailing_punctuation(
    bytes: &[u8],
    start: usize,
    mut end: usize,
    kind: PhiKind,
) -> (usize, usize) {
    if matches!(
        kind,
        PhiKind::Url | PhiKind::Email | PhiKind::Device | PhiKind::OtherId
    ) {
        while end > start
            && matches!(
                bytes[end - 1],
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b'-' | b'/'
            )
        {
            end -= 1;
        }
    }
    (start, end)
}

fn snap_to_char_boundaries(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    while end < text.len() && !text.is_char_boundary(end) {
        end += 1;
    }
    (start, end)
}

/// Keeps the most confident (then longest) span where spans overlap.
fn resolve_overlaps(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(b.len().cmp(&a.len()))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
    // `kept_sorted` holds accepted spans ordered by start for an O(log n) overlap check.
    let mut kept_sorted: std::collections::BTreeMap<usize, Span> =
        std::collections::BTreeMap::new();
    for span in spans {
        let before = kept_sorted.range(..span.end).next_back().map(|(_, s)| *s);
        if before.is_some_and(|s| s.overlaps(&span)) {
            continue;
        }
        kept_sorted.insert(span.start, span);
    }
    kept.extend(kept_sorted.into_values());
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PhiKind, String)> {
        Detector::global()
            .detect(text)
            .into_iter()
            .map(|s| (s.kind, text[s.start..s.end].to_string()))
            .collect()
    }

    fn has(text: &str, kind: PhiKind, value: &str) -> bool {
        kinds(text).iter().any(|(k, v)| *k == kind && v == value)
    }

    #[test]
    fn every_date_form_is_a_date() {
        for (text, value) in [
            ("seen 03/14/2023 today", "03/14/2023"),
            ("seen 3-14-23 today", "3-14-23"),
            ("seen 3.14.2023 today", "3.14.2023"),
            (
                "at 2023-03-14T10:22:00-05:00 ok",
                "2023-03-14T10:22:00-05:00",
            ),
            ("on 2023-03-14 ok", "2023-03-14"),
            ("admitted March 14, 2023 for", "March 14, 2023"),
            ("admitted Mar. 14th 2023 for", "Mar. 14th 2023"),
            ("on the 3rd of May we", "3rd of May"),
            ("on 14 Jan 2020 we", "14 Jan 2020"),
            ("since January 2021 she", "January 2021"),
            ("return in May for", "May"),
            (
                "seen 03/14/2023 at 10:30 AM today",
                "03/14/2023 at 10:30 AM",
            ),
            ("DOB 1/5 noted", "1/5"),
            ("next review 3/2.", "3/2"),
            ("family session Friday 3/29 at", "3/29"),
            ("relapse on New Year's Eve...", "New Year's Eve"),
            ("drank since Christmas Eve, sister", "Christmas Eve"),
            ("around Thanksgiving she", "Thanksgiving"),
        ] {
            assert!(has(text, PhiKind::Date, value), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn doses_and_blood_pressures_are_not_dates() {
        for text in [
            "Norco 5/325 mg q6h",
            "take 1/2 tab",
            "BP 128/84",
            "you may go home",
            "gave 1/2 tab after 1 hr",
            "an easter egg hunt",
        ] {
            assert!(
                !kinds(text).iter().any(|(k, _)| *k == PhiKind::Date),
                "{text}: {:?}",
                kinds(text)
            );
        }
    }

    #[test]
    fn phone_formats_and_fax_are_found() {
        for (text, kind, value) in [
            ("call (415) 555-0123 now", PhiKind::Phone, "(415) 555-0123"),
            (
                "call 415-555-0123 x204 now",
                PhiKind::Phone,
                "415-555-0123 x204",
            ),
            (
                "call +1 415.555.0123 now",
                PhiKind::Phone,
                "+1 415.555.0123",
            ),
            ("Phone: 4155550123", PhiKind::Phone, "4155550123"),
            ("Fax: 415-555-0199", PhiKind::Fax, "415-555-0199"),
            (
                "records faxed to court at (603) 555-0172.",
                PhiKind::Fax,
                "(603) 555-0172",
            ),
        ] {
            assert!(has(text, kind, value), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn ssn_email_url_ip_are_found_and_invalid_ssns_are_not() {
        assert!(has("SSN 123-45-6789.", PhiKind::Ssn, "123-45-6789"));
        assert!(has("ssn: 123456789", PhiKind::Ssn, "123456789"));
        assert!(!has("id 000-12-3456", PhiKind::Ssn, "000-12-3456"));
        assert!(!has("id 666-12-3456", PhiKind::Ssn, "666-12-3456"));
        assert!(has(
            "mail j.doe+x@example.org.",
            PhiKind::Email,
            "j.doe+x@example.org"
        ));
        assert!(has(
            "see https://portal.example.com/p?id=7.",
            PhiKind::Url,
            "https://portal.example.com/p?id=7"
        ));
        assert!(has("from 10.0.12.7 at", PhiKind::Ip, "10.0.12.7"));
        assert!(has(
            "from 2001:db8::8a2e:370:7334 at",
            PhiKind::Ip,
            "2001:db8::8a2e:370:7334"
        ));
        assert!(!kinds("at 10:30 the").iter().any(|(k, _)| *k == PhiKind::Ip));
    }

    #[test]
    fn numbers_by_context_get_their_kind() {
        assert!(has("MRN: 00482913", PhiKind::Mrn, "00482913"));
        assert!(has("Acct # 99-1234", PhiKind::Account, "99-1234"));
        assert!(has(
            "Member ID W123456789",
            PhiKind::HealthPlan,
            "W123456789"
        ));
        assert!(has("DEA AB1234563 on file", PhiKind::License, "AB1234563"));
        assert!(has(
            "VIN 1HGCM82633A004352 seen",
            PhiKind::Vehicle,
            "1HGCM82633A004352"
        ));
        assert!(!has(
            "code 1HGCM82634A004352 seen",
            PhiKind::Vehicle,
            "1HGCM82634A004352"
        ));
        assert!(has(
            "pacemaker serial: PM-88231-X",
            PhiKind::Device,
            "PM-88231-X"
        ));
        assert!(has(
            "lives at 42 Oak Street, Apt 3",
            PhiKind::Address,
            "42 Oak Street, Apt 3"
        ));
        assert!(has("Springfield, IL 62704", PhiKind::Zip, "62704"));
        assert!(has(
            "Springfield, IL 62704",
            PhiKind::Address,
            "Springfield"
        ));
        assert!(has("a 93-year-old man", PhiKind::Age, "93"));
        assert!(
            !kinds("a 45-year-old man")
                .iter()
                .any(|(k, _)| *k == PhiKind::Age)
        );
    }

    #[test]
    fn five_digit_numbers_without_context_are_not_zip_codes() {
        assert!(
            kinds("platelets 25000 and CPT 99213").is_empty(),
            "{:?}",
            kinds("platelets 25000 and CPT 99213")
        );
    }

    #[test]
    fn names_by_dictionary_and_context() {
        assert!(has(
            "Seen with John Smith today",
            PhiKind::Name,
            "John Smith"
        ));
        assert!(has("Pt: Zebulon Quixote", PhiKind::Name, "Zebulon Quixote"));
        assert!(has("spoke with Mrs. Okafor about", PhiKind::Name, "Okafor"));
        assert!(has("her daughter Keisha called", PhiKind::Name, "Keisha"));
        assert!(has(
            "Electronically signed by Maria Lopez, LCSW",
            PhiKind::Name,
            "Maria Lopez"
        ));
        assert!(has(
            "Her sister May Thompson visited",
            PhiKind::Name,
            "May Thompson"
        ));
    }

    #[test]
    fn drug_names_eponyms_and_months_are_not_names() {
        for text in [
            "Started Ativan 1 mg and Norco for pain",
            "History of Parkinson disease and Crohn's",
            "Return in May",
            "Graves disease, Hodgkin lymphoma",
            "Will follow up. Mark as reviewed.",
        ] {
            assert!(
                !kinds(text).iter().any(|(k, _)| *k == PhiKind::Name),
                "{text}: {:?}",
                kinds(text)
            );
        }
    }

    #[test]
    fn spans_are_sorted_and_disjoint() {
        let text = "Pt: John Smith DOB 01/02/1950 MRN 1234567 phone 415-555-0123 john@example.com";
        let spans = Detector::global().detect(text);
        assert!(spans.len() >= 5);
        for w in spans.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_still_scanned() {
        let mut input = b"SSN 123-45-6789 \xff\xfe then ".to_vec();
        input.extend_from_slice("café 415-555-0123".as_bytes());
        let (text, spans) = Detector::global().detect_bytes(&input);
        let found: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
        assert!(found.contains(&"123-45-6789"));
        assert!(found.contains(&"415-555-0123"));
    }
}
