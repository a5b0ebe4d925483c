//! The card's management key (PIV key reference 9B), kept by the glue instead of
//! piv-authenticator: the applet knows 3DES and AES-256 management keys but not AES-192,
//! the factory algorithm of YubiKey 5.7. So the glue answers, as a YubiKey does, every
//! GENERAL AUTHENTICATE on 9B (mutual authentication), SET MANAGEMENT KEY and GET
//! METADATA for 9B; once the host has proven the key, the glue opens the applet's own
//! administration with the applet's key, which stays the factory 3DES value and cannot be
//! used from outside (no 9B command reaches the applet). See [`crate::glue`].
//!
//! Test component: the key is plain RAM, compared without constant-time care.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use iso7816::Status;
use rand_core::RngCore as _;

/// The factory management key of every YubiKey (3DES and AES-192 alike): 0102…08 ×3.
pub(crate) const FACTORY_KEY: [u8; 24] = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8];

/// Dynamic authentication template and its tags (SP 800-73-4 part 2, 3.2.4).
const TAG_DYN_AUTH: u8 = 0x7C;
const TAG_WITNESS: u8 = 0x80;
const TAG_CHALLENGE: u8 = 0x81;
const TAG_RESPONSE: u8 = 0x82;
/// Key reference of the management key.
const MANAGEMENT_KEY_REF: u8 = 0x9B;

/// Management-key algorithms the virtual card implements (PIV algorithm identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// 0x03, three-key 3DES (EDE).
    TripleDes,
    /// 0x0A, AES-192.
    Aes192,
}

impl Algorithm {
    pub(crate) fn code(self) -> u8 {
        match self {
            Algorithm::TripleDes => 0x03,
            Algorithm::Aes192 => 0x0A,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0x03 => Some(Algorithm::TripleDes),
            0x0A => Some(Algorithm::Aes192),
            _ => None,
        }
    }

    /// Witness and challenge length: one cipher block.
    pub(crate) fn block_len(self) -> usize {
        match self {
            Algorithm::TripleDes => 8,
            Algorithm::Aes192 => 16,
        }
    }

    /// Encrypt (or decrypt) one block in place. `block` has [`Algorithm::block_len`] bytes.
    pub(crate) fn crypt(self, key: &[u8; 24], block: &mut [u8], encrypt: bool) {
        fn run<C: BlockEncrypt + BlockDecrypt + KeyInit>(key: &[u8; 24], block: &mut [u8], encrypt: bool) {
            // Both ciphers take a 24-byte key: new_from_slice cannot fail here.
            if let Ok(c) = C::new_from_slice(key) {
                let block = GenericArray::from_mut_slice(block);
                if encrypt {
                    c.encrypt_block(block)
                } else {
                    c.decrypt_block(block)
                }
            }
        }
        match self {
            Algorithm::TripleDes => run::<des::TdesEde3>(key, block, encrypt),
            Algorithm::Aes192 => run::<aes::Aes192>(key, block, encrypt),
        }
    }
}

/// What a GENERAL AUTHENTICATE on 9B answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthStep {
    /// Step 1: the encrypted witness (response body).
    Witness(Vec<u8>),
    /// Step 2 passed: the host knows the key; the card's response to its challenge.
    Authenticated(Vec<u8>),
}

/// The card's management key and the state of a mutual authentication in progress.
#[derive(Debug)]
pub(crate) struct ManagementKey {
    algorithm: Algorithm,
    key: [u8; 24],
    /// The plaintext witness sent in step 1, until step 2 (or a reset) uses it up.
    witness: Option<Vec<u8>>,
}

impl ManagementKey {
    /// The factory key with `algorithm`.
    pub(crate) fn factory(algorithm: Algorithm) -> Self {
        ManagementKey { algorithm, key: FACTORY_KEY, witness: None }
    }

    /// Card reset: an authentication in progress is abandoned.
    pub(crate) fn reset(&mut self) {
        self.witness = None;
    }

