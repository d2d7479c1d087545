//! A throwaway certificate authority for TLS tests: a CA, a server
//! certificate for 127.0.0.1, a client certificate, and client certificates
//! whose common names are etcd users (`root`, a node's name), written as PEM
//! files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::HarnessError;

#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Client certificates by common name: (name, certificate, key).
    pub users: Vec<(String, PathBuf, PathBuf)>,
}

fn rcgen_error(what: &str) -> impl FnOnce(rcgen::Error) -> HarnessError + '_ {
    move |e| HarnessError::Io { what: format!("generating {what}"), source: std::io::Error::other(e.to_string()) }
}

fn write(path: PathBuf, pem: String) -> Result<PathBuf, HarnessError> {
    std::fs::write(&path, pem).map_err(HarnessError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

impl Pki {
    pub fn generate(dir: &Path) -> Result<Self, HarnessError> {
        Self::generate_with(dir, &[])
    }

    /// As [`Pki::generate`], with a client certificate for each of `users` (its common name).
    pub fn generate_with(dir: &Path, users: &[&str]) -> Result<Self, HarnessError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("CA params"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(rcgen_error("CA"))?;

        let leaf = |usage: ExtendedKeyUsagePurpose, cn: Option<&str>| -> Result<(String, String), HarnessError> {
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(rcgen_error("params"))?;
            if let Some(cn) = cn {
                params.distinguished_name.push(DnType::CommonName, cn);
            }
            params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().map_err(rcgen_error("key"))?;
            let cert = params.signed_by(&key, &ca).map_err(rcgen_error("certificate"))?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth, None)?;
        let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth, None)?;
        let mut named = Vec::new();
        for user in users {
            let (cert, key) = leaf(ExtendedKeyUsagePurpose::ClientAuth, Some(user))?;
            let cert = write(dir.join(format!("user-{user}.pem")), cert)?;
            let key = write(dir.join(format!("user-{user}-key.pem")), key)?;
            named.push(((*user).to_owned(), cert, key));
        }
        Ok(Self {
            ca: write(dir.join("ca.pem"), ca.pem())?,
            server_cert: write(dir.join("server.pem"), server_cert)?,
            server_key: write(dir.join("server-key.pem"), server_key)?,
            client_cert: write(dir.join("client.pem"), client_cert)?,
            client_key: write(dir.join("client-key.pem"), client_key)?,
            users: named,
        })
    }

    /// The certificate and key of etcd user `name`.
    pub fn user(&self, name: &str) -> Option<(PathBuf, PathBuf)> {
        self.users.iter().find(|(n, _, _)| n == name).map(|(_, cert, key)| (cert.clone(), key.clone()))
    }
}
