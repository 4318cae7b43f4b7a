//! Leak-proof logging: a `tracing` layer and a panic hook that every phigate binary installs.
//!
//! # What gets out
//!
//! * **Fields are withheld unless marked safe.** A field is safe when its name is on the
//!   allow-list ([`DEFAULT_SAFE_FIELDS`], extendable with [`PhiLayer::with_safe_fields`]) or
//!   follows the naming convention: it starts with `safe_` (`safe_table = "patients"`) or ends
//!   with `_count`, `_ms`, `_bytes` or `_total`. Any other field is written as its name with the
//!   value `[REDACTED]`, so a forgotten `patient = %name` cannot leak, and the developer still
//!   sees that a value was there. The same rules apply to span fields.
//! * **Safe fields are still scrubbed**: string and `Debug` values of safe fields pass through the
//!   detector ([`crate::detect`]) and detected identifiers become type tags (`[PHONE]`). Numbers
//!   and booleans of safe fields are written as they are.
//! * **The message is scrubbed** the same way: it is free text built by `format!`, the most
//!   likely place for an identifier to slip in.
//! * `Sensitive<T>` values print `[REDACTED]` on their own; the layer needs nothing extra.
//!
//! The scrubber is a second line of defence. The first is that PHI travels in `Sensitive<T>`
//! and that nobody writes it into a message; detection cannot promise to catch a name it has
//! never seen without context.
//!
//! # Panics
//!
//! [`install_panic_hook`] replaces the default hook (which prints the panic message verbatim)
//! with one that prints the scrubbed message and the code location.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::REDACTED;
use crate::redact::{Mode, scrub};

/// Field names written (after scrubbing) without being marked by the naming convention.
pub const DEFAULT_SAFE_FIELDS: &[&str] = &[
    "status",
    "status_code",
    "method",
    "endpoint",
    "route",
    "path",
    "attempt",
    "retries",
    "count",
    "total",
    "page",
    "pages",
    "per_page",
    "records",
    "rows",
    "bytes",
    "size",
    "elapsed",
    "duration",
    "request_id",
    "error",
    "error_kind",
    "kind",
    "detector",
    "table",
    "command",
    "version",
    "addr",
    "port",
    "mode",
    "seed",
    "notes",
    "spans",
    "key_id",
    "reason",
    "outcome",
    "component",
    "format",
    "file_count",
    "phase",
    "confidence",
    "start",
    "end",
    "len",
];

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// `timestamp LEVEL target: message key=value`.
    Text,
}

/// The scrubbing layer. Combine it with a level filter:
/// `registry().with(EnvFilter::new("info")).with(PhiLayer::new(std::io::stderr, LogFormat::Text))`.
pub struct PhiLayer<W> {
    make_writer: W,
    format: LogFormat,
    safe_fields: HashSet<String>,
}

impl<W> fmt::Debug for PhiLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhiLayer")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl<W> PhiLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    /// A layer writing to `make_writer` (e.g. `std::io::stderr`).
    pub fn new(make_writer: W, format: LogFormat) -> Self {
        Self {
            make_writer,
            format,
            safe_fields: DEFAULT_SAFE_FIELDS
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
        }
    }

    /// Adds field names to the allow-list.
    pub fn with_safe_fields(mut self, names: &[&str]) -> Self {
        self.safe_fields
            .extend(names.iter().map(|s| (*s).to_string()));
        self
    }
}

/// True if a field of this name may be written (after scrubbing).
fn is_safe(allow: &HashSet<String>, name: &str) -> bool {
    allow.contains(name)
        || name.starts_with("safe_")
        || ["_count", "_ms", "_bytes", "_total"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Fields recorded for one event or span, already filtered and scrubbed.
#[derive(Default)]
struct Recorded {
    message: Option<String>,
    fields: Vec<(&'static str, FieldValue)>,
}

enum FieldValue {
    Text(String),
    Number(String),
    Bool(bool),
}

struct Visitor<'a> {
    allow: &'a HashSet<String>,
    out: &'a mut Recorded,
}

impl Visitor<'_> {
    fn text(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.out.message = Some(scrub(&value, Mode::Tag));
        } else if is_safe(self.allow, field.name()) {
            self.out
                .fields
                .push((field.name(), FieldValue::Text(scrub(&value, Mode::Tag))));
        } else {
            self.out
                .fields
                .push((field.name(), FieldValue::Text(REDACTED.to_string())));
        }
    }

    fn number(&mut self, field: &Field, value: String) {
        if is_safe(self.allow, field.name()) {
            self.out
                .fields
                .push((field.name(), FieldValue::Number(value)));
        } else {
            self.out
                .fields
                .push((field.name(), FieldValue::Text(REDACTED.to_string())));
        }
    }
}

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_string());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value.to_string());
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.number(field, value.to_string());
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.number(field, value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.number(field, value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if is_safe(self.allow, field.name()) {
            self.out
                .fields
                .push((field.name(), FieldValue::Bool(value)));
        } else {
            self.out
                .fields
                .push((field.name(), FieldValue::Text(REDACTED.to_string())));
        }
    }
}

