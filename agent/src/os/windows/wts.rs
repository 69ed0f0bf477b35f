//! The interactive user's session through the Remote Desktop Services
//! API: whether someone is logged on at the console, and a message box in
//! that session (`WTSSendMessageW`) with a timeout, shown by the system on
//! the user's desktop while the agent runs as SYSTEM in session 0.
//!
//! The one module of the workspace with `unsafe` (the workspace denies it;
//! .ci/run checks that no other file allows it): windows-sys has no safe
//! wrapper, and the alternative, a helper started in the user's session,
//! needs `CreateProcessAsUserW`, which is just as unsafe and much larger.
//! Every block is a plain call with pointers to locals that outlive it.
#![allow(unsafe_code)]

use std::time::Duration;

use windows_sys::Win32::System::RemoteDesktop::{
    WTS_CURRENT_SERVER_HANDLE, WTS_INFO_CLASS, WTSActive, WTSConnectState, WTSFreeMemory,
    WTSGetActiveConsoleSessionId, WTSQuerySessionInformationW, WTSSendMessageW, WTSUserName,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    IDNO, IDTIMEOUT, IDYES, MB_DEFBUTTON2, MB_ICONINFORMATION, MB_ICONQUESTION, MB_OK,
    MB_SETFOREGROUND, MB_SYSTEMMODAL, MB_YESNO, MESSAGEBOX_RESULT,
};

/// What the person clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// The box closed itself after the timeout.
    Timeout,
    /// Any other result (the box was closed another way).
    Other(i32),
}

/// The console session, if it is active and a user is logged on in it (at
/// the login screen nobody is). The user's name is looked at only for
/// being empty; it never leaves this function.
pub fn active_console_session() -> Option<u32> {
    // SAFETY: no arguments; returns 0xFFFFFFFF when there is no console session.
    let id = unsafe { WTSGetActiveConsoleSessionId() };
    if id == u32::MAX {
        return None;
    }
    let state = query(id, WTSConnectState)?;
    let state = i32::from_ne_bytes(state.get(..4)?.try_into().ok()?);
    if state != WTSActive {
        return None;
    }
    let user = query(id, WTSUserName)?;
    let logged_on = user.chunks_exact(2).next().is_some_and(|c| c != [0, 0]);
    logged_on.then_some(id)
}

/// `WTSQuerySessionInformationW`, copied out of the system's buffer.
fn query(session: u32, class: WTS_INFO_CLASS) -> Option<Vec<u8>> {
    let mut buffer: *mut u16 = std::ptr::null_mut();
    let mut bytes: u32 = 0;
    // SAFETY: both out-pointers point to locals; on success the system
    // allocates `bytes` bytes at `buffer`, freed below exactly once.
    let ok = unsafe {
        WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE,
            session,
            class,
            &mut buffer,
            &mut bytes,
        )
    };
    if ok == 0 || buffer.is_null() {
        return None;
    }
    // SAFETY: the call succeeded, so `buffer` holds `bytes` readable bytes.
    let copy = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), bytes as usize) }.to_vec();
    // SAFETY: allocated by WTSQuerySessionInformationW, not used after this.
    unsafe { WTSFreeMemory(buffer.cast()) };
    Some(copy)
}

/// Asks yes/no in `session` and blocks until an answer or `timeout` ("no"
/// is the default button, so Enter does not allow). Run it on a blocking
/// thread.
pub fn ask_yes_no(
    session: u32,
    title: &str,
    text: &str,
    timeout: Duration,
) -> std::io::Result<Answer> {
    let style = MB_YESNO | MB_ICONQUESTION | MB_DEFBUTTON2 | MB_SYSTEMMODAL | MB_SETFOREGROUND;
    let response = send(session, title, text, style, timeout, true)?;
    Ok(match response {
        IDYES => Answer::Yes,
        IDNO => Answer::No,
        IDTIMEOUT => Answer::Timeout,
        other => Answer::Other(other),
    })
}

/// Shows a notice in `session` without waiting for it to be read; it
/// closes itself after `timeout`.
pub fn tell(session: u32, title: &str, text: &str, timeout: Duration) -> std::io::Result<()> {
    send(
        session,
        title,
        text,
        MB_OK | MB_ICONINFORMATION | MB_SETFOREGROUND,
        timeout,
        false,
    )
    .map(|_| ())
}

fn send(
    session: u32,
    title: &str,
    text: &str,
    style: u32,
    timeout: Duration,
    wait: bool,
) -> std::io::Result<MESSAGEBOX_RESULT> {
    // NUL-terminated; the lengths given exclude the terminator, in bytes.
    let wide = |s: &str| -> Vec<u16> {
        s.encode_utf16()
            .filter(|u| *u != 0)
            .chain(std::iter::once(0))
            .collect()
    };
    let (title, text) = (wide(title), wide(text));
    let bytes = |w: &[u16]| ((w.len() - 1) * 2) as u32;
    let seconds = u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    let mut response: MESSAGEBOX_RESULT = 0;
    // SAFETY: `title`, `text` and `response` are locals that live across the
    // call; the lengths match the buffers.
    let ok = unsafe {
        WTSSendMessageW(
            WTS_CURRENT_SERVER_HANDLE,
            session,
            title.as_ptr(),
            bytes(&title),
            text.as_ptr(),
            bytes(&text),
            style,
            seconds,
            &mut response,
            i32::from(wait),
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(response)
}
