//! Where a keystore password comes from, in this order: `--password-file`,
//! the `LEDGER_PASSWORD` environment variable (both for scripts), or a
//! hidden prompt on the terminal. A password is never taken as a
//! command-line value (other users can read process arguments), and when
//! there is no terminal and no scripted source the answer is a clear error
//! rather than a hang on a prompt nobody sees. Passwords live in
//! `Zeroizing` strings, wiped on drop.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable scripts set to the password.
pub const PASSWORD_ENV: &str = "LEDGER_PASSWORD";
/// A password file larger than this is certainly a mistake.
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Why no usable password was obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("a password is needed but there is no terminal to ask on: set LEDGER_PASSWORD or pass --password-file FILE")]
    NoSource,
    #[error("the password is empty")]
    Empty,
    #[error("LEDGER_PASSWORD is not valid UTF-8")]
    NotUnicode,
    #[error("the passwords do not match")]
    Mismatch,
    #[error("cannot read password file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot read the password from the terminal: {0}")]
    Prompt(std::io::Error),
}

/// Whether the password protects a new key (asked twice on a prompt) or
/// opens an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose<'a> {
    NewKey(&'a str),
    Unlock(&'a str),
}

/// Gets the password from the first available source.
pub fn obtain(
    password_file: Option<&Path>,
    purpose: Purpose<'_>,
) -> Result<Zeroizing<String>, PasswordError> {
    if let Some(path) = password_file {
        return non_empty(read_file(path)?);
    }
    if let Some(value) = std::env::var_os(PASSWORD_ENV) {
        // `into_string` reuses the buffer, so the only copy is the one
        // that gets zeroized.
        let value = value.into_string().map_err(|_| PasswordError::NotUnicode)?;
        return non_empty(Zeroizing::new(value));
    }
    if !std::io::stdin().is_terminal() {
        return Err(PasswordError::NoSource);
    }
    match purpose {
        Purpose::Unlock(name) => non_empty(prompt(&format!("Password for key {name}: "))?),
        Purpose::NewKey(name) => {
            let first = non_empty(prompt(&format!("New password for key {name}: "))?)?;
            let second = prompt("Repeat the password: ")?;
            if *first != *second {
                return Err(PasswordError::Mismatch);
            }
            Ok(first)
        }
    }
}

fn prompt(text: &str) -> Result<Zeroizing<String>, PasswordError> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(PasswordError::Prompt)
}

fn non_empty(password: Zeroizing<String>) -> Result<Zeroizing<String>, PasswordError> {
    if password.is_empty() {
        Err(PasswordError::Empty)
    } else {
        Ok(password)
    }
}

/// Reads a password file: its first line, without the line ending, so
/// `echo secret > file` works.
pub fn read_file(path: &Path) -> Result<Zeroizing<String>, PasswordError> {
    let error = |reason: String| PasswordError::File {
        path: path.to_path_buf(),
        reason,
    };
    let length = std::fs::metadata(path)
        .map_err(|e| error(e.to_string()))?
        .len();
    if length > MAX_PASSWORD_FILE_BYTES {
        return Err(error(format!(
            "{length} bytes is too long for a password file"
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| error(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| error("it is not UTF-8".into()))?;
    let line = text.split('\n').next().unwrap_or("");
    Ok(Zeroizing::new(
        line.strip_suffix('\r').unwrap_or(line).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_lose_only_the_line_ending() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("pw");
        for (content, expected) in [
            ("abc\n", "abc"),
            ("abc\r\n", "abc"),
            ("a b \n2nd", "a b "),
            ("abc", "abc"),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_file(&path).unwrap().as_str(), expected);
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            obtain(Some(&path), Purpose::Unlock("k")),
            Err(PasswordError::Empty)
        ));
        assert!(matches!(
            obtain(Some(&temp.path().join("missing")), Purpose::Unlock("k")),
            Err(PasswordError::File { .. })
        ));
    }
}
