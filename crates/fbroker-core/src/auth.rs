//! Who may connect, and what a connected client may do: the built-in
//! password file and ACL (evaluated here, in Rust), then the plugin hooks
//! that the control plane registered.

use crate::hooks::{ClientInfo, HookBridge, HookRequest, HookResponse};
use fbroker_auth::{Acl, ClientAcl, PasswordFile, Verdict, VerifyCache};
use fbroker_codec::connack_code;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Clients without a user name may connect.
    pub allow_anonymous: bool,
    pub password_file: Option<PasswordFile>,
    pub acl: Option<Acl>,
    /// How long a plugin's `authorizePublish` answer for (client, topic)
    /// is reused; zero disables the cache.
    pub publish_cache_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings { allow_anonymous: true, password_file: None, acl: None, publish_cache_ttl: Duration::from_secs(1) }
    }
}

/// The file-based sources in force; replaced whole on reload.
#[derive(Clone)]
pub struct AuthSources {
    pub password_file: Option<Arc<PasswordFile>>,
    pub acl: Acl,
}

pub struct Auth {
    pub allow_anonymous: bool,
    pub publish_cache_ttl: Duration,
    sources: RwLock<AuthSources>,
    /// Bumped on every reload so connections recompile their ACL.
    generation: AtomicU64,
    verify_cache: Arc<VerifyCache>,
}

impl Auth {
    pub fn new(settings: AuthSettings) -> Auth {
        Auth {
            allow_anonymous: settings.allow_anonymous,
            publish_cache_ttl: settings.publish_cache_ttl,
            sources: RwLock::new(AuthSources {
                password_file: settings.password_file.map(Arc::new),
                acl: settings.acl.unwrap_or_else(Acl::allow_all),
            }),
            generation: AtomicU64::new(0),
            verify_cache: Arc::new(VerifyCache::default()),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Swaps in newly parsed files (SIGHUP). Connected clients pick up the
    /// new ACL before their next packet.
    pub fn reload(&self, password_file: Option<PasswordFile>, acl: Option<Acl>) {
        *self.sources.write() =
            AuthSources { password_file: password_file.map(Arc::new), acl: acl.unwrap_or_else(Acl::allow_all) };
        self.verify_cache.clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The client's ACL, or None when every topic is allowed.
    pub fn compile_acl(&self, client_id: &str, username: Option<&str>) -> Option<Arc<ClientAcl>> {
        let sources = self.sources.read();
        if sources.acl.is_allow_all() {
            return None;
        }
        Some(Arc::new(sources.acl.compile_for(client_id, username)))
    }

    /// Decides a CONNECT: Ok(()) to accept, Err(return code) to refuse.
    /// Order: the password file (when it knows the user), then the
    /// plugins' `authenticate` hook (first definite answer), then the
    /// anonymous rule.
    pub async fn authenticate(
        &self,
        hooks: Option<&HookBridge>,
        client: &ClientInfo,
        username: Option<&str>,
        password: Option<&bytes::Bytes>,
    ) -> Result<(), u8> {
        let password_file = self.sources.read().password_file.clone();
        if let (Some(file), Some(user)) = (&password_file, username) {
            if file.contains_user(user) {
                let secret = password.map(|p| p.to_vec()).unwrap_or_default();
                let verdict = match file.verify_fast(&self.verify_cache, user, &secret) {
                    Some(v) => v,
                    None => self.verify_slow(file.clone(), user.to_owned(), secret).await,
                };
                return if verdict.is_ok() { Ok(()) } else { Err(connack_code::BAD_USERNAME_OR_PASSWORD) };
            }
        }
        if let Some(bridge) = hooks.filter(|h| h.registered.authenticate) {
            let request = HookRequest::Authenticate {
                client: client.clone(),
                username: username.map(str::to_owned),
                password: password.cloned(),
            };
            match bridge.call(request).await {
                Some(HookResponse::Authenticate(Some(0))) => return Ok(()),
                Some(HookResponse::Authenticate(Some(code))) => return Err(code),
                Some(_) => {}
                // Timed out or lost: fail closed.
                None => return Err(connack_code::NOT_AUTHORIZED),
            }
        }
        match username {
            None if self.allow_anonymous => Ok(()),
            None => Err(connack_code::NOT_AUTHORIZED),
            // A user name nobody vouched for.
            Some(_) if password_file.is_some() => Err(connack_code::BAD_USERNAME_OR_PASSWORD),
            Some(_) if self.allow_anonymous => Ok(()),
            Some(_) => Err(connack_code::NOT_AUTHORIZED),
        }
    }

    /// PBKDF2 costs ~100 ms of CPU at 210k iterations: it runs on the
    /// blocking pool so it never stalls other clients.
    async fn verify_slow(&self, file: Arc<PasswordFile>, user: String, secret: Vec<u8>) -> Verdict {
        let cache = self.verify_cache.clone();
        tokio::task::spawn_blocking(move || file.verify_cached(&cache, &user, &secret))
            .await
            .unwrap_or(Verdict::BadPassword)
    }
}
