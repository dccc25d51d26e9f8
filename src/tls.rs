//! The DomainSecure check: is the tenant's host served with a valid certificate?

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use x509_parser::{extensions::GeneralName, pem::Pem, prelude::X509Certificate};

use crate::api::conditions::{Cond, reasons, types};

/// What the TLS Secret says about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateCheck {
    /// The DomainSecure condition.
    pub condition: Cond,
    /// When the certificate stops being valid, so the check can run again then.
    pub not_after: Option<Timestamp>,
}

/// Checks that `secret` holds a parseable certificate (`tls.crt`) that is valid at
/// `now` and names `host` (exactly or through a one-label wildcard).
pub fn check(secret: Option<&Secret>, secret_name: &str, host: &str, now: Timestamp) -> CertificateCheck {
    let fail = |reason, message: String| CertificateCheck { condition: Cond::fail(types::DOMAIN_SECURE, reason, message), not_after: None };
    let Some(secret) = secret else {
        return fail(reasons::SECRET_MISSING, format!("TLS Secret {secret_name} does not exist yet"));
    };
    let Some(pem_bytes) = secret.data.as_ref().and_then(|d| d.get("tls.crt")) else {
        return fail(reasons::CERTIFICATE_INVALID, format!("TLS Secret {secret_name} has no tls.crt"));
    };
    let pem = match Pem::iter_from_buffer(&pem_bytes.0).next() {
        Some(Ok(pem)) => pem,
        _ => return fail(reasons::CERTIFICATE_INVALID, format!("tls.crt of Secret {secret_name} is not a PEM certificate")),
    };
    let cert = match pem.parse_x509() {
        Ok(cert) => cert,
        Err(e) => return fail(reasons::CERTIFICATE_INVALID, format!("tls.crt of Secret {secret_name} cannot be parsed: {e}")),
    };
    let not_before = Timestamp::from_second(cert.validity().not_before.timestamp()).unwrap_or(Timestamp::MIN);
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp()).unwrap_or(Timestamp::MIN);
    if now < not_before || now >= not_after {
        return CertificateCheck {
            condition: Cond::fail(
                types::DOMAIN_SECURE,
                reasons::CERTIFICATE_EXPIRED,
                format!("certificate in {secret_name} is valid from {not_before} to {not_after}, not now"),
            ),
            not_after: (now < not_before).then_some(not_before),
        };
    }
    let names = dns_names(&cert);
    if !names.iter().any(|n| covers(n, host)) {
        return fail(reasons::HOST_NOT_COVERED, format!("certificate in {secret_name} names {} but not {host}", names.join(", ")));
    }
    CertificateCheck {
        condition: Cond::ok(
            types::DOMAIN_SECURE,
            reasons::CERTIFICATE_VALID,
            format!("{host} is served with a certificate valid until {not_after}"),
        ),
        not_after: Some(not_after),
    }
}

/// The DNS subject alternative names of a certificate, as written.
pub fn san_dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The DNS names of a certificate: its subject alternative names, or the common name
/// when it has none (as older clients accept).
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let sans: Vec<String> = san_dns_names(cert).iter().map(|n| n.to_ascii_lowercase()).collect();
    if !sans.is_empty() {
        return sans;
    }
    cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase).collect()
}

/// Whether a certificate name covers a host: equal, or `*.rest` where the host is one
/// label followed by `rest`.
pub fn covers(name: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(rest) => host.split_once('.').is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => name == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(covers("*.cx.example.com", "acme.cx.example.com"));
        assert!(!covers("*.cx.example.com", "a.b.cx.example.com"));
        assert!(!covers("*.cx.example.com", "cx.example.com"));
        assert!(covers("acme.cx.example.com", "ACME.cx.example.com"));
        assert!(!covers("other.cx.example.com", "acme.cx.example.com"));
    }

    #[test]
    fn missing_and_garbage_secrets_are_reported() {
        let now = Timestamp::now();
        assert_eq!(check(None, "s", "h.example.com", now).condition.reason, reasons::SECRET_MISSING);
        let secret =
            Secret { data: Some([("tls.crt".to_string(), k8s_openapi::ByteString(b"junk".to_vec()))].into()), ..Secret::default() };
        assert_eq!(check(Some(&secret), "s", "h.example.com", now).condition.reason, reasons::CERTIFICATE_INVALID);
    }
}
