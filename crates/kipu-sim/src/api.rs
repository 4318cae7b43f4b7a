//! Request handling: authenticate, inject faults, dispatch on the endpoint catalogue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, NaiveDateTime};
use http::{HeaderValue, StatusCode, header};
use kipu::endpoints::{self, Endpoint, Method};
use serde_json::{Map, Value, json};

use crate::Simulator;
use crate::cache::{Serialized, Slot};
use crate::data::{self, Kind, named, obj, split_record_id};
use crate::dict;
use crate::faults::Fault;

mod deletions;

/// The largest request body accepted (uploads included).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Ids of records created through the API start here, far above generated ids.
const CREATED_ID_BASE: u64 = 1_000_000_000_000;

/// Marks a response whose connection must be dropped without sending it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResetConnection;

/// Everything written through the API, in memory.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    created_patients: Vec<Map<String, Value>>,
    patient_overrides: HashMap<String, Map<String, Value>>,
    /// Records appended per kind, in creation order (vital signs, evaluations, contacts).
    appended: HashMap<Kind, Vec<Map<String, Value>>>,
    record_overrides: HashMap<(Kind, u64), Map<String, Value>>,
    ext_id_mappings: HashMap<String, Vec<Map<String, Value>>>,
    attachments: HashMap<String, Vec<Map<String, Value>>>,
    /// Generated census patients some write changed (their own fields, insurances, mappings
    /// or attachments): filters and the response cache take the slow path for them.
    touched_patients: std::collections::HashSet<u64>,
    next_id: u64,
    writes: u64,
    /// Census patients soft-deleted through `Simulator::soft_delete_patient`: casefile id and
    /// `deleted_at`, in deletion order.
    soft_deleted: Vec<(String, String)>,
}

impl Writes {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        CREATED_ID_BASE + self.next_id
    }

    /// A deterministic "now" for written records: the data anchor plus one second per write.
    fn stamp(&mut self) -> String {
        self.writes += 1;
        let (y, m, d) = data::ANCHOR;
        let base = chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .unwrap_or_default();
        data::ts(base + chrono::Duration::seconds(self.writes as i64))
    }
}

/// An API error: status plus a message that never contains request data.
struct ApiError(StatusCode, String);

type ApiResult = Result<(StatusCode, Value), ApiError>;

fn error_body(status: StatusCode, message: &str) -> Response {
    let body = json!({"errors": message, "status_code": status.as_u16()});
    (status, axum::Json(body)).into_response()
}

/// A JSON response from bytes already serialized.
fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, message.into())
}

pub(crate) async fn handle(State(sim): State<Arc<Simulator>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method_name = parts.method.as_str().to_owned();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let path = target
        .split_once('?')
        .map_or(target.as_str(), |(p, _)| p)
        .to_owned();
    let method = match parts.method.as_str() {
        "GET" => Some(Method::Get),
        "POST" => Some(Method::Post),
        "PATCH" => Some(Method::Patch),
        _ => None,
    };
    let endpoint = method.and_then(|m| endpoints::match_path(m, &path));
    let template = endpoint.map_or("(unknown)", |e| e.path);

    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return logged(
                &method_name,
                template,
                error_body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body is larger than 16 MiB",
                ),
            );
        }
    };
    if let Err(refusal) = sim.verifier.verify(
        &method_name,
        &target,
        &parts.headers,
        &body,
        SystemTime::now(),
    ) {
        return logged(
            &method_name,
            template,
            error_body(StatusCode::UNAUTHORIZED, refusal.message()),
        );
    }

    let fault = sim.fault_for(&method_name, &target);
    if let Some(delay) = fault.1 {
        tokio::time::sleep(delay).await;
    }
    let response = match fault.0 {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = error_body(
                status,
                "injected fault: the simulator was asked to fail this request",
            );
            if code == 429 {
                let secs = HeaderValue::from(sim.faults.retry_after_secs());
                r.headers_mut().insert(header::RETRY_AFTER, secs);
            }
            r
        }
        Some(Fault::Reset) => reset_response(),
        Some(Fault::Truncate) if method != Some(Method::Get) => reset_response(),
        Some(Fault::Truncate) => {
            truncate(respond(&sim, method, endpoint, &path, &target, &parts.headers, body).await)
                .await
        }
        None => respond(&sim, method, endpoint, &path, &target, &parts.headers, body).await,
    };
    logged(&method_name, template, response)
}

fn logged(method: &str, template: &str, response: Response) -> Response {
    // Only the template: a filled-in path or query would carry patient identifiers.
    tracing::info!(
        method,
        endpoint = template,
        status = response.status().as_u16(),
        "kipu-sim request"
    );
    response
}

/// A response that aborts the connection: the accept loop drops it without writing anything;
/// embedded elsewhere, its body fails before the first byte.
fn reset_response() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection reset"))
    });
    let mut r = Response::new(Body::from_stream(failing));
    r.extensions_mut().insert(ResetConnection);
    r
}

/// Sends half the body under the full `Content-Length`, then fails the stream, which makes
/// hyper close the connection: the client sees a short body, not a clean end.
async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(full) = axum::body::to_bytes(body, usize::MAX).await else {
        return reset_response();
    };
    let half = full.slice(..full.len() / 2);
    use futures::StreamExt as _;
    // Returning Pending after the first half makes hyper flush the headers and those bytes
    // before the stream fails and the connection is dropped.
    let stream = futures::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(
        futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err(std::io::Error::other("injected truncation"))
        }),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len()));
    Response::from_parts(parts, Body::from_stream(stream))
}

impl Simulator {
    /// The fault and latency for this request, from the seed, the method, the target and the
    /// attempt number of that same method + target.
    fn fault_for(&self, method: &str, target: &str) -> (Option<Fault>, Option<Duration>) {
        if self.faults.is_none() {
            return (None, None);
        }
        let key = data::hash_words(&[
            data::hash_bytes(method.as_bytes()),
            data::hash_bytes(target.as_bytes()),
        ]);
        let attempt = {
            let mut attempts = self
                .attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = attempts.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        let draw = data::hash_words(&[self.data.seed, key, u64::from(attempt)]);
        let latency_draw = data::hash_words(&[self.data.seed, key, u64::from(attempt), 1]);
        (self.faults.decide(draw), self.faults.latency(latency_draw))
    }
}

/// What census filters look at.
struct PatientView {
    admitted: Option<NaiveDate>,
    discharged: Option<NaiveDate>,
    updated_at: Option<NaiveDateTime>,
    location: Option<u64>,
}

/// The record time a global list's `start_date`/`end_date` filter on.
#[derive(Debug, Clone, Copy)]
enum TimeField {
    UpdatedAt,
    AppointmentStart,
}

impl TimeField {
    fn name(self) -> &'static str {
        match self {
            Self::UpdatedAt => "updated_at",
            Self::AppointmentStart => "start_time",
        }
    }
}

