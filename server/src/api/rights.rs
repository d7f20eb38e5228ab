//! Who may do what: roles in tiers, the two rights nobody has unless
//! granted, and the scope (departments, public numbers) of a group admin.
//! Pure functions, so the whole matrix is unit-tested without a server.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything (rights still need granting).
    System,
    /// Everything but trunks, PBX settings and admins of equal or higher rank.
    Org,
    /// Only the departments and public numbers granted.
    Group,
    /// Recordings and their access log only.
    Auditor,
    /// Call-center supervisor: reads the dashboard, users, groups, call logs.
    Supervisor,
    /// Reads the configuration; changes nothing.
    Readonly,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::System, Role::Org, Role::Group, Role::Auditor, Role::Supervisor, Role::Readonly];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Org => "org",
            Role::Group => "group",
            Role::Auditor => "auditor",
            Role::Supervisor => "supervisor",
            Role::Readonly => "readonly",
        }
    }

    /// Higher manages lower. Only system and org admins manage admins at all.
    fn rank(self) -> u8 {
        match self {
            Role::System => 3,
            Role::Org => 2,
            _ => 1,
        }
    }
}

/// Rights that no role carries: they are granted to a named admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// List and play call recordings.
    Recordings,
    /// Reset SIP passwords, see provisioning codes, see and remove devices.
    Devices,
}

impl Right {
    pub fn parse(s: &str) -> Option<Right> {
        match s {
            "recordings" => Some(Right::Recordings),
            "devices" => Some(Right::Devices),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Right::Recordings => "recordings",
            Right::Devices => "devices",
        }
    }
}

/// The kinds of thing the API manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Dashboard,
    Departments,
    Users,
    Groups,
    Dids,
    Trunks,
    Settings,
    Phonebook,
    Calls,
    Audit,
    Admins,
    Recordings,
    Events,
    Schedules,
    /// Voice menus (IVR): rights as for schedules.
    Ivr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A signed-in admin, as far as rights go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub rights: Vec<Right>,
    pub departments: Vec<i64>,
    pub dids: Vec<String>,
}

impl Principal {
    pub fn has(&self, right: Right) -> bool {
        self.rights.contains(&right)
    }

    /// May this admin touch this kind of resource at all? Scope (which
    /// department, which number) is checked separately.
    pub fn may(&self, resource: Resource, access: Access) -> bool {
        use Access::*;
        use Resource::*;
        // Recordings go by the right alone, whatever the role.
        if resource == Recordings {
            return self.has(Right::Recordings) && access == Read;
        }
        match self.role {
            Role::System => true,
            Role::Org => !matches!((resource, access), (Trunks | Settings, Write)),
            Role::Group => match resource {
                Dashboard | Departments | Phonebook | Calls | Events | Schedules | Ivr => access == Read,
                Users | Groups | Dids => true,
                _ => false,
            },
            Role::Auditor => false,
            Role::Supervisor => {
                access == Read && matches!(resource, Dashboard | Departments | Users | Groups | Dids | Phonebook | Calls | Events | Schedules | Ivr)
            }
            Role::Readonly => access == Read && !matches!(resource, Audit | Admins),
        }
    }

    /// Whether the whole organisation is in scope (not just granted parts).
    pub fn sees_everything(&self) -> bool {
        !matches!(self.role, Role::Group)
    }

    /// May this admin act on something in `department` (None: in none)?
    pub fn in_department(&self, department: Option<i64>) -> bool {
        self.sees_everything() || department.is_some_and(|d| self.departments.contains(&d))
    }

    /// May this admin change where public number `did` rings?
    pub fn in_did(&self, did: &str) -> bool {
        self.sees_everything() || self.dids.iter().any(|d| d == did)
    }