impl<S, W> Layer<S> for PhiLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut recorded = Recorded::default();
        attrs.record(&mut Visitor {
            allow: &self.safe_fields,
            out: &mut recorded,
        });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(recorded);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(recorded) = ext.get_mut::<Recorded>() {
                values.record(&mut Visitor {
                    allow: &self.safe_fields,
                    out: recorded,
                });
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut recorded = Recorded::default();
        event.record(&mut Visitor {
            allow: &self.safe_fields,
            out: &mut recorded,
        });
        let meta = event.metadata();
        let mut spans: Vec<(String, String)> = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                let fields = ext
                    .get::<Recorded>()
                    .map(|r| render_fields_text(&r.fields))
                    .unwrap_or_default();
                let json = ext
                    .get::<Recorded>()
                    .map(|r| render_fields_json(&r.fields))
                    .unwrap_or_else(|| "{}".into());
                spans.push((
                    span.name().to_string(),
                    if self.format == LogFormat::Json {
                        json
                    } else {
                        fields
                    },
                ));
            }
        }
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let message = recorded.message.unwrap_or_default();
        let mut line = String::new();
        match self.format {
            LogFormat::Json => {
                let _ = write!(
                    line,
                    "{{\"timestamp\":{},\"level\":\"{}\",\"target\":{},\"message\":{},\"fields\":{}",
                    json_str(&ts),
                    meta.level(),
                    json_str(meta.target()),
                    json_str(&message),
                    render_fields_json(&recorded.fields)
                );
                if !spans.is_empty() {
                    line.push_str(",\"spans\":[");
                    for (i, (name, fields)) in spans.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        let _ = write!(
                            line,
                            "{{\"name\":{},\"fields\":{}}}",
                            json_str(name),
                            fields
                        );
                    }
                    line.push(']');
                }
                line.push_str("}\n");
            }
            LogFormat::Text => {
                let _ = write!(line, "{ts} {:>5} ", meta.level());
                for (name, fields) in &spans {
                    let _ = write!(line, "{name}");
                    if !fields.is_empty() {
                        let _ = write!(line, "{{{fields}}}");
                    }
                    line.push(':');
                }
                if !spans.is_empty() {
                    line.push(' ');
                }
                let _ = write!(line, "{}: {}", meta.target(), message);
                let rendered = render_fields_text(&recorded.fields);
                if !rendered.is_empty() {
                    line.push(' ');
                    line.push_str(&rendered);
                }
                line.push('\n');
            }
        }
        let mut writer = self.make_writer.make_writer_for(meta);
        // A failed log write must not take the process down, and there is nowhere to report it.
        let _ = writer.write_all(line.as_bytes());
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn render_fields_json(fields: &[(&'static str, FieldValue)]) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in fields {
        let v = match value {
            FieldValue::Text(t) => serde_json::Value::String(t.clone()),
            FieldValue::Number(n) => n
                .parse::<serde_json::Number>()
                .map(serde_json::Value::Number)
                .unwrap_or_else(|_| serde_json::Value::String(n.clone())),
            FieldValue::Bool(b) => serde_json::Value::Bool(*b),
        };
        map.insert((*name).to_string(), v);
    }
    serde_json::Value::Object(map).to_string()
}

fn render_fields_text(fields: &[(&'static str, FieldValue)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = match value {
            FieldValue::Text(t) => write!(out, "{name}={t:?}"),
            FieldValue::Number(n) => write!(out, "{name}={n}"),
            FieldValue::Bool(b) => write!(out, "{name}={b}"),
        };
    }
    out
}

/// The scrubbed text of a panic payload (a `&str` or `String`; anything else is not shown).
pub fn scrubbed_panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        scrub(s, Mode::Tag)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        scrub(s, Mode::Tag)
    } else {
        "(panic payload is not text)".to_string()
    }
}