/// Decoded query parameters (the raw target was already verified).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(target: &str) -> Self {
        let q = target.split_once('?').map_or("", |(_, q)| q);
        Self(
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The window of `<prefix>start_date` / `<prefix>end_date` (prefix `""` or
    /// `"created_at_"`). A malformed bound is a 422 naming the parameter, not its value.
    fn window(&self, start_key: &'static str, end_key: &'static str) -> Result<Window, ApiError> {
        let bound = |key: &'static str, end: bool| match self.get(key) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => parse_bound(v, end).map(Some).ok_or_else(|| {
                unprocessable(format!("{key} must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"))
            }),
        };
        let w = Window {
            start: bound(start_key, false)?,
            end: bound(end_key, true)?,
        };
        if let (Some(s), Some(e)) = (w.start, w.end)
            && s > e
        {
            return Err(unprocessable(format!(
                "{start_key} must not be after {end_key}"
            )));
        }
        Ok(w)
    }

    fn dates(&self) -> Result<Window, ApiError> {
        self.window("start_date", "end_date")
    }

    fn created_at(&self) -> Result<Window, ApiError> {
        self.window("created_at_start_date", "created_at_end_date")
    }

    /// `days`: appointments starting within that many days before or after the simulator's
    /// "today" (0 to 3650). No default: without `days` nothing is filtered.
    fn days_window(&self) -> Result<Window, ApiError> {
        let Some(v) = self.get("days") else {
            return Ok(Window::default());
        };
        let days = v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|d| (0..=3650).contains(d))
            .ok_or_else(|| unprocessable("days must be a whole number between 0 and 3650"))?;
        let today = data::anchor_date();
        Ok(Window {
            start: (today - chrono::Duration::days(days)).and_hms_opt(0, 0, 0),
            end: (today + chrono::Duration::days(days)).and_hms_opt(23, 59, 59),
        })
    }

    /// `location_id`, a positive integer.
    fn location(&self) -> Result<Option<u64>, ApiError> {
        self.get("location_id")
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|l| *l >= 1)
                    .ok_or_else(|| unprocessable("location_id must be a positive whole number"))
            })
            .transpose()
    }

    /// `(page, per)`: page >= 1, 1 <= per <= 1000.
    fn paging(&self) -> Result<(u64, u64), ApiError> {
        let page = match self.get("page") {
            None => 1,
            Some(p) => p
                .parse::<u64>()
                .ok()
                .filter(|p| (1..=10_000_000).contains(p))
                .ok_or_else(|| unprocessable("page must be a whole number of at least 1"))?,
        };
        let per = match self.get("per") {
            None => 20,
            Some(p) => p
                .parse::<u64>()
                .ok()
                .filter(|p| (1..=1000).contains(p))
                .ok_or_else(|| unprocessable("per must be a whole number between 1 and 1000"))?,
        };
        Ok((page, per))
    }
}

/// An inclusive time window from a pair of query parameters. A date-only start means that
/// day's 00:00:00, a date-only end that day's 23:59:59. Times are the data's local time (the
/// `-05:00` of every generated timestamp).
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
}

impl Window {
    fn is_open(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    fn contains(&self, t: NaiveDateTime) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }

    /// Whether the days `from..=to` (`to` open-ended when `None`) meet the window.
    fn overlaps_days(&self, from: NaiveDate, to: Option<NaiveDate>) -> bool {
        self.end.is_none_or(|e| from <= e.date())
            && self
                .start
                .is_none_or(|s| to.is_none_or(|to| to >= s.date()))
    }
}

