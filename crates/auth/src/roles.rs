//! Roles, principals and the permission matrix.
//!
//! | action                     | admin | team_admin        | member           | viewer           |
//! |----------------------------|-------|-------------------|------------------|------------------|
//! | use a model                | any   | allowed models    | allowed models   | allowed models   |
//! | create/update/revoke keys  | any   | its team's        | its own          | —                |
//! | read keys                  | any   | its team's        | its own          | its scope        |
//! | create/delete users        | any   | its team's        | —                | —                |
//! | read users                 | any   | its team's        | itself           | its scope        |
//! | create teams               | yes   | —                 | —                | —                |
//! | read teams                 | any   | its own           | its own          | its own          |
//! | read spend and audit       | any   | its team's        | its own          | its scope        |
//! | manage credentials         | yes   | —                 | —                | —                |
//!
//! Nobody grants more than they have: a key's role is at most its creator's, and a key's
//! allowed models are within its creator's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    TeamAdmin,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "team_admin" => Role::TeamAdmin,
            "member" => Role::Member,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TeamAdmin => "team_admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

/// Who is calling, after authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `master`, a key id, or `jwt:<subject>`.
    pub id: String,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub role: Role,
    /// Allowed model names or `*` patterns; empty means every model.
    pub models: Vec<String>,
}

impl Principal {
    pub fn master() -> Principal {
        Principal {
            id: "master".into(),
            key_id: None,
            user_id: None,
            team_id: None,
            role: Role::Admin,
            models: Vec::new(),
        }
    }

    /// Auth is off (loopback without a master key): everything is allowed.
    pub fn anonymous_admin() -> Principal {
        Principal {
            id: String::new(),
            ..Principal::master()
        }
    }

    pub fn may_use_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob(p, model))
    }
}

/// What an admin request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KeyWrite,
    KeyRead,
    UserWrite,
    UserRead,
    TeamWrite,
    TeamRead,
    SpendRead,
    AuditRead,
    CredentialWrite,
    CredentialRead,
    /// Purging response-cache entries (team admins: their team's namespace only).
    CacheWrite,
    /// The response cache's cache-wide statistics (admins only).
    CacheRead,
}

/// The resource's owners.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    pub team_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

fn same(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x == y)
}

/// Decides whether `who` may do `action` on a resource owned by `scope`.
pub fn authorize(who: &Principal, action: Action, scope: Scope<'_>) -> Result<(), Denied> {
    use Action::*;
    let team = who.team_id.as_deref();
    let user = who.user_id.as_deref();
    let in_team = same(team, scope.team_id);
    let own = same(user, scope.user_id);
    let allowed = match who.role {
        Role::Admin => true,
        Role::TeamAdmin => match action {
            KeyWrite | KeyRead | UserWrite | UserRead | SpendRead | AuditRead | CacheWrite => {
                in_team
            }
            TeamRead => in_team,
            TeamWrite | CredentialWrite | CredentialRead | CacheRead => false,
        },
        Role::Member => match action {
            KeyWrite | KeyRead | SpendRead | AuditRead => own,
            UserRead => own,
            TeamRead => in_team,
            UserWrite | TeamWrite | CredentialWrite | CredentialRead | CacheWrite | CacheRead => {
                false
            }
        },
        Role::Viewer => match action {
            // A viewer reads its own things, and its team's when the resource is the team's.
            KeyRead | UserRead | SpendRead | AuditRead => {
                own || (scope.user_id.is_none() && in_team)
            }
            TeamRead => in_team,
            _ => false,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied(format!(
            "role `{}` may not {} this resource",
            who.role.as_str(),
            match action {
                KeyWrite | UserWrite | TeamWrite | CredentialWrite | CacheWrite => "change",
                _ => "read",
            }
        )))
    }
}

