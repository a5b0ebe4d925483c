//! APDU glue between vpcd and the PIV applet: command chaining, GET RESPONSE buffering,
//! card resets, and the answers that make piv-authenticator look like a YubiKey 5 of the
//! chosen [`Firmware`] (see [`PivCard::execute`]): version, serial, and the management
//! key, which the glue keeps itself ([`crate::management`]).
//!
//! Everything here reads APDUs straight off the socket: malformed input gets an ISO 7816
//! status word, never a panic.

use iso7816::command::{Command, CommandView, FromSliceError};
use iso7816::Status;

use crate::management::{self, AuthStep, ManagementKey};
use crate::Firmware;

/// Largest command body we accept, chained parts included (a certificate PUT DATA is the
/// biggest thing the `yubikey` crate sends; a few KiB).
pub(crate) const MAX_COMMAND_DATA: usize = 4096;
/// Largest response the applet may produce in one go.
const MAX_RESPONSE: usize = 7609;
/// Largest response body in one short APDU; the rest waits for GET RESPONSE.
const SHORT_RESPONSE_MAX: usize = 256;

/// The short (truncated) PIV AID that the `yubikey` crate selects.
const PIV_AID_SHORT: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// The full PIV AID piv-authenticator insists on.
const PIV_AID_FULL: [u8; 11] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00];
/// GET DATA body for the Key History object, which piv-authenticator pre-creates in a
/// form the `yubikey` crate then mis-parses as a certificate.
const GET_KEY_HISTORY: [u8; 5] = [0x5C, 0x03, 0x5F, 0xC1, 0x0C];

const INS_VERIFY: u8 = 0x20;
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
const INS_GET_RESPONSE: u8 = 0xC0;
const INS_GET_DATA: u8 = 0xCB;
const INS_SELECT: u8 = 0xA4;
const INS_YK_GET_SERIAL: u8 = 0xF8;
const INS_YK_GET_VERSION: u8 = 0xFD;
const INS_YK_SET_MANAGEMENT_KEY: u8 = 0xFF;
const INS_YK_GET_METADATA: u8 = 0xF7;
const INS_YK_RESET: u8 = 0xFB;
/// Instructions that need the management key (YubiKey PIV): PUT DATA, GENERATE, SET
/// MANAGEMENT KEY, IMPORT KEY, SET PIN RETRIES.
const ADMIN_INSTRUCTIONS: [u8; 5] = [0xDB, 0x47, 0xFF, 0xFE, 0xFA];
/// Key reference of the PIV card management key in GENERAL AUTHENTICATE.
const MANAGEMENT_KEY_REF: u8 = 0x9B;

/// The PIV applet as the glue drives it. Implemented by piv-authenticator; unit tests use
/// a scripted fake.
pub(crate) trait Applet {
    /// Process one complete (unchained) command; append the response body to `reply`.
    fn respond(&mut self, command: CommandView<'_>, reply: &mut heapless::VecView<u8>) -> iso7816::Result;
}

impl<T: piv_authenticator::Client> Applet for piv_authenticator::Authenticator<T> {
    fn respond(&mut self, command: CommandView<'_>, reply: &mut heapless::VecView<u8>) -> iso7816::Result {
        piv_authenticator::Authenticator::respond(self, command, reply)
    }
}

/// A PIV applet wrapped to behave like a YubiKey 5 card in a vpcd reader.
pub(crate) struct PivCard<A> {
    applet: A,
    serial: u32,
    firmware: Firmware,
    /// The management key (9B) as the host sees it; the applet's own stays the factory 3DES.
    management: ManagementKey,
    /// First parts of a chained command (CLA bit 0x10), with the header of the first part.
    chain: Option<Box<Command<MAX_COMMAND_DATA>>>,
    /// Response bytes not yet fetched with GET RESPONSE.
    pending: Vec<u8>,
    /// Whether the management key has been proven since the last reset. piv-authenticator
    /// keeps that state across card resets; a real card does not, so we enforce it here.
    admin_authenticated: bool,
}

impl<A: Applet> PivCard<A> {
    /// Wrap `applet` as a factory-fresh card with `firmware`; GET SERIAL answers `serial`.
    pub(crate) fn new(applet: A, serial: u32, firmware: Firmware) -> Self {
        PivCard {
            applet,
            serial,
            firmware,
            management: ManagementKey::factory(firmware.default_management_algorithm()),
            chain: None,
            pending: Vec::new(),
            admin_authenticated: false,
        }
    }

