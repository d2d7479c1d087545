//! Node roles and users in etcd's auth API, as [`crate::access`] computes them. Needs a client
//! with etcd's `root` role (the master's).

use etcd_client::{Permission, UserAddOptions};

use super::{Store, StoreError};
use crate::access::NodeAccess;

impl Store {
    /// Creates (or completes) the role and user of `access`; running it again changes nothing.
    pub async fn authorize_node(&self, access: &NodeAccess) -> Result<(), StoreError> {
        let mut auth = self.client().auth_client();
        let failed = |what: String| move |source| StoreError::Auth { what, source };
        if let Err(err) = auth.role_add(access.role.as_str()).await
            && !already_exists(&err)
        {
            return Err(failed(format!("adding role {}", access.role))(err));
        }
        for grant in &access.grants {
            let permission = if grant.write {
                Permission::read_write(grant.key.as_str())
            } else {
                Permission::read(grant.key.as_str())
            };
            let permission = if grant.prefix { permission.with_prefix() } else { permission };
            auth.role_grant_permission(access.role.as_str(), permission)
                .await
                .map_err(failed(format!("granting {} to role {}", grant.key, access.role)))?;
        }
        // No password: the node proves who it is with its client certificate.
        let no_password = Some(UserAddOptions::new().with_no_pwd());
        if let Err(err) = auth.user_add(access.user.as_str(), "", no_password).await
            && !already_exists(&err)
        {
            return Err(failed(format!("adding user {}", access.user))(err));
        }
        auth.user_grant_role(access.user.as_str(), access.role.as_str())
            .await
            .map_err(failed(format!("granting role {} to user {}", access.role, access.user)))?;
        Ok(())
    }

    /// Deletes the role and user of `access`; what is already gone is fine.
    pub async fn revoke_node(&self, access: &NodeAccess) -> Result<(), StoreError> {
        let mut auth = self.client().auth_client();
        let failed = |what: String| move |source| StoreError::Auth { what, source };
        for (deleted, what) in [
            (auth.user_delete(access.user.as_str()).await.map(drop), format!("deleting user {}", access.user)),
            (auth.role_delete(access.role.as_str()).await.map(drop), format!("deleting role {}", access.role)),
        ] {
            if let Err(err) = deleted
                && !not_found(&err)
            {
                return Err(failed(what)(err));
            }
        }
        Ok(())
    }
}

fn already_exists(err: &etcd_client::Error) -> bool {
    err.to_string().contains("already exists")
}

fn not_found(err: &etcd_client::Error) -> bool {
    err.to_string().contains("not found")
}