/// A key may not carry more power than its creator: a role at most the creator's (and never
/// `admin` unless the creator is one) and models within the creator's.
pub fn may_grant(who: &Principal, role: Role, models: &[String]) -> Result<(), Denied> {
    if role > who.role || (role == Role::Admin && who.role != Role::Admin) {
        return Err(Denied(format!(
            "role `{}` may not grant role `{}`",
            who.role.as_str(),
            role.as_str()
        )));
    }
    if who.models.is_empty() {
        return Ok(());
    }
    if models.is_empty() {
        return Err(Denied(
            "a key with restricted models may only create keys with restricted models".into(),
        ));
    }
    for m in models {
        if !who
            .models
            .iter()
            .any(|p| p == m || (!m.contains('*') && glob(p, m)))
        {
            return Err(Denied(format!(
                "model `{m}` is outside the caller's allowed models"
            )));
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, team: Option<&str>, user: Option<&str>) -> Principal {
        Principal {
            id: "k".into(),
            key_id: Some("k".into()),
            user_id: user.map(str::to_owned),
            team_id: team.map(str::to_owned),
            role,
            models: Vec::new(),
        }
    }

    fn scope<'a>(team: Option<&'a str>, user: Option<&'a str>) -> Scope<'a> {
        Scope {
            team_id: team,
            user_id: user,
        }
    }

    #[test]
    fn the_matrix() {
        let admin = who(Role::Admin, None, None);
        let ta = who(Role::TeamAdmin, Some("red"), Some("alice"));
        let member = who(Role::Member, Some("red"), Some("bob"));
        let viewer = who(Role::Viewer, Some("red"), Some("carol"));
        let red_bob = scope(Some("red"), Some("bob"));
        let blue = scope(Some("blue"), Some("dave"));

        for a in [
            Action::KeyWrite,
            Action::TeamWrite,
            Action::CredentialWrite,
            Action::AuditRead,
        ] {
            assert!(authorize(&admin, a, blue).is_ok());
        }
        assert!(authorize(&ta, Action::KeyWrite, red_bob).is_ok());
        assert!(authorize(&ta, Action::UserWrite, red_bob).is_ok());
        assert!(
            authorize(&ta, Action::KeyWrite, blue).is_err(),
            "another team's keys"
        );
        assert!(authorize(&ta, Action::TeamWrite, scope(Some("red"), None)).is_err());
        assert!(authorize(&ta, Action::CredentialRead, red_bob).is_err());

        assert!(authorize(&member, Action::KeyWrite, red_bob).is_ok());
        assert!(authorize(&member, Action::KeyWrite, scope(Some("red"), Some("alice"))).is_err());
        assert!(authorize(&member, Action::UserWrite, red_bob).is_err());
        assert!(authorize(&member, Action::SpendRead, blue).is_err());

        assert!(authorize(&viewer, Action::SpendRead, scope(Some("red"), None)).is_ok());
        assert!(authorize(&viewer, Action::AuditRead, scope(Some("red"), None)).is_ok());
        assert!(authorize(&viewer, Action::KeyWrite, scope(Some("red"), Some("carol"))).is_err());
        assert!(authorize(&viewer, Action::SpendRead, blue).is_err());
    }

    #[test]
    fn no_escalation() {
        let member = Principal {
            models: vec!["gpt-*".into()],
            ..who(Role::Member, Some("red"), Some("bob"))
        };
        assert!(may_grant(&member, Role::Member, &["gpt-4o".into()]).is_ok());
        assert!(may_grant(&member, Role::TeamAdmin, &["gpt-4o".into()]).is_err());
        assert!(may_grant(&member, Role::Admin, &["gpt-4o".into()]).is_err());
        assert!(may_grant(&member, Role::Member, &["claude".into()]).is_err());
        assert!(
            may_grant(&member, Role::Member, &[]).is_err(),
            "unrestricted is more"
        );
        assert!(may_grant(&member, Role::Member, &["*".into()]).is_err());
        let ta = who(Role::TeamAdmin, Some("red"), None);
        assert!(may_grant(&ta, Role::Admin, &[]).is_err());
        assert!(may_grant(&ta, Role::TeamAdmin, &[]).is_ok());
    }

    #[test]
    fn model_patterns() {
        let p = Principal {
            models: vec!["gpt-4o*".into(), "claude/claude-haiku-4-5".into()],
            ..who(Role::Member, None, Some("u"))
        };
        assert!(p.may_use_model("gpt-4o-mini"));
        assert!(p.may_use_model("claude/claude-haiku-4-5"));
        assert!(!p.may_use_model("gpt-5"));
        assert!(!p.may_use_model("claude/claude-opus-4-5"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b", "ac"));
    }
}
