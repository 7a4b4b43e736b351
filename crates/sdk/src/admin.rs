//! A typed client for Plexus's admin API (`/admin/...`): keys, teams, users, organizations,
//! spend, the audit log, provider credentials and the response cache.
//!
//! ```no_run
//! use plexus_sdk::admin::{AdminClient, CreateKey, Limits, Nanos};
//!
//! # async fn demo() -> Result<(), plexus_sdk::Error> {
//! let admin = AdminClient::new("http://127.0.0.1:4000", Some("sk-master-key"))?;
//! let key = admin
//!     .create_key(&CreateKey {
//!         name: "ci".into(),
//!         models: vec!["gpt-4o*".into()],
//!         limits: Limits {
//!             max_budget_usd: Some(Nanos::from_usd(20.0)),
//!             budget_period: Some("30d".into()),
//!             ..Limits::default()
//!         },
//!         ..CreateKey::default()
//!     })
//!     .await?;
//! println!("{} {}", key.id, key.key.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! Unlike [`crate::Client`], the admin client does not retry: creating a key twice because an
//! answer was lost would be worse than reporting the error.

pub use plexus_protocol::admin::*;
pub use plexus_protocol::money::Nanos;

use crate::Error;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// A client of the admin API; cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    root: String,
    api_key: Option<String>,
}

/// The server root of a Plexus URL: surrounding spaces and trailing slashes dropped, and a
/// trailing `/v1` too (the OpenAI base that `PLEXUS_URL` may also hold), so
/// `http://h:4000`, `http://h:4000/` and `http://h:4000/v1` all give `http://h:4000`.
pub fn server_root(url: &str) -> Result<String, Error> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Config(format!("`{url}` is not an http(s) URL")));
    }
    let root = url.strip_suffix("/v1").unwrap_or(url).trim_end_matches('/');
    Ok(root.to_owned())
}

