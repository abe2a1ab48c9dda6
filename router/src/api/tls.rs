//! HTTPS for the HTTP listener's app (`[server] https`): browsers give a page the camera only in a secure context,
//! so a phone on the LAN needs it to publish. The certificate is the admin's (`[server] tls`, reloaded when its
//! files change) or one this module makes once into `data_dir/tls`: self-signed, for localhost, the host name and
//! every interface address, made again at a start when those changed or it nears its end. Its SHA-256 fingerprint
//! is logged and shown in the UI, so whoever accepts it on a phone can check it is this server's.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

use crate::config::model::{ServerConfig, TlsFiles};

/// A made certificate lasts this long: within the 825 days Apple's devices accept for a certificate a user
/// trusts, and renewed well before.
const GENERATED_DAYS: u32 = 397;
/// A made certificate is made again when it has less than this left.
const RENEW_BEFORE_DAYS: u32 = 30;
/// How often the files of an admin's certificate are looked at for a change (on the next connection).
const FILE_CHECK: Duration = Duration::from_secs(2);

/// The certificate the HTTPS listener presents, and where it comes from.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    /// Whether the router made the certificate (then it is not reloaded from files the admin edits).
    generated: bool,
    current: Mutex<Loaded>,
}

struct Loaded {
    acceptor: Arc<SslAcceptor>,
    fingerprint: Fingerprint,
    /// The files' modification times when read.
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("fingerprint", &self.fingerprint).field("stamps", &self.stamps).finish()
    }
}

/// How a user checks a certificate: its SHA-256 as browsers show it, and its public key's (SPKI) SHA-256 in
/// base64, what Chromium's `--ignore-certificate-errors-spki-list` and HPKP-style pins take.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fingerprint {
    pub sha256: String,
    pub spki_sha256: String,
}

impl Tls {
    /// The admin's certificate files, or the made one (made now if missing, stale or for other addresses).
    pub fn load(server: &ServerConfig) -> anyhow::Result<Arc<Tls>> {
        let (files, generated) = match &server.tls {
            Some(files) => (files.clone(), false),
            None => {
                let dir = server.data_dir.join("tls");
                let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
                ensure_generated(&files, &wanted_names()).context("making a self-signed certificate")?;
                (files, true)
            }
        };
        let loaded = load_files(&files).with_context(|| {
            format!("loading the certificate {} and key {}", files.cert.display(), files.key.display())
        })?;
        Ok(Arc::new(Tls { files, generated, current: Mutex::new(loaded) }))
    }

    /// The acceptor for a new connection: an admin's certificate files changed since they were read are read
    /// again first (a renewal takes effect without a restart; a broken one is logged and the old one kept).
    pub fn acceptor(&self) -> Arc<SslAcceptor> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if !self.generated && current.checked.elapsed() >= FILE_CHECK {
            current.checked = Instant::now();
            let stamps = stamps(&self.files);
            if stamps != current.stamps {
                match load_files(&self.files) {
                    Ok(loaded) => {
                        tracing::info!(sha256 = %loaded.fingerprint.sha256, "TLS certificate reloaded");
                        *current = loaded;
                    }
                    Err(e) => {
                        // Not retried until the files change again: one warning per change.
                        current.stamps = stamps;
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "TLS certificate files changed but do not load; keeping the previous one"
                        );
                    }
                }
            }
        }
        current.acceptor.clone()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).fingerprint.clone()
    }

    pub fn generated(&self) -> bool {
        self.generated
    }

    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }
}

fn stamps(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

fn load_files(files: &TlsFiles) -> anyhow::Result<Loaded> {
    let stamps = stamps(files);
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    builder.set_certificate_chain_file(&files.cert).context("reading the certificate")?;
    builder.set_private_key_file(&files.key, SslFiletype::PEM).context("reading the private key")?;
    builder.check_private_key().context("the key is not the certificate's")?;
    // The HTTP listener speaks HTTP/1.1 only.
    builder.set_alpn_select_callback(|_, client| {
        openssl::ssl::select_next_proto(b"\x08http/1.1", client).ok_or(openssl::ssl::AlpnError::NOACK)
    });
    let cert = X509::from_pem(&std::fs::read(&files.cert)?)?;
    Ok(Loaded {
        acceptor: Arc::new(builder.build()),
        fingerprint: fingerprint(&cert)?,
        stamps,
        checked: Instant::now(),
    })
}

pub fn fingerprint(cert: &X509) -> anyhow::Result<Fingerprint> {
    let digest = cert.digest(MessageDigest::sha256())?;
    let sha256 = digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let spki = cert.public_key()?.public_key_to_der()?;
    let spki = openssl::sha::sha256(&spki);
    Ok(Fingerprint { sha256, spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki) })
}

