//! TLS material from PEM files (certificates, keys, CA bundles) and the rustls crypto provider
//! every TLS endpoint of the broker uses (AMQPS in [`crate::tls`], the alert webhook client);
//! and the rustls configurations of inter-node TLS ([`cluster_tls`]), which warren-cluster's
//! transport uses for every cluster connection (docs/clustering.md). A leaf: it imports only
//! the configuration.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The node's certificate chain and private key (PEM files).
pub fn read_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = read_certificates(cert, "certificate")?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("invalid key in {}: {e}", key.display()))?;
    Ok((certs, key))
}

/// Inter-node TLS of a clustered node (docs/clustering.md), `Ok(None)` when off
/// ([`Config::cluster_tls_on`]): mutual TLS with the node's certificate on both ends, peers'
/// certificates verified against `tls_ca` (required; [`Config::check_cluster`]) — as a server
/// (client certificate required) and as a client (server certificate, for the name of
/// `cluster_tls_server_name` or else the host dialled).
pub fn cluster_tls(config: &Config) -> Result<Option<warren_cluster::ClusterTls>, String> {
    if !config.cluster_tls_on() {
        return Ok(None);
    }
    let (Some(cert), Some(key), Some(ca)) = (&config.tls_cert, &config.tls_key, &config.tls_ca) else {
        return Err("inter-node TLS needs --tls-cert, --tls-key and --tls-ca".into());
    };
    let (certs, key) = read_identity(cert, key)?;
    let mut roots = rustls::RootCertStore::empty();
    add_ca_certificates(&mut roots, ca)?;
    let roots = Arc::new(roots);
    let provider = crypto_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    let server_name = match &config.cluster_tls_server_name {
        Some(n) => Some(
            rustls_pki_types::ServerName::try_from(n.clone())
                .map_err(|e| format!("invalid --cluster-tls-server-name {n}: {e}"))?,
        ),
        None => None,
    };
    Ok(Some(warren_cluster::ClusterTls {
        server: Arc::new(server),
        client: Arc::new(client),
        server_name,
    }))
}

/// The rustls crypto provider of every TLS endpoint of the broker (`ring`, see the workspace
/// Cargo.toml): the AMQPS listener and the alert webhook client.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (`what` names them in errors); at least one.
pub fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid {what} in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no {what} in {}", path.display()));
    }
    Ok(certs)
}

/// Adds the CA certificates of a PEM bundle to `roots`.
pub fn add_ca_certificates(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    for c in read_certificates(path, "CA certificate")? {
        roots
            .add(c)
            .map_err(|e| format!("invalid CA certificate in {}: {e}", path.display()))?;
    }
    Ok(())
}
