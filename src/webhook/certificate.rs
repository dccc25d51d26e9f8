//! The webhook's serving certificate: issued and renewed by the operator
//! (`SelfSigned`), or read from a Secret someone else keeps current (`CertManager`,
//! `Secret`), and handed to the TLS server without a restart.
//!
//! In `SelfSigned` mode the Secret holds `tls.crt` and `tls.key` (the serving
//! certificate), `ca.crt` (the CA bundle the API server must trust) and `ca.key` (the
//! operator's CA key, so that renewing the serving certificate does not change the
//! bundle). Every replica runs the same maintenance; writes use optimistic
//! concurrency, so replicas agree on one certificate.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret},
};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};
use x509_parser::pem::Pem;

use crate::{
    config::{CertificateMode, WebhookConfig},
    labels::{MANAGED_BY, MANAGED_BY_LABEL},
};

/// Secret key of the serving certificate chain (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving certificate's private key (PEM).
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the CA bundle the API server trusts (PEM).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the operator's CA private key (PEM, `SelfSigned` only).
pub const CA_KEY: &str = "ca.key";

/// How often a Secret kept by someone else is read again.
const SECRET_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// Longest pause between two `SelfSigned` checks, so that a certificate renewed by
/// another replica or a `caBundle` reset by a redeploy is noticed.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Pause while the ValidatingWebhookConfiguration does not exist yet.
const MISSING_CONFIGURATION_INTERVAL: Duration = Duration::from_secs(30);
/// Attempts of one maintenance pass when another replica writes at the same time.
const WRITE_ATTEMPTS: usize = 3;

/// Why the serving certificate could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen could not issue a certificate.
    #[error("issuing the {what}: {source}")]
    Issue {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
    /// A Kubernetes request failed.
    #[error("{context}: {source}")]
    Api {
        /// What was being done.
        context: String,
        /// The cause.
        source: kube::Error,
    },
    /// The Secret is missing or does not hold a usable certificate and key.
    #[error("Secret {secret}: {message}")]
    Unusable {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong (never the key material).
        message: String,
    },
    /// Other replicas kept changing the Secret.
    #[error("Secret {0} kept changing while it was being renewed")]
    Contended(String),
}

/// The certificate the TLS server presents, replaceable while serving.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<(Vec<u8>, Arc<CertifiedKey>)>>,
}

impl CertResolver {
    /// Replaces the served certificate with `cert_pem` (chain) and `key_pem`; returns
    /// whether it changed. Connections already open keep their certificate.
    pub fn set_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, String> {
        let digest = Sha256::new().chain_update(cert_pem).chain_update(key_pem).finalize().to_vec();
        if self.current.read().map(|c| c.as_ref().is_some_and(|(d, _)| *d == digest)).unwrap_or(false) {
            return Ok(false);
        }
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().map_err(|e| format!("tls.crt is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("tls.crt holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("tls.key cannot sign: {e}"))?;
        let certified = CertifiedKey::new(certs, signer);
        certified.keys_match().map_err(|e| format!("tls.key does not belong to tls.crt: {e}"))?;
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Some((digest, Arc::new(certified)));
        Ok(true)
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.as_ref().map(|(_, key)| key.clone())
    }
}

/// The DNS names the serving certificate carries for a Service.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

fn offset(t: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn later(now: Timestamp, by: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX)).unwrap_or(Timestamp::MAX)
}

/// Issues a new CA valid from `now` for `validity`.
pub fn issue_ca(now: Timestamp, validity: Duration) -> Result<Issued, CertificateError> {
    let issue = |source| CertificateError::Issue { what: "webhook CA", source };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, format!("cx-operator webhook CA {}", now.as_second()));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = offset(now - jiff::SignedDuration::from_secs(60));
    params.not_after = offset(later(now, validity));
    let key = KeyPair::generate().map_err(issue)?;
    let cert = params.self_signed(&key).map_err(issue)?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a serving certificate for `names`, signed by `ca`, valid from `now` until