    /// Card reset or power cycle: forget volatile state the way a real card does
    /// (PIN verification, management-key authentication, partial chains and responses).
    pub(crate) fn reset(&mut self) {
        self.chain = None;
        self.pending.clear();
        self.log_out();
    }

    /// Drop the PIN verification and the management-key authentication, as a YubiKey does
    /// on reset and on SELECT of the PIV applet. piv-authenticator does neither itself.
    fn log_out(&mut self) {
        self.admin_authenticated = false;
        self.management.reset();
        // VERIFY with P1=FF logs the PIN out. The applet answers 9000; there is nothing
        // useful to do with a failure.
        let _ = self.applet_command(&[0x00, INS_VERIFY, 0xFF, 0x80]);
    }

    /// Send one short command of the glue's own to the applet; its response body.
    fn applet_command(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Status> {
        let view = CommandView::try_from(apdu).map_err(|_| Status::UnspecifiedNonpersistentExecutionError)?;
        let mut reply = heapless::Vec::<u8, 64>::new();
        self.applet.respond(view, reply.as_mut_view())?;
        Ok(reply.to_vec())
    }

    /// GENERAL AUTHENTICATE on 9B, answered by the glue's management key. When the host
    /// has proven the key, the applet's administration is opened with the applet's own
    /// key (single authentication, factory 3DES), so that it accepts GENERATE and PUT DATA.
    fn authenticate_management(&mut self, p1: u8, data: &[u8]) -> Vec<u8> {
        self.admin_authenticated = false;
        match self.management.general_authenticate(p1, data) {
            Ok(AuthStep::Witness(body)) => success(&body),
            Ok(AuthStep::Authenticated(body)) => {
                if !self.open_applet_administration() {
                    return status(Status::UnspecifiedNonpersistentExecutionError);
                }
                self.admin_authenticated = true;
                success(&body)
            }
            Err(sw) => status(sw),
        }
    }

    fn open_applet_administration(&mut self) -> bool {
        let challenge = self.applet_command(&[
            0x00,
            INS_GENERAL_AUTHENTICATE,
            0x03,
            MANAGEMENT_KEY_REF,
            0x04,
            0x7C,
            0x02,
            0x81,
            0x00,
        ]);
        // Answer: 7C 0A 81 08 <challenge>.
        let Some(response) = challenge.ok().and_then(|c| c.get(4..12).and_then(management::applet_response)) else {
            return false;
        };
        let mut apdu = vec![0x00, INS_GENERAL_AUTHENTICATE, 0x03, MANAGEMENT_KEY_REF, response.len() as u8];
        apdu.extend_from_slice(&response);
        self.applet_command(&apdu).is_ok()
    }

    /// Execute one command APDU and return the response APDU (body + SW1 SW2).
    pub(crate) fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        let view = match CommandView::try_from(apdu) {
            Ok(v) => v,
            Err(FromSliceError::InvalidClass) => return status(Status::ClassNotSupported),
            Err(_) => return status(Status::WrongLength),
        };
        let ins = u8::from(view.instruction());

        if ins == INS_GET_RESPONSE && !view.class().chain().not_the_last() {
            return self.get_response(view.expected());
        }
        // Any other command abandons an unfetched response.
        self.pending.clear();

        if view.class().chain().not_the_last() {
            return self.add_chain_part(view);
        }
        match self.chain.take() {
            None => self.dispatch(view),
            Some(mut first) => {
                if u8::from(first.instruction()) != ins {
                    return status(Status::LastCommandOfChainExpected);
                }
                if first.extend_from_command_view(view).is_err() {
                    return status(Status::WrongLength);
                }
                self.dispatch(first.as_view())
            }
        }
    }

