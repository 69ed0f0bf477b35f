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
    /// Read the audit log.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Technician,
    Coordinator,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Technician,
        Role::Coordinator,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Coordinator => "coordinator",
            Role::Viewer => "viewer",
        }
    }

    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
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
            ),
            Role::Viewer => matches!(permission, TenantRead | DeviceRead | TicketRead | KbRead),
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
                format!("unknown role {s:?}: expected admin, technician, coordinator or viewer")
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
}
