//! Medication dose-range check: finds "drug amount unit frequency" statements in any text (a
//! summary, an LLM's output) and flags those whose daily dose exceeds a documented maximum.
//!
//! # The table
//!
//! Maximum recommended **adult daily** doses (oral unless stated) from the US FDA prescribing
//! information (labels on DailyMed) of the reference product named in each row of
//! [`MAX_DAILY_DOSES`]. These are label maxima for general adult use; specific populations
//! (renal or hepatic impairment, elderly, pediatrics) have lower limits that this check does not
//! know about, so a pass means "not above the label maximum", not "appropriate". Drugs without a
//! label maximum (methadone, opioids titrated to effect) are not in the table and never flagged.
//!
//! # How text is read
//!
//! A drug name from the table (whole word, case-insensitive) followed within the same clause
//! (up to 12 words, stopping at `;`, a line break or another drug name) by an amount and a mass
//! unit (`50 mg`, `0.1mg`, `1 g`, `200 mcg`). The daily dose is the amount × the frequency
//! found after it (`twice daily`, `BID`, `q6h`, `every 8 hours`...; "as needed" uses the
//! stated maximum frequency), or the amount itself when written per day (`mg/day`, `per day`).
//! With no frequency the single amount is used as a lower bound of the daily dose: the check
//! may then miss an overdose spread over several administrations but never invents one.
//! Combination strengths (`8/2 mg`) are read by their first component.
//!
//! # Invariants
//!
//! Findings carry the drug (from the table), numbers and byte offsets, never surrounding text.

use serde::Serialize;

/// One row of the table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MaxDose {
    /// Generic name, lower case.
    pub drug: &'static str,
    /// Maximum daily dose in mg.
    pub max_mg_per_day: f64,
    /// Where the maximum comes from.
    pub source: &'static str,
}

const fn row(drug: &'static str, max_mg_per_day: f64, source: &'static str) -> MaxDose {
    MaxDose {
        drug,
        max_mg_per_day,
        source,
    }
}

/// The maximum-daily-dose table.
pub static MAX_DAILY_DOSES: &[MaxDose] = &[
    row(
        "acetaminophen",
        4000.0,
        "FDA OTC acetaminophen labeling: do not exceed 4,000 mg in 24 hours",
    ),
    row(
        "ibuprofen",
        3200.0,
        "Motrin (ibuprofen) tablets prescribing information: do not exceed 3200 mg/day",
    ),
    row(
        "naproxen",
        1500.0,
        "Naprosyn prescribing information: up to 1500 mg/day for limited periods",
    ),
    row(
        "sertraline",
        200.0,
        "Zoloft prescribing information: maximum 200 mg/day",
    ),
    row(
        "escitalopram",
        20.0,
        "Lexapro prescribing information: maximum 20 mg/day",
    ),
    row(
        "citalopram",
        40.0,
        "Celexa prescribing information (2011 QT revision): maximum 40 mg/day",
    ),
    row(
        "fluoxetine",
        80.0,
        "Prozac prescribing information: maximum 80 mg/day",
    ),
    row(
        "bupropion",
        450.0,
        "Wellbutrin / Wellbutrin SR / XL prescribing information: maximum 450 mg/day",
    ),
    row(
        "mirtazapine",
        45.0,
        "Remeron prescribing information: maximum 45 mg/day",
    ),
    row(
        "duloxetine",
        120.0,
        "Cymbalta prescribing information: maximum 120 mg/day",
    ),
    row(
        "venlafaxine",
        375.0,
        "Effexor (immediate release) prescribing information: maximum 375 mg/day",
    ),
    row(
        "trazodone",
        400.0,
        "Desyrel prescribing information: outpatients up to 400 mg/day",
    ),
    row(
        "quetiapine",
        800.0,
        "Seroquel prescribing information: maximum 800 mg/day",
    ),
    row(
        "olanzapine",
        20.0,
        "Zyprexa prescribing information: maximum 20 mg/day",
    ),
    row(
        "gabapentin",
        3600.0,
        "Neurontin prescribing information: up to 3600 mg/day",
    ),
    row(
        "hydroxyzine",
        400.0,
        "Vistaril prescribing information: anxiety 50-100 mg four times daily",
    ),
    row(
        "lorazepam",
        10.0,
        "Ativan tablets prescribing information: 2-6 mg/day, up to 10 mg/day",
    ),
    row(
        "chlordiazepoxide",
        300.0,
        "Librium prescribing information: alcohol withdrawal up to 300 mg/day",
    ),
    row(
        "clonidine",
        2.4,
        "Catapres prescribing information: maximum studied 2.4 mg/day",
    ),
    row(
        "buprenorphine",
        24.0,
        "Suboxone / Subutex sublingual prescribing information: doses above 24 mg/day not demonstrated",
    ),
    row(
        "acamprosate",
        1998.0,
        "Campral prescribing information: 666 mg three times daily",
    ),
    row(
        "disulfiram",
        500.0,
        "Antabuse prescribing information: maximum 500 mg/day",
    ),
    row(
        "varenicline",
        2.0,
        "Chantix prescribing information: 1 mg twice daily",
    ),
    row(
        "metformin",
        2550.0,
        "Glucophage (immediate release) prescribing information: maximum 2550 mg/day",
    ),
    row(
        "lisinopril",
        80.0,
        "Zestril prescribing information: maximum 80 mg/day",
    ),
    row(
        "atorvastatin",
        80.0,
        "Lipitor prescribing information: maximum 80 mg/day",
    ),
    row(
        "amlodipine",
        10.0,
        "Norvasc prescribing information: maximum 10 mg/day",
    ),
    row(
        "loperamide",
        16.0,
        "Imodium (prescription) prescribing information: maximum 16 mg/day",
    ),
];

