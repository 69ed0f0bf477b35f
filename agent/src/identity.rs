//! placeholder until the pki branch lands
use std::path::Path;
#[derive(Debug, thiserror::Error)] #[error("x")] pub struct IdentityError;
pub struct AgentIdentity { pub device_id: String, pub server_url: String, pub cert_pem: String, pub key_pem: String, pub ca_pem: String }
impl AgentIdentity { pub fn load(_d: &Path) -> Result<Self, IdentityError> { todo!() } pub fn save(&self, _d: &Path) -> Result<(), IdentityError> { todo!() } }
pub fn generate_key_and_csr(_h: &str) -> Result<(String, String), IdentityError> { todo!() }
