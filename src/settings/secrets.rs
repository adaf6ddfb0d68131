//! Secrets in the settings — the Milvus token and the S3 secret access key — handled one way:
//! from a file that others cannot read, from the environment, or from a systemd credential
//! (`$CREDENTIALS_DIRECTORY/<name>`); held as [`Secret`], which no `Debug` output shows.

use std::path::{Path, PathBuf};

/// A secret (the Milvus token): `Debug` shows `[redacted]`, so it appears in no log, `check`
/// output or `/status`. [`Secret::expose`] is the one way to read it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// No secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_empty() { "\"\"" } else { "[redacted]" })
    }
}

/// The systemd credential (`LoadCredential=milvus-token:…`) read as the token when the config
/// gives none.
pub const TOKEN_CREDENTIAL: &str = "milvus-token";

/// The systemd credential (`LoadCredential=s3-secret-key:…`) read as the S3 secret access key when
/// neither the config nor the environment gives one.
pub const S3_SECRET_CREDENTIAL: &str = "s3-secret-key";

/// The token: read from `token_file` (which must not be readable by others), else `token` as
/// written (or set through `VECDROP__MILVUS__TOKEN`), else the systemd credential
/// [`TOKEN_CREDENTIAL`], else none. Both `token` and `token_file` is refused.
pub(super) fn token_of(token: &str, token_file: Option<&Path>) -> Result<Secret, String> {
    match (token.is_empty(), token_file) {
        (false, Some(_)) => Err("milvus.token_file: give either token or token_file, not both".to_owned()),
        (_, Some(file)) => secret_file(file).map_err(|message| format!("milvus.token_file {}: {message}", file.display())),
        (false, None) => Ok(Secret::new(token)),
        (true, None) => Ok(credential(TOKEN_CREDENTIAL)?.unwrap_or_default()),
    }
}

/// The secret in `file`, which must not be readable by every user.
pub(super) fn secret_file(file: &Path) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(file).map_err(|error| error.to_string())?;
    if metadata.permissions().mode() & 0o004 != 0 {
        return Err("readable by every user; chmod o-r it (e.g. 0600 or 0640)".to_owned());
    }
    read_first_line(file)
}

/// The systemd credential `name`, when the service was given one.
pub(super) fn credential(name: &str) -> Result<Option<Secret>, String> {
    match std::env::var_os("CREDENTIALS_DIRECTORY").map(|dir| PathBuf::from(dir).join(name)) {
        Some(file) if file.is_file() => {
            read_first_line(&file).map(Some).map_err(|error| format!("systemd credential {}: {error}", file.display()))
        }
        _ => Ok(None),
    }
}

/// The first line of `file`, without its line ending; an empty file is an error.
fn read_first_line(file: &Path) -> Result<Secret, String> {
    let content = std::fs::read_to_string(file).map_err(|error| error.to_string())?;
    let secret = content.lines().next().unwrap_or("").trim();
    if secret.is_empty() {
        return Err("the file is empty".to_owned());
    }
    Ok(Secret::new(secret))
}
