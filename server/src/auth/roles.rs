//! Roles and the permissions they grant.

use std::str::FromStr;

/// One thing a caller may do. Checked against the tenant of each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See counties, schools and device classes.
    TenantRead,
    /// Add counties (cooperation), schools (county) and device classes.
    TenantManage,
    /// Add users and their role bindings, issue tokens for others.
    UserManage,
    /// Create, list and revoke enrolment tokens.
    EnrollmentManage,
    /// See devices, their inventory and software.
    DeviceRead,
    /// Retire devices, ask for a fresh inventory.
    DeviceManage,
    /// Revoke a device's certificate.
    DeviceRevoke,
    /// Read the audit log: at cooperation or county scope every entry of
    /// the scope, at school scope the entries about that school.
    AuditRead,
    /// Apply new versions of the common IT standard (cooperation-wide).
    StandardManage,
    /// See tickets, their timeline and search them.
    TicketRead,
    /// Open tickets, comment, change status, assign, link devices; be an
    /// assignee.
    TicketWork,
    /// Read the knowledge base. The knowledge base is shared by the whole
    /// cooperation: this permission in any scope reads every article.
    KbRead,
    /// Write and publish articles owned by a county in scope.
    KbWrite,
    /// Remote sessions, one permission per capability (like Teleport's
    /// role options); a binding's `remote` list can narrow these four.
    SessionShell,
    SessionExec,
    SessionForward,
    SessionCopy,
    /// List and show sessions.
    SessionRead,
    /// End someone else's session (the starter may always end their own).
    SessionEnd,
    /// Play session recordings (they may show personal data on screen).
    RecordingRead,
    /// Set the consent policy of schools and device classes.
    ConsentManage,
    /// Make a consent setting the school's floor, which nobody else may
    /// go below: only the school's own lead (`schulleitung`), not even
    /// admins, so the school decides, not the person who connects.
    ConsentFloor,
    /// Report a problem for a device of the school and follow one's own
    /// reports (the teachers' portal): nothing else about tickets.
    TicketReport,
    /// Read the published knowledge-base articles marked for teachers
    /// (visibility `teachers`), and only those.
    KbReadTeachers,
}

impl Permission {
    /// The four remote-session capabilities and their names in
    /// `RoleBinding.remote`.
    pub const REMOTE: [(Permission, &'static str); 4] = [
        (Permission::SessionShell, "shell"),
        (Permission::SessionExec, "exec"),
        (Permission::SessionForward, "forward"),
        (Permission::SessionCopy, "cp"),
    ];

    fn remote_index(self) -> Option<usize> {
        Self::REMOTE.iter().position(|(p, _)| *p == self)
    }
}

/// `RoleBinding.remote`: which of the four session capabilities a binding
/// may use. It only narrows what the role grants, never widens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteLimit([bool; 4]);

impl Default for RemoteLimit {
    fn default() -> Self {
        RemoteLimit([true; 4])
    }
}

impl RemoteLimit {
    pub fn allows(self, permission: Permission) -> bool {
        permission.remote_index().is_none_or(|i| self.0[i])
    }

