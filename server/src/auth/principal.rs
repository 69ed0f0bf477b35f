//! The authenticated caller and the tenant checks.

use schoolfleet_proto::scope::Scope;

use super::{Permission, RemoteLimit, Role};
use crate::storage::{TenantFilter, User};

/// One role binding of the caller, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub scope: Scope,
    pub remote: RemoteLimit,
}

impl Grant {
    /// The role grants it and the binding's remote list does not exclude it.
    pub fn allows(&self, permission: Permission) -> bool {
        self.role.grants(permission) && self.remote.allows(permission)
    }
}

/// Where an object lives in the tenant tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    Cooperation,
    County(String),
    School { county: String, school: String },
}

impl TenantRef {
    pub fn school(county: &str, school: &str) -> Self {
        TenantRef::School {
            county: county.to_owned(),
            school: school.to_owned(),
        }
    }

    pub fn county_id(&self) -> Option<&str> {
        match self {
            TenantRef::Cooperation => None,
            TenantRef::County(c) | TenantRef::School { county: c, .. } => Some(c),
        }
    }
}

fn scope_contains(scope: &Scope, target: &TenantRef) -> bool {
    match (scope, target) {
        (Scope::Cooperation, _) => true,
        (Scope::County(c), TenantRef::County(t)) => c == t,
        (Scope::County(c), TenantRef::School { county, .. }) => c == county,
        (Scope::School(s), TenantRef::School { school, .. }) => s == school,
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub name: String,
    pub bindings: Vec<Grant>,
}

impl Principal {
    /// Bindings that fail to parse are dropped: they grant nothing.
    pub fn from_user(user: &User) -> Self {
        let bindings = user
            .bindings
            .iter()
            .filter_map(|b| {
                Some(Grant {
                    role: b.role.parse().ok()?,
                    scope: b.scope.parse().ok()?,
                    remote: b.remote.parse().ok()?,
                })
            })
            .collect();
        Principal {
            user_id: user.id.clone(),
            name: user.name.clone(),
            bindings,
        }
    }

    /// Actor string for the audit log.
    pub fn actor(&self) -> String {
        format!("user:{}", self.name)
    }

    pub fn can(&self, permission: Permission, target: &TenantRef) -> bool {
        self.bindings
            .iter()
            .any(|g| g.allows(permission) && scope_contains(&g.scope, target))
    }

    /// True when `permission` is granted on a whole scope (used for
    /// granting roles: you can only hand out what you hold, and only where).
    pub fn can_on_scope(&self, permission: Permission, scope: &Scope) -> bool {
        let target = match scope {
            Scope::Cooperation => return self.can(permission, &TenantRef::Cooperation),
            Scope::County(c) => TenantRef::County(c.clone()),
            // A school-scoped binding is contained in its school; the
            // county is resolved by the caller, so only check bindings that
            // name the school or contain it via cooperation.
            Scope::School(s) => {
                return self.bindings.iter().any(|g| {
                    g.allows(permission)
                        && match &g.scope {
                            Scope::Cooperation => true,
                            Scope::School(h) => h == s,
                            Scope::County(_) => false,
                        }
                });
            }
        };
        self.can(permission, &target)
    }

    /// True when some binding grants `permission`, in whatever scope. Only
    /// for what the cooperation shares on purpose (the knowledge base).
    pub fn can_anywhere(&self, permission: Permission) -> bool {
        self.bindings.iter().any(|g| g.allows(permission))
    }

    /// The tenants on which `permission` is granted, for list queries.
    pub fn filter(&self, permission: Permission) -> TenantFilter {
        let mut filter = TenantFilter::default();
        for g in &self.bindings {
            if !g.allows(permission) {
                continue;
            }
            match &g.scope {
                Scope::Cooperation => filter.all = true,
                Scope::County(c) => filter.counties.push(c.clone()),
                Scope::School(s) => filter.schools.push(s.clone()),
            }
        }
        filter.counties.sort();
        filter.counties.dedup();
        filter.schools.sort();
        filter.schools.dedup();
        filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(bindings: &[(&str, &str)]) -> Principal {
        principal_remote(
            &bindings
                .iter()
                .map(|(r, s)| (*r, *s, ""))
                .collect::<Vec<_>>(),
        )
    }

    fn principal_remote(bindings: &[(&str, &str, &str)]) -> Principal {
        Principal::from_user(&User {
            id: "u".into(),
            name: "u".into(),
            county_id: None,
            created_at: 0,
            bindings: bindings
                .iter()
                .map(|(r, s, remote)| crate::storage::RoleBindingRecord {
                    role: r.to_string(),
                    scope: s.to_string(),
                    remote: remote.to_string(),
                })
                .collect(),
        })
    }

    #[test]
    fn remote_list_narrows_only_its_own_binding() {
        let kus012 = TenantRef::school("kus", "kus012");
        let p = principal_remote(&[("technician", "county:kus", "exec,cp")]);
        assert!(p.can(Permission::SessionExec, &kus012));
        assert!(!p.can(Permission::SessionForward, &kus012));
        assert!(p.can(Permission::SessionRead, &kus012));
        // Another binding without a limit still grants forward, there.
        let p = principal_remote(&[
            ("technician", "county:kus", "none"),
            ("technician", "school:kus012", ""),
        ]);
        assert!(p.can(Permission::SessionForward, &kus012));
        assert!(!p.can(
            Permission::SessionForward,
            &TenantRef::school("kus", "kus013")
        ));
        // An unparseable list fails closed: the binding grants nothing.
        let p = principal_remote(&[("admin", "cooperation", "shell,ssh")]);
        assert!(p.bindings.is_empty());
    }

    #[test]
    fn county_admin_stays_in_county() {
        let p = principal(&[("admin", "county:kus")]);
        assert!(p.can(
            Permission::DeviceRevoke,
            &TenantRef::school("kus", "kus012")
        ));
        assert!(!p.can(Permission::DeviceRead, &TenantRef::school("kl", "kl001")));
        assert!(!p.can(Permission::TenantManage, &TenantRef::Cooperation));
        assert_eq!(
            p.filter(Permission::DeviceRead).counties,
            vec!["kus".to_string()]
        );
        assert!(!p.filter(Permission::DeviceRead).all);
    }

    #[test]
    fn cooperation_technician_reaches_every_county_but_cannot_revoke() {
        let p = principal(&[("technician", "cooperation")]);
        assert!(p.can(Permission::DeviceRead, &TenantRef::school("kl", "kl001")));
        assert!(!p.can(Permission::DeviceRevoke, &TenantRef::school("kl", "kl001")));
        assert!(p.filter(Permission::DeviceRead).all);
    }

    #[test]
    fn school_viewer_sees_only_the_school() {
        let p = principal(&[("viewer", "school:kus012")]);
        assert!(p.can(Permission::DeviceRead, &TenantRef::school("kus", "kus012")));
        assert!(!p.can(Permission::DeviceRead, &TenantRef::school("kus", "kus013")));
        assert!(!p.can(Permission::DeviceRead, &TenantRef::County("kus".into())));
        assert!(!p.can(
            Permission::DeviceManage,
            &TenantRef::school("kus", "kus012")
        ));
    }

    #[test]
    fn malformed_bindings_grant_nothing() {
        let p = principal(&[("superuser", "cooperation"), ("admin", "planet:earth")]);
        assert!(p.bindings.is_empty());
        assert!(p.filter(Permission::DeviceRead).is_empty());
    }
}