impl AdminClient {
    /// `url` is the server root (`http://127.0.0.1:4000`); a trailing `/v1` is accepted and
    /// dropped. `api_key` is the master key, a virtual key or a JWT.
    pub fn new(url: &str, api_key: Option<&str>) -> Result<AdminClient, Error> {
        let root = server_root(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(AdminClient {
            http,
            root,
            api_key: api_key.filter(|k| !k.is_empty()).map(str::to_owned),
        })
    }

    /// The server root requests go to.
    pub fn root(&self) -> &str {
        &self.root
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &(impl Serialize + ?Sized),
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.root))
            .query(query);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await?;
        if !resp.status().is_success() {
            return Err(crate::api_error(resp).await);
        }
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        self.call(Method::GET, path, query, None::<&()>).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        self.call(method, path, &NO_QUERY, Some(body)).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.call(Method::DELETE, path, &NO_QUERY, None::<&()>)
            .await
    }

    // Keys ------------------------------------------------------------------------------------

    /// Creates a key; its secret is in `key`, shown this once.
    pub async fn create_key(&self, req: &CreateKey) -> Result<Key, Error> {
        self.send(Method::POST, "/admin/keys", req).await
    }

    /// One page of keys.
    pub async fn list_keys(&self, query: &KeyListQuery) -> Result<KeyList, Error> {
        self.get("/admin/keys", query).await
    }

    /// A key, revoked ones included (`revoked: true`).
    pub async fn get_key(&self, id: &str) -> Result<Key, Error> {
        self.get(&format!("/admin/keys/{}", seg(id)), &NO_QUERY)
            .await
    }

    pub async fn update_key(&self, id: &str, patch: &PatchKey) -> Result<Key, Error> {
        self.send(Method::PATCH, &format!("/admin/keys/{}", seg(id)), patch)
            .await
    }

    /// Revokes a key at once (`DELETE`); revoking again answers the same.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRevoked, Error> {
        self.delete(&format!("/admin/keys/{}", seg(id))).await
    }

    /// A new secret with the same attributes; the old one works for `grace_seconds`.
    pub async fn rotate_key(&self, id: &str, req: &RotateKey) -> Result<Key, Error> {
        self.send(
            Method::POST,
            &format!("/admin/keys/{}/rotate", seg(id)),
            req,
        )
        .await
    }

    // Organizations, teams, users -------------------------------------------------------------

    pub async fn create_org(&self, req: &CreateOrg) -> Result<Org, Error> {
        self.send(Method::POST, "/admin/orgs", req).await
    }

    pub async fn list_orgs(&self) -> Result<OrgList, Error> {
        self.get("/admin/orgs", &NO_QUERY).await
    }

    /// An organization with its teams.
    pub async fn get_org(&self, id: &str) -> Result<Org, Error> {
        self.get(&format!("/admin/orgs/{}", seg(id)), &NO_QUERY)
            .await
    }

    pub async fn create_team(&self, req: &CreateTeam) -> Result<Team, Error> {
        self.send(Method::POST, "/admin/teams", req).await
    }

    /// One page of teams (up to 1000, by id).
    pub async fn list_teams(&self, query: &TeamListQuery) -> Result<TeamList, Error> {
        self.get("/admin/teams", query).await
    }

    pub async fn get_team(&self, id: &str) -> Result<Team, Error> {
        self.get(&format!("/admin/teams/{}", seg(id)), &NO_QUERY)
            .await
    }

    pub async fn update_team(&self, id: &str, patch: &PatchTeam) -> Result<Team, Error> {
        self.send(Method::PATCH, &format!("/admin/teams/{}", seg(id)), patch)
            .await
    }

    /// Deletes a team without users or active keys.
    pub async fn delete_team(&self, id: &str) -> Result<Deleted, Error> {
        self.delete(&format!("/admin/teams/{}", seg(id))).await
    }

    pub async fn create_user(&self, req: &CreateUser) -> Result<User, Error> {
        self.send(Method::POST, "/admin/users", req).await
    }

    /// One page of users (up to 1000, by id).
    pub async fn list_users(&self, query: &UserListQuery) -> Result<UserList, Error> {
        self.get("/admin/users", query).await
    }

    pub async fn get_user(&self, id: &str) -> Result<User, Error> {
        self.get(&format!("/admin/users/{}", seg(id)), &NO_QUERY)
            .await
    }

    pub async fn update_user(&self, id: &str, patch: &PatchUser) -> Result<User, Error> {
        self.send(Method::PATCH, &format!("/admin/users/{}", seg(id)), patch)
            .await
    }

    /// Deletes a user with the user's keys and request records.
    pub async fn delete_user(&self, id: &str) -> Result<Deleted, Error> {
        self.delete(&format!("/admin/users/{}", seg(id))).await
    }

    // Spend, requests, audit, credentials, cache ------------------------------------------------

    pub async fn spend(&self, query: &SpendQuery) -> Result<Spend, Error> {
        self.get("/admin/spend", query).await
    }

    /// One request of the log by its gateway id (`x-plexus-request-id`), with the calls made
    /// for it.
    pub async fn request(&self, id: &str) -> Result<RequestEntry, Error> {
        self.get(&format!("/admin/requests/{}", seg(id)), &NO_QUERY)
            .await
    }

    /// Audit entries, oldest first.
    pub async fn audit(&self, query: &AuditListQuery) -> Result<AuditList, Error> {
        self.get("/admin/audit", query).await
    }

    pub async fn create_credential(&self, req: &CreateCredential) -> Result<Credential, Error> {
        self.send(Method::POST, "/admin/credentials", req).await
    }

    pub async fn list_credentials(&self) -> Result<CredentialList, Error> {
        self.get("/admin/credentials", &NO_QUERY).await
    }

    pub async fn retire_credential(&self, id: &str) -> Result<CredentialRetired, Error> {
        self.delete(&format!("/admin/credentials/{}", seg(id)))
            .await
    }

    pub async fn cache_stats(&self) -> Result<CacheStats, Error> {
        self.get("/admin/cache", &NO_QUERY).await
    }

    /// Purges the response cache; every filter given must match, none purges everything.
    pub async fn purge_cache(&self, query: &CachePurgeQuery) -> Result<CachePurged, Error> {
        self.call(Method::DELETE, "/admin/cache", query, None::<&()>)
            .await
    }
}

/// An empty query string.
const NO_QUERY: [(&str, &str); 0] = [];

/// A path segment with the characters that would change the path escaped.
pub(crate) fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_server_root_whatever_the_suffix() {
        for url in [
            "http://127.0.0.1:4000",
            "http://127.0.0.1:4000/",
            " http://127.0.0.1:4000/v1 ",
            "http://127.0.0.1:4000/v1/",
        ] {
            assert_eq!(server_root(url).unwrap(), "http://127.0.0.1:4000", "{url}");
        }
        assert_eq!(
            server_root("https://h/plexus/v1").unwrap(),
            "https://h/plexus"
        );
        assert!(server_root("127.0.0.1:4000").is_err());
        assert!(AdminClient::new("ftp://x", None).is_err());
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(seg("key_1/../x"), "key_1%2F..%2Fx");
        assert_eq!(seg("a b?c"), "a%20b%3Fc");
    }
}
