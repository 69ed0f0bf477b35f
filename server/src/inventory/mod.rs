//! placeholder until the inventory branch lands
pub mod diff {
    pub enum ChangeKind {
        X,
    }
    impl ChangeKind {
        pub fn as_str(&self) -> &'static str {
            "x"
        }
    }
    pub struct Change {
        pub kind: ChangeKind,
        pub subject: String,
        pub old_value: String,
        pub new_value: String,
    }
    pub fn diff(
        _o: Option<&schoolfleet_proto::v1::Inventory>,
        _n: &schoolfleet_proto::v1::Inventory,
    ) -> Vec<Change> {
        todo!()
    }
}
pub mod validate {
    #[derive(Debug, thiserror::Error)]
    #[error("x")]
    pub struct InventoryRejected;
    #[derive(Default)]
    pub struct InventoryLimits {
        pub max_software: usize,
        pub max_string_bytes: usize,
    }
    pub fn decode(_b: &[u8]) -> Result<schoolfleet_proto::v1::Inventory, InventoryRejected> {
        todo!()
    }
    pub fn sanitize(
        _i: &mut schoolfleet_proto::v1::Inventory,
        _l: &InventoryLimits,
    ) -> Result<Vec<String>, InventoryRejected> {
        todo!()
    }
}
