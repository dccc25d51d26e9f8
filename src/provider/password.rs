//! Generated backend passwords and the digests used to detect password drift.
//!
//! Passwords are drawn from the ASCII letters and digits only, so they can be put
//! into URLs, MongoDB connection strings, Redis URLs and shell variables without
//! percent-encoding or quoting.

use rand::{
    Rng,
    distr::{Alphanumeric, SampleString},
    seq::SliceRandom,
};
use sha2::{Digest, Sha256};

/// Length of a generated password. With 62 symbols this is about 238 bits of
/// entropy, far beyond what any offline guess of a SHA-256 digest can reach.
pub const PASSWORD_LENGTH: usize = 40;

/// A new random password of [`PASSWORD_LENGTH`] letters and digits.
///
/// `rand::rng()` is a ChaCha-based CSPRNG seeded and periodically reseeded from the
/// operating system; `Alphanumeric` samples by rejection, so every symbol is
/// equally likely.
pub fn generate() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LENGTH)
}

/// Symbols a person's password may draw on beyond letters and digits: none of them
/// needs quoting in YAML or a shell, and Keycloak's `specialChars` counts each.
const SPECIALS: &[u8] = b"-_.!@#%+=";

/// How many of each kind (lowercase, uppercase, digit, special) a person's password
/// holds at least, so that the common password policy terms (`digits(n)`,
/// `upperCase(n)`, `lowerCase(n)`, `specialChars(n)` up to this n) accept it.
pub const PERSON_MIN_PER_CLASS: usize = 4;

/// A new random password for a person's login: at least `min_length` and
/// [`PASSWORD_LENGTH`] symbols, with [`PERSON_MIN_PER_CLASS`] of every symbol class
/// in random places. A purely alphanumeric password would now and then lack a digit
/// or an uppercase letter and be refused by the realm's password policy.
pub fn generate_for_person(min_length: usize) -> String {
    let mut rng = rand::rng();
    let length = min_length.max(PASSWORD_LENGTH);
    let classes: [&[u8]; 4] = [b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0123456789", SPECIALS];
    let mut symbols: Vec<u8> = classes
        .iter()
        .flat_map(|class| (0..PERSON_MIN_PER_CLASS).map(|_| class[rng.random_range(0..class.len())]).collect::<Vec<u8>>())
        .collect();
    let rest = length.saturating_sub(symbols.len());
    symbols.extend(Alphanumeric.sample_string(&mut rng, rest).into_bytes());
    symbols.shuffle(&mut rng);
    String::from_utf8(symbols).expect("ASCII symbols")
}

/// The lowercase hex SHA-256 of `password`, the form in which Redis reports ACL
/// passwords and in which the MongoDB provider records the password it set.
pub fn sha256_hex(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_passwords_are_long_and_url_safe() {
        for _ in 0..100 {
            let password = generate();
            assert_eq!(password.len(), PASSWORD_LENGTH);
            assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password}");
        }
    }

    #[test]
    fn generated_passwords_differ() {
        let passwords: HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(passwords.len(), 1000);
    }

    #[test]
    fn generated_passwords_use_the_whole_alphabet() {
        let seen: HashSet<u8> = (0..200).flat_map(|_| generate().into_bytes()).collect();
        assert_eq!(seen.len(), 62, "8,000 symbols should cover all 62 letters and digits");
    }

    #[test]
    fn a_persons_password_has_every_symbol_class() {
        for _ in 0..200 {
            let password = generate_for_person(12);
            assert_eq!(password.len(), PASSWORD_LENGTH);
            let count = |f: fn(&u8) -> bool| password.bytes().filter(&f).count();
            assert!(count(u8::is_ascii_lowercase) >= PERSON_MIN_PER_CLASS, "{password}");
            assert!(count(u8::is_ascii_uppercase) >= PERSON_MIN_PER_CLASS, "{password}");
            assert!(count(u8::is_ascii_digit) >= PERSON_MIN_PER_CLASS, "{password}");
            assert!(count(|b| SPECIALS.contains(b)) >= PERSON_MIN_PER_CLASS, "{password}");
        }
        assert_eq!(generate_for_person(64).len(), 64, "a longer policy minimum is honoured");
    }

    #[test]
    fn sha256_hex_matches_the_known_digest() {
        // The digest Redis shows in ACL GETUSER for the password "secret".
        assert_eq!(sha256_hex("secret"), "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
    }
}
