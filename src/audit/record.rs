//! Audit record format v1: the exact bytes that an agent's YubiKey signs.
//!
//! Pure (sans-IO): encode, decode and hash. The layout is fixed and big-endian so
//! that the signed bytes never depend on a serialiser's whims; only the payload is
//! variable, and it is RFC 8785 canonical JSON (see [`super::event`]). The layout is
//! specified byte by byte in `docs/audit-format.md`; keep the two in step.
//!
//! ```text
//! offset size field
//!      0   16 domain tag  "resetdesk.audit\0"
//!     16    2 version      1
//!     18    2 event type   (EventType)
//!     20    8 seq          first record = 1
//!     28    8 timestamp    UTC milliseconds since the Unix epoch
//!     36   32 key id       SHA-256 of the signer's SubjectPublicKeyInfo (DER)
//!     68   32 cosigner id  same for the co-signer, or 32 zero bytes if none
//!    100   32 prev hash    entry hash of record seq-1 (zeros for seq 1)
//!    132    4 payload len  at most MAX_PAYLOAD
//!    136    n payload      canonical JSON object
//! ```

use sha2::{Digest, Sha256};

/// Domain separation: a signature over a record can never be mistaken for a
/// signature over anything else the same key signs (login challenges, receipts).
pub const DOMAIN_TAG: [u8; 16] = *b"resetdesk.audit\0";
/// The only version this code writes and reads.
pub const VERSION: u16 = 1;
/// Size of the fixed part before the payload.
pub const HEADER_LEN: usize = 136;
/// Upper bound for a payload: facts are small; a huge one is a bug or an attack.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A 32-byte SHA-256 value (key ids, entry hashes).
pub type Hash32 = [u8; 32];

/// The kind of event a record states. The numeric codes are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A password reset is about to be performed (written before the directory is touched).
    ResetIntent,
    /// What happened to a reset intent: done, or failed with the directory's error.
    ResetOutcome,
    /// An agent logged in (heartbeat: the record's seq and prev hash state the head).
    Login,
    /// An agent logged out (heartbeat).
    Logout,
    /// The session was locked, by the agent or by idle time-out (heartbeat).
    Lock,
    /// The locked session was unlocked by the same agent (heartbeat).
    Unlock,
    /// An identity-verification step failed.
    VerificationFailed,
    /// A caller or account was locked out after repeated failures.
    Lockout,
    /// The policy refused a reset (tier too high, missing approval, ...).
    Refusal,
    /// A token was enrolled (or re-enrolled) for an agent.
    Enrolment,
    /// An admin revoked an agent's keys; the record's timestamp is the revocation time.
    Revocation,
    /// An admin cleared a lockout or a flag, or set a contact point, of an account.
    AdminAction,
}

impl EventType {
    /// Every event type, in code order.
    pub const ALL: [EventType; 12] = [
        Self::ResetIntent,
        Self::ResetOutcome,
        Self::Login,
        Self::Logout,
        Self::Lock,
        Self::Unlock,
        Self::VerificationFailed,
        Self::Lockout,
        Self::Refusal,
        Self::Enrolment,
        Self::Revocation,
        Self::AdminAction,
    ];

    /// The wire code (stable; never reuse a retired number).
    pub fn code(self) -> u16 {
        match self {
            Self::ResetIntent => 1,
            Self::ResetOutcome => 2,
            Self::Login => 3,
            Self::Logout => 4,
            Self::Lock => 5,
            Self::Unlock => 6,
            Self::VerificationFailed => 7,
            Self::Lockout => 8,
            Self::Refusal => 9,
            Self::Enrolment => 10,
            Self::Revocation => 11,
            Self::AdminAction => 12,
        }
    }

    /// The event type for a wire code, if this version knows it.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Stable lower-case name used in exports and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResetIntent => "reset_intent",
            Self::ResetOutcome => "reset_outcome",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::VerificationFailed => "verification_failed",
            Self::Lockout => "lockout",
            Self::Refusal => "refusal",
            Self::Enrolment => "enrolment",
            Self::Revocation => "revocation",
            Self::AdminAction => "admin_action",
        }
    }

    /// Heartbeats are session events that state the log head to whoever receives them.
    pub fn is_heartbeat(self) -> bool {
        matches!(self, Self::Login | Self::Logout | Self::Lock | Self::Unlock)
    }
}