/// `now + validity` or the CA's own expiry, whichever comes first.
pub fn issue_serving(ca: &Issued, names: &[String], now: Timestamp, validity: Duration) -> Result<Issued, CertificateError> {
    let issue = |source| CertificateError::Issue { what: "webhook serving certificate", source };
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(issue)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(issue)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(issue)?;
    params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = offset(now - jiff::SignedDuration::from_secs(60));
    let ca_expiry = validity_of(ca.cert_pem.as_bytes()).map(|v| v.not_after).unwrap_or(Timestamp::MAX);
    params.not_after = offset(later(now, validity).min(ca_expiry));
    let key = KeyPair::generate().map_err(issue)?;
    let cert = params.signed_by(&key, &issuer).map_err(issue)?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// What a PEM certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validity {
    /// End of validity.
    pub not_after: Timestamp,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
}

/// Validity and names of the first certificate in `pem`, if it parses.
pub fn validity_of(pem: &[u8]) -> Option<Validity> {
    let pem = Pem::iter_from_buffer(pem).next()?.ok()?;
    let cert = pem.parse_x509().ok()?;
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp()).ok()?;
    Some(Validity { not_after, dns_names: crate::tls::san_dns_names(&cert) })
}

/// The first PEM block of a bundle.
fn first_pem(bundle: &str) -> Option<String> {
    let end = "-----END CERTIFICATE-----";
    bundle.find(end).map(|i| format!("{}\n", &bundle[..i + end.len()]))
}

/// The `SelfSigned` material as stored in the Secret.
#[derive(Clone)]
pub struct Material {
    /// CA certificate and key.
    pub ca: Issued,
    /// The CA bundle for `caBundle`: the current CA, then the previous one while it is
    /// still valid (so replicas still serving the old certificate keep working).
    pub ca_bundle: String,
    /// The serving certificate and key.
    pub serving: Issued,
}

/// What a `SelfSigned` Secret needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Nothing: both certificates are valid beyond `renewBefore`.
    None,
    /// A new serving certificate from the same CA.
    Serving,
    /// A new CA and a new serving certificate.
    Ca,
}

/// Decides what a stored `SelfSigned` material needs at `now`.
pub fn renewal_needed(material: Option<&Material>, names: &[String], now: Timestamp, renew_before: Duration) -> Renewal {
    let Some(m) = material else { return Renewal::Ca };
    let due = |v: &Validity| later(now, renew_before) >= v.not_after;
    match validity_of(m.ca.cert_pem.as_bytes()) {
        Some(ca) if !due(&ca) && KeyPair::from_pem(&m.ca.key_pem).is_ok() => {}
        _ => return Renewal::Ca,
    }
    match validity_of(m.serving.cert_pem.as_bytes()) {
        Some(s) if !due(&s) && names.iter().all(|n| s.dns_names.contains(n)) => Renewal::None,
        _ => Renewal::Serving,
    }
}