/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` (what the client's
/// `DateBound` sends), as the start or the end of a window.
fn parse_bound(value: &str, end: bool) -> Option<NaiveDateTime> {
    let v = value.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return if end {
            d.and_hms_opt(23, 59, 59)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
        .ok()
}

/// The local date-time of a record field: an ISO 8601 timestamp (offset ignored: all data is
/// in one zone) or a date (its midnight).
fn field_time(record: &Map<String, Value>, field: &str) -> Option<NaiveDateTime> {
    let s = record.get(field)?.as_str()?;
    let head = s.get(..19).unwrap_or(s);
    NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)
        })
}

fn field_date(record: &Map<String, Value>, field: &str) -> Option<NaiveDate> {
    field_time(record, field).map(|t| t.date())
}

/// The records `start..end` of page `page` of `per` over `total` records.
fn page_bounds(page: u64, per: u64, total: u64) -> (u64, u64) {
    let start = (page - 1).saturating_mul(per).min(total);
    let end = start.saturating_add(per).min(total);
    (start, end)
}

/// `{"pagination":{...},"<key>":[` as `serde_json` writes the envelope of [`page_of`].
fn list_head(key: &str, page: u64, per: u64, total: u64, records: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(160 + records * 1024);
    let _ = write!(
        out,
        "{{\"pagination\":{{\"current_page\":{page},\"total_pages\":{},\"records_per_page\":{per},\"total_records\":{total}}},",
        total.div_ceil(per)
    );
    let _ = serde_json::to_writer(&mut out, key);
    out.extend_from_slice(b":[");
    out
}

/// A list response for `total` records, fetching only the requested page.
fn page_of(
    key: &str,
    query: &Query,
    total: u64,
    fetch: impl FnOnce(u64, u64) -> Vec<Value>,
) -> ApiResult {
    let (page, per) = query.paging()?;
    let (start, end) = page_bounds(page, per, total);
    let records = fetch(start, end);
    Ok((
        StatusCode::OK,
        json!({
            "pagination": {
                "current_page": page,
                "total_pages": total.div_ceil(per),
                "records_per_page": per,
                "total_records": total,
            },
            key: records,
        }),
    ))
}

fn page_of_vec(key: &str, query: &Query, items: Vec<Map<String, Value>>) -> ApiResult {
    let total = items.len() as u64;
    page_of(key, query, total, |s, e| {
        items[s as usize..e as usize]
            .iter()
            .cloned()
            .map(Value::Object)
            .collect()
    })
}

fn one(key: &str, record: Map<String, Value>) -> ApiResult {
    Ok((StatusCode::OK, json!({ key: record })))
}

fn path_ids(endpoint: &Endpoint, path: &str) -> Vec<String> {
    endpoint
        .path
        .split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, seg)| {
            percent_encoding::percent_decode_str(seg)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn parse_id(s: &str) -> Option<u64> {
    s.parse().ok()
}

async fn respond(
    sim: &Simulator,
    method: Option<Method>,
    endpoint: Option<&'static Endpoint>,
    path: &str,
    target: &str,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some(endpoint) = endpoint else {
        let other_method = [Method::Get, Method::Post, Method::Patch]
            .into_iter()
            .any(|m| Some(m) != method && endpoints::match_path(m, path).is_some());
        return if other_method {
            error_body(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        } else {
            error_body(StatusCode::NOT_FOUND, "no such endpoint")
        };
    };
    let ids = path_ids(endpoint, path);
    let query = Query::parse(target);
    if endpoint.method == Method::Get {
        match sim.fast_read(endpoint, &ids, &query) {
            Some(Ok(bytes)) => return json_bytes(StatusCode::OK, bytes),
            Some(Err(ApiError(status, message))) => return error_body(status, &message),
            None => {}
        }
    }
    let result = match endpoint.method {
        Method::Get => sim.read(endpoint, &ids, &query),
        Method::Post | Method::Patch => match parse_write(sim, headers, &body).await {
            Ok(doc) => sim.write(endpoint, &ids, doc),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok((status, value)) => (status, axum::Json(value)).into_response(),
        Err(ApiError(status, message)) => error_body(status, &message),
    }
}

/// A write's `document.data` plus any uploaded attachments.
struct WriteDoc {
    data: Map<String, Value>,
    attachments: Vec<Map<String, Value>>,
}

async fn parse_write(
    sim: &Simulator,
    headers: &http::HeaderMap,
    body: &Bytes,
) -> Result<WriteDoc, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let app_id = &sim.verifier.app_id;
    if content_type.starts_with("multipart/form-data") {
        return parse_multipart(content_type, body.clone(), app_id).await;
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        unprocessable("body must be a JSON object {\"document\": {\"recipient_id\", \"data\"}}")
    })?;
    let document = value
        .get("document")
        .and_then(Value::as_object)
        .ok_or_else(|| unprocessable("body must have a `document` object"))?;
    match document.get("recipient_id").and_then(Value::as_str) {
        Some(r) if r == app_id => {}
        Some(_) => return Err(unprocessable("document.recipient_id must equal the app id")),
        None => return Err(unprocessable("document.recipient_id is required")),
    }
    let data = document
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| unprocessable("document.data must be an object"))?;
    Ok(WriteDoc {
        data,
        attachments: Vec::new(),
    })
}

async fn parse_multipart(
    content_type: &str,
    body: Bytes,
    app_id: &str,
) -> Result<WriteDoc, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| unprocessable("multipart Content-Type must carry a boundary"))?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = || unprocessable("malformed multipart body");
    let mut recipient = None;
    let mut data = Map::new();
    let mut attachments: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
    while let Some(field) = form.next_field().await.map_err(|_| bad())? {
        let name = field.name().unwrap_or("").to_owned();
        let Some(inner) = name
            .strip_prefix("document[")
            .and_then(|n| n.strip_suffix(']'))
        else {
            return Err(unprocessable(
                "multipart field names must start with document[",
            ));
        };
        if let Some(rest) = inner.strip_prefix("attachments_attributes][") {
            let (n, attr) = rest.split_once("][").ok_or_else(bad)?;
            let n: u64 = n.parse().map_err(|_| bad())?;
            let entry = attachments.entry(n).or_default();
            if attr == "attachment" {
                let file_name = field.file_name().unwrap_or("").to_owned();
                let mime = field.content_type().map(ToString::to_string);
                let bytes = field.bytes().await.map_err(|_| bad())?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                entry.insert("file_name".into(), file_name.into());
                entry.insert("content_type".into(), mime.into());
                entry.insert("size".into(), bytes.len().into());
                entry.insert("sha256".into(), hex::encode(digest.as_ref()).into());
            } else {
                let text = field.text().await.map_err(|_| bad())?;
                entry.insert(attr.to_owned(), text.into());
            }
            continue;
        }
        let text = field.text().await.map_err(|_| bad())?;
        if inner == "recipient_id" {
            recipient = Some(text);
        } else {
            let key = inner.strip_prefix("data][").unwrap_or(inner);
            if key.contains('[') || key.contains(']') {
                return Err(unprocessable(
                    "nested multipart fields other than attachments are not supported",
                ));
            }
            data.insert(key.to_owned(), text.into());
        }
    }
    match recipient {
        Some(r) if r == app_id => {}
        Some(_) => {
            return Err(unprocessable(
                "document[recipient_id] must equal the app id",
            ));
        }
        None => return Err(unprocessable("document[recipient_id] is required")),
    }
    let attachments = attachments
        .into_values()
        .map(|m| {
            if m.contains_key("sha256") {
                Ok(m)
            } else {
                Err(unprocessable("each attachment needs a file part"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WriteDoc { data, attachments })
}

/// Fields the server owns; a write may not set them.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "casefile_id",
    "patient_master_id",
    "patient_id",
    "created_at",
    "updated_at",
    "insurances",
    "ext_id_mappings",
    "attachments",
];

fn check_writable(data: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(k) = data.keys().find(|k| SERVER_FIELDS.contains(&k.as_str())) {
        return Err(unprocessable(format!(
            "field `{k}` is set by the server and cannot be written"
        )));
    }
    if data.values().any(|v| v.is_object() || v.is_array()) {
        return Err(unprocessable(
            "document.data fields must be strings, numbers, booleans or null",
        ));
    }
    Ok(())
}

impl Simulator {
    fn writes(&self) -> std::sync::RwLockReadGuard<'_, Writes> {
        self.writes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn writes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Writes> {
        self.writes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A census patient (generated or created) by casefile id, with writes applied.
    /// Soft-deleted patients are not found.
    fn patient_by_id(&self, w: &Writes, casefile_id: &str) -> Option<Map<String, Value>> {
        let mut p = match self.data.index_of(casefile_id) {
            Some(i) if i < self.data.patients => self.data.patient(i),
            Some(_) => return None,
            None => w
                .created_patients
                .iter()
                .find(|p| p.get("casefile_id").and_then(Value::as_str) == Some(casefile_id))?
                .clone(),
        };
        self.apply_patient_writes(w, &mut p);
        Some(p)
    }

    /// Whether a census patient (generated or created) has this casefile id, without
    /// building it.
    fn patient_exists(&self, w: &Writes, casefile_id: &str) -> bool {
        match self.data.index_of(casefile_id) {
            Some(i) => i < self.data.patients,
            None => w
                .created_patients
                .iter()
                .any(|p| p.get("casefile_id").and_then(Value::as_str) == Some(casefile_id)),
        }
    }

    /// The hot reads, answered from the cache of serialized generated records: the census
    /// and latest lists without date filters, one patient, and a patient's records of one
    /// kind without filters. The bytes are exactly what [`Simulator::read`] would serialize
    /// (a test holds the two together); anything a write touched is serialized afresh.
    /// `None` means "not a hot read": the caller takes the general path.
    fn fast_read(
        &self,
        e: &'static Endpoint,
        ids: &[String],
        q: &Query,
    ) -> Option<Result<Vec<u8>, ApiError>> {
        // After a soft delete every list is filtered by `read_after_soft_deletes`; the cache
        // of generated records knows nothing of it, so the general path answers.
        if !self.writes().soft_deleted.is_empty() {
            return None;
        }
        let key = e.shape.key();
        match e.name {
            "get_patients_census" | "get_patients_latest" => {
                match q.dates() {
                    Err(err) => return Some(Err(err)),
                    Ok(window) if !window.is_open() => return None,
                    Ok(_) => {}
                }
                let (page, per) = match q.paging() {
                    Ok(p) => p,
                    Err(err) => return Some(Err(err)),
                };
                let w = self.writes();
                let total = self.census_total(&w);
                let (start, end) = page_bounds(page, per, total);
                let mut out = list_head(key, page, per, total, (end - start) as usize);
                for pos in start..end {
                    if pos > start {
                        out.push(b',');
                    }
                    if pos < self.data.patients && !w.touched_patients.contains(&pos) {
                        let entry = self.cache.get_or_build(Slot::Patient, pos, || {
                            Serialized::build(&[self.data.patient(pos)])
                        });
                        out.extend_from_slice(entry.get(0));
                    } else {
                        let _ = serde_json::to_writer(&mut out, &self.census_patient(&w, pos));
                    }
                }
                out.extend_from_slice(b"]}");
                Some(Ok(out))
            }
            "get_patient" => {
                if q.get("include_ids").is_some() {
                    return None;
                }
                let index = self
                    .data
                    .index_of(ids.first()?)
                    .filter(|i| *i < self.data.patients)?;
                if self.writes().touched_patients.contains(&index) {
                    return None;
                }
                let entry = self.cache.get_or_build(Slot::Patient, index, || {
                    Serialized::build(&[self.data.patient(index)])
                });
                let mut out = Vec::with_capacity(entry.get(0).len() + key.len() + 8);
                out.push(b'{');
                let _ = serde_json::to_writer(&mut out, key);
                out.push(b':');
                out.extend_from_slice(entry.get(0));
                out.push(b'}');
                Some(Ok(out))
            }
            name if e.is_patient_scoped() && e.is_list() && ids.len() == 1 => {
                let kind = kind_of(name)?;
                match q.created_at() {
                    Err(err) => return Some(Err(err)),
                    Ok(window) if !window.is_open() => return None,
                    Ok(_) => {}
                }
                if kind == Kind::Appointment {
                    match q.days_window() {
                        Err(err) => return Some(Err(err)),
                        Ok(window) if !window.is_open() => return None,
                        Ok(_) => {}
                    }
                }
                let index = self
                    .data
                    .index_of(&ids[0])
                    .filter(|i| *i < self.data.patients)?;
                let (page, per) = match q.paging() {
                    Ok(p) => p,
                    Err(err) => return Some(Err(err)),
                };
                let w = self.writes();
                let entry = self
                    .cache
                    .get_or_build(Slot::Records(kind as u8), index, || {
                        let records: Vec<_> = (0..self.data.count(kind, index))
                            .map(|slot| self.data.record(kind, index, slot))
                            .collect();
                        Serialized::build(&records)
                    });
                let written: Vec<&Map<String, Value>> = match w.appended.get(&kind) {
                    Some(all) if !all.is_empty() => {
                        let id = ids[0].as_str();
                        all.iter()
                            .filter(|r| r.get("patient_id").and_then(Value::as_str) == Some(id))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                let generated = entry.len() as u64;
                let total = generated + written.len() as u64;
                let (start, end) = page_bounds(page, per, total);
                let mut out = list_head(key, page, per, total, (end - start) as usize);
                for pos in start..end {
                    if pos > start {
                        out.push(b',');
                    }
                    if pos < generated {
                        if w.record_overrides
                            .contains_key(&(kind, data::record_id(index, pos)))
                        {
                            let r = self.generated_record(&w, kind, index, pos);
                            let _ = serde_json::to_writer(&mut out, &r);
                        } else {
                            out.extend_from_slice(entry.get(pos as usize));
                        }
                    } else {
                        let _ =
                            serde_json::to_writer(&mut out, written[(pos - generated) as usize]);
                    }
                }
                out.extend_from_slice(b"]}");
                Some(Ok(out))
            }
            _ => None,
        }
    }

    fn apply_patient_writes(&self, w: &Writes, p: &mut Map<String, Value>) {
        let cf = p
            .get("casefile_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(o) = w.patient_overrides.get(&cf) {
            for (k, v) in o {
                p.insert(k.clone(), v.clone());
            }
        }
        if let Some(Value::Array(ins)) = p.get_mut("insurances") {
            for i in ins.iter_mut() {
                let id = i.get("id").and_then(Value::as_u64).unwrap_or(0);
                if let (Some(o), Value::Object(m)) =
                    (w.record_overrides.get(&(Kind::Insurance, id)), i)
                {
                    m.extend(o.clone());
                }
            }
        }
        if let Some(m) = w.ext_id_mappings.get(&cf) {
            p.insert(
                "ext_id_mappings".into(),
                Value::Array(m.iter().cloned().map(Value::Object).collect()),
            );
        }
        if let Some(a) = w.attachments.get(&cf) {
            p.insert(
                "attachments".into(),
                Value::Array(a.iter().cloned().map(Value::Object).collect()),
            );
        }
    }

    fn census_patient(&self, w: &Writes, position: u64) -> Value {
        let mut p = if position < self.data.patients {
            self.data.patient(position)
        } else {
            w.created_patients
                .get((position - self.data.patients) as usize)
                .cloned()
                .unwrap_or_default()
        };
        self.apply_patient_writes(w, &mut p);
        Value::Object(p)
    }

    fn census_total(&self, w: &Writes) -> u64 {
        self.data.patients + w.created_patients.len() as u64
    }

    fn generated_record(
        &self,
        w: &Writes,
        kind: Kind,
        index: u64,
        slot: u64,
    ) -> Map<String, Value> {
        let mut r = self.data.record(kind, index, slot);
        if let Some(o) = w
            .record_overrides
            .get(&(kind, data::record_id(index, slot)))
        {
            r.extend(o.clone());
        }
        r
    }

    /// A patient's records of a kind: generated ones, then those written through the API.
    fn patient_records(
        &self,
        w: &Writes,
        kind: Kind,
        casefile_id: &str,
    ) -> Result<Vec<Map<String, Value>>, ApiError> {
        if !self.patient_exists(w, casefile_id) {
            return Err(not_found("patient"));
        }
        let mut out = Vec::new();
        if let Some(i) = self.data.index_of(casefile_id) {
            out.extend((0..self.data.count(kind, i)).map(|s| self.generated_record(w, kind, i, s)));
        }
        if let Some(extra) = w.appended.get(&kind) {
            out.extend(
                extra
                    .iter()
                    .filter(|r| r.get("patient_id").and_then(Value::as_str) == Some(casefile_id))
                    .cloned(),
            );
        }
        Ok(out)
    }

    fn global_list(&self, w: &Writes, key: &str, kind: Kind, query: &Query) -> ApiResult {
        let generated = self.data.total(kind);
        let extra = w.appended.get(&kind).map_or(&[][..], Vec::as_slice);
        page_of(key, query, generated + extra.len() as u64, |s, e| {
            let mut out: Vec<Value> = self
                .data
                .global_range(kind, s.min(generated), e.min(generated))
                .into_iter()
                .map(|(i, slot)| Value::Object(self.generated_record(w, kind, i, slot)))
                .collect();
            for pos in s.max(generated)..e {
                out.push(Value::Object(extra[(pos - generated) as usize].clone()));
            }
            out
        })
    }

    /// The census positions (generated patients, then created ones) whose [`PatientView`]
    /// passes `keep`. Untouched generated patients are judged from their drawn times without
    /// being built; patients a write changed, from their fields.
    fn census_positions(&self, w: &Writes, keep: impl Fn(&PatientView) -> bool) -> Vec<u64> {
        let mut hits = Vec::new();
        for i in 0..self.census_total(w) {
            let view = if i < self.data.patients && !w.touched_patients.contains(&i) {
                let t = self.data.patient_times(i);
                PatientView {
                    admitted: Some(t.admitted),
                    discharged: t.discharged,
                    updated_at: Some(t.updated_at),
                    location: Some(self.data.patient_location(i)),
                }
            } else {
                let Value::Object(p) = self.census_patient(w, i) else {
                    continue;
                };
                PatientView {
                    admitted: field_date(&p, "admission_date"),
                    discharged: field_date(&p, "discharge_date"),
                    updated_at: field_time(&p, "updated_at"),
                    location: p.get("location_id").and_then(|v| {
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    }),
                }
            };
            if keep(&view) {
                hits.push(i);
            }
        }
        hits
    }

    /// [`Simulator::global_list`] restricted to records whose `field` lies in `window`. It
    /// scans every census patient's records of the kind, drawing only their times.
    fn global_list_in(
        &self,
        w: &Writes,
        key: &str,
        kind: Kind,
        query: &Query,
        window: Window,
        field: TimeField,
    ) -> ApiResult {
        if window.is_open() {
            return self.global_list(w, key, kind, query);
        }
        enum Hit {
            Generated(u64, u64),
            Written(usize),
        }
        let mut hits = Vec::new();
        for i in 0..self.data.patients {
            for slot in 0..self.data.count(kind, i) {
                let t = match field {
                    TimeField::AppointmentStart => self.data.appointment_start(i, slot),
                    TimeField::UpdatedAt => w
                        .record_overrides
                        .get(&(kind, data::record_id(i, slot)))
                        .and_then(|o| field_time(o, "updated_at"))
                        .unwrap_or_else(|| self.data.record_time(kind, i, slot).when),
                };
                if window.contains(t) {
                    hits.push(Hit::Generated(i, slot));
                }
            }
        }
        let extra = w.appended.get(&kind).map_or(&[][..], Vec::as_slice);
        for (n, r) in extra.iter().enumerate() {
            if field_time(r, field.name()).is_some_and(|t| window.contains(t)) {
                hits.push(Hit::Written(n));
            }
        }
        page_of(key, query, hits.len() as u64, |s, e| {
            hits[s as usize..e as usize]
                .iter()
                .map(|h| match h {
                    Hit::Generated(i, slot) => {
                        Value::Object(self.generated_record(w, kind, *i, *slot))
                    }
                    Hit::Written(n) => Value::Object(extra[*n].clone()),
                })
                .collect()
        })
    }

    /// A record of a kind by its id, generated (of a census patient) or written.
    fn record_by_id(&self, w: &Writes, kind: Kind, id: &str) -> Option<Map<String, Value>> {
        let id = parse_id(id)?;
        if id >= CREATED_ID_BASE {
            return w
                .appended
                .get(&kind)?
                .iter()
                .find(|r| r.get("id").and_then(Value::as_u64) == Some(id))
                .cloned();
        }
        let (index, slot) = split_record_id(id)?;
        (index < self.data.patients && slot < self.data.count(kind, index))
            .then(|| self.generated_record(w, kind, index, slot))
    }

    fn occupancy(&self) -> &[u64] {
        self.occupancy.get_or_init(|| {
            let mut counts = vec![0u64; dict::LOCATIONS.len()];
            for i in 0..self.data.patients {
                let p = self.data.patient(i);
                if p.get("discharge_date").is_some_and(Value::is_null) {
                    let loc = p.get("location_id").and_then(Value::as_u64).unwrap_or(1) as usize;
                    let last = counts.len() - 1;
                    counts[loc.saturating_sub(1).min(last)] += 1;
                }
            }
            counts
        })
    }

    /// Appointments whose provider (or user) is `who`, scanning census patients.
    fn appointments_of(&self, w: &Writes, by_provider: bool, who: u64) -> Vec<Map<String, Value>> {
        let mut out = Vec::new();
        for i in 0..self.data.patients {
            for s in 0..self.data.count(Kind::Appointment, i) {
                let owner = if by_provider {
                    self.data.appointment_provider(i, s)
                } else {
                    self.data.appointment_user(i, s)
                };
                if owner == who {
                    out.push(self.generated_record(w, Kind::Appointment, i, s));
                }
            }
        }
        out
    }

    fn read(&self, e: &Endpoint, ids: &[String], q: &Query) -> ApiResult {
        let w = self.writes();
        let w = &*w;
        let key = e.shape.key();
        let id0 = ids.first().map_or("", String::as_str);
        let id1 = ids.get(1).map_or("", String::as_str);
        if let Some(result) = self.read_after_soft_deletes(w, e, ids, q) {
            return result;
        }
        let d = &self.data;
        let settings = |items: Vec<Map<String, Value>>| page_of_vec(key, q, items);
        match e.name {
            "get_patients_census" | "get_patients_latest" => {
                let window = q.dates()?;
                if window.is_open() {
                    return page_of(key, q, self.census_total(w), |s, e| (s..e).map(|i| self.census_patient(w, i)).collect());
                }
                // The census: patients whose stay meets the window. Latest: patients updated
                // within it (the "updated since" query of a sync).
                let latest = e.name == "get_patients_latest";
                let hits = self.census_positions(w, |v| {
                    if latest {
                        v.updated_at.is_some_and(|t| window.contains(t))
                    } else {
                        v.admitted.is_some_and(|a| window.overlaps_days(a, v.discharged))
                    }
                });
                page_of(key, q, hits.len() as u64, |s, e| hits[s as usize..e as usize].iter().map(|i| self.census_patient(w, *i)).collect())
            }
            "get_patients_admissions" => {
                let window = q.dates()?;
                let location = q.location()?;
                let admission = |i: u64| {
                    if i < d.patients {
                        let mut p = d.admission_record(i);
                        self.apply_patient_writes(w, &mut p);
                        Value::Object(p)
                    } else {
                        self.census_patient(w, i)
                    }
                };
                if window.is_open() && location.is_none() {
                    return page_of(key, q, self.census_total(w), |s, e| (s..e).map(admission).collect());
                }
                // Admitted within the window (compared by day: `admission_date` is a date), at
                // the location.
                let hits = self.census_positions(w, |v| {
                    v.admitted.is_some_and(|a| window.overlaps_days(a, Some(a)))
                        && location.is_none_or(|l| v.location == Some(l))
                });
                page_of(key, q, hits.len() as u64, |s, e| hits[s as usize..e as usize].iter().map(|i| admission(*i)).collect())
            }
            "get_patient" => {
                let mut p = self.patient_by_id(w, id0).ok_or_else(|| not_found("patient"))?;
                if q.get("include_ids").is_some_and(|v| v == "true") {
                    p.insert("ids".into(), json!({"casefile_id": p.get("casefile_id"), "patient_master_id": p.get("patient_master_id"), "mr_number": p.get("mr_number")}));
                }
                one(key, p)
            }
            "get_patients_occupancy" => {
                let counts = self.occupancy();
                settings(
                    dict::LOCATIONS
                        .iter()
                        .enumerate()
                        .map(|(i, (name, beds))| {
                            let occupied = counts[i].min(u64::from(*beds));
                            obj(json!({"id": i + 1, "location_id": i + 1, "location_name": name, "capacity": beds, "occupied": occupied, "available": u64::from(*beds) - occupied}))
                        })
                        .collect(),
                )
            }
            "get_patients_care_teams" => page_of(key, q, d.patients, |s, e| {
                (s..e)
                    .map(|i| {
                        let team: Vec<Value> = (0..d.count(Kind::CareTeam, i)).map(|slot| Value::Object(self.generated_record(w, Kind::CareTeam, i, slot))).collect();
                        json!({"patient_id": d.casefile_id(i), "care_team": team})
                    })
                    .collect()
            }),
            "get_patients_processes" => self.global_list(w, key, Kind::Process, q),
            "get_vaults_patients" => page_of(key, q, d.deleted(), |s, e| (s..e).map(|i| Value::Object(d.vault_record(d.patients + i))).collect()),
            "get_appointments" | "get_scheduler_appointment" => {
                one(key, self.record_by_id(w, Kind::Appointment, id0).ok_or_else(|| not_found("appointment"))?)
            }
            "get_provider_appointments" | "get_user_appointments" => {
                let by_provider = e.name == "get_provider_appointments";
                let limit = if by_provider { data::PROVIDERS } else { data::USERS };
                let who = parse_id(id0).filter(|u| (1..=limit).contains(u)).ok_or_else(|| not_found(if by_provider { "provider" } else { "user" }))?;
                let days = q.days_window()?;
                let mut items = self.appointments_of(w, by_provider, who);
                if !days.is_open() {
                    items.retain(|r| field_time(r, "start_time").is_some_and(|t| days.contains(t)));
                }
                page_of_vec(key, q, items)
            }
            "get_scheduler_appointments" => self.global_list_in(w, key, Kind::Appointment, q, q.dates()?, TimeField::AppointmentStart),
            "get_scheduler_appointment_types" => settings(dict::APPOINTMENT_TYPES.iter().enumerate().map(|(i, (n, m))| named(i, n, json!({"duration_minutes": m}))).collect()),
            "get_scheduler_appointment_statuses" => settings(dict::APPOINTMENT_STATUSES.iter().enumerate().map(|(i, n)| named(i, n, json!({}))).collect()),
            "get_scheduler_resources" => settings(dict::RESOURCES.iter().enumerate().map(|(i, (n, c))| named(i, n, json!({"category_type": c, "enabled": true}))).collect()),
            "get_allergens" => settings(dict::ALLERGENS.iter().enumerate().map(|(i, (n, c))| named(i, n, json!({"allergen_type": c}))).collect()),
            "get_evaluations" => settings((0..dict::EVALUATIONS.len()).map(|i| self.evaluation_template(i)).collect()),
            "get_evaluation" => {
                let i = parse_id(id0).filter(|i| (1..=dict::EVALUATIONS.len() as u64).contains(i)).ok_or_else(|| not_found("evaluation"))?;
                one(key, self.evaluation_template(i as usize - 1))
            }
            "get_patient_evaluation" => one(key, self.record_by_id(w, Kind::Evaluation, id0).ok_or_else(|| not_found("patient evaluation"))?),
            "get_users" => settings((1..=data::USERS).map(|u| d.user(u)).collect()),
            "get_user" => one(key, d.user(parse_id(id0).filter(|u| (1..=data::USERS).contains(u)).ok_or_else(|| not_found("user"))?)),
            "get_user_roles" => {
                let u = parse_id(id0).filter(|u| (1..=data::USERS).contains(u)).ok_or_else(|| not_found("user"))?;
                settings(d.user_roles(u).into_iter().map(|r| named(r as usize - 1, dict::ROLES[r as usize - 1], json!({}))).collect())
            }
            "get_providers" => settings((1..=data::PROVIDERS).map(|p| d.provider(p)).collect()),
            "get_provider" => one(key, d.provider(parse_id(id0).filter(|p| (1..=data::PROVIDERS).contains(p)).ok_or_else(|| not_found("provider"))?)),
            "get_provider_roles" => {
                let p = parse_id(id0).filter(|p| (1..=data::PROVIDERS).contains(p)).ok_or_else(|| not_found("provider"))?;
                settings(d.user_roles(p).into_iter().map(|r| named(r as usize - 1, dict::ROLES[r as usize - 1], json!({}))).collect())
            }
            "get_roles" => settings(dict::ROLES.iter().enumerate().map(|(i, n)| named(i, n, json!({}))).collect()),
            "get_role_users" => {
                let r = parse_id(id0).filter(|r| (1..=dict::ROLES.len() as u64).contains(r)).ok_or_else(|| not_found("role"))?;
                settings((1..=data::USERS).filter(|u| d.user_roles(*u).contains(&r)).map(|u| d.user(u)).collect())
            }
            "get_user_titles" => settings(dict::USER_TITLES.iter().enumerate().map(|(i, (n, r))| named(i, n, json!({"role_id": r + 1}))).collect()),
            "get_contact" => one(key, self.record_by_id(w, Kind::Contact, id0).ok_or_else(|| not_found("contact"))?),
            "get_contact_types" => settings(dict::CONTACT_TYPES.iter().enumerate().map(|(i, n)| named(i, n, json!({}))).collect()),
            "get_referrers" => settings(
                dict::REFERRAL_SOURCES
                    .iter()
                    .enumerate()
                    .map(|(i, n)| obj(json!({"id": i + 1, "name": n, "organization": format!("{n} referrals"), "contact_type": "Referrer", "phone": format!("+1 555 010 {:04}", i), "email": format!("referrals{}@partners.example.org", i + 1)})))
                    .collect(),
            ),
            "get_insurances_latest" => self.global_list_in(w, key, Kind::Insurance, q, q.dates()?, TimeField::UpdatedAt),
            "get_group_sessions" => settings((1..=data::GROUP_SESSIONS).map(|s| d.group_session(s)).collect()),
            "get_group_session" => one(key, d.group_session(parse_id(id0).filter(|s| (1..=data::GROUP_SESSIONS).contains(s)).ok_or_else(|| not_found("group session"))?)),
            "get_patient_group_session" => {
                let sessions = self.patient_records(w, Kind::GroupSession, id0)?;
                let wanted = parse_id(id1);
                let s = sessions.into_iter().find(|s| s.get("id").and_then(Value::as_u64) == wanted).ok_or_else(|| not_found("group session"))?;
                one(key, s)
            }
            "get_consent_forms" => settings(dict::CONSENT_FORMS.iter().enumerate().map(|(i, n)| named(i, n, json!({"enabled": true, "expires_after_days": 365}))).collect()),
            "get_consent_form_record" => one(key, self.record_by_id(w, Kind::ConsentRecord, id0).ok_or_else(|| not_found("consent form record"))?),
            "get_patient_order" => one(key, self.record_by_id(w, Kind::Order, id0).ok_or_else(|| not_found("patient order"))?),
            "get_locations" => settings(
                dict::LOCATIONS
                    .iter()
                    .enumerate()
                    .map(|(i, (n, beds))| {
                        let mut m = named(i, n, json!({"beds": beds, "enabled": true}));
                        if q.get("include_buildings").is_some_and(|v| v == "true") {
                            m.insert("buildings".into(), json!([{"id": i * 10 + 1, "name": format!("{n} - Building A")}]));
                        }
                        m
                    })
                    .collect(),
            ),
            "get_care_levels" => settings(dict::PROGRAMS.iter().enumerate().map(|(i, (p, l))| named(i, l, json!({"program": p}))).collect()),
            "get_flags" => settings(dict::FLAGS.iter().enumerate().map(|(i, (n, c))| named(i, n, json!({"flag_category_id": c + 1}))).collect()),
            "get_flag_categories" => settings(dict::FLAG_CATEGORIES.iter().enumerate().map(|(i, n)| named(i, n, json!({}))).collect()),
            "get_patient_colors" => settings(dict::COLORS.iter().enumerate().map(|(i, (n, hex))| named(i, n, json!({"color": hex}))).collect()),
            "get_patient_tags" => settings(dict::TAGS.iter().enumerate().map(|(i, n)| named(i, n, json!({}))).collect()),
            "get_patient_settings" => settings(dict::PATIENT_SETTINGS.iter().enumerate().map(|(i, (n, v))| named(i, n, json!({"value": v}))).collect()),
            "get_settings_payors" => settings(dict::PAYORS.iter().enumerate().map(|(i, n)| named(i, n, json!({"payor_type": if *n == "Self Pay" { "self_pay" } else { "commercial" }}))).collect()),
            name => {
                // The remaining reads are a patient's records of one kind, or all of them.
                let kind = kind_of(name).ok_or_else(|| not_found("endpoint"))?;
                if e.is_patient_scoped() {
                    let created = q.created_at()?;
                    let days = if kind == Kind::Appointment { q.days_window()? } else { Window::default() };
                    let mut items = self.patient_records(w, kind, id0)?;
                    if !created.is_open() {
                        // By `created_at`; records without one (care team, program history, ...)
                        // by `updated_at`, which every record carries.
                        items.retain(|r| field_time(r, "created_at").or_else(|| field_time(r, "updated_at")).is_some_and(|t| created.contains(t)));
                    }
                    if !days.is_open() {
                        items.retain(|r| field_time(r, "start_time").is_some_and(|t| days.contains(t)));
                    }
                    page_of_vec(key, q, items)
                } else if kind == Kind::Review {
                    self.global_list_in(w, key, kind, q, q.dates()?, TimeField::UpdatedAt)
                } else {
                    self.global_list(w, key, kind, q)
                }
            }
        }
    }

    fn evaluation_template(&self, i: usize) -> Map<String, Value> {
        let (name, kind, max) = dict::EVALUATIONS[i];
        named(
            i,
            name,
            json!({"evaluation_type": kind, "enabled": true, "max_score": if max > 0 { Value::from(max) } else { Value::Null }, "created_at": "2022-01-03T09:00:00-05:00", "updated_at": "2024-11-18T16:30:00-05:00"}),
        )
    }

    fn write(&self, e: &Endpoint, ids: &[String], doc: WriteDoc) -> ApiResult {
        let WriteDoc {
            mut data,
            attachments,
        } = doc;
        // A contact names the patient it belongs to; everywhere else the path does.
        let contact_patient = if e.name == "create_contact" {
            data.remove("patient_id")
        } else {
            None
        };
        check_writable(&data)?;
        let key = e.shape.key();
        let id0 = ids.first().map_or("", String::as_str);
        let id1 = ids.get(1).map_or("", String::as_str);
        let mut w = self.writes_mut();
        let stamp = w.stamp();
        let created = (StatusCode::CREATED, e.method == Method::Post);
        let status = if created.1 { created.0 } else { StatusCode::OK };
        match e.name {
            "create_patient" => {
                for required in ["first_name", "last_name"] {
                    let present = data
                        .get(required)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.trim().is_empty());
                    if !present {
                        return Err(unprocessable(format!(
                            "document.data.{required} is required"
                        )));
                    }
                }
                let ordinal = w.created_patients.len() as u64;
                let casefile_id = self.data.created_casefile_id(ordinal);
                let mut p = Map::new();
                p.insert("casefile_id".into(), casefile_id.clone().into());
                p.extend(data);
                p.insert("insurances".into(), json!([]));
                p.insert("created_at".into(), stamp.clone().into());
                p.insert("updated_at".into(), stamp.into());
                w.created_patients.push(p);
                if !attachments.is_empty() {
                    w.attachments.insert(casefile_id.clone(), attachments);
                }
                let p = self
                    .patient_by_id(&w, &casefile_id)
                    .ok_or_else(|| not_found("patient"))?;
                Ok((status, json!({ key: p })))
            }
            "update_patient" => {
                self.patient_by_id(&w, id0)
                    .ok_or_else(|| not_found("patient"))?;
                if let Some(i) = self.data.index_of(id0) {
                    w.touched_patients.insert(i);
                }
                let o = w.patient_overrides.entry(id0.to_owned()).or_default();
                o.extend(data);
                o.insert("updated_at".into(), stamp.into());
                if !attachments.is_empty() {
                    w.attachments
                        .entry(id0.to_owned())
                        .or_default()
                        .extend(attachments);
                }
                let p = self
                    .patient_by_id(&w, id0)
                    .ok_or_else(|| not_found("patient"))?;
                Ok((status, json!({ key: p })))
            }
            "create_patient_vital_signs" | "create_patient_evaluation" => {
                self.patient_by_id(&w, id0)
                    .ok_or_else(|| not_found("patient"))?;
                let kind = if e.name == "create_patient_vital_signs" {
                    Kind::Vital
                } else {
                    Kind::Evaluation
                };
                let id = w.new_id();
                let mut r = Map::new();
                r.insert("id".into(), id.into());
                r.insert("patient_id".into(), id0.into());
                r.extend(data);
                r.insert("created_at".into(), stamp.clone().into());
                r.insert("updated_at".into(), stamp.into());
                w.appended.entry(kind).or_default().push(r.clone());
                Ok((status, json!({ key: r })))
            }
            "create_contact" => {
                if let Some(pid) = &contact_patient {
                    let pid = pid.as_str().ok_or_else(|| {
                        unprocessable("document.data.patient_id must be a casefile id")
                    })?;
                    self.patient_by_id(&w, pid)
                        .ok_or_else(|| not_found("patient"))?;
                }
                let id = w.new_id();
                let mut r = Map::new();
                r.insert("id".into(), id.into());
                if let Some(pid) = contact_patient {
                    r.insert("patient_id".into(), pid);
                }
                r.extend(data);
                r.insert("updated_at".into(), stamp.into());
                w.appended.entry(Kind::Contact).or_default().push(r.clone());
                Ok((status, json!({ key: r })))
            }
            "update_contact" => {
                let id = parse_id(id0).ok_or_else(|| not_found("contact"))?;
                if id >= CREATED_ID_BASE {
                    let r = w
                        .appended
                        .get_mut(&Kind::Contact)
                        .and_then(|v| {
                            v.iter_mut()
                                .find(|r| r.get("id").and_then(Value::as_u64) == Some(id))
                        })
                        .ok_or_else(|| not_found("contact"))?;
                    r.extend(data);
                    r.insert("updated_at".into(), stamp.into());
                    let r = r.clone();
                    return Ok((status, json!({ key: r })));
                }
                self.record_by_id(&w, Kind::Contact, id0)
                    .ok_or_else(|| not_found("contact"))?;
                let o = w.record_overrides.entry((Kind::Contact, id)).or_default();
                o.extend(data);
                o.insert("updated_at".into(), stamp.into());
                let r = self
                    .record_by_id(&w, Kind::Contact, id0)
                    .ok_or_else(|| not_found("contact"))?;
                Ok((status, json!({ key: r })))
            }
            "update_patient_insurance" => {
                let patient = self
                    .data
                    .index_of(id0)
                    .filter(|i| *i < self.data.patients)
                    .ok_or_else(|| not_found("patient"))?;
                let id = parse_id(id1).ok_or_else(|| not_found("insurance"))?;
                match split_record_id(id) {
                    Some((i, slot))
                        if i == patient && slot < self.data.count(Kind::Insurance, i) => {}
                    _ => return Err(not_found("insurance")),
                }
                w.touched_patients.insert(patient);
                let o = w.record_overrides.entry((Kind::Insurance, id)).or_default();
                o.extend(data);
                o.insert("updated_at".into(), stamp.into());
                let (i, slot) = split_record_id(id).unwrap_or_default();
                Ok((
                    status,
                    json!({ key: self.generated_record(&w, Kind::Insurance, i, slot) }),
                ))
            }
            "update_patient_ext_id_mapping" => {
                self.patient_by_id(&w, id0)
                    .ok_or_else(|| not_found("patient"))?;
                if let Some(i) = self.data.index_of(id0) {
                    w.touched_patients.insert(i);
                }
                let mappings = w.ext_id_mappings.entry(id0.to_owned()).or_default();
                let pos = match mappings
                    .iter()
                    .position(|m| m.get("id").and_then(Value::as_str) == Some(id1))
                {
                    Some(p) => p,
                    None => {
                        let mut m = Map::new();
                        m.insert("id".into(), id1.into());
                        m.insert("patient_id".into(), id0.into());
                        mappings.push(m);
                        mappings.len() - 1
                    }
                };
                mappings[pos].extend(data);
                mappings[pos].insert("updated_at".into(), stamp.into());
                Ok((status, json!({ key: mappings[pos].clone() })))
            }
            _ => Err(not_found("endpoint")),
        }
    }
}

/// The record kind a patient-scoped or global list endpoint serves.
fn kind_of(name: &str) -> Option<Kind> {
    Some(match name {
        "get_patient_care_team" => Kind::CareTeam,
        "get_patient_diagnosis_history" => Kind::Diagnosis,
        "get_patient_program_history" => Kind::Program,
        "get_patient_appointments" => Kind::Appointment,
        "get_patient_vital_signs" | "get_vital_signs" => Kind::Vital,
        "get_patient_allergies" | "get_allergies" => Kind::Allergy,
        "get_patient_cows" | "get_cows" => Kind::Cows,
        "get_patient_ciwa_ars" | "get_ciwa_ars" => Kind::CiwaAr,
        "get_patient_ciwa_bs" | "get_ciwa_bs" => Kind::CiwaB,
        "get_patient_glucose_logs" | "get_glucose_logs" => Kind::Glucose,
        "get_patient_orthostatic_vital_signs" | "get_orthostatic_vital_signs" => Kind::Orthostatic,
        "get_patient_evaluations" | "get_patient_patient_evaluations" => Kind::Evaluation,
        "get_contacts" => Kind::Contact,
        "get_patient_group_sessions" => Kind::GroupSession,
        "get_consent_form_records" | "get_patient_consent_form_records" => Kind::ConsentRecord,
        "get_patient_diets" | "get_patient_patient_diets" => Kind::Diet,
        "get_patient_orders" | "get_patient_patient_orders" => Kind::Order,
        "get_patient_ur" | "get_utilization_reviews_latest" => Kind::Review,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn sim(patients: u64) -> Simulator {
        Simulator::new(&SimConfig {
            patients,
            seed: 11,
            ..SimConfig::default()
        })
        .unwrap()
    }

    fn query(q: &str) -> Query {
        Query::parse(&format!("/x?{q}"))
    }

    fn endpoint(name: &str) -> &'static Endpoint {
        endpoints::ENDPOINTS
            .iter()
            .find(|e| e.name == name)
            .unwrap()
    }

    /// The general path's bytes, as `respond` would send them.
    fn slow(sim: &Simulator, e: &'static Endpoint, ids: &[String], q: &Query) -> Vec<u8> {
        let (status, value) = sim.read(e, ids, q).ok().unwrap();
        assert_eq!(status, StatusCode::OK);
        serde_json::to_vec(&value).unwrap()
    }

    fn assert_same(sim: &Simulator, name: &str, ids: &[String], q: &str) {
        let e = endpoint(name);
        let q = query(q);
        let fast = sim
            .fast_read(e, ids, &q)
            .expect("a hot read")
            .ok()
            .expect("served");
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow(sim, e, ids, &q)).unwrap(),
            "{name}"
        );
    }

    const PATIENT_LISTS: &[&str] = &[
        "get_patient_vital_signs",
        "get_patient_care_team",
        "get_patient_diagnosis_history",
        "get_patient_program_history",
        "get_patient_appointments",
        "get_patient_allergies",
        "get_patient_cows",
        "get_patient_ciwa_ars",
        "get_patient_ciwa_bs",
        "get_patient_glucose_logs",
        "get_patient_orthostatic_vital_signs",
        "get_patient_group_sessions",
        "get_patient_consent_form_records",
        "get_patient_patient_diets",
        "get_patient_patient_orders",
        "get_patient_ur",
        "get_patient_patient_evaluations",
    ];

    #[test]
    fn cached_reads_are_byte_identical_to_generated_reads() {
        let sim = sim(120);
        for q in [
            "",
            "page=2&per=50",
            "page=3&per=50",
            "page=9&per=50",
            "per=1000",
        ] {
            assert_same(&sim, "get_patients_census", &[], q);
            assert_same(&sim, "get_patients_latest", &[], q);
            // Twice: the second time from the cache.
            assert_same(&sim, "get_patients_census", &[], q);
        }
        for index in [0, 7, 119] {
            let id = vec![sim.casefile_id(index)];
            assert_same(&sim, "get_patient", &id, "");
            for name in PATIENT_LISTS {
                for q in ["", "per=2", "page=2&per=2", "page=5&per=1"] {
                    assert_same(&sim, name, &id, q);
                    assert_same(&sim, name, &id, q);
                }
            }
        }
    }

    #[test]
    fn cached_reads_show_writes() {
        let sim = sim(30);
        let id = sim.casefile_id(3);
        let ids = vec![id.clone()];
        // Warm the cache, then write.
        assert_same(&sim, "get_patient", &ids, "");
        assert_same(&sim, "get_patient_vital_signs", &ids, "");
        assert_same(&sim, "get_patients_census", &[], "");
        let doc = |fields: Value| WriteDoc {
            data: obj(fields),
            attachments: Vec::new(),
        };
        sim.write(
            endpoint("update_patient"),
            &ids,
            doc(json!({"first_name": "Renamed"})),
        )
        .ok()
        .unwrap();
        sim.write(
            endpoint("create_patient_vital_signs"),
            &ids,
            doc(json!({"heart_rate": 71})),
        )
        .ok()
        .unwrap();
        sim.write(
            endpoint("create_patient"),
            &[],
            doc(json!({"first_name": "New", "last_name": "Patient"})),
        )
        .ok()
        .unwrap();
        let census = String::from_utf8(
            sim.fast_read(endpoint("get_patients_census"), &[], &query(""))
                .unwrap()
                .ok()
                .unwrap(),
        )
        .unwrap();
        assert!(census.contains("Renamed") && census.contains("\"total_records\":31"));
        assert_same(&sim, "get_patients_census", &[], "");
        assert_same(&sim, "get_patients_census", &[], "page=2&per=20");
        assert!(
            sim.fast_read(endpoint("get_patient"), &ids, &query(""))
                .is_none()
        );
        let vitals = String::from_utf8(
            sim.fast_read(endpoint("get_patient_vital_signs"), &ids, &query(""))
                .unwrap()
                .ok()
                .unwrap(),
        )
        .unwrap();
        assert!(vitals.contains("\"heart_rate\":71"));
        assert_same(&sim, "get_patient_vital_signs", &ids, "");
    }

    #[test]
    fn filtered_and_unknown_reads_take_the_general_path() {
        let sim = sim(10);
        let ids = vec![sim.casefile_id(1)];
        let e = endpoint("get_patients_census");
        assert!(
            sim.fast_read(e, &[], &query("start_date=2025-01-01"))
                .is_none()
        );
        let bad = sim
            .fast_read(e, &[], &query("start_date=yesterday"))
            .unwrap();
        assert!(matches!(bad, Err(ApiError(s, _)) if s == StatusCode::UNPROCESSABLE_ENTITY));
        let e = endpoint("get_patient_vital_signs");
        let q = query("created_at_start_date=2025-01-01");
        assert!(sim.fast_read(e, &ids, &q).is_none());
        // Soft-deleted and unknown patients: the general path answers 404.
        let deleted = vec![sim.casefile_id(10)];
        assert!(sim.fast_read(e, &deleted, &query("")).is_none());
    }
}
