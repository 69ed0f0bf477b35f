//! Standard files come from coordinators' editors and, through the admin
//! API, from the network: lint and compile must never panic, and must
//! agree with each other, on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        schoolfleet_standard::fuzzing::parse_and_lint(text);
    }
});
