//! The transport: signing, sending, retrying, paging.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use phi::Sensitive;
use rand::Rng as _;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::config::{ClientConfig, RetryPolicy};
use crate::endpoints::{self, ENDPOINTS, Endpoint, Method};
use crate::error::{Error, Route};
use crate::models::Record;
use crate::multipart::{Attachment, MultipartBody};
use crate::query::Query;
use crate::signing::{CanonicalString, RequestTarget, content_md5, http_date};

/// The template shown for a raw call whose path is in no catalogue row.
const UNCATALOGUED: &str = "(uncatalogued path)";

/// A Kipu API client. Cheap to clone; clones share the connection pool and the concurrency
/// limit.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    origin: String,
    permits: Semaphore,
}

/// Options of a write (POST or PATCH).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Extra query parameters (kipu-python cannot send any on a write).
    pub query: Vec<(String, String)>,
    /// Retry this write on 429/502/503/504/connection errors like a GET. Off by default: a write
    /// whose response was lost may have been applied, and repeating it can duplicate a record.
    pub retry: bool,
}

/// The body of a write, before signing.
#[derive(Debug, Clone)]
pub enum WriteBody {
    /// `{"document": {"recipient_id": app_id, "data": data}}` as JSON.
    Json(Sensitive<serde_json::Value>),
    /// The same document as `multipart/form-data`, with file attachments.
    Multipart {
        /// The `data` fields.
        data: Sensitive<serde_json::Value>,
        /// The files, sent as `document[attachments_attributes][i][attachment]`.
        attachments: Vec<Attachment>,
    },
}

/// A body ready to send: bytes and the exact content type that is signed.
struct PreparedBody {
    content_type: String,
    bytes: Bytes,
    md5: String,
}

/// The `pagination` block of a list response. Kipu sends the numbers as numbers or as numeric
/// strings; both are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Pagination {
    /// The page this response is (1-based).
    #[serde(default, deserialize_with = "crate::models::lenient::opt_u64")]
    pub current_page: Option<u64>,
    /// How many pages there are.
    #[serde(default, deserialize_with = "crate::models::lenient::opt_u64")]
    pub total_pages: Option<u64>,
    /// The page size the server used.
    #[serde(default, deserialize_with = "crate::models::lenient::opt_u64")]
    pub records_per_page: Option<u64>,
    /// How many records there are in all.
    #[serde(default, deserialize_with = "crate::models::lenient::opt_u64")]
    pub total_records: Option<u64>,
}

/// One page of a list endpoint.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The records, in server order.
    pub records: Vec<T>,
    /// The pagination block, if the server sent one.
    pub pagination: Option<Pagination>,
}