/// Replaces the panic hook with one that writes `panicked at FILE:LINE: <scrubbed message>` to
/// `make_writer` (stderr in the binary).
pub fn install_panic_hook_to<W>(make_writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    std::panic::set_hook(Box::new(move |info| {
        let message = scrubbed_panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown location".into());
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let mut writer = make_writer.make_writer();
        let _ = writeln!(writer, "thread '{name}' panicked at {location}: {message}");
    }));
}

/// [`install_panic_hook_to`] stderr.
pub fn install_panic_hook() {
    install_panic_hook_to(std::io::stderr);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    use crate::Sensitive;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    const CANARY_NAME: &str = "Zebulon Quixote";
    const CANARY_SSN: &str = "123-45-6789";
    const CANARY_PHONE: &str = "(415) 555-0142";
    const CANARY_EMAIL: &str = "zebulon.q@example.org";

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let cap = Capture::default();
        let subscriber = tracing_subscriber::registry().with(PhiLayer::new(cap.clone(), format));
        tracing::subscriber::with_default(subscriber, f);
        cap.text()
    }

    fn assert_clean(out: &str) {
        for canary in [
            CANARY_NAME,
            "Zebulon",
            "Quixote",
            CANARY_SSN,
            CANARY_PHONE,
            "555-0142",
            CANARY_EMAIL,
        ] {
            assert!(!out.contains(canary), "canary {canary} leaked: {out}");
        }
    }

    #[test]
    fn canaries_in_messages_are_scrubbed() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let out = capture(format, || {
                tracing::info!(
                    "Patient: {CANARY_NAME} SSN {CANARY_SSN} phone {CANARY_PHONE} mail {CANARY_EMAIL}"
                );
            });
            assert_clean(&out);
            assert!(
                out.contains("[SSN]")
                    && out.contains("[PHONE]")
                    && out.contains("[EMAIL]")
                    && out.contains("[NAME]"),
                "{out}"
            );
        }
    }

    #[test]
    fn fields_that_are_not_allowlisted_are_withheld_whatever_their_type() {
        let out = capture(LogFormat::Json, || {
            tracing::warn!(patient = CANARY_NAME, mrn = 48213377u64, deceased = true, note = ?CANARY_EMAIL, "lookup");
        });
        assert_clean(&out);
        assert!(!out.contains("48213377"));
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["fields"]["patient"], REDACTED);
        assert_eq!(line["fields"]["mrn"], REDACTED);
        assert_eq!(line["fields"]["deceased"], REDACTED);
        assert_eq!(line["message"], "lookup");
    }

    #[test]
    fn allowlisted_and_convention_fields_are_written_and_their_text_scrubbed() {
        let out = capture(LogFormat::Json, || {
            tracing::info!(
                status = 200u64,
                elapsed_ms = 12u64,
                safe_table = "patients",
                error = format!("bad row for {CANARY_SSN}").as_str(),
                "done"
            );
        });
        assert_clean(&out);
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["fields"]["elapsed_ms"], 12);
        assert_eq!(line["fields"]["safe_table"], "patients");
        assert_eq!(line["fields"]["error"], "bad row for [SSN]");
    }

    #[test]
    fn sensitive_values_and_span_fields_do_not_leak() {
        let out = capture(LogFormat::Text, || {
            let span = tracing::info_span!("export", patient = CANARY_NAME, page = 3u64);
            let _g = span.enter();
            let name = Sensitive::new(CANARY_NAME.to_string());
            tracing::info!(count = 1u64, "exported {name:?}");
            span.record("patient", CANARY_EMAIL);
        });
        assert_clean(&out);
        assert!(
            out.contains("export{patient=\"[REDACTED]\" page=3}"),
            "{out}"
        );
        assert!(out.contains("exported [REDACTED]"));
    }

    #[test]
    fn the_panic_hook_scrubs_panic_messages() {
        let cap = Capture::default();
        let previous = std::panic::take_hook();
        install_panic_hook_to(cap.clone());
        let result = std::panic::catch_unwind(|| {
            panic!("failed for Pt: {CANARY_NAME}, SSN {CANARY_SSN}, call {CANARY_PHONE}");
        });
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let out = cap.text();
        assert!(out.contains("panicked at"), "{out}");
        assert!(out.contains("[SSN]"));
        assert_clean(&out);
    }
}
