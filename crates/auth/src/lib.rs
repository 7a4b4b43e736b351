//! The authentication manager: virtual keys (generation, hashing, parsing), roles and their
//! permission matrix, JWT validation, the credential vault (envelope encryption) and the
//! hash chain of the audit log.
//!
//! **Invariant:** nothing here logs or returns a plaintext secret except the one time a key is
//! created; secrets live in `secrecy` types or are zeroed buffers.
#![forbid(unsafe_code)]

pub mod audit;
pub mod jwt;
pub mod keys;
pub mod roles;
pub mod vault;
