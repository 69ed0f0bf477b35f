//! Inventory collection behind a platform trait.
