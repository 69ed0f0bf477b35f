//! Device key, CSR and certificate files.