/// A dose statement found in text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoseFinding {
    /// The drug (table name).
    pub drug: &'static str,
    /// Daily dose in mg as read (a lower bound when `frequency_known` is false).
    pub daily_mg: f64,
    /// The table maximum.
    pub max_mg_per_day: f64,
    /// Whether a frequency (or a per-day unit) was found.
    pub frequency_known: bool,
    /// True when `daily_mg` exceeds the maximum.
    pub exceeds_maximum: bool,
    /// Byte offsets of the statement (drug name to the last word read).
    pub start: usize,
    /// End offset (exclusive).
    pub end: usize,
}

/// Administrations per day for a frequency phrase, `None` when absent or irregular.
pub fn times_per_day(text: &str) -> Option<f64> {
    let t = text.to_ascii_lowercase();
    let words: Vec<&str> = t
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches('.'))
        .collect();
    let joined = format!(" {} ", words.join(" "));
    let has = |p: &str| joined.contains(&format!(" {p} "));
    // every N hours / qNh / q N h
    for (i, w) in words.iter().enumerate() {
        let hours = if let Some(n) = w.strip_prefix('q').and_then(|r| r.strip_suffix('h')) {
            n.parse::<f64>().ok()
        } else if *w == "every" || *w == "q" {
            match (words.get(i + 1), words.get(i + 2)) {
                (Some(n), Some(u))
                    if u.starts_with("hour") || *u == "h" || *u == "hr" || *u == "hrs" =>
                {
                    n.parse::<f64>().ok()
                }
                (Some(n), Some(u)) if u.starts_with("week") => {
                    n.parse::<f64>().ok().map(|x| x * 24.0 * 7.0)
                }
                (Some(n), Some(u)) if u.starts_with("day") => {
                    n.parse::<f64>().ok().map(|x| x * 24.0)
                }
                _ => None,
            }
        } else {
            None
        };
        if let Some(h) = hours
            && h > 0.0
        {
            return Some(24.0 / h);
        }
    }
    let table: &[(&[&str], f64)] = &[
        (
            &[
                "four times daily",
                "four times a day",
                "qid",
                "q.i.d",
                "4 times daily",
                "4 times a day",
            ],
            4.0,
        ),
        (
            &[
                "three times daily",
                "three times a day",
                "tid",
                "t.i.d",
                "3 times daily",
                "3 times a day",
            ],
            3.0,
        ),
        (
            &[
                "twice daily",
                "twice a day",
                "two times daily",
                "bid",
                "b.i.d",
                "2 times daily",
                "2 times a day",
            ],
            2.0,
        ),
        (
            &[
                "once daily",
                "once a day",
                "daily",
                "qd",
                "every day",
                "every morning",
                "every evening",
                "at bedtime",
                "qhs",
                "nightly",
                "per day",
                "a day",
            ],
            1.0,
        ),
        (&["weekly", "once weekly", "every week"], 1.0 / 7.0),
        (&["monthly", "every month"], 1.0 / 30.0),
    ];
    for (phrases, n) in table {
        if phrases.iter().any(|p| has(p)) {
            return Some(*n);
        }
    }
    None
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