/// One decoded audit record (without its signatures, which are stored beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub event_type: EventType,
    pub seq: u64,
    /// UTC milliseconds since the Unix epoch, from the caller's clock.
    pub timestamp_ms: u64,
    /// SHA-256 of the acting agent's 9c public key (SPKI DER).
    pub key_id: Hash32,
    /// The second agent whose 9c key must co-sign this record, if any.
    pub cosigner_key_id: Option<Hash32>,
    /// Entry hash of the previous record; zeros for the first.
    pub prev_hash: Hash32,
    /// Canonical JSON object (RFC 8785).
    pub payload: Vec<u8>,
}

/// Why bytes are not a valid v1 record. Each says what was wrong where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "record is {len} bytes, shorter than the {HEADER_LEN}-byte header; it was truncated or is not an audit record"
    )]
    TooShort { len: usize },
    #[error("record does not start with the audit domain tag; it is not a ResetDesk audit record")]
    BadDomainTag,
    #[error("record format version {0} is not supported (this build reads version {VERSION}); use a newer resetdesk")]
    UnsupportedVersion(u16),
    #[error("unknown event type code {0}; the record is corrupt or from a newer resetdesk")]
    UnknownEventType(u16),
    #[error("payload length {len} exceeds the limit of {MAX_PAYLOAD} bytes")]
    PayloadTooLarge { len: usize },
    #[error(
        "payload length field says {declared} bytes but {actual} follow the header; the record was cut or extended"
    )]
    LengthMismatch { declared: usize, actual: usize },
    #[error("sequence number 0 is invalid (the first record is 1)")]
    ZeroSeq,
    #[error("the co-signer key id equals the signer's; a co-signature must come from a second agent")]
    SelfCosigned,
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Read `N` bytes at `at`. Callers have checked the length first and only read
/// inside it, so the slice always exists; a miss returns zeros rather than panic
/// (and is then caught by the checks that follow).
pub(crate) fn take<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl Record {
    /// The exact bytes that are hashed, signed and stored.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&DOMAIN_TAG);
        put_u16(&mut out, VERSION);
        put_u16(&mut out, self.event_type.code());
        put_u64(&mut out, self.seq);
        put_u64(&mut out, self.timestamp_ms);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.cosigner_key_id.unwrap_or([0; 32]));
        out.extend_from_slice(&self.prev_hash);
        // Fits: check() bounded the payload by MAX_PAYLOAD (64 KiB) < u32::MAX.
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Parse record bytes. Strict: exact length, known version and event type.
    /// Never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordError::TooShort { len: bytes.len() });
        }
        if take::<16>(bytes, 0) != DOMAIN_TAG {
            return Err(RecordError::BadDomainTag);
        }
        let version = u16::from_be_bytes(take(bytes, 16));
        if version != VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let code = u16::from_be_bytes(take(bytes, 18));
        let event_type = EventType::from_code(code).ok_or(RecordError::UnknownEventType(code))?;
        let declared = u32::from_be_bytes(take(bytes, 132)) as usize;
        if declared > MAX_PAYLOAD {
            return Err(RecordError::PayloadTooLarge { len: declared });
        }
        let actual = bytes.len() - HEADER_LEN;
        if declared != actual {
            return Err(RecordError::LengthMismatch { declared, actual });
        }
        let cosigner: Hash32 = take(bytes, 68);
        let record = Record {
            event_type,
            seq: u64::from_be_bytes(take(bytes, 20)),
            timestamp_ms: u64::from_be_bytes(take(bytes, 28)),
            key_id: take(bytes, 36),
            cosigner_key_id: (cosigner != [0; 32]).then_some(cosigner),
            prev_hash: take(bytes, 100),
            payload: bytes[HEADER_LEN..].to_vec(),
        };
        record.check()?;
        Ok(record)
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.seq == 0 {
            return Err(RecordError::ZeroSeq);
        }
        if self.payload.len() > MAX_PAYLOAD {
            return Err(RecordError::PayloadTooLarge { len: self.payload.len() });
        }
        if self.cosigner_key_id == Some(self.key_id) {
            return Err(RecordError::SelfCosigned);
        }
        Ok(())
    }
}

