//! The 85 endpoints as typed methods, grouped by resource: `client.patients().census(..)`,
//! `client.medical_records().patient_vital_signs(id, ..)`.
//!
//! List endpoints return a [`List`] (fetch a page, or stream every record); object endpoints
//! return the record; writes take the `data` of the `document` envelope (the client adds
//! `recipient_id`) and [`WriteOptions`].

use phi::Sensitive;

use crate::client::{Client, List, WriteBody, WriteOptions, endpoint};
use crate::error::Error;
use crate::models::{
    Admission, Appointment, CareTeamMember, Contact, Diagnosis, Evaluation, Insurance, Order,
    Patient, PatientCareTeam, PatientEvaluation, Provider, Record, User, VitalSign,
};
use crate::query::{
    AdmissionsQuery, CensusQuery, CreatedAtRange, DateRange, DaysQuery, EvaluationContentQuery,
    GlucoseLogsQuery, LocationsQuery, NoQuery, PatientAppointmentsQuery, PatientEvaluationsQuery,
    PatientQuery, ProcessesQuery, ResourcesQuery, UserQuery,
};

/// JSON `data` of a write.
pub type WriteData = Sensitive<serde_json::Value>;

macro_rules! group {
    ($(#[$m:meta])* $name:ident, $accessor:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'c> {
            client: &'c Client,
        }
        impl Client {
            $(#[$m])*
            pub fn $accessor(&self) -> $name<'_> {
                $name { client: self }
            }
        }
    };
}

