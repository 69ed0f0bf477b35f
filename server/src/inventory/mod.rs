//! Validation and change detection of agent inventories.