/// Words (letters, digits, `.`, `/`) with byte offsets, plus clause breaks as `;` tokens.
fn tokens(text: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in text.char_indices() {
        let word = ch.is_ascii_alphanumeric() || ch == '.' || ch == '/' || ch == '-';
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Tok {
                    text: text[s..i].trim_end_matches('.'),
                    start: s,
                    end: i,
                });
                start = None;
            }
            _ => {}
        }
        if ch == ';' || ch == '\n' {
            out.push(Tok {
                text: ";",
                start: i,
                end: i + 1,
            });
        }
    }
    if let Some(s) = start {
        out.push(Tok {
            text: text[s..].trim_end_matches('.'),
            start: s,
            end: text.len(),
        });
    }
    out
}

fn mass_to_mg(unit: &str) -> Option<f64> {
    match unit {
        "mg" | "milligram" | "milligrams" => Some(1.0),
        "mcg" | "ug" | "microgram" | "micrograms" => Some(0.001),
        "g" | "gram" | "grams" => Some(1000.0),
        _ => None,
    }
}

/// Splits `50mg` / `8/2mg` / `50` into (amount, attached unit).
fn split_amount(word: &str) -> Option<(f64, &str)> {
    let digits_end = word
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == '/'))
        .map_or(word.len(), |(i, _)| i);
    if digits_end == 0 {
        return None;
    }
    let num = word[..digits_end].split('/').next()?;
    let amount: f64 = num.parse().ok()?;
    Some((amount, &word[digits_end..]))
}

/// Scans `text` and returns every dose statement of a table drug, flagged or not.
pub fn check_text(text: &str) -> Vec<DoseFinding> {
    let lower = text.to_ascii_lowercase();
    let toks = tokens(&lower);
    let is_drug = |w: &str| -> Option<&'static MaxDose> {
        let base = w.split(['/', '-']).next().unwrap_or(w);
        MAX_DAILY_DOSES.iter().find(|d| d.drug == base)
    };
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Some(row) = is_drug(t.text) else { continue };
        let mut j = i + 1;
        let limit = (i + 13).min(toks.len());
        let mut found: Option<(f64, usize)> = None;
        while j < limit {
            let w = toks[j].text;
            if w == ";" || is_drug(w).is_some() {
                break;
            }
            if let Some((amount, attached)) = split_amount(w) {
                let (unit, unit_idx) = if attached.is_empty() {
                    (toks.get(j + 1).map_or("", |t| t.text), j + 1)
                } else {
                    (attached, j)
                };
                let unit_base = unit.split('/').next().unwrap_or(unit);
                if let Some(f) = mass_to_mg(unit_base) {
                    let per_day_unit =
                        unit.ends_with("/day") || unit.ends_with("/d") || unit.ends_with("/24h");
                    found = Some((amount * f * if per_day_unit { -1.0 } else { 1.0 }, unit_idx));
                    break;
                }
            }
            j += 1;
        }
        let Some((mg_signed, unit_idx)) = found else {
            continue;
        };
        let mut end_idx = unit_idx;
        // Frequency phrase: up to 8 words after the unit, within the clause.
        let mut phrase = Vec::new();
        for t in toks.iter().skip(unit_idx + 1).take(8) {
            if t.text == ";" || is_drug(t.text).is_some() {
                break;
            }
            phrase.push(t.text);
        }
        let (daily, known) = if mg_signed < 0.0 {
            (-mg_signed, true)
        } else {
            let phrase_text = phrase.join(" ");
            match times_per_day(&phrase_text) {
                Some(n) => {
                    end_idx = (unit_idx + phrase.len()).min(toks.len() - 1);
                    (mg_signed * n, true)
                }
                None => (mg_signed, false),
            }
        };
        out.push(DoseFinding {
            drug: row.drug,
            daily_mg: daily,
            max_mg_per_day: row.max_mg_per_day,
            frequency_known: known,
            exceeds_maximum: daily > row.max_mg_per_day + 1e-9,
            start: t.start,
            end: toks[end_idx].end,
        });
    }
    out
}

