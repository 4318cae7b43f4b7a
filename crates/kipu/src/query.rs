//! Typed query builders for the documented parameters (kipu-api.md §2).
//!
//! Paging (`page`, `per`) is not here: [`crate::List`] owns it. Booleans go on the wire as
//! `true`/`false` (kipu-python sends Python's `True`); dates as `YYYY-MM-DD`, date-times as
//! `YYYY-MM-DD HH:MM:SS`. Every builder is `Default` (no filter) and its fields are public, so
//! `CensusQuery { phi_level: Some(PhiLevel::Low), ..Default::default() }` reads naturally.

use chrono::{NaiveDate, NaiveDateTime};

/// Something that turns into ordered query pairs.
pub trait Query: Send + Sync {
    /// The pairs, in the order they are sent (before `page`, `per` and `app_id`).
    fn pairs(&self) -> Vec<(String, String)>;
}

/// No filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoQuery;

impl Query for NoQuery {
    fn pairs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Raw pairs, for parameters the builders do not know.
impl Query for [(&str, &str)] {
    fn pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }
}

/// Owned raw pairs.
impl Query for Vec<(String, String)> {
    fn pairs(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// How much PHI the census returns (`phi_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhiLevel {
    /// Everything.
    High,
    /// Reduced identifiers.
    Medium,
    /// Minimal identifiers. Prefer this when the full record is not needed.
    Low,
}

impl PhiLevel {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// A date or a date-time bound of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateBound {
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
    /// `YYYY-MM-DD HH:MM:SS`.
    DateTime(NaiveDateTime),
}

impl From<NaiveDate> for DateBound {
    fn from(d: NaiveDate) -> Self {
        Self::Date(d)
    }
}

impl From<NaiveDateTime> for DateBound {
    fn from(d: NaiveDateTime) -> Self {
        Self::DateTime(d)
    }
}

impl DateBound {
    /// The wire value.
    pub fn to_param(self) -> String {
        match self {
            Self::Date(d) => d.format("%Y-%m-%d").to_string(),
            Self::DateTime(d) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }
}

/// Accumulates pairs in declaration order, skipping unset fields.
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl Pairs {
    fn text(mut self, k: &str, v: Option<&str>) -> Self {
        if let Some(v) = v {
            self.0.push((k.into(), v.into()));
        }
        self
    }
    fn date(mut self, k: &str, v: Option<DateBound>) -> Self {
        if let Some(v) = v {
            self.0.push((k.into(), v.to_param()));
        }
        self
    }
    fn flag(mut self, k: &str, v: Option<bool>) -> Self {
        if let Some(v) = v {
            self.0
                .push((k.into(), if v { "true" } else { "false" }.into()));
        }
        self
    }
    fn number(mut self, k: &str, v: Option<u64>) -> Self {
        if let Some(v) = v {
            self.0.push((k.into(), v.to_string()));
        }
        self
    }
}

macro_rules! query_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $kind:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: query_struct!(@ty $kind),)*
        }
        impl Query for $name {
            fn pairs(&self) -> Vec<(String, String)> {
                let p = Pairs::default();
                $(let p = query_struct!(@push p, $kind, stringify!($field), &self.$field);)*
                p.0
            }
        }
    };
    (@ty text) => { Option<String> };
    (@ty date) => { Option<DateBound> };
    (@ty flag) => { Option<bool> };
    (@ty number) => { Option<u64> };
    (@ty phi) => { Option<PhiLevel> };
    (@push $p:ident, text, $k:expr, $v:expr) => { $p.text($k, $v.as_deref()) };
    (@push $p:ident, date, $k:expr, $v:expr) => { $p.date($k, *$v) };
    (@push $p:ident, flag, $k:expr, $v:expr) => { $p.flag($k, *$v) };
    (@push $p:ident, number, $k:expr, $v:expr) => { $p.number($k, *$v) };
    (@push $p:ident, phi, $k:expr, $v:expr) => { $p.text($k, $v.map(PhiLevel::as_str)) };
}

query_struct!(
    /// `GET /api/patients/census`.
    CensusQuery {
        /// How much PHI to return.
        phi_level: phi,
        /// Census from this date.
        start_date: date,
        /// Census up to this date.
        end_date: date,
    }
);

