//! The catalogue of the 85 Kipu API endpoints that kipu-python wraps (kipu-api.md §2).
//!
//! One table serves the client (method names, typed wrappers, `phigate kipu get NAME`), the
//! simulator (which must answer every row) and the exporter (which fans out over the
//! patient-scoped rows). Paths are templates; ids are filled in by
//! [`crate::signing::RequestTarget`], which encodes them.

use std::fmt;

/// The HTTP method of an endpoint. Kipu uses no PUT or DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A read; safe to retry.
    Get,
    /// A create; never retried unless the caller opts in.
    Post,
    /// An update; never retried unless the caller opts in.
    Patch,
}

impl Method {
    /// The method as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource group an endpoint belongs to (kipu-api.md §2 headings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Patients (13).
    Patients,
    /// Appointments and the scheduler (9).
    Appointments,
    /// Medical records: vitals, allergies, CIWA/COWS, glucose (16).
    MedicalRecords,
    /// Evaluation templates and patient evaluations (6).
    Evaluations,
    /// Users, providers and roles (9).
    Users,
    /// Contacts and referrers (6).
    Contacts,
    /// Insurance (2).
    Insurance,
    /// Group sessions (4).
    GroupSessions,
    /// Consent forms (4).
    ConsentForms,
    /// Patient diets (2).
    Diets,
    /// Patient orders (3).
    Orders,
    /// Utilization review (2).
    UtilizationReview,
    /// Administrative settings lists (8).
    Settings,
    /// External id mappings (1).
    ExternalIds,
}

/// The shape of an endpoint's JSON response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `{"pagination": {...}, "<key>": [ ... ]}`; paged with `page`/`per`.
    List {
        /// The key of the array of records.
        key: &'static str,
    },
    /// `{"<key>": { ... }}`: one record.
    Object {
        /// The key of the record.
        key: &'static str,
    },
    /// A write whose body is `{"document": {"recipient_id": app_id, "data": {...}}}` and whose
    /// response is `{"<key>": { ... }}`.
    Write {
        /// The key of the created or updated record in the response.
        key: &'static str,
    },
}

impl Shape {
    /// The JSON key that holds the record or records.
    pub const fn key(self) -> &'static str {
        match self {
            Self::List { key } | Self::Object { key } | Self::Write { key } => key,
        }
    }
}

/// One endpoint of the Kipu API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Its number in kipu-api.md §2 (1 to 85).
    pub number: u8,
    /// The kipu-python method name (`get_patients_census`).
    pub name: &'static str,
    /// The resource group.
    pub group: Group,
    /// The HTTP method.
    pub method: Method,
    /// The path template, ids as `{placeholders}` (`/api/patients/{patient_id}`).
    pub path: &'static str,
    /// The response shape.
    pub shape: Shape,
    /// The query parameters Kipu documents for it (others may still be sent).
    pub params: &'static [&'static str],
}

impl Endpoint {
    /// The names of the path placeholders, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
    }

    /// Whether the path is scoped to one patient (has a `{patient_id}` placeholder).
    pub fn is_patient_scoped(&self) -> bool {
        self.path.contains("{patient_id}")
    }

    /// Whether it is a paged list read.
    pub fn is_list(&self) -> bool {
        matches!(self.shape, Shape::List { .. })
    }

    /// The name without kipu-python's `get_` prefix (`patients_census`).
    pub fn short_name(&self) -> &'static str {
        self.name.strip_prefix("get_").unwrap_or(self.name)
    }

    /// Whether a request path (no query) matches this template; placeholders match one
    /// non-empty segment.
    pub fn matches_path(&self, path: &str) -> bool {
        let mut want = self.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    }
}

/// Finds an endpoint by kipu-python name, by short name, or by path template.
pub fn find(name_or_path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| {
        e.name == name_or_path || e.short_name() == name_or_path || e.path == name_or_path
    })
}

