//! `multipart/form-data` bodies for patient attachments, built here rather than by the HTTP
//! library so that the exact bytes are known before sending: `Content-MD5` covers the whole
//! body and the signature covers the exact `Content-Type` (with its boundary) that is sent.
//! kipu-python's upload path never worked (kipu-api.md §3.6).
//!
//! Field names follow the Rails convention Kipu uses: `document[recipient_id]`,
//! `document[data][first_name]`, `document[data][address][city]`,
//! `document[attachments_attributes][0][attachment]`.

use bytes::Bytes;
use phi::Sensitive;
use rand::Rng as _;

/// A file to upload. Its name and content may be PHI; `Debug` shows neither.
#[derive(Clone)]
pub struct Attachment {
    /// The file name sent in `Content-Disposition`.
    pub filename: Sensitive<String>,
    /// Its media type (default `application/octet-stream`).
    pub content_type: String,
    /// The bytes.
    pub content: Sensitive<Bytes>,
}

impl Attachment {
    /// A file with a name, a media type and content.
    pub fn new(
        filename: impl Into<String>,
        content_type: impl Into<String>,
        content: impl Into<Bytes>,
    ) -> Self {
        Self {
            filename: Sensitive::new(filename.into()),
            content_type: content_type.into(),
            content: Sensitive::new(content.into()),
        }
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("content", &self.content)
            .finish()
    }
}

/// A finished multipart body.
pub(crate) struct MultipartBody {
    pub(crate) content_type: String,
    pub(crate) bytes: Bytes,
}

impl MultipartBody {
    /// Encodes the write envelope with its attachments.
    pub(crate) fn document(
        app_id: &str,
        data: &serde_json::Value,
        attachments: &[Attachment],
    ) -> Result<Self, &'static str> {
        let mut fields: Vec<(String, String)> =
            vec![("document[recipient_id]".into(), app_id.to_string())];
        match data {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    flatten_field(&format!("document[data][{k}]"), v, &mut fields);
                }
            }
            serde_json::Value::Null => {}
            _ => return Err("multipart data must be a JSON object"),
        }
        for (name, _) in &fields {
            check_token(name)?;
        }
        for a in attachments {
            check_token(a.filename.expose())?;
            check_token(&a.content_type)?;
        }
        // A boundary that occurs in the content would end a part early; draw again until it
        // does not (with 128 random bits, the first draw practically always succeeds).
        let boundary = loop {
            let candidate = format!("phigate-{:032x}", rand::rng().random::<u128>());
            let hit = fields
                .iter()
                .any(|(n, v)| n.contains(&candidate) || v.contains(&candidate))
                || attachments.iter().any(|a| {
                    contains(a.content.expose(), candidate.as_bytes())
                        || a.filename.expose().contains(&candidate)
                });
            if !hit {
                break candidate;
            }
        };
        let mut out = Vec::new();
        for (name, value) in &fields {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (i, a) in attachments.iter().enumerate() {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"document[attachments_attributes][{i}][attachment]\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                    a.filename.expose(),
                    a.content_type
                )
                .as_bytes(),
            );
            out.extend_from_slice(a.content.expose());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Ok(Self {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            bytes: Bytes::from(out),
        })
    }
}

fn flatten_field(name: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_field(&format!("{name}[{k}]"), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_field(&format!("{name}[{i}]"), v, out);
            }
        }
        serde_json::Value::String(s) => out.push((name.to_string(), s.clone())),
        serde_json::Value::Null => out.push((name.to_string(), String::new())),
        other => out.push((name.to_string(), other.to_string())),
    }
}

/// Header parameters cannot carry quotes or line breaks without breaking the part headers
/// (and a line break would let a value inject headers).
fn check_token(s: &str) -> Result<(), &'static str> {
    if s.bytes().any(|b| matches!(b, b'"' | b'\r' | b'\n' | b'\0')) {
        return Err(
            "multipart field names, file names and media types must not contain quotes or line breaks",
        );
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_envelope_fields_files_and_a_closing_boundary() {
        let data =
            serde_json::json!({"first_name": "Ana", "address": {"city": "Reno"}, "tags": [1, 2]});
        let files = [Attachment::new(
            "intake.pdf",
            "application/pdf",
            &b"%PDF-1.7\r\nbinary\x00"[..],
        )];
        let body = MultipartBody::document("app-1", &data, &files).unwrap();
        let boundary = body
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8_lossy(&body.bytes);
        for needle in [
            "name=\"document[recipient_id]\"\r\n\r\napp-1\r\n",
            "name=\"document[data][first_name]\"\r\n\r\nAna\r\n",
            "name=\"document[data][address][city]\"\r\n\r\nReno\r\n",
            "name=\"document[data][tags][1]\"\r\n\r\n2\r\n",
            "name=\"document[attachments_attributes][0][attachment]\"; filename=\"intake.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\r\nbinary\0\r\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn header_injection_through_names_is_refused() {
        let data = serde_json::json!({"x\"\r\nEvil: 1": "v"});
        assert!(MultipartBody::document("a", &data, &[]).is_err());
        let bad = [Attachment::new("a\r\nb", "text/plain", &b""[..])];
        assert!(MultipartBody::document("a", &serde_json::json!({}), &bad).is_err());
        assert!(MultipartBody::document("a", &serde_json::json!([1]), &[]).is_err());
    }

    #[test]
    fn debug_of_an_attachment_hides_name_and_content() {
        let a = Attachment::new("CANARY-name.pdf", "application/pdf", &b"CANARY-content"[..]);
        assert!(!format!("{a:?}").contains("CANARY"));
    }
}