query_struct!(
    /// `GET /api/patients/{patient_id}`.
    PatientQuery {
        /// Include the patient's external ids.
        include_ids: flag,
        /// Include full insurance details.
        insurance_detail: flag,
        /// How much PHI to return.
        phi_level: phi,
    }
);

query_struct!(
    /// `GET /api/patients/admissions`.
    AdmissionsQuery {
        /// Admitted from this date.
        start_date: date,
        /// Admitted up to this date.
        end_date: date,
        /// Only this location.
        location_id: number,
    }
);

query_struct!(
    /// A `start_date`/`end_date` range (latest patients, scheduler, insurances, group sessions,
    /// utilization reviews).
    DateRange {
        /// From.
        start_date: date,
        /// To.
        end_date: date,
    }
);

query_struct!(
    /// `GET /api/patients/processes`.
    ProcessesQuery {
        /// Include the process details.
        process_details: flag,
    }
);

query_struct!(
    /// Appointments of a provider or user, or one appointment: `days` ahead.
    DaysQuery {
        /// How many days to cover.
        days: number,
    }
);

query_struct!(
    /// `GET /api/patients/{patient_id}/appointments`.
    PatientAppointmentsQuery {
        /// How many days to cover.
        days: number,
        /// The patient master id (a UUID), which Kipu's own docs mark as required.
        patient_master_id: text,
    }
);

query_struct!(
    /// `GET /api/scheduler/resources`.
    ResourcesQuery {
        /// Only enabled (or disabled) resources.
        enabled: flag,
        /// Only this category.
        category_type: text,
    }
);

query_struct!(
    /// A `created_at` range (vital signs, CIWA, COWS, orthostatic vitals).
    CreatedAtRange {
        /// Created from.
        created_at_start_date: date,
        /// Created up to.
        created_at_end_date: date,
    }
);

query_struct!(
    /// `GET /api/patients/{patient_id}/glucose_logs`.
    GlucoseLogsQuery {
        /// Created from.
        created_at_start_date: date,
        /// Created up to.
        created_at_end_date: date,
        /// Evaluated from.
        evaluation_start_date: date,
    }
);

query_struct!(
    /// `GET /api/patient_evaluations` and the patient-scoped variant.
    PatientEvaluationsQuery {
        /// Include the evaluation content (free text, PHI).
        evaluation_content: flag,
        /// Only this patient process.
        patient_process_id: number,
        /// From.
        start_date: date,
        /// To.
        end_date: date,
    }
);

query_struct!(
    /// `GET /api/patient_evaluations/{id}`.
    EvaluationContentQuery {
        /// Include the evaluation content.
        evaluation_content: flag,
    }
);

query_struct!(
    /// `GET /api/users/{user_id}`.
    UserQuery {
        /// Include the user's restrictions.
        include_restrictions: flag,
    }
);

query_struct!(
    /// `GET /api/locations`.
    LocationsQuery {
        /// Include the buildings of each location.
        include_buildings: flag,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_query_in_order_with_lowercase_enum() {
        let q = CensusQuery {
            phi_level: Some(PhiLevel::Low),
            start_date: Some(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap().into()),
            end_date: Some(
                NaiveDate::from_ymd_opt(2024, 2, 3)
                    .unwrap()
                    .and_hms_opt(10, 0, 5)
                    .unwrap()
                    .into(),
            ),
        };
        assert_eq!(
            q.pairs(),
            [
                ("phi_level".to_string(), "low".to_string()),
                ("start_date".into(), "2024-01-02".into()),
                ("end_date".into(), "2024-02-03 10:00:05".into())
            ]
        );
        assert!(CensusQuery::default().pairs().is_empty());
    }

    #[test]
    fn booleans_are_sent_lowercase() {
        let q = PatientQuery {
            include_ids: Some(true),
            insurance_detail: Some(false),
            ..Default::default()
        };
        assert_eq!(
            q.pairs(),
            [
                ("include_ids".to_string(), "true".to_string()),
                ("insurance_detail".into(), "false".into())
            ]
        );
    }
}
