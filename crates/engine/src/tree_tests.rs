//! The one-time identity a copy grants itself on restrictive nodes: drawn
//! from the OS random source, unique, of the expected form and strength.

use std::collections::HashSet;

use super::RunCredential;
use crate::zk::target::digest_id;

/// `zkrepl-<16 hex digits>:<48 hex digits>`: the user and password words.
fn words(credential: &str) -> (&str, &str) {
    let (user, password) = credential.split_once(':').expect("user:password");
    let user = user.strip_prefix("zkrepl-").expect("a zkrepl- user name");
    (user, password)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn identities_are_digest_credentials_of_64_and_192_random_bits() {
    let run = RunCredential::generate();
    let (auth, (scheme, id)) = (run.auth(), run.acl_id());
    assert_eq!((auth.scheme.as_str(), scheme.as_str()), ("digest", "digest"));
    let (user, password) = words(&auth.credential);
    assert!(is_hex(user, 16), "{user}");
    assert!(is_hex(password, 48), "{password}");
    assert_eq!(id, digest_id(&auth.credential), "the id is the credential's digest");
    assert!(id.starts_with(&format!("zkrepl-{user}:")));
}

#[test]
fn every_identity_differs_and_its_bits_are_unbiased() {
    const N: usize = 2000;
    let mut users = HashSet::new();
    let mut passwords = HashSet::new();
    let mut ones = 0u64;
    let mut bits = 0u64;
    // Per hex digit position of the password: which values it took.
    let mut seen = [0u16; 48];
    for _ in 0..N {
        let run = RunCredential::generate();
        let (user, password) = words(run.credential());
        assert!(users.insert(user.to_string()), "user name {user} came twice");
        assert!(passwords.insert(password.to_string()), "password {password} came twice");
        for (i, c) in password.chars().enumerate() {
            let v = c.to_digit(16).unwrap();
            seen[i] |= 1 << v;
            ones += u64::from(v.count_ones());
            bits += 4;
        }
    }
    // 384,000 fair bits: the share of ones is within 0.5% of a half with
    // overwhelming probability (about 6 standard deviations).
    let share = ones as f64 / bits as f64;
    assert!((share - 0.5).abs() < 0.005, "{share}");
    assert!(seen.iter().all(|&s| s == 0xffff), "every digit position takes all 16 values");
}