macro_rules! list {
    ($(#[$m:meta])* $num:literal $fn:ident($($id:ident),*) -> $t:ty) => {
        $(#[$m])*
        #[doc = concat!("\n\nCatalogue row ", stringify!($num), ".")]
        pub fn $fn(&self, $($id: &str),*) -> List<$t> {
            self.client.list(endpoint($num), &[$($id),*], &NoQuery)
        }
    };
    ($(#[$m:meta])* $num:literal $fn:ident($($id:ident),*; $q:ty) -> $t:ty) => {
        $(#[$m])*
        #[doc = concat!("\n\nCatalogue row ", stringify!($num), ".")]
        pub fn $fn(&self, $($id: &str,)* query: &$q) -> List<$t> {
            self.client.list(endpoint($num), &[$($id),*], query)
        }
    };
}

macro_rules! object {
    ($(#[$m:meta])* $num:literal $fn:ident($($id:ident),*) -> $t:ty) => {
        $(#[$m])*
        #[doc = concat!("\n\nCatalogue row ", stringify!($num), ".")]
        pub async fn $fn(&self, $($id: &str),*) -> Result<$t, Error> {
            self.client.object(endpoint($num), &[$($id),*], &NoQuery).await
        }
    };
    ($(#[$m:meta])* $num:literal $fn:ident($($id:ident),*; $q:ty) -> $t:ty) => {
        $(#[$m])*
        #[doc = concat!("\n\nCatalogue row ", stringify!($num), ".")]
        pub async fn $fn(&self, $($id: &str,)* query: &$q) -> Result<$t, Error> {
            self.client.object(endpoint($num), &[$($id),*], query).await
        }
    };
}

macro_rules! write {
    ($(#[$m:meta])* $num:literal $fn:ident($($id:ident),*) -> $t:ty) => {
        $(#[$m])*
        #[doc = concat!("\n\nCatalogue row ", stringify!($num), ". Not retried unless `options.retry`.")]
        pub async fn $fn(&self, $($id: &str,)* data: WriteData, options: WriteOptions) -> Result<$t, Error> {
            self.client.write(endpoint($num), &[$($id),*], WriteBody::Json(data), options).await
        }
    };
    ($(#[$m:meta])* $num:literal $fn:ident($($id:ident),*; body) -> $t:ty) => {
        $(#[$m])*
        #[doc = concat!("\n\nCatalogue row ", stringify!($num), ". JSON or multipart (with attachments). Not retried unless `options.retry`.")]
        pub async fn $fn(&self, $($id: &str,)* body: WriteBody, options: WriteOptions) -> Result<$t, Error> {
            self.client.write(endpoint($num), &[$($id),*], body, options).await
        }
    };
}

group!(/// Patients (13 endpoints).
    Patients, patients);
impl Patients<'_> {
    list!(/// The census. 
        1 census(; CensusQuery) -> Patient);
    object!(/// One patient.
        2 get(patient_id; PatientQuery) -> Patient);
    write!(/// Creates a patient, optionally with attachments.
        3 create(; body) -> Patient);
    write!(/// Updates a patient, optionally with attachments.
        4 update(patient_id; body) -> Patient);
    list!(/// Admissions.
        5 admissions(; AdmissionsQuery) -> Admission);
    list!(/// Recently changed patients.
        6 latest(; DateRange) -> Patient);
    list!(/// Bed occupancy.
        7 occupancy() -> Record);
    list!(/// Care teams of all patients.
        8 care_teams() -> PatientCareTeam);
    list!(/// One patient's care team.
        9 care_team(patient_id) -> CareTeamMember);
    list!(/// One patient's diagnoses.
        10 diagnosis_history(patient_id) -> Diagnosis);
    list!(/// One patient's program history.
        11 program_history(patient_id) -> Record);
    list!(/// Patient processes.
        12 processes(; ProcessesQuery) -> Record);
    list!(/// Soft-deleted patients (the vault).
        13 vault() -> Patient);
}

group!(/// Appointments and the scheduler (9 endpoints).
    Appointments, appointments);
impl Appointments<'_> {
    object!(/// One appointment (kipu-python's `get_appointments`).
        14 get(appointment_id; DaysQuery) -> Appointment);
    list!(/// A patient's appointments.
        15 for_patient(patient_id; PatientAppointmentsQuery) -> Appointment);
    list!(/// A provider's appointments.
        16 for_provider(provider_id; DaysQuery) -> Appointment);
    list!(/// A user's appointments.
        17 for_user(user_id; DaysQuery) -> Appointment);
    list!(/// Scheduler appointments.
        18 scheduler(; DateRange) -> Appointment);
    object!(/// One scheduler appointment.
        19 scheduler_get(appointment_id) -> Appointment);
    list!(/// Appointment types.
        20 types() -> Record);
    list!(/// Appointment statuses.
        21 statuses() -> Record);
    list!(/// Scheduler resources.
        22 resources(; ResourcesQuery) -> Record);
}

group!(/// Medical records: vitals, allergies, CIWA, COWS, glucose (16 endpoints).
    MedicalRecords, medical_records);
impl MedicalRecords<'_> {
    list!(/// A patient's vital signs.
        23 patient_vital_signs(patient_id; CreatedAtRange) -> VitalSign);
    write!(/// Records vital signs for a patient.
        24 create_patient_vital_signs(patient_id) -> VitalSign);
    list!(/// All vital signs.
        25 vital_signs(; CreatedAtRange) -> VitalSign);
    list!(/// A patient's allergies.
        26 patient_allergies(patient_id) -> Record);
    list!(/// All allergies.
        27 allergies() -> Record);
    list!(/// Allergens.
        28 allergens() -> Record);
    list!(/// A patient's COWS scores.
        29 patient_cows(patient_id; CreatedAtRange) -> Record);
    list!(/// All COWS scores.
        30 cows(; CreatedAtRange) -> Record);
    list!(/// A patient's CIWA-Ar scores.
        31 patient_ciwa_ars(patient_id; CreatedAtRange) -> Record);
    list!(/// All CIWA-Ar scores.
        32 ciwa_ars(; CreatedAtRange) -> Record);
    list!(/// A patient's CIWA-B scores.
        33 patient_ciwa_bs(patient_id; CreatedAtRange) -> Record);
    list!(/// All CIWA-B scores.
        34 ciwa_bs(; CreatedAtRange) -> Record);
    list!(/// A patient's glucose logs.
        35 patient_glucose_logs(patient_id; GlucoseLogsQuery) -> Record);
    list!(/// All glucose logs.
        36 glucose_logs(; CreatedAtRange) -> Record);
    list!(/// A patient's orthostatic vital signs.
        37 patient_orthostatic_vital_signs(patient_id; CreatedAtRange) -> Record);
    list!(/// All orthostatic vital signs.
        38 orthostatic_vital_signs(; CreatedAtRange) -> Record);
}

group!(/// Evaluation templates and patient evaluations (6 endpoints).
    Evaluations, evaluations);
impl Evaluations<'_> {
    list!(/// Evaluation templates.
        39 templates() -> Evaluation);
    object!(/// One evaluation template.
        40 template(evaluation_id) -> Evaluation);
    list!(/// Patient evaluations across patients.
        41 patient_evaluations(; PatientEvaluationsQuery) -> PatientEvaluation);
    object!(/// One patient evaluation.
        42 patient_evaluation(patient_evaluation_id; EvaluationContentQuery) -> PatientEvaluation);
    list!(/// One patient's evaluations.
        43 for_patient(patient_id; PatientEvaluationsQuery) -> PatientEvaluation);
    write!(/// Creates an evaluation for a patient.
        44 create_for_patient(patient_id) -> PatientEvaluation);
}

group!(/// Users, providers and roles (9 endpoints).
    Users, users);
impl Users<'_> {
    list!(/// Users.
        45 list() -> User);
    object!(/// One user.
        46 get(user_id; UserQuery) -> User);
    list!(/// A user's roles.
        47 roles(user_id) -> Record);
    list!(/// Providers.
        48 providers() -> Provider);
    object!(/// One provider.
        49 provider(provider_id) -> Provider);
    list!(/// A provider's roles.
        50 provider_roles(provider_id) -> Record);
    list!(/// All roles.
        51 all_roles() -> Record);
    list!(/// The users of a role.
        52 role_users(role_id) -> User);
    list!(/// User titles.
        53 titles() -> Record);
}

group!(/// Contacts and referrers (6 endpoints).
    Contacts, contacts);
impl Contacts<'_> {
    list!(/// Contacts.
        54 list() -> Contact);
    object!(/// One contact.
        55 get(contact_id) -> Contact);
    write!(/// Creates a contact.
        56 create() -> Contact);
    write!(/// Updates a contact.
        57 update(contact_id) -> Contact);
    list!(/// Contact types.
        58 types() -> Record);
    list!(/// Referrers.
        59 referrers() -> Contact);
}

group!(/// Insurance (2 endpoints).
    Insurances, insurances);
impl Insurances<'_> {
    list!(/// Recently changed insurances.
        60 latest(; DateRange) -> Insurance);
    write!(/// Updates a patient's insurance.
        61 update_for_patient(patient_id, insurance_id) -> Insurance);
}

group!(/// Group sessions (4 endpoints).
    GroupSessions, group_sessions);
impl GroupSessions<'_> {
    list!(/// Group sessions.
        62 list(; DateRange) -> Record);
    object!(/// One group session.
        63 get(group_session_id) -> Record);
    list!(/// A patient's group sessions.
        64 for_patient(patient_id) -> Record);
    object!(/// One group session of a patient.
        65 for_patient_get(patient_id, group_session_id) -> Record);
}

group!(/// Consent forms (4 endpoints).
    ConsentForms, consent_forms);
impl ConsentForms<'_> {
    list!(/// Consent form templates.
        66 forms() -> Record);
    list!(/// Signed consent form records.
        67 records() -> Record);
    object!(/// One consent form record.
        68 record(record_id) -> Record);
    list!(/// A patient's consent form records.
        69 for_patient(patient_id) -> Record);
}

group!(/// Patient diets (2 endpoints).
    Diets, diets);
impl Diets<'_> {
    list!(/// Diets.
        70 list() -> Record);
    list!(/// A patient's diets.
        71 for_patient(patient_id) -> Record);
}

group!(/// Patient orders (3 endpoints).
    Orders, orders);
impl Orders<'_> {
    list!(/// Orders.
        72 list() -> Order);
    object!(/// One order.
        73 get(patient_order_id) -> Order);
    list!(/// A patient's orders.
        74 for_patient(patient_id) -> Order);
}

group!(/// Utilization review (2 endpoints).
    UtilizationReviews, utilization_reviews);
impl UtilizationReviews<'_> {
    list!(/// A patient's utilization reviews.
        75 for_patient(patient_id) -> Record);
    list!(/// Recently changed utilization reviews.
        76 latest(; DateRange) -> Record);
}

group!(/// Administrative settings lists (8 endpoints).
    Settings, settings);
impl Settings<'_> {
    list!(/// Locations.
        77 locations(; LocationsQuery) -> Record);
    list!(/// Care levels.
        78 care_levels() -> Record);
    list!(/// Flags.
        79 flags() -> Record);
    list!(/// Flag categories.
        80 flag_categories() -> Record);
    list!(/// Patient colours.
        81 patient_colors() -> Record);
    list!(/// Patient tags.
        82 patient_tags() -> Record);
    list!(/// Patient settings.
        83 patient_settings() -> Record);
    list!(/// Payors.
        84 payors() -> Record);
}

group!(/// External id mappings (1 endpoint).
    ExternalIds, external_ids);
impl ExternalIds<'_> {
    write!(/// Updates a patient's external id mapping.
        85 update_patient_mapping(patient_id, mapping_id) -> Record);
}