/// Produces the material after `renewal`.
pub fn renew(
    previous: Option<&Material>,
    renewal: Renewal,
    names: &[String],
    now: Timestamp,
    settings: &crate::config::WebhookCertificateConfig,
) -> Result<Material, CertificateError> {
    let (ca, ca_bundle) = match (renewal, previous) {
        (Renewal::Serving | Renewal::None, Some(p)) => (p.ca.clone(), p.ca_bundle.clone()),
        _ => {
            let ca = issue_ca(now, settings.ca_validity)?;
            let old = previous
                .and_then(|p| first_pem(&p.ca.cert_pem))
                .filter(|pem| validity_of(pem.as_bytes()).is_some_and(|v| v.not_after > now))
                .unwrap_or_default();
            let bundle = format!("{}{old}", ca.cert_pem);
            (ca, bundle)
        }
    };
    let serving = match (renewal, previous) {
        (Renewal::None, Some(p)) => p.serving.clone(),
        _ => issue_serving(&ca, names, now, settings.validity)?,
    };
    Ok(Material { ca, ca_bundle, serving })
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Reads `SelfSigned` material from a Secret; `None` when a key is missing.
pub fn material_of(secret: &Secret) -> Option<Material> {
    Some(Material {
        ca: Issued { cert_pem: first_pem(&text(secret, CA_CRT)?)?, key_pem: text(secret, CA_KEY)? },
        ca_bundle: text(secret, CA_CRT)?,
        serving: Issued { cert_pem: text(secret, TLS_CRT)?, key_pem: text(secret, TLS_KEY)? },
    })
}

fn secret_data(m: &Material) -> std::collections::BTreeMap<String, ByteString> {
    [(TLS_CRT, &m.serving.cert_pem), (TLS_KEY, &m.serving.key_pem), (CA_CRT, &m.ca_bundle), (CA_KEY, &m.ca.key_pem)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// Keeps the serving certificate current for one webhook server.
pub struct CertificateManager {
    secrets: Api<Secret>,
    configurations: Api<ValidatingWebhookConfiguration>,
    settings: WebhookConfig,
    namespace: String,
    resolver: Arc<CertResolver>,
}

impl CertificateManager {
    /// A manager for the Secret `settings.certificate.secretName` in `namespace`.
    pub fn new(client: kube::Client, settings: WebhookConfig, namespace: String, resolver: Arc<CertResolver>) -> CertificateManager {
        CertificateManager {
            secrets: Api::namespaced(client.clone(), &namespace),
            configurations: Api::all(client),
            settings,
            namespace,
            resolver,
        }
    }

    fn secret_id(&self) -> String {
        format!("{}/{}", self.namespace, self.settings.certificate.secret_name)
    }

    fn api_error(&self, what: &str) -> impl FnOnce(kube::Error) -> CertificateError + '_ {
        let context = format!("{what} Secret {}", self.secret_id());
        move |source| CertificateError::Api { context, source }
    }

    /// One maintenance pass; returns how long to wait before the next one.
    pub async fn maintain(&self) -> Result<Duration, CertificateError> {
        match self.settings.certificate.mode {
            CertificateMode::SelfSigned => self.maintain_self_signed().await,
            CertificateMode::CertManager | CertificateMode::Secret => self.load_external().await,
        }
    }

    /// `CertManager`/`Secret`: serve what the Secret holds.
    async fn load_external(&self) -> Result<Duration, CertificateError> {
        let secret = self.secrets.get_opt(&self.settings.certificate.secret_name).await.map_err(self.api_error("reading"))?;
        let unusable = |message: String| CertificateError::Unusable { secret: self.secret_id(), message };
        let secret = secret.ok_or_else(|| unusable("does not exist (yet)".into()))?;
        let cert = secret.data.as_ref().and_then(|d| d.get(TLS_CRT)).ok_or_else(|| unusable(format!("has no {TLS_CRT}")))?;
        let key = secret.data.as_ref().and_then(|d| d.get(TLS_KEY)).ok_or_else(|| unusable(format!("has no {TLS_KEY}")))?;
        if self.resolver.set_pem(&cert.0, &key.0).map_err(unusable)? {
            tracing::info!(secret = self.secret_id(), "webhook serving certificate loaded");
        }
        Ok(SECRET_RELOAD_INTERVAL)
    }

    /// `SelfSigned`: create or renew the Secret, serve it, inject the CA.
    async fn maintain_self_signed(&self) -> Result<Duration, CertificateError> {
        let names = service_dns_names(&self.settings.service_name, &self.namespace);
        let material = self.current_material(&names).await?;
        let unusable = |message: String| CertificateError::Unusable { secret: self.secret_id(), message };
        if self.resolver.set_pem(material.serving.cert_pem.as_bytes(), material.serving.key_pem.as_bytes()).map_err(unusable)? {
            tracing::info!(secret = self.secret_id(), "webhook serving certificate loaded");
        }
        let configuration_found = self.inject_ca_bundle(&material.ca_bundle).await?;
        let renew_at = [material.ca.cert_pem.as_bytes(), material.serving.cert_pem.as_bytes()]
            .iter()
            .filter_map(|pem| validity_of(pem))
            .map(|v| {
                v.not_after - jiff::SignedDuration::try_from(self.settings.certificate.renew_before).unwrap_or(jiff::SignedDuration::MAX)
            })
            .min()
            .unwrap_or_else(Timestamp::now);
        let until = Duration::try_from(renew_at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
        let cap = if configuration_found { MAX_CHECK_INTERVAL } else { MISSING_CONFIGURATION_INTERVAL };
        Ok(until.clamp(Duration::from_millis(500), cap))
    }

    /// The stored material, created or renewed first when needed.
    async fn current_material(&self, names: &[String]) -> Result<Material, CertificateError> {
        let name = &self.settings.certificate.secret_name;
        for _ in 0..WRITE_ATTEMPTS {
            let stored = self.secrets.get_opt(name).await.map_err(self.api_error("reading"))?;
            let previous = stored.as_ref().and_then(material_of);
            let now = Timestamp::now();
            let renewal = renewal_needed(previous.as_ref(), names, now, self.settings.certificate.renew_before);
            let Some(material) = self.renewed(previous, renewal, names, now)? else {
                return Ok(material_of(stored.as_ref().expect("no renewal means a stored Secret")).expect("checked by renewal_needed"));
            };
            let written = match stored {
                None => self.secrets.create(&PostParams::default(), &self.new_secret(&material)).await,
                Some(mut secret) => {
                    secret.data = Some(secret_data(&material));
                    secret.metadata.managed_fields = None;
                    self.secrets.replace(name, &PostParams::default(), &secret).await
                }
            };
            match written {
                Ok(_) => {
                    tracing::info!(secret = self.secret_id(), ?renewal, "webhook certificate issued");
                    return Ok(material);
                }
                // Another replica wrote first: use (or renew) what it stored.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(self.api_error("writing")(e)),
            }
        }
        Err(CertificateError::Contended(self.secret_id()))
    }

    fn renewed(
        &self,
        previous: Option<Material>,
        renewal: Renewal,
        names: &[String],
        now: Timestamp,
    ) -> Result<Option<Material>, CertificateError> {
        if renewal == Renewal::None {
            return Ok(None);
        }
        renew(previous.as_ref(), renewal, names, now, &self.settings.certificate).map(Some)
    }

    fn new_secret(&self, material: &Material) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.settings.certificate.secret_name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into()),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(secret_data(material)),
            ..Secret::default()
        }
    }

    /// Sets `clientConfig.caBundle` of every webhook of the configuration to `bundle`
    /// where it differs; returns whether the configuration exists.
    async fn inject_ca_bundle(&self, bundle: &str) -> Result<bool, CertificateError> {
        let name = &self.settings.configuration_name;
        let api_error = |what: &str| {
            let context = format!("{what} ValidatingWebhookConfiguration {name}");
            move |source| CertificateError::Api { context, source }
        };
        let Some(configuration) = self.configurations.get_opt(name).await.map_err(api_error("reading"))? else {
            tracing::debug!(configuration = name, "ValidatingWebhookConfiguration not found; caBundle injected once it exists");
            return Ok(false);
        };
        let Some(patch) = ca_bundle_patch(&configuration, bundle.as_bytes()) else {
            return Ok(true);
        };
        self.configurations
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_error("injecting caBundle into"))?;
        tracing::info!(configuration = name, "CA bundle injected into the ValidatingWebhookConfiguration");
        Ok(true)
    }
}

