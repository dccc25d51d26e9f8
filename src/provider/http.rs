//! What every HTTP backend (Keycloak, Grafana) shares: a reqwest client with TLS
//! through rustls on *ring*, an optional private CA, timeouts, and readable transport
//! errors.

use std::{error::Error as StdError, sync::Arc, time::Duration};

use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider, pki_types::CertificateDer, pki_types::pem::PemObject};

use super::ProviderError;

/// An HTTP client that speaks TLS through rustls on *ring*. With `ca_pem`, only the
/// certificates in it are trusted; otherwise the platform's trust store is.
/// `backend` is the configuration key named in errors, `server` the product name
/// (`Keycloak`, `Grafana`).
pub fn client(backend: &'static str, server: &str, ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    let refused = |message: String| ProviderError::Refused { backend, message };
    let tls = tls_config(ca_pem).map_err(|e| refused(e.describe(server)))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| refused(format!("cannot build the HTTP client: {}", error_chain(&e))))
}

/// Why the TLS setup failed.
#[derive(Debug, PartialEq, Eq)]
enum TlsProblem {
    /// rustls refused the protocol versions.
    Protocols(String),
    /// The platform's trust store could not be loaded.
    PlatformStore(String),
    /// The CA bundle is not PEM.
    NotPem(String),
    /// The CA bundle holds no certificate.
    Empty,
    /// A certificate of the bundle cannot be a trust anchor.
    Unusable(String),
}

impl TlsProblem {
    fn describe(&self, server: &str) -> String {
        match self {
            TlsProblem::Protocols(e) => format!("cannot set up TLS: {e}"),
            TlsProblem::PlatformStore(e) => format!("cannot load the platform's trusted certificates: {e}"),
            TlsProblem::NotPem(e) => format!("the {server} CA bundle is not valid PEM: {e}"),
            TlsProblem::Empty => format!("the {server} CA bundle holds no certificate"),
            TlsProblem::Unusable(e) => format!("the {server} CA bundle holds an unusable certificate: {e}"),
        }
    }
}

fn tls_config(ca_pem: Option<&str>) -> Result<ClientConfig, TlsProblem> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsProblem::Protocols(e.to_string()))?;
    let mut config = match ca_pem {
        Some(pem) => builder.with_root_certificates(root_store(pem)?).with_no_client_auth(),
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| TlsProblem::PlatformStore(e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    // The HTTP client is built without HTTP/2, so only HTTP/1.1 may be negotiated.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn root_store(pem: &str) -> Result<RootCertStore, TlsProblem> {
    let certificates =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| TlsProblem::NotPem(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsProblem::Empty);
    }
    let mut store = RootCertStore::empty();
    for certificate in certificates {
        store.add(certificate).map_err(|e| TlsProblem::Unusable(e.to_string()))?;
    }
    Ok(store)
}

/// A transport failure in words: a timeout or an unreadable body says so, and the
/// sources say what actually failed ("connection refused").
pub fn describe_transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer in time ({})", error_chain(error))
    } else if error.is_decode() {
        format!("unexpected response body ({})", error_chain(error))
    } else {
        error_chain(error)
    }
}

/// An error with its sources, each once.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_refused_naming_the_server() {
        let problem = root_store("not a certificate").unwrap_err();
        assert_eq!(problem, TlsProblem::Empty);
        assert_eq!(problem.describe("Grafana"), "the Grafana CA bundle holds no certificate");
        let error = client("grafana", "Grafana", Some("not a certificate"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(error, ProviderError::Refused { backend: "grafana", .. }), "{error}");
    }
}
