//! The shipped example files must always lint clean.

use schoolfleet_standard::{KnownTenants, Standard, lint};

const CLIENT: &str = include_str!("../examples/schul-it-client.toml");
const LINUX: &str = include_str!("../examples/linux-clients.toml");

#[test]
fn examples_lint_clean() {
    for text in [CLIENT, LINUX] {
        assert_eq!(lint(text, &KnownTenants::default()), vec![]);
        Standard::compile(text).unwrap();
    }
}