    /// GENERAL AUTHENTICATE with key reference 9B and algorithm `p1`. Mutual
    /// authentication only: step 1 `7C 02 80 00`, step 2 `7C L 80 n witness 81 n
    /// challenge`. A wrong algorithm or malformed data is 6A80 (what a 5.7 YubiKey answers
    /// a 3DES-only tool); a wrong witness 6982.
    pub(crate) fn general_authenticate(&mut self, p1: u8, data: &[u8]) -> Result<AuthStep, Status> {
        if p1 != self.algorithm.code() {
            self.witness = None;
            return Err(Status::IncorrectDataParameter);
        }
        let n = self.algorithm.block_len();
        match dynamic_auth_items(data).as_deref() {
            Some([(TAG_WITNESS, [])]) => {
                let mut witness = vec![0u8; n];
                rand_core::OsRng.fill_bytes(&mut witness);
                let mut encrypted = witness.clone();
                self.algorithm.crypt(&self.key, &mut encrypted, true);
                self.witness = Some(witness);
                Ok(AuthStep::Witness(template(TAG_WITNESS, &encrypted)))
            }
            Some([(TAG_WITNESS, witness), (TAG_CHALLENGE, challenge)])
                if witness.len() == n && challenge.len() == n =>
            {
                if self.witness.take().as_deref() != Some(*witness) {
                    return Err(Status::SecurityStatusNotSatisfied);
                }
                let mut response = challenge.to_vec();
                self.algorithm.crypt(&self.key, &mut response, true);
                Ok(AuthStep::Authenticated(template(TAG_RESPONSE, &response)))
            }
            _ => {
                self.witness = None;
                Err(Status::IncorrectDataParameter)
            }
        }
    }

    /// SET MANAGEMENT KEY body `alg 9B 18 key[24]` (3DES or AES-192). The caller has
    /// checked that the current key was proven.
    pub(crate) fn set(&mut self, data: &[u8]) -> Result<(), Status> {
        match data {
            [alg, MANAGEMENT_KEY_REF, 24, key @ ..] if key.len() == 24 => {
                let algorithm = Algorithm::from_code(*alg).ok_or(Status::IncorrectDataParameter)?;
                self.algorithm = algorithm;
                self.key.copy_from_slice(key);
                self.witness = None;
                Ok(())
            }
            _ => Err(Status::IncorrectDataParameter),
        }
    }

    /// GET METADATA for 9B: algorithm (01), PIN/touch policy (02: n/a, never) and
    /// whether the key is the factory value (05).
    pub(crate) fn metadata(&self) -> Vec<u8> {
        let is_default = u8::from(self.key == FACTORY_KEY);
        vec![0x01, 0x01, self.algorithm.code(), 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, is_default]
    }
}

/// The applet's answer to its own single authentication (`7C 0A 81 08 challenge`):
/// the challenge encrypted with the applet's key, the factory 3DES key.
pub(crate) fn applet_response(challenge: &[u8]) -> Option<Vec<u8>> {
    let mut block = challenge.to_vec();
    if block.len() != Algorithm::TripleDes.block_len() {
        return None;
    }
    Algorithm::TripleDes.crypt(&FACTORY_KEY, &mut block, true);
    Some(template(TAG_RESPONSE, &block))
}

/// `7C L tag n value`, short lengths only (blocks of 8 or 16 bytes).
fn template(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![TAG_DYN_AUTH, (value.len() + 2) as u8, tag, value.len() as u8];
    out.extend_from_slice(value);
    out
}

