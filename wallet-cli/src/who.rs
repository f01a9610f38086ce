//! `Who`: the account argument every command takes, written as a key name,
//! an address, or `dev:I`. Parsing is purely textual and strict: key names
//! are at most 32 characters and addresses always longer, so text that is
//! too long for a name must be a valid address, and a mistyped address is an
//! error rather than an unknown key name (or, worse, a payee).

use crate::keystore::{self, MAX_NAME_LEN};
use ledger::chainspec::DEV_ACCOUNTS;
use ledger::Address;

/// A parsed `WHO` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// Built-in dev account `I` (public keys; no keystore needed).
    Dev(usize),
    /// A literal address.
    Address(Address),
    /// A key in the keystore.
    Key(String),
}

/// Why a `WHO` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WhoError {
    #[error("{text:?} is not a dev account: use dev:0 to dev:{}", DEV_ACCOUNTS - 1)]
    BadDevIndex { text: String },
    #[error("{text:?} is not a valid address: {reason}")]
    BadAddress { text: String, reason: String },
    #[error("{0:?} is neither a key name, an address, nor dev:I")]
    Unrecognised(String),
}

impl Who {
    /// Parses `text` for a chain whose addresses use `prefix`.
    pub fn parse(text: &str, prefix: &str) -> Result<Who, WhoError> {
        let text = text.trim();
        if let Some(digits) = text.strip_prefix("dev:") {
            // Plain decimal only, so `dev:01` and `dev:+1` are refused
            // rather than read as `dev:1`.
            let canonical = !digits.is_empty()
                && digits.bytes().all(|byte| byte.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            return match digits.parse::<usize>() {
                Ok(index) if canonical && index < DEV_ACCOUNTS => Ok(Who::Dev(index)),
                _ => Err(WhoError::BadDevIndex {
                    text: text.to_string(),
                }),
            };
        }
        if text.len() > MAX_NAME_LEN {
            return Address::parse(text, prefix)
                .map(Who::Address)
                .map_err(|error| WhoError::BadAddress {
                    text: text.to_string(),
                    reason: error.to_string(),
                });
        }
        if keystore::validate_name(text).is_ok() {
            return Ok(Who::Key(text.to_string()));
        }
        Err(WhoError::Unrecognised(text.to_string()))
    }

    /// How the account is shown back to the user.
    pub fn label(&self, prefix: &str) -> String {
        match self {
            Who::Dev(index) => format!("dev:{index}"),
            Who::Address(address) => address.to_bech32(prefix),
            Who::Key(name) => name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::chainspec::dev_accounts;

    #[test]
    fn parses_dev_accounts_names_and_addresses() {
        assert_eq!(Who::parse("dev:0", "dev"), Ok(Who::Dev(0)));
        assert_eq!(Who::parse("dev:9", "dev"), Ok(Who::Dev(9)));
        for bad in ["dev:10", "dev:", "dev:-1", "dev:01", "dev:+1", "dev:x"] {
            assert!(
                matches!(Who::parse(bad, "dev"), Err(WhoError::BadDevIndex { .. })),
                "{bad}"
            );
        }
        assert_eq!(Who::parse("alice", "dev"), Ok(Who::Key("alice".into())));
        assert_eq!(
            Who::parse("my-key.2", "dev"),
            Ok(Who::Key("my-key.2".into()))
        );
        let address = dev_accounts()[3].address;
        let text = address.to_bech32("dev");
        assert_eq!(Who::parse(&text, "dev"), Ok(Who::Address(address)));
        assert_eq!(
            Who::parse(&text.to_uppercase(), "dev"),
            Ok(Who::Address(address))
        );
        assert!(matches!(
            Who::parse("no/such", "dev"),
            Err(WhoError::Unrecognised(_))
        ));
    }

    #[test]
    fn every_one_character_typo_is_refused() {
        let text = dev_accounts()[1].address.to_bech32("dev");
        for position in 0..text.len() {
            for replacement in ['q', 'p', 'z', '0'] {
                let mut chars: Vec<char> = text.chars().collect();
                if chars[position] == replacement {
                    continue;
                }
                chars[position] = replacement;
                let typo: String = chars.into_iter().collect();
                assert!(
                    matches!(Who::parse(&typo, "dev"), Err(WhoError::BadAddress { .. })),
                    "{typo} was accepted"
                );
            }
        }
        // Dropping a character also fails: still too long to be a name.
        assert!(matches!(
            Who::parse(&text[1..], "dev"),
            Err(WhoError::BadAddress { .. })
        ));
    }

    #[test]
    fn wrong_prefix_is_refused() {
        let text = dev_accounts()[1].address.to_bech32("tst");
        let error = Who::parse(&text, "dev").unwrap_err();
        assert!(error.to_string().contains("prefix"), "{error}");
    }
}