/// What a made certificate covers: localhost, the host name (and its mDNS `.local` name, which phones on the LAN
/// resolve), and every interface address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

fn wanted_names() -> Names {
    let mut dns = vec!["localhost".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            dns.push(host.to_string());
            if !host.contains('.') {
                dns.push(format!("{host}.local"));
            }
        }
    }
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
    for iface in if_addrs::get_if_addrs().unwrap_or_default() {
        let ip = iface.ip();
        // Link-local IPv6 addresses need a zone, which no URL a browser opens carries.
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        if !ips.contains(&ip) && !link_local_v6 {
            ips.push(ip);
        }
    }
    Names { dns, ips }
}

/// Makes the certificate unless the one in place covers `names` and has time left.
fn ensure_generated(files: &TlsFiles, names: &Names) -> anyhow::Result<()> {
    if let Ok(pem) = std::fs::read(&files.cert)
        && let Ok(cert) = X509::from_pem(&pem)
        && files.key.exists()
    {
        let renew_by = Asn1Time::days_from_now(RENEW_BEFORE_DAYS)?;
        let fresh = cert.not_after() > renew_by;
        if fresh && names_of(&cert) == sorted(names) {
            return Ok(());
        }
        tracing::info!(fresh, "the self-signed certificate is stale or for other addresses; making a new one");
    }
    let (cert, key) = generate(names)?;
    let dir = files.cert.parent().context("the certificate has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(&files.key, &key)?;
    std::fs::write(&files.cert, cert).with_context(|| format!("writing {}", files.cert.display()))?;
    tracing::info!(cert = %files.cert.display(), dns = ?names.dns, ips = ?names.ips, "made a self-signed TLS certificate");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let temp = path.with_extension("pem.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn sorted(names: &Names) -> Names {
    let mut n = names.clone();
    n.dns.sort();
    n.dns.dedup();
    n.ips.sort();
    n.ips.dedup();
    n
}

/// The DNS names and addresses a certificate is for.
fn names_of(cert: &X509) -> Names {
    let mut names = Names { dns: Vec::new(), ips: Vec::new() };
    for san in cert.subject_alt_names().into_iter().flatten() {
        if let Some(dns) = san.dnsname() {
            names.dns.push(dns.to_string());
        } else if let Some(ip) = san.ipaddress() {
            match ip.len() {
                4 => names.ips.push(IpAddr::from(<[u8; 4]>::try_from(ip).unwrap_or_default())),
                16 => names.ips.push(IpAddr::from(<[u8; 16]>::try_from(ip).unwrap_or_default())),
                _ => {}
            }
        }
    }
    sorted(&names)
}

/// A self-signed P-256 certificate for `names` and its key, both PEM.
pub fn generate(names: &Names) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut subject = X509NameBuilder::new()?;
    let host = names.dns.iter().find(|d| *d != "localhost").map_or("localhost", String::as_str);
    subject.append_entry_by_nid(Nid::COMMONNAME, &format!("Sluice on {host}"))?;
    subject.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Sluice (self-signed)")?;
    let subject = subject.build();
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("no random numbers for a serial: {e}"))?;
    serial[0] &= 0x7f; // a positive serial
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let serial = BigNum::from_slice(&serial)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&subject)?;
    builder.set_issuer_name(&subject)?;
    builder.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(GENERATED_DAYS)?);
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    let mut san = SubjectAlternativeName::new();
    for dns in &names.dns {
        san.dns(dns);
    }
    for ip in &names.ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&builder.x509v3_context(None, None))?;
    builder.append_extension(san)?;
    builder.append_extension(BasicConstraints::new().critical().build()?)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((builder.build().to_pem()?, key.private_key_to_pem_pkcs8()?))
}

