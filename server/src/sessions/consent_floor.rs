//! The school decides (OPS.1.2.5 A2/A5): a school's lead (`schulleitung`
//! at the school) sets the consent policy of the school and its classes,
//! and what they set is also the floor: technicians and county or
//! cooperation admins may make it stricter, never weaker, and the mode a
//! session gets is never below it. The agent has a floor of its own
//! (`--consent-min`) that not even the server can lower.

use crate::auth::{Permission, Principal, TenantRef};
use crate::service::AppError;
use crate::state::AppState;
use crate::storage::{ConsentFloorRecord, Result, Store, now_millis};

/// none < notify < prompt; unknown text counts as the strictest.
pub fn rank(mode: &str) -> u8 {
    match mode {
        "none" => 0,
        "notify" => 1,
        _ => 2,
    }
}

/// The floor an agent reported in its Hello: `Ok(None)` for an agent
/// that reports none (older versions), `Err` for anything but a known
/// mode, spelled exactly.
pub fn reported(text: &str) -> std::result::Result<Option<&'static str>, UnknownFloor> {
    match text {
        "" => Ok(None),
        "none" => Ok(Some("none")),
        "notify" => Ok(Some("notify")),
        "prompt" => Ok(Some("prompt")),
        _ => Err(UnknownFloor),
    }
}

/// What an agent reported is not a consent mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a consent mode (none, notify, prompt)")]
pub struct UnknownFloor;

/// The mode a session on `device` is recorded with: the server's, raised
/// to the floor the device's agent reported (the agent applies it anyway;
/// the row and the audit say what applied).
pub fn with_agent_floor(mode: String, agent_floor: Option<&str>) -> String {
    match agent_floor {
        Some(floor) if rank(floor) > rank(&mode) => floor.to_owned(),
        _ => mode,
    }
}

/// The stricter of two modes.
pub fn stricter<'a>(a: &'a str, b: &'a str) -> &'a str {
    if rank(b) > rank(a) { b } else { a }
}

/// The floor for a device class of a school: the stricter of the school's
/// own floor and the class's. `None` where no lead set one.
pub async fn floor_for(
    store: &dyn Store,
    school_id: &str,
    device_class: &str,
) -> Result<Option<String>> {
    let floors = store.consent_floors(school_id).await?;
    Ok(floors
        .iter()
        .filter(|f| f.device_class.is_empty() || f.device_class == device_class)
        .map(|f| f.floor.as_str())
        .reduce(stricter)
        .map(str::to_owned))
}

/// Before a consent policy is stored: a school lead's setting becomes the
/// floor as well; anyone else's must not be below the floor. A refusal is
/// audited.
pub async fn check_set(
    state: &AppState,
    principal: &Principal,
    tenant: &TenantRef,
    county_id: &str,
    school_id: &str,
    device_class: &str,
    consent: &str,
) -> std::result::Result<(), AppError> {
    if principal.can(Permission::ConsentFloor, tenant) {
        return state
            .store
            .set_consent_floor(&ConsentFloorRecord {
                school_id: school_id.to_owned(),
                device_class: device_class.to_owned(),
                floor: consent.to_owned(),
                set_by: principal.actor(),
                set_at: now_millis(),
            })
            .await
            .map_err(AppError::from);
    }
    let floor = floor_for(state.store.as_ref(), school_id, device_class).await?;
    match floor {
        Some(floor) if rank(consent) < rank(&floor) => {
            let why = format!(
                "the school's lead set consent {floor:?} as the least for {school_id}{}; \
                 {consent:?} would be below it",
                if device_class.is_empty() {
                    String::new()
                } else {
                    format!(" ({device_class})")
                }
            );
            state
                .audit_school(
                    &principal.actor(),
                    "consent.set",
                    &format!("school:{school_id}"),
                    county_id,
                    school_id,
                    "denied",
                    why.clone(),
                )
                .await;
            Err(AppError::denied(why).with_german(format!(
                "Die Schulleitung hat „{}“ als Mindesteinstellung festgelegt; „{}“ läge darunter.",
                crate::sessions::policy::consent_german(&floor),
                crate::sessions::policy::consent_german(consent),
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_ordered() {
        assert_eq!(stricter("none", "prompt"), "prompt");
        assert_eq!(stricter("notify", "none"), "notify");
        assert!(rank("none") < rank("notify") && rank("notify") < rank("prompt"));
        assert_eq!(rank("something"), 2, "unknown text is the strictest");
    }

    #[test]
    fn an_agent_floor_is_a_known_mode_or_nothing() {
        assert_eq!(reported(""), Ok(None));
        assert_eq!(reported("prompt"), Ok(Some("prompt")));
        assert_eq!(reported("none"), Ok(Some("none")));
        for hostile in [
            "PROMPT",
            " prompt",
            "prompt\n",
            "strict",
            "none\u{202e}",
            &"p".repeat(10_000),
        ] {
            assert_eq!(reported(hostile), Err(UnknownFloor), "{hostile:?}");
        }
    }

    #[test]
    fn the_agent_floor_only_raises() {
        assert_eq!(with_agent_floor("none".into(), Some("prompt")), "prompt");
        assert_eq!(with_agent_floor("notify".into(), Some("none")), "notify");
        assert_eq!(with_agent_floor("none".into(), None), "none");
        assert_eq!(with_agent_floor("prompt".into(), Some("notify")), "prompt");
    }
}