/// RFC 6962 leaf hash of encoded record bytes: SHA-256(0x00 || record). This is the
/// record's entry hash: the next record's prev hash and the collector's Merkle leaf.
pub fn entry_hash(record_bytes: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(record_bytes);
    h.finalize().into()
}

/// The digest the signer's card signs: SHA-256(record). Identical to what
/// `openssl dgst -sha256 -sign/-verify` computes over the record file.
pub fn signing_digest(record_bytes: &[u8]) -> Hash32 {
    Sha256::digest(record_bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Record {
        Record {
            event_type: EventType::ResetIntent,
            seq: 7,
            timestamp_ms: 1_790_000_000_123,
            key_id: [1; 32],
            cosigner_key_id: Some([2; 32]),
            prev_hash: [3; 32],
            payload: br#"{"facts":{"agent":"alice"}}"#.to_vec(),
        }
    }

    #[test]
    fn layout_matches_the_documented_offsets() {
        let bytes = sample().encode().unwrap();
        assert_eq!(&bytes[..16], b"resetdesk.audit\0");
        assert_eq!(&bytes[16..18], &[0, 1]);
        assert_eq!(&bytes[18..20], &[0, 1]);
        assert_eq!(&bytes[20..28], &7u64.to_be_bytes());
        assert_eq!(&bytes[28..36], &1_790_000_000_123u64.to_be_bytes());
        assert_eq!(&bytes[36..68], &[1; 32]);
        assert_eq!(&bytes[68..100], &[2; 32]);
        assert_eq!(&bytes[100..132], &[3; 32]);
        assert_eq!(&bytes[132..136], &(27u32).to_be_bytes());
        assert_eq!(&bytes[136..], br#"{"facts":{"agent":"alice"}}"#);
    }

    #[test]
    fn entry_hash_is_the_rfc6962_leaf_hash() {
        // RFC 6962 leaf hash of the empty leaf: SHA-256(0x00).
        assert_eq!(hex::encode(entry_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        assert_ne!(entry_hash(b"x"), signing_digest(b"x"));
    }

    #[test]
    fn decoding_rejects_each_kind_of_damage() {
        let good = sample().encode().unwrap();
        assert_eq!(Record::decode(&good[..100]), Err(RecordError::TooShort { len: 100 }));
        let mut b = good.clone();
        b[0] ^= 1;
        assert_eq!(Record::decode(&b), Err(RecordError::BadDomainTag));
        let mut b = good.clone();
        b[17] = 2;
        assert_eq!(Record::decode(&b), Err(RecordError::UnsupportedVersion(2)));
        let mut b = good.clone();
        b[19] = 99;
        assert_eq!(Record::decode(&b), Err(RecordError::UnknownEventType(99)));
        let mut b = good.clone();
        b.push(b' ');
        assert!(matches!(Record::decode(&b), Err(RecordError::LengthMismatch { .. })));
        let mut b = good.clone();
        b[20..28].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(Record::decode(&b), Err(RecordError::ZeroSeq));
        let mut b = good;
        b[68..100].copy_from_slice(&[1; 32]);
        assert_eq!(Record::decode(&b), Err(RecordError::SelfCosigned));
    }

    #[test]
    fn no_cosigner_is_encoded_as_zeros() {
        let r = Record { cosigner_key_id: None, ..sample() };
        let bytes = r.encode().unwrap();
        assert_eq!(&bytes[68..100], &[0; 32]);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
    }

    proptest! {
        #[test]
        fn roundtrip(seq in 1u64.., ts in any::<u64>(), code in 0usize..10, payload in proptest::collection::vec(any::<u8>(), 0..300),
                     key in any::<[u8; 32]>(), prev in any::<[u8; 32]>()) {
            let r = Record { event_type: EventType::ALL[code], seq, timestamp_ms: ts, key_id: key,
                             cosigner_key_id: None, prev_hash: prev, payload };
            prop_assert_eq!(Record::decode(&r.encode().unwrap()).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn any_single_byte_change_changes_the_hashes(pos in 0usize..163, bit in 0u8..8) {
            let good = sample().encode().unwrap();
            let mut bad = good.clone();
            bad[pos] ^= 1 << bit;
            prop_assert_ne!(entry_hash(&good), entry_hash(&bad));
            prop_assert_ne!(signing_digest(&good), signing_digest(&bad));
        }
    }
}