/// `app` on the plain HTTP listener with `[server] https_redirect`: browsers are sent to the same path over HTTPS
/// (308 keeps a WHIP/WHEP POST a POST); /healthz and /metrics stay plain for monitors.
pub fn redirect_to_https(https_port: u16, app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            use axum::response::IntoResponse as _;
            let path = request.uri().path();
            let host = request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
            match host.filter(|_| !matches!(path, "/healthz" | "/metrics")) {
                None => next.run(request).await,
                Some(host) => {
                    let host = https_host(host);
                    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
                    let location = format!("https://{host}:{https_port}{target}");
                    match axum::http::HeaderValue::from_str(&location) {
                        Ok(location) => {
                            (axum::http::StatusCode::PERMANENT_REDIRECT, [(axum::http::header::LOCATION, location)])
                                .into_response()
                        }
                        Err(_) => next.run(request).await,
                    }
                }
            }
        },
    ))
}

/// The host of a `Host` header without its port (`[::1]:8889` is `[::1]`).
fn https_host(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ips: &[&str]) -> Names {
        Names {
            dns: vec!["localhost".into(), "cam-server".into()],
            ips: ips.iter().map(|i| i.parse().expect("ip")).collect(),
        }
    }

    #[test]
    fn the_redirect_keeps_the_host_and_drops_its_port() {
        assert_eq!(https_host("cam.local:8889"), "cam.local");
        assert_eq!(https_host("192.168.1.5"), "192.168.1.5");
        assert_eq!(https_host("[fe80::1]:8889"), "[fe80::1]");
        assert_eq!(https_host("[::1]"), "[::1]");
    }

    #[test]
    fn a_made_certificate_covers_its_names_and_is_kept_while_they_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles { cert: dir.path().join("tls/cert.pem"), key: dir.path().join("tls/key.pem") };
        let lan = names(&["127.0.0.1", "192.168.1.20", "::1"]);
        ensure_generated(&files, &lan).expect("made");
        let cert = X509::from_pem(&std::fs::read(&files.cert).expect("cert")).expect("pem");
        assert_eq!(names_of(&cert), sorted(&lan));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&files.key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
        let loaded = load_files(&files).expect("loads");
        assert_eq!(loaded.fingerprint, fingerprint(&cert).expect("fingerprint"));
        assert_eq!(loaded.fingerprint.sha256.len(), 32 * 3 - 1, "AA:BB:... as browsers show it");

        // Same names: the same certificate (a phone that accepted it keeps it).
        ensure_generated(&files, &lan).expect("kept");
        assert_eq!(load_files(&files).expect("loads").fingerprint, loaded.fingerprint);
        // A new address (the server moved to another network): a new one that covers it.
        let moved = names(&["127.0.0.1", "10.0.0.7", "::1"]);
        ensure_generated(&files, &moved).expect("made again");
        let again = X509::from_pem(&std::fs::read(&files.cert).expect("cert")).expect("pem");
        assert_eq!(names_of(&again), sorted(&moved));
        assert_ne!(fingerprint(&again).expect("fp"), loaded.fingerprint);
    }

    #[test]
    fn an_admins_certificate_reloads_when_its_files_change_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
        let write = |n: &Names| {
            let (cert, key) = generate(n).expect("generate");
            std::fs::write(&files.cert, cert).expect("cert");
            std::fs::write(&files.key, key).expect("key");
        };
        write(&names(&["127.0.0.1"]));
        let server = ServerConfig { tls: Some(files.clone()), ..ServerConfig::default() };
        let tls = Tls::load(&server).expect("loads");
        assert!(!tls.generated());
        let first = tls.fingerprint();

        write(&names(&["127.0.0.2"]));
        tls.current.lock().expect("lock").checked = Instant::now() - FILE_CHECK;
        // The modification time may not have moved within the file system's granularity: make sure it did.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&files.cert).expect("open").set_modified(later).expect("touch");
        let _ = tls.acceptor();
        let second = tls.fingerprint();
        assert_ne!(second, first, "the renewed certificate is served");

        std::fs::write(&files.cert, "not a certificate").expect("break");
        std::fs::File::options()
            .write(true)
            .open(&files.cert)
            .expect("open")
            .set_modified(later + Duration::from_secs(5))
            .expect("touch");
        tls.current.lock().expect("lock").checked = Instant::now() - FILE_CHECK;
        let _ = tls.acceptor();
        assert_eq!(tls.fingerprint(), second, "a broken file leaves the last good certificate in place");
    }
}
