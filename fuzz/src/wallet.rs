//! The wallet's parsing of what users type: amounts (exact decimal coins,
//! checked against a `u128` reading of the same digits) and addresses
//! (bech32m with the chain prefix; what parses prints back the same, and
//! every 20 bytes round-trip), and the `who` forms (key name, address,
//! `dev:I`).

use ledger::{Address, Amount};
use wallet_cli::cli::parse_amount;
use wallet_cli::who::Who;

/// Base units per coin.
const COIN: u128 = 100_000_000;

/// The amount `text` means, computed apart from `Amount::parse_coins`:
/// digits into a `u128`, `None` for anything that is not an exact,
/// non-negative decimal of at most 8 significant places within `u64`.
fn reference_amount(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 8 {
        return None;
    }
    let mut units: u128 = 0;
    for digit in whole.bytes() {
        units = units
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
        if units > u128::from(u64::MAX) {
            return None;
        }
    }
    units = units.checked_mul(COIN)?;
    let mut scale = COIN / 10;
    for digit in fraction.bytes() {
        units += u128::from(digit - b'0') * scale;
        scale /= 10;
    }
    u64::try_from(units).ok()
}

/// `wallet_parse`: the input as text (lossily, when not UTF-8).
pub fn parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = Amount::parse_coins(&text);
    assert_eq!(
        parsed.as_ref().ok().map(|amount| amount.base_units()),
        reference_amount(&text),
        "parse_coins({text:?}) = {parsed:?}"
    );
    if let Ok(amount) = parsed {
        let printed = amount.to_coins_string();
        assert_eq!(Amount::parse_coins(&printed).ok(), Some(amount));
        assert_eq!(parse_amount(&text).ok(), Some(amount));
    }
    for prefix in ["dev", "gl"] {
        if let Ok(address) = Address::parse(&text, prefix) {
            assert_eq!(address.to_bech32(prefix), text.trim().to_lowercase());
        }
        let _ = Who::parse(&text, prefix);
    }
    if let Ok((prefix, address)) = Address::parse_any_prefix(&text) {
        assert_eq!(
            Address::parse(&address.to_bech32(&prefix), &prefix).ok(),
            Some(address)
        );
    }
    if data.len() >= 20 {
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&data[..20]);
        let address = Address(bytes);
        assert_eq!(
            Address::parse(&address.to_bech32("dev"), "dev").ok(),
            Some(address)
        );
    }
}
