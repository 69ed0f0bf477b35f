//! The owner and DACL of an open file or directory, as SDDL text, read
//! through its handle (`GetSecurityInfo`), so the descriptor is the one of
//! the object the agent holds open, not of whatever the name points to
//! now. `session::winpath::untrusted_directory` judges the text.
//!
//! Like `wts.rs`, a module with `unsafe` (windows-sys has no safe wrapper
//! for these calls): two calls with out-pointers to locals, and the two
//! buffers the system allocates freed with `LocalFree` exactly once.
#![allow(unsafe_code)]

use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
};

/// `O:…D:…` of the open `file`.
pub fn sddl_of(file: &std::fs::File) -> std::io::Result<String> {
    let info = OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: the handle is valid while `file` is borrowed; the owner, group,
    // DACL and SACL out-pointers are not asked for (null); `descriptor` is a
    // local that receives one LocalAlloc'd buffer, freed below.
    let error = unsafe {
        GetSecurityInfo(
            file.as_raw_handle(),
            SE_FILE_OBJECT,
            info,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if error != 0 {
        return Err(std::io::Error::from_raw_os_error(error as i32));
    }
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut len: u32 = 0;
    // SAFETY: `descriptor` is the valid descriptor from above; `text` and
    // `len` are locals; on success `text` is a LocalAlloc'd string of `len`
    // UTF-16 units (with its NUL), freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            SDDL_REVISION_1,
            info,
            &mut text,
            &mut len,
        )
    };
    let result = if ok == 0 || text.is_null() {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: the call succeeded: `len` units are readable at `text`.
        let units = unsafe { std::slice::from_raw_parts(text, len as usize) };
        let end = units.iter().position(|u| *u == 0).unwrap_or(units.len());
        let sddl = String::from_utf16_lossy(&units[..end]);
        // SAFETY: allocated by the conversion, not used after this.
        unsafe { LocalFree(text.cast()) };
        Ok(sddl)
    };
    // SAFETY: allocated by GetSecurityInfo, not used after this.
    unsafe { LocalFree(descriptor) };
    result
}