    fn add_chain_part(&mut self, view: CommandView<'_>) -> Vec<u8> {
        let ok = match self.chain.as_mut() {
            None => match view.to_owned::<MAX_COMMAND_DATA>() {
                Ok(cmd) => {
                    self.chain = Some(Box::new(cmd));
                    true
                }
                Err(_) => false,
            },
            Some(first) if u8::from(first.instruction()) != u8::from(view.instruction()) => {
                self.chain = None;
                return status(Status::LastCommandOfChainExpected);
            }
            Some(first) => first.data_mut().extend_from_slice(view.data()).is_ok(),
        };
        if ok {
            status(Status::Success)
        } else {
            self.chain = None;
            status(Status::WrongLength)
        }
    }

    /// A complete command: answer the YubiKey-compatibility cases here, pass the rest on.
    fn dispatch(&mut self, view: CommandView<'_>) -> Vec<u8> {
        let ins = u8::from(view.instruction());
        let (p1, p2) = (view.p1, view.p2);
        match ins {
            INS_YK_GET_VERSION => return success(&self.firmware.version()),
            INS_YK_GET_SERIAL => return success(&self.serial.to_be_bytes()),
            INS_GENERAL_AUTHENTICATE if p2 == MANAGEMENT_KEY_REF => {
                return self.authenticate_management(p1, view.data());
            }
            INS_YK_GET_METADATA if p2 == MANAGEMENT_KEY_REF => return success(&self.management.metadata()),
            INS_SELECT if p1 == 0x04 && view.data() == PIV_AID_SHORT => {
                return self.dispatch_select_full_aid(view);
            }
            INS_GET_DATA if p1 == 0x3F && p2 == 0xFF && view.data() == GET_KEY_HISTORY => {
                return status(Status::NotFound);
            }
            i if ADMIN_INSTRUCTIONS.contains(&i) && !self.admin_authenticated => {
                return status(Status::SecurityStatusNotSatisfied);
            }
            INS_YK_SET_MANAGEMENT_KEY => {
                return match self.management.set(view.data()) {
                    Ok(()) => status(Status::Success),
                    Err(sw) => status(sw),
                };
            }
            _ => {}
        }

        let mut reply = Box::new(heapless::Vec::<u8, MAX_RESPONSE>::new());
        let result = self.applet.respond(view, reply.as_mut_view());
        if ins == INS_SELECT && result.is_ok() {
            // The applet only accepts its own AID: PIV was (re)selected.
            self.log_out();
        }
        if ins == INS_YK_RESET && result.is_ok() {
            self.management = ManagementKey::factory(self.firmware.default_management_algorithm());
            self.admin_authenticated = false;
        }
        match result {
            Ok(()) => self.respond_body(&reply, view.extended),
            Err(sw) => status(sw),
        }
    }

    fn dispatch_select_full_aid(&mut self, view: CommandView<'_>) -> Vec<u8> {
        let mut apdu = vec![0x00, INS_SELECT, view.p1, view.p2, PIV_AID_FULL.len() as u8];
        apdu.extend_from_slice(&PIV_AID_FULL);
        apdu.push(0x00);
        match CommandView::try_from(&apdu[..]) {
            Ok(full) => self.dispatch(full),
            Err(_) => status(Status::UnspecifiedNonpersistentExecutionError),
        }
    }

    /// Send `body` with 9000, or its first part with 61xx if a short APDU cannot hold it.
    fn respond_body(&mut self, body: &[u8], extended: bool) -> Vec<u8> {
        if extended || body.len() <= SHORT_RESPONSE_MAX {
            return success(body);
        }
        let (now, later) = body.split_at(SHORT_RESPONSE_MAX);
        self.pending = later.to_vec();
        more_data(now, self.pending.len())
    }

