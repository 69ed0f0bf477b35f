//! The server CA, device certificates and TLS configuration.