    /// May this admin create, change or remove an admin of `role` holding
    /// `rights`? Never oneself (a second admin must do it), only lower
    /// ranks (a system admin manages everyone), and only a system admin
    /// hands out rights.
    pub fn may_manage_admin(&self, name: &str, role: Role, rights: &[Right]) -> bool {
        if name == self.name || !self.may(Resource::Admins, Access::Write) {
            return false;
        }
        match self.role {
            Role::System => true,
            Role::Org => role.rank() < Role::Org.rank() && rights.is_empty(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, rights: &[Right]) -> Principal {
        Principal { name: "me".into(), role, rights: rights.to_vec(), departments: vec![1], dids: vec!["0312345678".into()] }
    }

    #[test]
    fn recordings_need_the_right_whatever_the_role() {
        for role in Role::ALL {
            assert!(!p(role, &[]).may(Resource::Recordings, Access::Read), "{role:?} without the right");
            assert!(p(role, &[Right::Recordings]).may(Resource::Recordings, Access::Read), "{role:?} with the right");
        }
        assert!(!p(Role::System, &[Right::Devices]).may(Resource::Recordings, Access::Read), "the devices right is not the recordings right");
    }

    #[test]
    fn org_admins_do_not_touch_system_settings() {
        let org = p(Role::Org, &[]);
        assert!(!org.may(Resource::Trunks, Access::Write));
        assert!(!org.may(Resource::Settings, Access::Write));
        assert!(org.may(Resource::Trunks, Access::Read));
        assert!(org.may(Resource::Users, Access::Write));
        assert!(org.may(Resource::Admins, Access::Write));
    }

    #[test]
    fn auditors_see_nothing_but_recordings() {
        let a = p(Role::Auditor, &[Right::Recordings]);
        for r in [Resource::Dashboard, Resource::Users, Resource::Calls, Resource::Audit, Resource::Admins, Resource::Phonebook] {
            assert!(!a.may(r, Access::Read), "{r:?}");
        }
    }

    #[test]
    fn readers_never_write() {
        for role in [Role::Supervisor, Role::Readonly] {
            for r in [Resource::Users, Resource::Groups, Resource::Dids, Resource::Phonebook, Resource::Trunks, Resource::Admins] {
                assert!(!p(role, &[]).may(r, Access::Write), "{role:?} {r:?}");
            }
        }
        assert!(!p(Role::Supervisor, &[]).may(Resource::Trunks, Access::Read));
        assert!(p(Role::Readonly, &[]).may(Resource::Trunks, Access::Read));
        assert!(!p(Role::Readonly, &[]).may(Resource::Audit, Access::Read));
    }

    #[test]
    fn group_admins_are_scoped() {
        let g = p(Role::Group, &[]);
        assert!(g.may(Resource::Users, Access::Write));
        assert!(g.in_department(Some(1)));
        assert!(!g.in_department(Some(2)));
        assert!(!g.in_department(None));
        assert!(g.in_did("0312345678"));
        assert!(!g.in_did("0312345679"));
        assert!(!g.may(Resource::Trunks, Access::Read));
        assert!(!g.may(Resource::Phonebook, Access::Write));
        let org = p(Role::Org, &[]);
        assert!(org.in_department(Some(2)) && org.in_department(None) && org.in_did("0399999999"));
    }

    #[test]
    fn admins_manage_only_lower_ranks_and_never_themselves() {
        let sys = p(Role::System, &[]);
        let org = p(Role::Org, &[]);
        assert!(sys.may_manage_admin("x", Role::System, &[Right::Recordings]));
        assert!(!sys.may_manage_admin("me", Role::System, &[]));
        assert!(org.may_manage_admin("x", Role::Group, &[]));
        assert!(!org.may_manage_admin("x", Role::Org, &[]));
        assert!(!org.may_manage_admin("x", Role::System, &[]));
        assert!(!org.may_manage_admin("x", Role::Auditor, &[Right::Recordings]), "only a system admin grants rights");
        assert!(!p(Role::Group, &[]).may_manage_admin("x", Role::Readonly, &[]));
    }
}