/// Finds the GET endpoint whose template matches a concrete request path, preferring literal
/// segments over placeholders (`/api/patients/census` is the census, not patient `census`).
pub fn match_path(method: Method, path: &str) -> Option<&'static Endpoint> {
    // A template matches only paths with as many segments, so comparing the segment counts
    // first (precomputed for the templates) skips most of the 85 segment-by-segment matches:
    // the simulator runs this on every request.
    static TEMPLATE_DEPTHS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    let depths = TEMPLATE_DEPTHS.get_or_init(|| ENDPOINTS.iter().map(|e| depth(e.path)).collect());
    let wanted = depth(path);
    ENDPOINTS
        .iter()
        .zip(depths)
        .filter(|(e, d)| **d == wanted && e.method == method && e.matches_path(path))
        .map(|(e, _)| e)
        .min_by_key(|e| e.path_params().count())
}

/// The number of `/` in a path.
fn depth(path: &str) -> usize {
    path.bytes().filter(|b| *b == b'/').count()
}

/// All 85 endpoints, in the order of kipu-api.md §2.
pub static ENDPOINTS: [Endpoint; 85] = [
    Endpoint {
        number: 1,
        name: "get_patients_census",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/census",
        shape: Shape::List { key: "patients" },
        params: &["phi_level", "page", "per", "start_date", "end_date"],
    },
    Endpoint {
        number: 2,
        name: "get_patient",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/{patient_id}",
        shape: Shape::Object { key: "patient" },
        params: &["include_ids", "insurance_detail", "phi_level"],
    },
    Endpoint {
        number: 3,
        name: "create_patient",
        group: Group::Patients,
        method: Method::Post,
        path: "/api/patients",
        shape: Shape::Write { key: "patient" },
        params: &[],
    },
    Endpoint {
        number: 4,
        name: "update_patient",
        group: Group::Patients,
        method: Method::Patch,
        path: "/api/patients/{patient_id}",
        shape: Shape::Write { key: "patient" },
        params: &[],
    },
    Endpoint {
        number: 5,
        name: "get_patients_admissions",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/admissions",
        shape: Shape::List { key: "patients" },
        params: &["start_date", "end_date", "location_id", "page", "per"],
    },
    Endpoint {
        number: 6,
        name: "get_patients_latest",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/latest",
        shape: Shape::List { key: "patients" },
        params: &["start_date", "end_date", "page", "per"],
    },
    Endpoint {
        number: 7,
        name: "get_patients_occupancy",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/occupancy",
        shape: Shape::List { key: "occupancy" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 8,
        name: "get_patients_care_teams",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/care_teams",
        shape: Shape::List { key: "care_teams" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 9,
        name: "get_patient_care_team",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/{patient_id}/care_team",
        shape: Shape::List { key: "care_team" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 10,
        name: "get_patient_diagnosis_history",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/{patient_id}/diagnosis_history",
        shape: Shape::List {
            key: "diagnosis_history",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 11,
        name: "get_patient_program_history",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/{patient_id}/program_history",
        shape: Shape::List {
            key: "program_history",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 12,
        name: "get_patients_processes",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/patients/processes",
        shape: Shape::List { key: "processes" },
        params: &["process_details", "page", "per"],
    },
    Endpoint {
        number: 13,
        name: "get_vaults_patients",
        group: Group::Patients,
        method: Method::Get,
        path: "/api/vaults/patients",
        shape: Shape::List { key: "patients" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 14,
        name: "get_appointments",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/appointments/{appointment_id}",
        shape: Shape::Object { key: "appointment" },
        params: &["days"],
    },
    Endpoint {
        number: 15,
        name: "get_patient_appointments",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/patients/{patient_id}/appointments",
        shape: Shape::List {
            key: "appointments",
        },
        params: &["days", "patient_master_id", "page", "per"],
    },
    Endpoint {
        number: 16,
        name: "get_provider_appointments",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/providers/{provider_id}/appointments",
        shape: Shape::List {
            key: "appointments",
        },
        params: &["days", "page", "per"],
    },
    Endpoint {
        number: 17,
        name: "get_user_appointments",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/users/{user_id}/appointments",
        shape: Shape::List {
            key: "appointments",
        },
        params: &["days", "page", "per"],
    },
    Endpoint {
        number: 18,
        name: "get_scheduler_appointments",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/scheduler/appointments",
        shape: Shape::List {
            key: "appointments",
        },
        params: &["start_date", "end_date", "page", "per"],
    },
    Endpoint {
        number: 19,
        name: "get_scheduler_appointment",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/scheduler/appointments/{appointment_id}",
        shape: Shape::Object { key: "appointment" },
        params: &[],
    },
    Endpoint {
        number: 20,
        name: "get_scheduler_appointment_types",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/scheduler/appointment_types",
        shape: Shape::List {
            key: "appointment_types",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 21,
        name: "get_scheduler_appointment_statuses",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/scheduler/appointment_statuses",
        shape: Shape::List {
            key: "appointment_statuses",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 22,
        name: "get_scheduler_resources",
        group: Group::Appointments,
        method: Method::Get,
        path: "/api/scheduler/resources",
        shape: Shape::List { key: "resources" },
        params: &["enabled", "category_type", "page", "per"],
    },
    Endpoint {
        number: 23,
        name: "get_patient_vital_signs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/vital_signs",
        shape: Shape::List { key: "vital_signs" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 24,
        name: "create_patient_vital_signs",
        group: Group::MedicalRecords,
        method: Method::Post,
        path: "/api/patients/{patient_id}/vital_signs",
        shape: Shape::Write { key: "vital_sign" },
        params: &[],
    },
    Endpoint {
        number: 25,
        name: "get_vital_signs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/vital_signs",
        shape: Shape::List { key: "vital_signs" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 26,
        name: "get_patient_allergies",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/allergies",
        shape: Shape::List { key: "allergies" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 27,
        name: "get_allergies",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/allergies",
        shape: Shape::List { key: "allergies" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 28,
        name: "get_allergens",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/allergens",
        shape: Shape::List { key: "allergens" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 29,
        name: "get_patient_cows",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/cows",
        shape: Shape::List { key: "cows" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 30,
        name: "get_cows",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/cows",
        shape: Shape::List { key: "cows" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 31,
        name: "get_patient_ciwa_ars",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/ciwa_ars",
        shape: Shape::List { key: "ciwa_ars" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 32,
        name: "get_ciwa_ars",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/ciwa_ars",
        shape: Shape::List { key: "ciwa_ars" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 33,
        name: "get_patient_ciwa_bs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/ciwa_bs",
        shape: Shape::List { key: "ciwa_bs" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 34,
        name: "get_ciwa_bs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/ciwa_bs",
        shape: Shape::List { key: "ciwa_bs" },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 35,
        name: "get_patient_glucose_logs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/glucose_logs",
        shape: Shape::List {
            key: "glucose_logs",
        },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "evaluation_start_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 36,
        name: "get_glucose_logs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/glucose_logs",
        shape: Shape::List {
            key: "glucose_logs",
        },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 37,
        name: "get_patient_orthostatic_vital_signs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/patients/{patient_id}/orthostatic_vital_signs",
        shape: Shape::List {
            key: "orthostatic_vital_signs",
        },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 38,
        name: "get_orthostatic_vital_signs",
        group: Group::MedicalRecords,
        method: Method::Get,
        path: "/api/orthostatic_vital_signs",
        shape: Shape::List {
            key: "orthostatic_vital_signs",
        },
        params: &[
            "created_at_start_date",
            "created_at_end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 39,
        name: "get_evaluations",
        group: Group::Evaluations,
        method: Method::Get,
        path: "/api/evaluations",
        shape: Shape::List { key: "evaluations" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 40,
        name: "get_evaluation",
        group: Group::Evaluations,
        method: Method::Get,
        path: "/api/evaluations/{evaluation_id}",
        shape: Shape::Object { key: "evaluation" },
        params: &[],
    },
    Endpoint {
        number: 41,
        name: "get_patient_evaluations",
        group: Group::Evaluations,
        method: Method::Get,
        path: "/api/patient_evaluations",
        shape: Shape::List {
            key: "patient_evaluations",
        },
        params: &[
            "evaluation_content",
            "patient_process_id",
            "start_date",
            "end_date",
            "page",
            "per",
        ],
    },
    Endpoint {
        number: 42,
        name: "get_patient_evaluation",
        group: Group::Evaluations,
        method: Method::Get,
        path: "/api/patient_evaluations/{patient_evaluation_id}",
        shape: Shape::Object {
            key: "patient_evaluation",
        },
        params: &["evaluation_content"],
    },
    Endpoint {
        number: 43,
        name: "get_patient_patient_evaluations",
        group: Group::Evaluations,
        method: Method::Get,
        path: "/api/patients/{patient_id}/patient_evaluations",
        shape: Shape::List {
            key: "patient_evaluations",
        },
        params: &["evaluation_content", "patient_process_id", "page", "per"],
    },
    Endpoint {
        number: 44,
        name: "create_patient_evaluation",
        group: Group::Evaluations,
        method: Method::Post,
        path: "/api/patients/{patient_id}/patient_evaluations",
        shape: Shape::Write {
            key: "patient_evaluation",
        },
        params: &[],
    },
    Endpoint {
        number: 45,
        name: "get_users",
        group: Group::Users,
        method: Method::Get,
        path: "/api/users",
        shape: Shape::List { key: "users" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 46,
        name: "get_user",
        group: Group::Users,
        method: Method::Get,
        path: "/api/users/{user_id}",
        shape: Shape::Object { key: "user" },
        params: &["include_restrictions"],
    },
    Endpoint {
        number: 47,
        name: "get_user_roles",
        group: Group::Users,
        method: Method::Get,
        path: "/api/users/{user_id}/roles",
        shape: Shape::List { key: "roles" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 48,
        name: "get_providers",
        group: Group::Users,
        method: Method::Get,
        path: "/api/providers",
        shape: Shape::List { key: "providers" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 49,
        name: "get_provider",
        group: Group::Users,
        method: Method::Get,
        path: "/api/providers/{provider_id}",
        shape: Shape::Object { key: "provider" },
        params: &[],
    },
    Endpoint {
        number: 50,
        name: "get_provider_roles",
        group: Group::Users,
        method: Method::Get,
        path: "/api/providers/{provider_id}/roles",
        shape: Shape::List { key: "roles" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 51,
        name: "get_roles",
        group: Group::Users,
        method: Method::Get,
        path: "/api/roles",
        shape: Shape::List { key: "roles" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 52,
        name: "get_role_users",
        group: Group::Users,
        method: Method::Get,
        path: "/api/roles/{role_id}/users",
        shape: Shape::List { key: "users" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 53,
        name: "get_user_titles",
        group: Group::Users,
        method: Method::Get,
        path: "/api/user_titles",
        shape: Shape::List { key: "user_titles" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 54,
        name: "get_contacts",
        group: Group::Contacts,
        method: Method::Get,
        path: "/api/contacts",
        shape: Shape::List { key: "contacts" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 55,
        name: "get_contact",
        group: Group::Contacts,
        method: Method::Get,
        path: "/api/contacts/{contact_id}",
        shape: Shape::Object { key: "contact" },
        params: &[],
    },
    Endpoint {
        number: 56,
        name: "create_contact",
        group: Group::Contacts,
        method: Method::Post,
        path: "/api/contacts",
        shape: Shape::Write { key: "contact" },
        params: &[],
    },
    Endpoint {
        number: 57,
        name: "update_contact",
        group: Group::Contacts,
        method: Method::Patch,
        path: "/api/contacts/{contact_id}",
        shape: Shape::Write { key: "contact" },
        params: &[],
    },
    Endpoint {
        number: 58,
        name: "get_contact_types",
        group: Group::Contacts,
        method: Method::Get,
        path: "/api/contact_types",
        shape: Shape::List {
            key: "contact_types",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 59,
        name: "get_referrers",
        group: Group::Contacts,
        method: Method::Get,
        path: "/api/contacts/referrers",
        shape: Shape::List { key: "referrers" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 60,
        name: "get_insurances_latest",
        group: Group::Insurance,
        method: Method::Get,
        path: "/api/insurances/latest",
        shape: Shape::List { key: "insurances" },
        params: &["start_date", "end_date", "page", "per"],
    },
    Endpoint {
        number: 61,
        name: "update_patient_insurance",
        group: Group::Insurance,
        method: Method::Patch,
        path: "/api/patients/{patient_id}/insurances/{insurance_id}",
        shape: Shape::Write { key: "insurance" },
        params: &[],
    },
    Endpoint {
        number: 62,
        name: "get_group_sessions",
        group: Group::GroupSessions,
        method: Method::Get,
        path: "/api/group_sessions",
        shape: Shape::List {
            key: "group_sessions",
        },
        params: &["start_date", "end_date", "page", "per"],
    },
    Endpoint {
        number: 63,
        name: "get_group_session",
        group: Group::GroupSessions,
        method: Method::Get,
        path: "/api/group_sessions/{group_session_id}",
        shape: Shape::Object {
            key: "group_session",
        },
        params: &[],
    },
    Endpoint {
        number: 64,
        name: "get_patient_group_sessions",
        group: Group::GroupSessions,
        method: Method::Get,
        path: "/api/patients/{patient_id}/group_sessions",
        shape: Shape::List {
            key: "group_sessions",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 65,
        name: "get_patient_group_session",
        group: Group::GroupSessions,
        method: Method::Get,
        path: "/api/patients/{patient_id}/group_sessions/{group_session_id}",
        shape: Shape::Object {
            key: "group_session",
        },
        params: &[],
    },
    Endpoint {
        number: 66,
        name: "get_consent_forms",
        group: Group::ConsentForms,
        method: Method::Get,
        path: "/api/consent_forms",
        shape: Shape::List {
            key: "consent_forms",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 67,
        name: "get_consent_form_records",
        group: Group::ConsentForms,
        method: Method::Get,
        path: "/api/consent_form_records",
        shape: Shape::List {
            key: "consent_form_records",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 68,
        name: "get_consent_form_record",
        group: Group::ConsentForms,
        method: Method::Get,
        path: "/api/consent_form_records/{record_id}",
        shape: Shape::Object {
            key: "consent_form_record",
        },
        params: &[],
    },
    Endpoint {
        number: 69,
        name: "get_patient_consent_form_records",
        group: Group::ConsentForms,
        method: Method::Get,
        path: "/api/patients/{patient_id}/consent_form_records",
        shape: Shape::List {
            key: "consent_form_records",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 70,
        name: "get_patient_diets",
        group: Group::Diets,
        method: Method::Get,
        path: "/api/patient_diets",
        shape: Shape::List {
            key: "patient_diets",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 71,
        name: "get_patient_patient_diets",
        group: Group::Diets,
        method: Method::Get,
        path: "/api/patients/{patient_id}/patient_diets",
        shape: Shape::List {
            key: "patient_diets",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 72,
        name: "get_patient_orders",
        group: Group::Orders,
        method: Method::Get,
        path: "/api/patient_orders",
        shape: Shape::List {
            key: "patient_orders",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 73,
        name: "get_patient_order",
        group: Group::Orders,
        method: Method::Get,
        path: "/api/patient_orders/{patient_order_id}",
        shape: Shape::Object {
            key: "patient_order",
        },
        params: &[],
    },
    Endpoint {
        number: 74,
        name: "get_patient_patient_orders",
        group: Group::Orders,
        method: Method::Get,
        path: "/api/patients/{patient_id}/patient_orders",
        shape: Shape::List {
            key: "patient_orders",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 75,
        name: "get_patient_ur",
        group: Group::UtilizationReview,
        method: Method::Get,
        path: "/api/patients/{patient_id}/ur",
        shape: Shape::List {
            key: "utilization_reviews",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 76,
        name: "get_utilization_reviews_latest",
        group: Group::UtilizationReview,
        method: Method::Get,
        path: "/api/utilization_reviews/latest",
        shape: Shape::List {
            key: "utilization_reviews",
        },
        params: &["start_date", "end_date", "page", "per"],
    },
    Endpoint {
        number: 77,
        name: "get_locations",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/locations",
        shape: Shape::List { key: "locations" },
        params: &["include_buildings", "page", "per"],
    },
    Endpoint {
        number: 78,
        name: "get_care_levels",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/care_levels",
        shape: Shape::List { key: "care_levels" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 79,
        name: "get_flags",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/flags",
        shape: Shape::List { key: "flags" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 80,
        name: "get_flag_categories",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/flag_categories",
        shape: Shape::List {
            key: "flag_categories",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 81,
        name: "get_patient_colors",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/patient_colors",
        shape: Shape::List {
            key: "patient_colors",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 82,
        name: "get_patient_tags",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/patient_tags",
        shape: Shape::List {
            key: "patient_tags",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 83,
        name: "get_patient_settings",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/patient_settings",
        shape: Shape::List {
            key: "patient_settings",
        },
        params: &["page", "per"],
    },
    Endpoint {
        number: 84,
        name: "get_settings_payors",
        group: Group::Settings,
        method: Method::Get,
        path: "/api/settings/payors",
        shape: Shape::List { key: "payors" },
        params: &["page", "per"],
    },
    Endpoint {
        number: 85,
        name: "update_patient_ext_id_mapping",
        group: Group::ExternalIds,
        method: Method::Patch,
        path: "/api/patients/{patient_id}/ext_id_mappings/{mapping_id}",
        shape: Shape::Write {
            key: "ext_id_mapping",
        },
        params: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn there_are_85_endpoints_77_get_4_post_4_patch() {
        assert_eq!(ENDPOINTS.len(), 85);
        let count = |m| ENDPOINTS.iter().filter(|e| e.method == m).count();
        assert_eq!(
            (
                count(Method::Get),
                count(Method::Post),
                count(Method::Patch)
            ),
            (77, 4, 4)
        );
    }

    #[test]
    fn numbers_are_1_to_85_in_order_and_names_are_unique() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert_eq!(usize::from(e.number), i + 1);
        }
        let names: HashSet<_> = ENDPOINTS.iter().map(|e| e.name).collect();
        assert_eq!(names.len(), 85);
    }

    #[test]
    fn there_are_80_distinct_paths_5_shared_by_a_read_and_a_write() {
        let paths: HashSet<_> = ENDPOINTS.iter().map(|e| e.path).collect();
        assert_eq!(paths.len(), 80);
        let writes_on_read_paths = ENDPOINTS
            .iter()
            .filter(|w| w.method != Method::Get)
            .filter(|w| {
                ENDPOINTS
                    .iter()
                    .any(|r| r.method == Method::Get && r.path == w.path)
            })
            .count();
        assert_eq!(writes_on_read_paths, 5);
    }

    #[test]
    fn group_sizes_match_the_spec() {
        let size = |g| ENDPOINTS.iter().filter(|e| e.group == g).count();
        let sizes = [
            (Group::Patients, 13),
            (Group::Appointments, 9),
            (Group::MedicalRecords, 16),
            (Group::Evaluations, 6),
            (Group::Users, 9),
            (Group::Contacts, 6),
            (Group::Insurance, 2),
            (Group::GroupSessions, 4),
            (Group::ConsentForms, 4),
            (Group::Diets, 2),
            (Group::Orders, 3),
            (Group::UtilizationReview, 2),
            (Group::Settings, 8),
            (Group::ExternalIds, 1),
        ];
        for (g, n) in sizes {
            assert_eq!(size(g), n, "{g:?}");
        }
    }

    #[test]
    fn literal_paths_win_over_placeholders() {
        assert_eq!(
            match_path(Method::Get, "/api/patients/census")
                .unwrap()
                .name,
            "get_patients_census"
        );
        assert_eq!(
            match_path(Method::Get, "/api/patients/12%3Aab")
                .unwrap()
                .name,
            "get_patient"
        );
        assert_eq!(
            match_path(Method::Get, "/api/contacts/referrers")
                .unwrap()
                .name,
            "get_referrers"
        );
        assert_eq!(
            match_path(Method::Patch, "/api/patients/1/insurances/2")
                .unwrap()
                .name,
            "update_patient_insurance"
        );
        assert!(match_path(Method::Get, "/api/patients/").is_none());
        assert!(match_path(Method::Get, "/api/nope").is_none());
    }

    #[test]
    fn every_endpoint_is_matched_by_a_path_filled_from_its_own_template() {
        for e in &ENDPOINTS {
            let filled: Vec<&str> = e
                .path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "7" } else { seg })
                .collect();
            let path = filled.join("/");
            let found = match_path(e.method, &path).map(|m| m.name);
            assert_eq!(found, Some(e.name), "{path}");
            assert!(
                match_path(e.method, &format!("{path}/extra")).is_none_or(|m| m.name != e.name)
            );
        }
    }

    #[test]
    fn find_accepts_names_short_names_and_templates() {
        assert_eq!(find("get_patients_census").unwrap().number, 1);
        assert_eq!(find("patients_census").unwrap().number, 1);
        assert_eq!(
            find("/api/patients/{patient_id}/vital_signs")
                .unwrap()
                .number,
            23
        );
        assert!(find("census").is_none());
    }
}