impl Client {
    /// Builds the HTTP stack: rustls on aws-lc-rs, TLS 1.2 minimum, certificate verification
    /// on (platform roots plus the configured extra CAs), no redirects, no proxy from the
    /// environment, no cookies.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_version_min(reqwest::tls::Version::TLS_1_2)
            .tls_certs_merge(config.extra_ca_pem.iter().cloned())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.concurrency)
            .user_agent(config.user_agent.clone());
        let http = builder.build().map_err(|_| {
            Error::Configuration("the TLS/HTTP stack could not be initialised".into())
        })?;
        let origin = config.base_url.origin().ascii_serialization();
        let permits = Semaphore::new(config.concurrency);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                origin,
                permits,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Raw escape hatch: GETs a concrete path (`/api/patients/12:ab/vital_signs`, ids encoded or
    /// not) with query pairs. Each path segment is decoded and re-encoded, so what is signed is
    /// exactly what is sent. Paths outside the catalogue are allowed; errors then show
    /// `(uncatalogued path)` instead of the path.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Sensitive<serde_json::Value>, Error> {
        let template = endpoints::match_path(Method::Get, path).map_or(UNCATALOGUED, |e| e.path);
        let route = Route {
            method: "GET",
            template,
        };
        let (segment_template, segments) = split_raw_path(path, route)?;
        let ids: Vec<&str> = segments.iter().map(String::as_str).collect();
        let target = self.target(route, &segment_template, &ids, query)?;
        self.execute(route, Method::Get, target, None, false, |s, b| {
            parse_value(route, s, b)
        })
        .await
    }

    /// Raw escape hatch over the catalogue: any endpoint, its ids, query pairs and (for
    /// writes) a body. Returns the whole JSON response.
    pub async fn request(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        query: &[(&str, &str)],
        body: Option<WriteBody>,
        options: WriteOptions,
    ) -> Result<Sensitive<serde_json::Value>, Error> {
        let route = Route {
            method: endpoint.method.as_str(),
            template: endpoint.path,
        };
        let mut pairs: Vec<(&str, &str)> = query.to_vec();
        pairs.extend(options.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let target = self.target(route, endpoint.path, ids, &pairs)?;
        let prepared = match (endpoint.method, body) {
            (Method::Get, Some(_)) => {
                return Err(Error::InvalidRequest {
                    route,
                    reason: "a GET takes no body",
                });
            }
            (_, Some(body)) => Some(self.prepare(route, body)?),
            (_, None) => None,
        };
        self.execute(
            route,
            endpoint.method,
            target,
            prepared.as_ref(),
            options.retry,
            |s, b| parse_value(route, s, b),
        )
        .await
    }

    /// Raw escape hatch for lists: any list endpoint of the catalogue, paged and streamed like
    /// the typed methods, each record kept whole as a redacted [`Record`].
    pub fn raw_list(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        query: &[(&str, &str)],
    ) -> List<Record> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self.list(endpoint, ids, &pairs)
    }

    /// One record of an object endpoint (`{"<key>": {...}}`).
    pub(crate) async fn object<T: DeserializeOwned>(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        query: &dyn Query,
    ) -> Result<T, Error> {
        let route = Route {
            method: endpoint.method.as_str(),
            template: endpoint.path,
        };
        let pairs = query.pairs();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let target = self.target(route, endpoint.path, ids, &refs)?;
        let key = endpoint.shape.key();
        self.execute(
            route,
            endpoint.method,
            target,
            None,
            false,
            |status, bytes| parse_keyed(route, status, bytes, key),
        )
        .await
    }

    /// A write with the `document`/`recipient_id` envelope; returns the stored record.
    pub(crate) async fn write<T: DeserializeOwned>(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        body: WriteBody,
        options: WriteOptions,
    ) -> Result<T, Error> {
        let route = Route {
            method: endpoint.method.as_str(),
            template: endpoint.path,
        };
        let refs: Vec<(&str, &str)> = options
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let target = self.target(route, endpoint.path, ids, &refs)?;
        let prepared = self.prepare(route, body)?;
        let key = endpoint.shape.key();
        self.execute(
            route,
            endpoint.method,
            target,
            Some(&prepared),
            options.retry,
            |s, b| parse_keyed(route, s, b, key),
        )
        .await
    }

    /// A list endpoint, ready to fetch one page or stream all records.
    pub(crate) fn list<T: DeserializeOwned>(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        query: &dyn Query,
    ) -> List<T> {
        List {
            client: self.clone(),
            endpoint,
            ids: ids
                .iter()
                .map(|s| Sensitive::new((*s).to_string()))
                .collect(),
            query: Sensitive::new(query.pairs()),
            per: None,
            first_page: 1,
            _record: PhantomData,
        }
    }

    fn target(
        &self,
        route: Route,
        template: &str,
        ids: &[&str],
        query: &[(&str, &str)],
    ) -> Result<RequestTarget, Error> {
        if ids
            .iter()
            .any(|id| id.is_empty() || *id == "." || *id == "..")
        {
            // URL parsers resolve dot segments (even encoded ones), which would send a path
            // other than the one signed, possibly another endpoint.
            return Err(Error::InvalidRequest {
                route,
                reason: "a path id must not be empty, `.` or `..`",
            });
        }
        RequestTarget::new(template, ids, query, self.inner.config.credentials.app_id()).map_err(
            |_| Error::InvalidRequest {
                route,
                reason: "wrong number of path ids for this endpoint",
            },
        )
    }

    fn prepare(&self, route: Route, body: WriteBody) -> Result<PreparedBody, Error> {
        let app_id = self.inner.config.credentials.app_id();
        let (content_type, bytes) = match body {
            WriteBody::Json(data) => {
                let document = serde_json::json!({
                    "document": { "recipient_id": app_id, "data": data.into_inner() }
                });
                let bytes = serde_json::to_vec(&document).map_err(|_| Error::InvalidRequest {
                    route,
                    reason: "the body could not be serialised as JSON",
                })?;
                ("application/json".to_string(), Bytes::from(bytes))
            }
            WriteBody::Multipart { data, attachments } => {
                let body = MultipartBody::document(app_id, data.expose(), &attachments)
                    .map_err(|reason| Error::InvalidRequest { route, reason })?;
                (body.content_type, body.bytes)
            }
        };
        let md5 = content_md5(&bytes);
        Ok(PreparedBody {
            content_type,
            bytes,
            md5,
        })
    }

    /// Sends with retries. `parse` runs inside the retry loop so that a 2xx whose JSON is cut
    /// short counts as a broken transfer and is retried like one.
    async fn execute<R>(
        &self,
        route: Route,
        method: Method,
        target: RequestTarget,
        body: Option<&PreparedBody>,
        retry_opt_in: bool,
        parse: impl Fn(u16, &Bytes) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let policy = &self.inner.config.retry;
        let may_retry = method == Method::Get || retry_opt_in;
        let deadline = Instant::now() + policy.deadline;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome =
                match tokio::time::timeout(remaining, self.attempt(route, method, &target, body))
                    .await
                {
                    Ok(Ok((status, bytes))) => parse(status, &bytes),
                    Ok(Err(err)) => Err(err),
                    Err(_) => {
                        return Err(Error::DeadlineExceeded {
                            route,
                            attempts,
                            last: Box::new(Error::Timeout { route }),
                        });
                    }
                };
            let err = match outcome {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !(may_retry && err.is_retryable() && attempts < policy.max_attempts) {
                return Err(err);
            }
            let retry_after = match &err {
                Error::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            };
            let wait = backoff(policy, attempts, retry_after);
            if Instant::now() + wait >= deadline {
                return Err(Error::DeadlineExceeded {
                    route,
                    attempts,
                    last: Box::new(err),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One signed attempt, holding a concurrency permit only while on the wire (not while
    /// backing off).
    async fn attempt(
        &self,
        route: Route,
        method: Method,
        target: &RequestTarget,
        body: Option<&PreparedBody>,
    ) -> Result<(u16, Bytes), Error> {
        let inner = &*self.inner;
        let _permit = inner.permits.acquire().await.map_err(|_| {
            Error::Configuration("the client's concurrency limiter was closed".into())
        })?;
        let url =
            reqwest::Url::parse(&format!("{}{}", inner.origin, target.as_str())).map_err(|_| {
                Error::InvalidRequest {
                    route,
                    reason: "the request URL is invalid",
                }
            })?;
        let on_wire = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        if on_wire != target.as_str() {
            // The invariant that makes the signature valid: nothing re-encoded the target.
            return Err(Error::InvalidRequest {
                route,
                reason: "the URL library would alter the signed request target",
            });
        }
        // A fresh Date for every attempt: a retry after a long Retry-After must not be refused
        // for clock skew.
        let date = http_date((inner.config.clock)());
        let creds = &inner.config.credentials;
        let (content_type, md5) =
            body.map_or(("", ""), |b| (b.content_type.as_str(), b.md5.as_str()));
        let canonical =
            CanonicalString::for_method(method.as_str(), content_type, md5, target.as_str(), &date);
        let http_method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Patch => reqwest::Method::PATCH,
        };
        let mut request = inner
            .http
            .request(http_method, url)
            .header(reqwest::header::ACCEPT, creds.version().accept_header())
            .header(reqwest::header::DATE, &date)
            .header(
                reqwest::header::AUTHORIZATION,
                creds.authorization(&canonical),
            );
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, &body.content_type)
                .header("Content-MD5", &body.md5)
                .body(body.bytes.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Error::transport(route, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let limit = inner.config.max_body_bytes;
        let mut buf = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::transport(route, e))?
        {
            if buf.len() + chunk.len() > limit {
                return Err(Error::BodyTooLarge { route, limit });
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        if (200..300).contains(&status) {
            Ok((status, bytes))
        } else {
            Err(Error::from_status(route, status, retry_after, bytes))
        }
    }
}

/// Turns `/api/a/b%3Ac` into the template `/{}/{}/{}` and the decoded segments, so the
/// standard encoder produces the one canonical target.
fn split_raw_path(path: &str, route: Route) -> Result<(String, Vec<String>), Error> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with("/api/") {
        return Err(Error::InvalidRequest {
            route,
            reason: "a Kipu path must start with /api/",
        });
    }
    let mut template = String::new();
    let mut segments = Vec::new();
    for raw in path[1..].split('/') {
        let decoded = percent_decode(raw).ok_or(Error::InvalidRequest {
            route,
            reason: "a path segment is not valid UTF-8",
        })?;
        template.push_str("/{}");
        segments.push(decoded);
    }
    Ok((template, segments))
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = segment.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Full-jitter exponential backoff, or the server's `Retry-After` when it gave one (capped).
fn backoff(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(asked) = retry_after {
        return asked.min(policy.max_retry_after);
    }
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(policy.max_delay);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

/// `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past means
/// "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_value(
    route: Route,
    status: u16,
    bytes: &Bytes,
) -> Result<Sensitive<serde_json::Value>, Error> {
    serde_json::from_slice(bytes)
        .map(Sensitive::new)
        .map_err(|e| Error::decode(route, status, &e))
}

fn shape_error(route: Route, status: u16) -> Error {
    Error::Decode {
        route,
        status,
        category: crate::error::DecodeCategory::Shape,
        line: 0,
        column: 0,
    }
}

/// Decodes `{"<key>": {...}}` straight from the bytes into `T` (no intermediate
/// `serde_json::Value` tree); other top-level keys are skipped.
fn parse_keyed<T: DeserializeOwned>(
    route: Route,
    status: u16,
    bytes: &Bytes,
    key: &str,
) -> Result<T, Error> {
    let seed = Envelope::<T> {
        key,
        _record: PhantomData,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = seed
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| Error::decode(route, status, &e))?;
    found.record.ok_or_else(|| shape_error(route, status))
}

/// Decodes a list response straight from the bytes: the `pagination` block and the records
/// under `key`, each deserialized directly into `T`.
fn parse_page<T: DeserializeOwned>(
    route: Route,
    status: u16,
    bytes: &Bytes,
    key: &str,
) -> Result<Page<T>, Error> {
    let seed = Envelope::<Vec<T>> {
        key,
        _record: PhantomData,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = seed
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| Error::decode(route, status, &e))?;
    let records = found.record.ok_or_else(|| shape_error(route, status))?;
    Ok(Page {
        records,
        pagination: found.pagination,
    })
}

/// A response object read in one pass: the value under a key chosen at run time, and the
/// pagination block if there is one.
struct Envelope<'k, R> {
    key: &'k str,
    _record: PhantomData<fn() -> R>,
}

struct Found<R> {
    record: Option<R>,
    pagination: Option<Pagination>,
}

impl<'de, R: DeserializeOwned> serde::de::DeserializeSeed<'de> for Envelope<'_, R> {
    type Value = Found<R>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, R: DeserializeOwned> serde::de::Visitor<'de> for Envelope<'_, R> {
    type Value = Found<R>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kipu response object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found {
            record: None,
            pagination: None,
        };
        while let Some(k) = map.next_key::<String>()? {
            if k == self.key {
                found.record = Some(map.next_value::<R>()?);
            } else if k == "pagination" {
                found.pagination = map.next_value::<Option<Pagination>>()?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

use serde::de::DeserializeSeed as _;

/// A list endpoint with its ids and filters: fetch one page with [`List::page`], or every
/// record with [`List::stream`] / [`List::collect_all`].
pub struct List<T> {
    client: Client,
    endpoint: &'static Endpoint,
    ids: Vec<Sensitive<String>>,
    query: Sensitive<Vec<(String, String)>>,
    per: Option<u32>,
    first_page: u32,
    _record: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("List")
            .field("endpoint", &self.endpoint.path)
            .field("per", &self.per)
            .field("first_page", &self.first_page)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> List<T> {
    /// Records per page (`per`). Without it the server's default applies (Kipu: 20).
    pub fn per(mut self, per: u32) -> Self {
        self.per = Some(per.max(1));
        self
    }

    /// The page to start from (1-based; default 1).
    pub fn starting_at(mut self, page: u32) -> Self {
        self.first_page = page.max(1);
        self
    }

    /// Adds an undocumented query parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let mut pairs = self.query.into_inner();
        pairs.push((key.into(), value.into()));
        self.query = Sensitive::new(pairs);
        self
    }

    /// The endpoint this list reads.
    pub fn endpoint(&self) -> &'static Endpoint {
        self.endpoint
    }

    /// Fetches one page (the starting page).
    pub async fn page(&self) -> Result<Page<T>, Error> {
        self.fetch(self.first_page).await
    }

    async fn fetch(&self, page: u32) -> Result<Page<T>, Error> {
        let route = Route {
            method: "GET",
            template: self.endpoint.path,
        };
        let page_s = page.to_string();
        let per_s = self.per.map(|p| p.to_string());
        let mut pairs: Vec<(&str, &str)> = self
            .query
            .expose()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("page", &page_s));
        if let Some(per) = &per_s {
            pairs.push(("per", per));
        }
        let ids: Vec<&str> = self.ids.iter().map(|s| s.expose().as_str()).collect();
        let target = self
            .client
            .target(route, self.endpoint.path, &ids, &pairs)?;
        let key = self.endpoint.shape.key();
        self.client
            .execute(route, Method::Get, target, None, false, |s, b| {
                parse_page(route, s, b, key)
            })
            .await
    }

    /// Every record of every page, in order. Stops after the last page (by the pagination
    /// block), on a short page (fewer than `per`) or on an empty page. The first error ends
    /// the stream (after the retries of that page are spent).
    pub fn stream(self) -> BoxStream<'static, Result<T, Error>> {
        struct State<T> {
            list: List<T>,
            next_page: Option<u32>,
            buffer: VecDeque<T>,
        }
        let next_page = Some(self.first_page);
        let state = State {
            list: self,
            next_page,
            buffer: VecDeque::new(),
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(record) = st.buffer.pop_front() {
                    return Some((Ok(record), st));
                }
                let page = st.next_page?;
                match st.list.fetch(page).await {
                    Ok(fetched) => {
                        st.next_page = next_page_after(page, &fetched, st.list.per);
                        st.buffer.extend(fetched.records);
                    }
                    Err(err) => {
                        st.next_page = None;
                        return Some((Err(err), st));
                    }
                }
            }
        });
        stream.boxed()
    }

    /// Collects [`List::stream`] into a vector.
    pub async fn collect_all(self) -> Result<Vec<T>, Error> {
        use futures::TryStreamExt as _;
        self.stream().try_collect().await
    }
}

fn next_page_after<T>(page: u32, fetched: &Page<T>, per: Option<u32>) -> Option<u32> {
    let n = fetched.records.len();
    if n == 0 {
        return None;
    }
    if let Some(p) = fetched.pagination {
        if let (Some(current), Some(total)) = (p.current_page, p.total_pages)
            && current >= total
        {
            return None;
        }
        let page_size = per.map(u64::from).or(p.records_per_page);
        if page_size.is_some_and(|size| (n as u64) < size) {
            return None;
        }
    } else if per.is_some_and(|size| n < size as usize) {
        return None;
    }
    page.checked_add(1)
}

/// All 85 endpoints, by number (1-based), for the typed wrappers.
pub(crate) fn endpoint(number: u8) -> &'static Endpoint {
    &ENDPOINTS[usize::from(number) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 06 Nov 2019 15:38:34 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 06 Nov 2019 15:39:04 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 06 Nov 2019 15:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after_up_to_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in 1..30 {
            assert!(backoff(&policy, attempt, None) <= policy.max_delay);
        }
        assert!(backoff(&policy, 1, None) <= policy.base_delay);
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(3600))),
            policy.max_retry_after
        );
    }

    #[test]
    fn paging_stops_on_last_short_or_empty_page() {
        let page = |n: usize, current: u64, total: u64| Page {
            records: vec![0u8; n],
            pagination: Some(Pagination {
                current_page: Some(current),
                total_pages: Some(total),
                records_per_page: Some(10),
                total_records: None,
            }),
        };
        assert_eq!(next_page_after(1, &page(10, 1, 3), Some(10)), Some(2));
        assert_eq!(next_page_after(3, &page(10, 3, 3), Some(10)), None);
        assert_eq!(next_page_after(2, &page(4, 2, 3), Some(10)), None);
        assert_eq!(next_page_after(2, &page(0, 2, 3), Some(10)), None);
        let bare = Page {
            records: vec![0u8; 5],
            pagination: None,
        };
        assert_eq!(next_page_after(1, &bare, Some(5)), Some(2));
        assert_eq!(next_page_after(1, &bare, Some(6)), None);
    }

    #[test]
    fn pagination_block_accepts_numbers_and_numeric_strings() {
        let p: Pagination = serde_json::from_str(
            r#"{"current_page": "2", "total_pages": 10, "records_per_page": "20", "total_records": null}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            Pagination {
                current_page: Some(2),
                total_pages: Some(10),
                records_per_page: Some(20),
                total_records: None
            }
        );
        assert!(serde_json::from_str::<Pagination>(r#"{"current_page": "two"}"#).is_err());
    }

    #[test]
    fn raw_paths_are_split_and_decoded_per_segment() {
        let route = Route {
            method: "GET",
            template: UNCATALOGUED,
        };
        let (t, s) = split_raw_path("/api/patients/12%3Aab/vital_signs", route).unwrap();
        assert_eq!(t, "/{}/{}/{}/{}");
        assert_eq!(s, ["api", "patients", "12:ab", "vital_signs"]);
        assert!(split_raw_path("patients", route).is_err());
        assert_eq!(percent_decode("a%2Fb%zz%4").unwrap(), "a/b%zz%4");
    }
}
