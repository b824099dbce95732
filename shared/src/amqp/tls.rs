//! `AMQP_CA_FILE`: the certificate authorities an `amqps://` connection trusts besides the
//! system's, for a broker whose certificate a private CA signed (VM 1's: deploy/README.md,
//! "AMQP over TLS"). Read and checked once, at start: rustls would skip a certificate it
//! cannot parse without a word, and the first sign would be a refused handshake later.

use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{fmt, sync::Arc};

/// The PEM text of one or more CA certificates, each one checked to parse.
#[derive(Clone)]
pub struct CaCertificates {
    pem: Arc<str>,
    count: usize,
    path: String,
}

impl CaCertificates {
    /// Reads `path`: PEM, one certificate or more, nothing that fails to parse. The error
    /// names the file and what is wrong with it.
    pub fn from_file(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Err("empty: unset it, or give the path of a PEM file".to_owned());
        }
        let pem = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read the CA file {path}: {error}"))?;
        let mut count = 0;
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            certificate.map_err(|error| {
                format!("the CA file {path} holds a certificate that does not parse ({error:?})")
            })?;
            count += 1;
        }
        if count == 0 {
            return Err(format!(
                "the CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ));
        }
        Ok(Self {
            pem: pem.into(),
            count,
            path: path.to_owned(),
        })
    }

    /// The certificates as PEM, for lapin's TLS configuration.
    pub(super) fn pem(&self) -> &str {
        &self.pem
    }
}

impl fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} certificate(s))", self.path, self.count)
    }
}