    fn get_response(&mut self, le: usize) -> Vec<u8> {
        if self.pending.is_empty() {
            return status(Status::ConditionsOfUseNotSatisfied);
        }
        let take = le.clamp(1, SHORT_RESPONSE_MAX).min(self.pending.len());
        let chunk: Vec<u8> = self.pending.drain(..take).collect();
        if self.pending.is_empty() {
            success(&chunk)
        } else {
            more_data(&chunk, self.pending.len())
        }
    }
}

impl<A: Applet> vpicc::VSmartCard for PivCard<A> {
    fn power_on(&mut self) {
        self.reset();
    }
    fn power_off(&mut self) {
        self.reset();
    }
    fn reset(&mut self) {
        PivCard::reset(self);
    }
    fn execute(&mut self, msg: &[u8]) -> Vec<u8> {
        PivCard::execute(self, msg)
    }
}

fn status(sw: Status) -> Vec<u8> {
    let sw: [u8; 2] = sw.into();
    sw.to_vec()
}

fn success(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(body);
    out.extend_from_slice(&[0x90, 0x00]);
    out
}

/// `body` followed by 61xx: xx more bytes wait (00 meaning 256 or more).
fn more_data(body: &[u8], remaining: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(body);
    out.push(0x61);
    out.push(u8::try_from(remaining).unwrap_or(0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake applet: records the commands it sees (header + body) and answers scripted bodies.
    #[derive(Default)]
    struct Fake {
        seen: Vec<(u8, u8, u8, u8, Vec<u8>)>,
        answer: Vec<u8>,
        fail: Option<Status>,
    }

    impl Applet for Fake {
        fn respond(&mut self, c: CommandView<'_>, reply: &mut heapless::VecView<u8>) -> iso7816::Result {
            self.seen.push((c.class().into_inner(), u8::from(c.instruction()), c.p1, c.p2, c.data().to_vec()));
            if let Some(sw) = self.fail {
                return Err(sw);
            }
            if u8::from(c.instruction()) == INS_GENERAL_AUTHENTICATE && c.data() == [0x7C, 0x02, 0x81, 0x00] {
                // The glue opening the applet's administration: a challenge of zeros.
                return reply
                    .extend_from_slice(&[0x7C, 0x0A, 0x81, 0x08, 0, 0, 0, 0, 0, 0, 0, 0])
                    .map_err(|_| Status::WrongLength);
            }
            reply.extend_from_slice(&self.answer).map_err(|_| Status::WrongLength)
        }
    }

    fn card() -> PivCard<Fake> {
        PivCard::new(Fake::default(), 12_345_678, Firmware::V5_4)
    }

    /// Mutual authentication with `key` as a host does it: true when the card accepted it.
    fn authenticate(c: &mut PivCard<Fake>, algorithm: management::Algorithm, key: &[u8; 24]) -> bool {
        let code = algorithm.code();
        let n = algorithm.block_len();
        let r = c.execute(&[0x00, 0x87, code, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]);
        if r.len() != n + 6 || r[n + 4..] != [0x90, 0x00] {
            return false;
        }
        let mut witness = r[4..4 + n].to_vec();
        algorithm.crypt(key, &mut witness, false);
        let mut apdu = vec![0x00, 0x87, code, 0x9B, (2 * n + 6) as u8, 0x7C, (2 * n + 4) as u8, 0x80, n as u8];
        apdu.extend_from_slice(&witness);
        apdu.extend_from_slice(&[0x81, n as u8]);
        apdu.extend(std::iter::repeat_n(0x33, n));
        apdu.push(0x00);
        c.execute(&apdu).ends_with(&[0x90, 0x00])
    }

    #[test]
    fn version_and_serial_are_answered_by_the_glue() {
        let mut c = card();
        assert_eq!(c.execute(&[0x00, 0xFD, 0, 0, 0]), vec![5, 4, 3, 0x90, 0x00]);
        let mut serial = 12_345_678u32.to_be_bytes().to_vec();
        serial.extend_from_slice(&[0x90, 0x00]);
        assert_eq!(c.execute(&[0x00, 0xF8, 0, 0, 0]), serial);
        assert!(c.applet.seen.is_empty());
    }

    #[test]
    fn short_piv_aid_is_selected_as_the_full_aid() {
        let mut c = card();
        let r = c.execute(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]);
        assert_eq!(r, vec![0x90, 0x00]);
        assert_eq!(c.applet.seen[0].4, PIV_AID_FULL.to_vec());
        // Selecting PIV logs the PIN out, as on a YubiKey.
        assert_eq!(c.applet.seen[1], (0x00, 0x20, 0xFF, 0x80, vec![]));
        assert_eq!(c.applet.seen.len(), 2);
    }

    #[test]
    fn key_history_object_is_not_found() {
        let mut c = card();
        let r = c.execute(&[0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x0C, 0x00]);
        assert_eq!(r, vec![0x6A, 0x82]);
        // Other objects still reach the applet.
        c.execute(&[0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x0A, 0x00]);
        assert_eq!(c.applet.seen.len(), 1);
    }

    #[test]
    fn chained_command_reaches_the_applet_as_one() {
        let mut c = card();
        assert_eq!(c.execute(&[0x10, 0xDB, 0x3F, 0xFF, 0x02, 1, 2]), vec![0x90, 0x00]);
        assert_eq!(c.execute(&[0x10, 0xDB, 0x3F, 0xFF, 0x01, 3]), vec![0x90, 0x00]);
        c.admin_authenticated = true;
        assert_eq!(c.execute(&[0x00, 0xDB, 0x3F, 0xFF, 0x01, 4]), vec![0x90, 0x00]);
        assert_eq!(c.applet.seen, vec![(0x00, 0xDB, 0x3F, 0xFF, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn chain_with_a_different_instruction_is_rejected() {
        let mut c = card();
        c.execute(&[0x10, 0xDB, 0x3F, 0xFF, 0x01, 1]);
        assert_eq!(c.execute(&[0x00, 0x47, 0x00, 0x9A, 0x01, 2]), vec![0x68, 0x83]);
        assert!(c.applet.seen.is_empty());
    }

    #[test]
    fn oversized_chain_is_refused_not_panicking() {
        let mut c = card();
        let mut part = vec![0x10, 0xDB, 0x3F, 0xFF, 0xFF];
        part.extend(std::iter::repeat_n(0xAA, 255));
        let fitting = MAX_COMMAND_DATA / 255;
        for _ in 0..fitting {
            assert_eq!(c.execute(&part), vec![0x90, 0x00]);
        }
        assert_eq!(c.execute(&part), vec![0x67, 0x00]);
        assert!(c.chain.is_none(), "the overflowing chain is dropped");
        assert!(c.applet.seen.is_empty());
    }

    #[test]
    fn long_response_is_fetched_with_get_response() {
        let mut c = card();
        c.applet.answer = (0..600u32).map(|i| i as u8).collect();
        let r1 = c.execute(&[0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x05, 0x00]);
        assert_eq!(r1.len(), 258);
        assert_eq!(&r1[256..], &[0x61, 0x00]); // 344 left: "256 or more"
        let r2 = c.execute(&[0x00, 0xC0, 0x00, 0x00, 0x00]);
        assert_eq!(&r2[256..], &[0x61, 88]);
        let r3 = c.execute(&[0x00, 0xC0, 0x00, 0x00, 88]);
        assert_eq!(&r3[88..], &[0x90, 0x00]);
        let all: Vec<u8> = [&r1[..256], &r2[..256], &r3[..88]].concat();
        assert_eq!(all, c.applet.answer);
        assert_eq!(c.execute(&[0x00, 0xC0, 0x00, 0x00, 0x00]), vec![0x69, 0x85]);
    }

    #[test]
    fn admin_commands_need_a_fresh_management_key_authentication() {
        use management::{Algorithm, FACTORY_KEY};
        let mut c = card();
        let generate = [0x00, 0x47, 0x00, 0x9C, 0x05, 0xAC, 0x03, 0x80, 0x01, 0x11, 0x00];
        assert_eq!(c.execute(&generate), vec![0x69, 0x82]);
        // Step 1 of mutual authentication (witness request) is not enough.
        c.execute(&[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]);
        assert_eq!(c.execute(&generate), vec![0x69, 0x82]);
        // The whole authentication: the glue also opens the applet's administration
        // (single authentication with the applet's factory 3DES key).
        assert!(authenticate(&mut c, Algorithm::TripleDes, &FACTORY_KEY));
        let opened = c.applet.seen.iter().filter(|s| s.1 == 0x87).map(|s| s.4.clone()).collect::<Vec<_>>();
        assert_eq!(opened.len(), 2, "no host 9B command reached the applet: {opened:02x?}");
        assert_eq!(opened[0], vec![0x7C, 0x02, 0x81, 0x00]);
        let mut expected = vec![0u8; 8];
        Algorithm::TripleDes.crypt(&FACTORY_KEY, &mut expected, true);
        assert_eq!(opened[1][4..], expected[..]);
        assert_eq!(c.execute(&generate), vec![0x90, 0x00]);
        // A reset (new PC/SC connection) forgets it and logs the PIN out.
        c.reset();
        assert_eq!(c.execute(&generate), vec![0x69, 0x82]);
        let last = c.applet.seen.last().cloned();
        assert_eq!(last, Some((0x00, 0x20, 0xFF, 0x80, vec![])));
    }

    #[test]
    fn a_5_7_card_has_an_aes_192_factory_key_and_refuses_3des() {
        use management::{Algorithm, FACTORY_KEY};
        let mut c = PivCard::new(Fake::default(), 1, Firmware::V5_7);
        assert_eq!(c.execute(&[0x00, 0xFD, 0, 0, 0]), vec![5, 7, 1, 0x90, 0x00]);
        assert_eq!(c.execute(&[0x00, 0xF7, 0x00, 0x9B, 0x00])[..3], [0x01, 0x01, 0x0A]);
        assert_eq!(c.execute(&[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]), vec![0x6A, 0x80]);
        assert!(!authenticate(&mut c, Algorithm::TripleDes, &FACTORY_KEY));
        assert!(authenticate(&mut c, Algorithm::Aes192, &FACTORY_KEY));
        // A new AES-192 key: the factory one stops working, metadata says "not default".
        let mut set = vec![0x00, 0xFF, 0xFF, 0xFF, 27, 0x0A, 0x9B, 24];
        set.extend_from_slice(&[0x42; 24]);
        assert_eq!(c.execute(&set), vec![0x90, 0x00]);
        assert_eq!(c.execute(&[0x00, 0xF7, 0x00, 0x9B, 0x00]), vec![1, 1, 0x0A, 2, 2, 0, 1, 5, 1, 0, 0x90, 0x00]);
        assert!(!authenticate(&mut c, Algorithm::Aes192, &FACTORY_KEY));
        assert!(authenticate(&mut c, Algorithm::Aes192, &[0x42; 24]));
        assert!(c.applet.seen.iter().all(|s| s.1 != 0xFF), "SET MANAGEMENT KEY stays in the glue");
        // PIV reset: back to the factory AES-192 key.
        c.execute(&[0x00, 0xFB, 0x00, 0x00]);
        assert!(authenticate(&mut c, Algorithm::Aes192, &FACTORY_KEY));
    }

    #[test]
    fn setting_the_management_key_needs_the_current_one() {
        let mut c = card();
        let mut set = vec![0x00, 0xFF, 0xFF, 0xFF, 27, 0x0A, 0x9B, 24];
        set.extend_from_slice(&[0x42; 24]);
        assert_eq!(c.execute(&set), vec![0x69, 0x82]);
        assert!(authenticate(&mut c, management::Algorithm::TripleDes, &management::FACTORY_KEY));
    }

    #[test]
    fn selecting_piv_again_ends_the_management_login() {
        let mut c = card();
        c.admin_authenticated = true;
        c.execute(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]);
        assert!(!c.admin_authenticated);
        // A SELECT the applet refuses (another AID) changes nothing.
        c.admin_authenticated = true;
        c.applet.fail = Some(Status::NotFound);
        c.execute(&[0x00, 0xA4, 0x04, 0x00, 0x03, 0xA0, 0x00, 0x00]);
        assert!(c.admin_authenticated);
    }

    #[test]
    fn failed_management_authentication_does_not_authenticate() {
        let mut c = card();
        assert!(!authenticate(&mut c, management::Algorithm::TripleDes, &[0x24; 24]));
        assert!(!c.admin_authenticated);
        // The applet refusing its own administration leaves the card locked too.
        c.applet.fail = Some(Status::SecurityStatusNotSatisfied);
        assert!(!authenticate(&mut c, management::Algorithm::TripleDes, &management::FACTORY_KEY));
        assert!(!c.admin_authenticated);
    }

    #[test]
    fn malformed_apdus_get_status_words() {
        let mut c = card();
        assert_eq!(c.execute(&[]), vec![0x67, 0x00]);
        assert_eq!(c.execute(&[0x00, 0xA4]), vec![0x67, 0x00]);
        // Lc says 5 bytes, 1 present.
        assert_eq!(c.execute(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0]), vec![0x67, 0x00]);
        assert_eq!(c.execute(&[0xFF, 0xA4, 0x04, 0x00]), vec![0x6E, 0x00]);
        assert!(c.applet.seen.is_empty());
    }
}
