//! The tenant scope syntax shared by server and CLI: `cooperation`,
//! `county:<id>`, `school:<id>`.

use std::fmt;
use std::str::FromStr;

/// Where a role binding applies. The cooperation contains every county, a
/// county contains its schools, a school contains its devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Cooperation,
    County(String),
    School(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid scope {0:?}: expected \"cooperation\", \"county:<id>\" or \"school:<id>\"")]
pub struct ScopeParseError(pub String);

impl FromStr for Scope {
    type Err = ScopeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ScopeParseError(s.to_owned());
        match s.split_once(':') {
            None if s == "cooperation" => Ok(Scope::Cooperation),
            Some(("county", id)) if is_valid_tenant_id(id) => Ok(Scope::County(id.to_owned())),
            Some(("school", id)) if is_valid_tenant_id(id) => Ok(Scope::School(id.to_owned())),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Cooperation => f.write_str("cooperation"),
            Scope::County(id) => write!(f, "county:{id}"),
            Scope::School(id) => write!(f, "school:{id}"),
        }
    }
}

/// Ids of counties, schools and device classes: short, lowercase, safe in
/// host names, URLs and file names (`kus`, `kus012`, `schueler-pc`).
pub fn is_valid_tenant_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_kind() {
        for text in ["cooperation", "county:kus", "school:kus012"] {
            let scope: Scope = text.parse().unwrap();
            assert_eq!(scope.to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_scopes() {
        for text in [
            "",
            "county",
            "county:",
            "school:KUS",
            "planet:x",
            "county:a b",
            "county:-x",
        ] {
            assert!(text.parse::<Scope>().is_err(), "{text:?} parsed");
        }
    }
}