    /// The canonical text: "" (all), "none" or a comma list in fixed order.
    pub fn as_text(self) -> String {
        if self.0 == [true; 4] {
            return String::new();
        }
        let names: Vec<&str> = Permission::REMOTE
            .iter()
            .zip(self.0)
            .filter(|(_, on)| *on)
            .map(|((_, name), _)| *name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

impl FromStr for RemoteLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(RemoteLimit::default());
        }
        if s == "none" {
            return Ok(RemoteLimit([false; 4]));
        }
        let mut allowed = [false; 4];
        for name in s.split(',').map(str::trim) {
            let index = Permission::REMOTE
                .iter()
                .position(|(_, n)| *n == name)
                .ok_or_else(|| {
                    format!(
                        "unknown remote capability {name:?}: expected shell, exec, forward, cp \
                         (comma-separated), \"none\" or empty for all"
                    )
                })?;
            allowed[index] = true;
        }
        Ok(RemoteLimit(allowed))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Technician,
    Coordinator,
    Viewer,
    /// `schulleitung`: the head of a school or its data-protection
    /// contact, bound at school scope. Decides consent for the school,
    /// reads its devices, tickets and sessions; no technician rights.
    SchoolLead,
    /// `teacher@school:X`: reports problems and reads the teachers'
    /// articles, nothing else (no device, ticket or inventory reads).
    Teacher,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Technician,
        Role::Coordinator,
        Role::Viewer,
        Role::SchoolLead,
        Role::Teacher,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Coordinator => "coordinator",
            Role::Viewer => "viewer",
            Role::SchoolLead => "schulleitung",
            Role::Teacher => "teacher",
        }
    }

    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => permission != ConsentFloor,
            // Technicians work tickets and maintain the knowledge base
            // together ("gemeinsame Pflege von Wissensartikeln").
            Role::Technician => matches!(
                permission,
                TenantRead
                    | EnrollmentManage
                    | DeviceRead
                    | DeviceManage
                    | TicketRead
                    | TicketWork
                    | KbRead
                    | KbWrite
                    | SessionShell
                    | SessionExec
                    | SessionForward
                    | SessionCopy
                    | SessionRead
            ),
            // Coordinators read everything in their scope (and will manage
            // the IT standard), and curate the knowledge base.
            Role::Coordinator => matches!(
                permission,
                TenantRead
                    | DeviceRead
                    | AuditRead
                    | StandardManage
                    | TicketRead
                    | KbRead
                    | KbWrite
                    | SessionRead
                    | RecordingRead
            ),
            Role::Viewer => matches!(permission, TenantRead | DeviceRead | TicketRead | KbRead),
            // The school's head reads its devices, their compliance and
            // its tickets (the portal's school page), changes none of them;
            // reads its sessions and the audit entries that carry the school.
            Role::SchoolLead => matches!(
                permission,
                TenantRead
                    | DeviceRead
                    | TicketRead
                    | AuditRead
                    | SessionRead
                    | SessionEnd
                    | ConsentManage
                    | ConsentFloor
            ),
            Role::Teacher => matches!(permission, TicketReport | KbReadTeachers),
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}: expected admin, technician, coordinator, viewer, \
                     schulleitung or teacher"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service-desk grants as documented in README.md.
    #[test]
    fn service_desk_grants() {
        use Permission::*;
        let table = [
            (Role::Admin, [true, true, true, true]),
            (Role::Technician, [true, true, true, true]),
            (Role::Coordinator, [true, false, true, true]),
            (Role::Viewer, [true, false, true, false]),
        ];
        for (role, expected) in table {
            let got = [TicketRead, TicketWork, KbRead, KbWrite].map(|p| role.grants(p));
            assert_eq!(got, expected, "{role:?}");
        }
    }

    /// The session grants as in the remote-sessions design.
    #[test]
    fn session_grants() {
        use Permission::*;
        let all = [
            SessionShell,
            SessionExec,
            SessionForward,
            SessionCopy,
            SessionRead,
            SessionEnd,
            RecordingRead,
            ConsentManage,
            ConsentFloor,
        ];
        let table = [
            (
                Role::Admin,
                [true, true, true, true, true, true, true, true, false],
            ),
            (
                Role::Technician,
                [true, true, true, true, true, false, false, false, false],
            ),
            (
                Role::Coordinator,
                [false, false, false, false, true, false, true, false, false],
            ),
            (Role::Viewer, [false; 9]),
            (
                Role::SchoolLead,
                [false, false, false, false, true, true, false, true, true],
            ),
        ];
        for (role, expected) in table {
            assert_eq!(all.map(|p| role.grants(p)), expected, "{role:?}");
        }
    }

    /// The school lead reads the school's devices, tickets, sessions and
    /// audit entries (the portal's school page, issue 12's audit reading)
    /// and changes none of them.
    #[test]
    fn school_lead_reads_devices_and_tickets_only() {
        use Permission::*;
        for p in [TenantRead, DeviceRead, TicketRead, SessionRead, AuditRead] {
            assert!(Role::SchoolLead.grants(p), "{p:?}");
        }
        for p in [
            DeviceManage,
            DeviceRevoke,
            TicketWork,
            EnrollmentManage,
            UserManage,
            TenantManage,
            StandardManage,
            RecordingRead,
        ] {
            assert!(!Role::SchoolLead.grants(p), "{p:?}");
        }
    }

    /// A teacher reports problems and reads the teachers' articles, and
    /// nothing else: every other permission is refused.
    #[test]
    fn teacher_grants_only_reporting() {
        use Permission::*;
        let others = [
            TenantRead,
            TenantManage,
            UserManage,
            EnrollmentManage,
            DeviceRead,
            DeviceManage,
            DeviceRevoke,
            AuditRead,
            StandardManage,
            TicketRead,
            TicketWork,
            KbRead,
            KbWrite,
            SessionShell,
            SessionExec,
            SessionForward,
            SessionCopy,
            SessionRead,
            SessionEnd,
            RecordingRead,
            ConsentManage,
        ];
        assert!(Role::Teacher.grants(TicketReport));
        assert!(Role::Teacher.grants(KbReadTeachers));
        for p in others {
            assert!(!Role::Teacher.grants(p), "{p:?}");
        }
        assert_eq!("teacher".parse::<Role>(), Ok(Role::Teacher));
    }

    #[test]
    fn remote_limit_parses_and_narrows() {
        let all: RemoteLimit = "".parse().unwrap();
        assert!(all.allows(Permission::SessionForward));
        assert_eq!(all.as_text(), "");
        let none: RemoteLimit = "none".parse().unwrap();
        assert!(!none.allows(Permission::SessionShell));
        assert!(none.allows(Permission::SessionRead), "only the four");
        assert_eq!(none.as_text(), "none");
        let some: RemoteLimit = "cp, exec".parse().unwrap();
        assert!(some.allows(Permission::SessionExec));
        assert!(some.allows(Permission::SessionCopy));
        assert!(!some.allows(Permission::SessionForward));
        assert_eq!(some.as_text(), "exec,cp");
        assert!("exec,ssh".parse::<RemoteLimit>().is_err());
    }
}
