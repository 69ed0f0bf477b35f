//! `mfa enroll|confirm`: the second factor (TOTP) that the server may
//! require before a remote session, and the step-up sent with a start.

use schoolfleet_proto::v1::{
    ConfirmTotpRequest, EnrollTotpRequest, StepUp, TotpCode, step_up::Method,
};
use serde::Serialize;

use super::Context;
use crate::args::MfaCommand;
use crate::client::Reply;
use crate::output::{OutputFormat, Ui};

/// Response metadata of a start refused for want of a second factor.
const STEP_UP_HEADER: &str = "x-schoolfleet-step-up";

/// The step-up message for a TOTP code.
pub fn totp_step_up(code: &str) -> StepUp {
    StepUp {
        method: Some(Method::Totp(TotpCode {
            code: code.trim().to_owned(),
        })),
    }
}

/// Whether the server refused a start because it wants a code.
pub fn wants_step_up(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::PermissionDenied
        && status
            .metadata()
            .get(STEP_UP_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|m| m.trim() == "totp"))
}

/// Asks the person for a code; refuses when nobody can answer.
pub fn ask_code(ui: &mut Ui<'_>, why: &str) -> anyhow::Result<String> {
    if !ui.interactive {
        anyhow::bail!("{why}");
    }
    ui.out.flush()?;
    write!(ui.err, "Code from your authenticator app: ")?;
    ui.err.flush()?;
    let mut answer = String::new();
    ui.input.read_line(&mut answer)?;
    Ok(answer.trim().to_owned())
}

#[derive(Debug, Serialize)]
struct Enrolled {
    secret: String,
    otpauth_uri: String,
}

/// The URI as a QR code of half-height blocks, dark on light.
fn qr_text(uri: &str) -> anyhow::Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

pub async fn run(cmd: MfaCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        MfaCommand::Enroll { otp } => {
            let enrolled = api
                .sessions()
                .enroll_totp(EnrollTotpRequest {
                    step_up: otp.as_deref().map(totp_step_up),
                })
                .await
                .reply(&api)?;
            let row = Enrolled {
                secret: enrolled.secret,
                otpauth_uri: enrolled.otpauth_uri,
            };
            if ui.format == OutputFormat::Json {
                crate::output::write_json(ui.out, &row)?;
                return Ok(());
            }
            // The URI is not terminal-hostile (base32 and our own escapes),
            // and the QR code is block characters only.
            writeln!(ui.out, "{}", qr_text(&row.otpauth_uri)?)?;
            writeln!(ui.out, "{}", row.otpauth_uri)?;
            writeln!(ui.out, "Secret: {}", row.secret)?;
            if !ui.interactive {
                ui.note("Activate it with: schoolfleet mfa confirm CODE")?;
                return Ok(());
            }
            let code = ask_code(ui, "")?;
            api.sessions()
                .confirm_totp(ConfirmTotpRequest { code })
                .await
                .reply(&api)?;
            ui.done("Second factor active; remote sessions will ask for a code.")?;
        }
        MfaCommand::Confirm { code } => {
            api.sessions()
                .confirm_totp(ConfirmTotpRequest { code })
                .await
                .reply(&api)?;
            ui.done("Second factor active; remote sessions will ask for a code.")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_up_header_asks_for_a_code() {
        let mut status = tonic::Status::permission_denied("code please");
        assert!(!wants_step_up(&status));
        status
            .metadata_mut()
            .insert(STEP_UP_HEADER, "totp".parse().unwrap());
        assert!(wants_step_up(&status));
        let other = tonic::Status::unauthenticated("x");
        assert!(!wants_step_up(&other));
    }

    #[test]
    fn the_qr_code_is_blocks_only() {
        let text = qr_text("otpauth://totp/schoolfleet:tina?secret=GEZDGNBV").unwrap();
        assert!(text.lines().count() > 10);
        assert!(
            text.chars()
                .all(|c| matches!(c, ' ' | '\n' | '█' | '▀' | '▄')),
            "{text}"
        );
    }
}