/// A merge patch that sets every webhook's `caBundle`, guarded by the
/// resourceVersion (a concurrent change makes it fail and the next pass retries);
/// `None` when every webhook already has it.
pub fn ca_bundle_patch(configuration: &ValidatingWebhookConfiguration, bundle: &[u8]) -> Option<serde_json::Value> {
    let mut webhooks = configuration.webhooks.clone().unwrap_or_default();
    let mut changed = false;
    for webhook in &mut webhooks {
        if webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bundle) {
            webhook.client_config.ca_bundle = Some(ByteString(bundle.to_vec()));
            changed = true;
        }
    }
    changed.then(|| {
        serde_json::json!({
            "metadata": {"resourceVersion": configuration.metadata.resource_version},
            "webhooks": webhooks,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookCertificateConfig;

    fn settings(validity: u64, renew_before: u64) -> WebhookCertificateConfig {
        WebhookCertificateConfig {
            validity: Duration::from_secs(validity),
            renew_before: Duration::from_secs(renew_before),
            ..WebhookCertificateConfig::default()
        }
    }

    #[test]
    fn a_fresh_material_needs_nothing_until_renew_before() {
        let names = service_dns_names("hook", "ops");
        let now = Timestamp::now();
        let m = renew(None, Renewal::Ca, &names, now, &settings(3600, 600)).unwrap();
        assert_eq!(renewal_needed(Some(&m), &names, now, Duration::from_secs(600)), Renewal::None);
        let v = validity_of(m.serving.cert_pem.as_bytes()).unwrap();
        assert!(v.dns_names.contains(&"hook.ops.svc".to_string()), "{v:?}");
        let soon = now + jiff::SignedDuration::from_secs(3001);
        assert_eq!(renewal_needed(Some(&m), &names, soon, Duration::from_secs(600)), Renewal::Serving);
        assert_eq!(renewal_needed(Some(&m), &service_dns_names("other", "ops"), now, Duration::from_secs(600)), Renewal::Serving);
        assert_eq!(renewal_needed(None, &names, now, Duration::from_secs(600)), Renewal::Ca);
    }

    #[test]
    fn serving_renewal_keeps_the_ca_and_ca_renewal_bundles_both() {
        let names = service_dns_names("hook", "ops");
        let now = Timestamp::now();
        let s = settings(3600, 600);
        let first = renew(None, Renewal::Ca, &names, now, &s).unwrap();
        let second = renew(Some(&first), Renewal::Serving, &names, now, &s).unwrap();
        assert_eq!(second.ca_bundle, first.ca_bundle);
        assert_ne!(second.serving.cert_pem, first.serving.cert_pem);
        let third = renew(Some(&second), Renewal::Ca, &names, now, &s).unwrap();
        assert!(third.ca_bundle.starts_with(&third.ca.cert_pem) && third.ca_bundle.ends_with(&first.ca.cert_pem));
        let resolver = CertResolver::default();
        assert!(resolver.set_pem(third.serving.cert_pem.as_bytes(), third.serving.key_pem.as_bytes()).unwrap());
        assert!(!resolver.set_pem(third.serving.cert_pem.as_bytes(), third.serving.key_pem.as_bytes()).unwrap(), "unchanged");
        assert!(resolver.set_pem(third.serving.cert_pem.as_bytes(), first.serving.key_pem.as_bytes()).is_err(), "mismatched key");
        assert!(format!("{:?}", third.serving).find("PRIVATE").is_none(), "Debug never shows the key");
    }

    #[test]
    fn the_ca_bundle_patch_touches_only_what_differs() {
        let configuration: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cx", "resourceVersion": "7"},
            "webhooks": [
                {"name": "a.cx-operator.io", "clientConfig": {"caBundle": "eA=="}, "sideEffects": "None", "admissionReviewVersions": ["v1"]},
                {"name": "b.cx-operator.io", "clientConfig": {}, "sideEffects": "None", "admissionReviewVersions": ["v1"]}
            ]
        }))
        .unwrap();
        let patch = ca_bundle_patch(&configuration, b"x").unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(patch["webhooks"][1]["clientConfig"]["caBundle"], "eA==", "{patch}");
        assert_eq!(patch["webhooks"][1]["name"], "b.cx-operator.io");
        let mut done = configuration.clone();
        done.webhooks.as_mut().unwrap()[1].client_config.ca_bundle = Some(ByteString(b"x".to_vec()));
        assert!(ca_bundle_patch(&done, b"x").is_none());
        assert!(ca_bundle_patch(&configuration, b"y").is_some());
    }
}