/// The items of a dynamic authentication template with short lengths, `None` when
/// `data` is not exactly one such template.
fn dynamic_auth_items(data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let [TAG_DYN_AUTH, len, body @ ..] = data else { return None };
    if usize::from(*len) != body.len() {
        return None;
    }
    let mut rest = body;
    let mut items = Vec::new();
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len);
        if len >= 0x80 || len > tail.len() {
            return None;
        }
        items.push((*tag, &tail[..len]));
        rest = &tail[len..];
    }
    rest.is_empty().then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host side of mutual authentication, as a tool that knows `key` does it.
    fn host_authenticates(card: &mut ManagementKey, algorithm: Algorithm, key: &[u8; 24]) -> Result<(), Status> {
        let n = algorithm.block_len();
        let AuthStep::Witness(body) = card.general_authenticate(algorithm.code(), &[0x7C, 0x02, 0x80, 0x00])? else {
            panic!("step 1 answers a witness");
        };
        let mut witness = body[4..].to_vec();
        assert_eq!(witness.len(), n);
        algorithm.crypt(key, &mut witness, false);
        let challenge = vec![0x5A; n];
        let mut step2 = vec![0x7C, (2 * n + 4) as u8, 0x80, n as u8];
        step2.extend_from_slice(&witness);
        step2.extend_from_slice(&[0x81, n as u8]);
        step2.extend_from_slice(&challenge);
        let AuthStep::Authenticated(body) = card.general_authenticate(algorithm.code(), &step2)? else {
            panic!("step 2 answers a response");
        };
        let mut expected = challenge;
        algorithm.crypt(key, &mut expected, true);
        assert_eq!(body[4..], expected[..], "the card proves it knows the key too");
        Ok(())
    }

    #[test]
    fn factory_keys_authenticate_with_their_own_algorithm_only() {
        let mut aes = ManagementKey::factory(Algorithm::Aes192);
        host_authenticates(&mut aes, Algorithm::Aes192, &FACTORY_KEY).unwrap();
        // A 3DES-only tool with the same 24 bytes is refused at step 1, as on a 5.7 YubiKey.
        assert_eq!(aes.general_authenticate(0x03, &[0x7C, 0x02, 0x80, 0x00]), Err(Status::IncorrectDataParameter));
        let mut tdes = ManagementKey::factory(Algorithm::TripleDes);
        host_authenticates(&mut tdes, Algorithm::TripleDes, &FACTORY_KEY).unwrap();
        assert!(host_authenticates(&mut tdes, Algorithm::Aes192, &FACTORY_KEY).is_err());
    }

    #[test]
    fn a_wrong_key_or_a_replayed_step_two_is_refused() {
        let mut card = ManagementKey::factory(Algorithm::Aes192);
        assert_eq!(host_authenticates(&mut card, Algorithm::Aes192, &[9; 24]), Err(Status::SecurityStatusNotSatisfied));
        // Step 2 without a step 1 (or after a reset) has no witness to match.
        let mut step2 = vec![0x7C, 0x24, 0x80, 0x10];
        step2.extend_from_slice(&[0; 16]);
        step2.extend_from_slice(&[0x81, 0x10]);
        step2.extend_from_slice(&[0; 16]);
        card.general_authenticate(0x0A, &[0x7C, 0x02, 0x80, 0x00]).unwrap();
        card.reset();
        assert_eq!(card.general_authenticate(0x0A, &step2), Err(Status::SecurityStatusNotSatisfied));
        assert_eq!(card.general_authenticate(0x0A, &[0x7C, 0x05, 0x80]), Err(Status::IncorrectDataParameter));
    }

    #[test]
    fn a_new_key_replaces_the_factory_one_and_metadata_follows() {
        let mut card = ManagementKey::factory(Algorithm::TripleDes);
        assert_eq!(card.metadata(), vec![0x01, 0x01, 0x03, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01]);
        let mut body = vec![0x0A, 0x9B, 24];
        body.extend_from_slice(&[7; 24]);
        card.set(&body).unwrap();
        assert_eq!(card.metadata(), vec![0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x00]);
        host_authenticates(&mut card, Algorithm::Aes192, &[7; 24]).unwrap();
        assert!(host_authenticates(&mut card, Algorithm::Aes192, &FACTORY_KEY).is_err());
        // AES-256 (0C), wrong reference or length: refused, key unchanged.
        for bad in [&[0x0C, 0x9B, 24][..], &[0x0A, 0x9A, 24], &[0x0A, 0x9B, 16]] {
            let mut b = bad.to_vec();
            b.extend_from_slice(&[1; 24]);
            assert_eq!(card.set(&b), Err(Status::IncorrectDataParameter));
        }
        host_authenticates(&mut card, Algorithm::Aes192, &[7; 24]).unwrap();
    }
}