/// Only the findings above the maximum.
pub fn flag_overdoses(text: &str) -> Vec<DoseFinding> {
    check_text(text)
        .into_iter()
        .filter(|f| f.exceeds_maximum)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_are_read() {
        assert_eq!(times_per_day("twice daily"), Some(2.0));
        assert_eq!(times_per_day("BID"), Some(2.0));
        assert_eq!(
            times_per_day("every 6 hours as needed (CIWA > 10)"),
            Some(4.0)
        );
        assert_eq!(times_per_day("q8h"), Some(3.0));
        assert_eq!(times_per_day("three times daily"), Some(3.0));
        assert_eq!(times_per_day("daily"), Some(1.0));
        assert_eq!(times_per_day("at bedtime as needed"), Some(1.0));
        assert_eq!(times_per_day("every 4 weeks"), Some(1.0 / 28.0));
        assert_eq!(times_per_day("once"), None);
    }

    #[test]
    fn a_dose_above_the_label_maximum_is_flagged() {
        let f = flag_overdoses("Plan: sertraline 150 mg twice daily for depression.");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].drug, "sertraline");
        assert!((f[0].daily_mg - 300.0).abs() < 1e-9);
        assert_eq!(f[0].max_mg_per_day, 200.0);
    }

    #[test]
    fn doses_within_the_maximum_pass() {
        let all = check_text(
            "Sertraline 50 mg daily; Gabapentin 300 mg three times daily; Metformin 500mg BID.",
        );
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|f| !f.exceeds_maximum && f.frequency_known));
        assert!((all[1].daily_mg - 900.0).abs() < 1e-9);
        assert!((all[2].daily_mg - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn units_and_per_day_forms_convert() {
        let f = check_text("acetaminophen 5 g/day");
        assert!(f[0].exceeds_maximum && (f[0].daily_mg - 5000.0).abs() < 1e-9);
        let f = check_text("clonidine 0.3 mg every 6 hours");
        assert!((f[0].daily_mg - 1.2).abs() < 1e-9 && !f[0].exceeds_maximum);
        let f = check_text("Buprenorphine/naloxone 16/4 mg twice daily");
        assert!(f[0].exceeds_maximum, "32 mg/day buprenorphine");
    }

    #[test]
    fn without_a_frequency_the_single_dose_is_a_lower_bound() {
        let f = check_text("lorazepam 2 mg");
        assert!(!f[0].frequency_known && !f[0].exceeds_maximum);
        let f = check_text("lorazepam 12 mg");
        assert!(f[0].exceeds_maximum);
    }

    #[test]
    fn a_dose_is_not_borrowed_across_clauses_or_drugs() {
        assert!(check_text("sertraline; 900 mg of something else").is_empty());
        let f = check_text("sertraline and gabapentin 900 mg daily");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].drug, "gabapentin");
    }
}
