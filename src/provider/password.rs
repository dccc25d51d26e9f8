//! Generated backend passwords and the digests used to detect password drift.
//!
//! Passwords are drawn from the ASCII letters and digits only, so they can be put
//! into URLs, MongoDB connection strings, Redis URLs and shell variables without
//! percent-encoding or quoting.

use rand::distr::{Alphanumeric, SampleString};
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
    fn sha256_hex_matches_the_known_digest() {
        // The digest Redis shows in ACL GETUSER for the password "secret".
        assert_eq!(sha256_hex("secret"), "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
    }
}
