//! Where the keys come from: `CHECKOUT_SECRETS_KEY` (and `CHECKOUT_SECRETS_OLD_KEYS`), or,
//! on SQLite without one, a key file beside the database made on first start.
use super::{Key, Keyring};
use crate::db::{connect::backend_of, Backend};
use anyhow::{bail, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Env vars: `CHECKOUT_SECRETS_KEY`, `CHECKOUT_SECRETS_OLD_KEYS`.
#[derive(clap::Args, Clone, Default)]
pub struct SecretsConfig {
    /// Key sealing webhook secrets and deriving client tokens: 32 bytes, base64 or hex
    /// (`openssl rand -base64 32`). Required with PostgreSQL (replicas share it); unset on
    /// SQLite: a key file beside the database (`<database>.key`, mode 0600) is used.
    #[arg(long, env = "CHECKOUT_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// Comma-separated earlier keys, still accepted for opening during a rotation.
    #[arg(long, env = "CHECKOUT_SECRETS_OLD_KEYS", hide_env_values = true)]
    pub secrets_old_keys: Option<String>,
}

// Debug by hand: the derived one would print the keys wherever a config is debug-printed.
impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("SecretsConfig")
            .field("secrets_key", &set(&self.secrets_key))
            .field("secrets_old_keys", &set(&self.secrets_old_keys))
            .finish()
    }
}

/// The keyring for this database. Fails, naming the setting and never a value, when a
/// key is malformed, when Postgres has no key, or when the key file is unsafe.
pub fn load(cfg: &SecretsConfig, database_url: &str) -> anyhow::Result<Keyring> {
    let old = match &cfg.secrets_old_keys {
        Some(list) => list
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::parse(k, "each of CHECKOUT_SECRETS_OLD_KEYS"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let current = match &cfg.secrets_key {
        Some(k) => Key::parse(k, "CHECKOUT_SECRETS_KEY")?,
        // Replicas sharing Postgres must share one key, so none can be made up here.
        None if backend_of(database_url)? == Backend::Postgres => {
            bail!("CHECKOUT_SECRETS_KEY must be set when DATABASE_URL is PostgreSQL (32 bytes, base64: `openssl rand -base64 32`)")
        }
        None => match key_file_path(database_url) {
            Some(path) => key_from_file(&path)?,
            // An in-memory database lives as long as the process: so may its key.
            None => Key::from_bytes(&rand::random()),
        },
    };
    Ok(Keyring::new(current, old))
}

/// `<database file>.key`; `None` for an in-memory database.
fn key_file_path(database_url: &str) -> Option<PathBuf> {
    let path = database_url.strip_prefix("sqlite://")?;
    if path.contains(":memory:") || path.contains("mode=memory") {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    Some(PathBuf::from(format!("{path}.key")))
}

/// Reads the key file, creating it first if there is none. A file that others may read or
/// write is refused rather than used or repaired: someone may already have copied it.
fn key_from_file(path: &Path) -> anyhow::Result<Key> {
    if !path.exists() {
        create_key_file(path)?;
    }
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("reading key file {shown}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("key file {shown} has mode {mode:o}: it must be readable by its owner only (chmod 600 {shown})");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key file {shown}"))?;
    Key::parse(&text, &format!("the key file {shown}"))
}

/// Writes a new random key to a private temporary file and links it into place: the key
/// file appears whole or not at all, with mode 0600 from the start, and of two processes
/// starting at once the second finds the first one's key instead of replacing it.
fn create_key_file(path: &Path) -> anyhow::Result<()> {
    let bytes: [u8; 32] = rand::random();
    let tmp = PathBuf::from(format!(
        "{}.tmp-{}",
        path.display(),
        crate::domain::ids::random_base62(8)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{}", STANDARD.encode(bytes))?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written.with_context(|| format!("creating key file {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a secrets key file (mode 0600); back it up with the database");
    Ok(())
}
