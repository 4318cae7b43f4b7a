//! The development PKI of the zero-configuration start: a CA, a server certificate for
//! `localhost`/`127.0.0.1`/`::1` and one client certificate for the service `dev-client`,
//! written to `<data dir>/tls/` (directory 0700, files 0600).
//!
//! The CA's private key is never written: once the three certificates are issued it is
//! dropped, so nobody (including a later phigate run) can mint more certificates under it.
//! To renew, delete the directory; a new CA is made on the next start. The CA's common name
//! says it is for development, and `phigate doctor` fails any certificate it issued.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The common name of every development CA; `phigate doctor` looks for it.
pub const DEV_CA_COMMON_NAME: &str = "phigate development CA (NOT FOR PRODUCTION)";
/// The service name in the development client certificate.
pub const DEV_CLIENT_SERVICE: &str = "dev-client";
/// Validity of the development certificates, in days.
const VALIDITY_DAYS: u64 = 90;
/// The development certificates are made anew at start when they end within this many days.
pub const RENEW_BEFORE_DAYS: i64 = 7;

/// Paths of the development PKI files.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA certificate (trust anchor for clients and for the mTLS listener).
    pub ca_cert: PathBuf,
    /// The server certificate chain.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// The `dev-client` service certificate.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl DevPki {
    /// The file layout under `<data dir>/tls`.
    pub fn in_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            ca_cert: dir.join("dev-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    fn files(&self) -> [&Path; 5] {
        [
            &self.ca_cert,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
        ]
    }

    /// Whether the server certificate is missing, unreadable, or ends within
    /// [`RENEW_BEFORE_DAYS`].
    fn needs_renewal(&self) -> bool {
        use rustls_pki_types::pem::PemObject as _;
        let Ok(pem) = std::fs::read(&self.server_cert) else {
            return true;
        };
        let Some(Ok(der)) = rustls_pki_types::CertificateDer::pem_slice_iter(&pem).next() else {
            return true;
        };
        match super::x509::parse(&der) {
            Some(info) => {
                info.not_after - chrono::Utc::now() < chrono::Duration::days(RENEW_BEFORE_DAYS)
            }
            None => true,
        }
    }

    /// Creates the files when any is missing, or all of them again (a new CA) when the server
    /// certificate ends within [`RENEW_BEFORE_DAYS`]; returns whether new ones were made.
    pub fn ensure(&self, trust_domain: &str) -> anyhow::Result<bool> {
        if self.files().iter().all(|p| p.exists()) && !self.needs_renewal() {
            return Ok(false);
        }
        let dir = self
            .ca_cert
            .parent()
            .context("development PKI path has no directory")?;
        create_private_dir(dir)?;
        let issued = issue(trust_domain).context("cannot generate the development certificates")?;
        write_private(&self.ca_cert, issued.ca_pem.as_bytes())?;
        write_private(&self.server_cert, issued.server_pem.as_bytes())?;
        write_private(&self.server_key, issued.server_key_pem.as_bytes())?;
        write_private(&self.client_cert, issued.client_pem.as_bytes())?;
        write_private(&self.client_key, issued.client_key_pem.as_bytes())?;
        Ok(true)
    }
}

struct Issued {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
    client_pem: String,
    client_key_pem: String,
}

/// (year, month, day) of a date, for `rcgen::date_time_ymd`.
fn ymd(date: chrono::NaiveDate) -> (i32, u8, u8) {
    use chrono::Datelike as _;
    // month() is 1..=12 and day() 1..=31: both fit in u8.
    (date.year(), date.month() as u8, date.day() as u8)
}

fn issue(trust_domain: &str) -> Result<Issued, rcgen::Error> {
    let today = chrono::Utc::now().date_naive();
    let (y, m, d) = ymd(today - chrono::Days::new(1));
    let not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(today + chrono::Days::new(VALIDITY_DAYS));
    let not_after = rcgen::date_time_ymd(y, m, d);

    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, DEV_CA_COMMON_NAME);
    ca.distinguished_name
        .push(DnType::OrganizationName, "phigate");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::default();
    server
        .distinguished_name
        .push(DnType::CommonName, "phigate development server");
    server.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = not_before;
    server.not_after = not_after;
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let mut client = CertificateParams::default();
    client
        .distinguished_name
        .push(DnType::CommonName, DEV_CLIENT_SERVICE);
    client.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}/service/{DEV_CLIENT_SERVICE}").try_into()?,
    )];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.not_before = not_before;
    client.not_after = not_after;
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    Ok(Issued {
        ca_pem: ca_cert.pem(),
        server_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

/// Writes `bytes` to a new file with mode 0600 (atomically: temp file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    // Renewal replaces existing files: the rename below is atomic, create_new guards the temp.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_pki_is_made_once_with_private_files_and_kept_while_valid() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::in_dir(dir.path());
        assert!(pki.ensure("phigate.local").unwrap(), "made on first use");
        #[cfg(unix)]
        for file in pki.files() {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let first = std::fs::read(&pki.server_cert).unwrap();
        assert!(!pki.ensure("phigate.local").unwrap(), "kept while valid");
        assert_eq!(std::fs::read(&pki.server_cert).unwrap(), first);
    }

    #[test]
    fn an_expiring_development_certificate_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::in_dir(dir.path());
        pki.ensure("phigate.local").unwrap();
        let mut params = CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = KeyPair::generate().unwrap();
        let old = params.self_signed(&key).unwrap();
        write_private(&pki.server_cert, old.pem().as_bytes()).unwrap();
        assert!(pki.ensure("phigate.local").unwrap(), "renewed");
        let pem = std::fs::read(&pki.server_cert).unwrap();
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        let info = crate::serve::x509::parse(&der).unwrap();
        assert!(info.not_after > chrono::Utc::now());
    }
}
