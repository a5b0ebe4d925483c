//! APDU glue between vpcd and the PIV applet: command chaining, GET RESPONSE buffering,
//! card resets, and the few answers that make piv-authenticator look like a YubiKey 5 to
//! the `yubikey` crate (see [`PivCard::execute`]).
//!
//! Everything here reads APDUs straight off the socket: malformed input gets an ISO 7816
//! status word, never a panic.

use iso7816::command::{Command, CommandView, FromSliceError};
use iso7816::Status;

/// Largest command body we accept, chained parts included (a certificate PUT DATA is the
/// biggest thing the `yubikey` crate sends; a few KiB).
pub(crate) const MAX_COMMAND_DATA: usize = 4096;
/// Largest response the applet may produce in one go.
const MAX_RESPONSE: usize = 7609;
/// Largest response body in one short APDU; the rest waits for GET RESPONSE.
const SHORT_RESPONSE_MAX: usize = 256;

/// YubiKey firmware version we claim: the `yubikey` crate reads the serial only for
/// major 4 or 5, and would try 5.7-only features from 5.7 on.
pub(crate) const CLAIMED_VERSION: [u8; 3] = [5, 4, 3];

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
    /// First parts of a chained command (CLA bit 0x10), with the header of the first part.
    chain: Option<Box<Command<MAX_COMMAND_DATA>>>,
    /// Response bytes not yet fetched with GET RESPONSE.
    pending: Vec<u8>,
    /// Whether the management key has been proven since the last reset. piv-authenticator
    /// keeps that state across card resets; a real card does not, so we enforce it here.
    admin_authenticated: bool,
}

impl<A: Applet> PivCard<A> {
    /// Wrap `applet`; GET SERIAL answers `serial`.
    pub(crate) fn new(applet: A, serial: u32) -> Self {
        PivCard { applet, serial, chain: None, pending: Vec::new(), admin_authenticated: false }
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
        // VERIFY with P1=FF logs the PIN out.
        let logout = [0x00, INS_VERIFY, 0xFF, 0x80];
        if let Ok(view) = CommandView::try_from(&logout[..]) {
            let mut sink = heapless::Vec::<u8, 16>::new();
            // The applet answers 9000; there is nothing useful to do with a failure.
            let _ = self.applet.respond(view, sink.as_mut_view());
        }
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
            INS_YK_GET_VERSION => return success(&CLAIMED_VERSION),
            INS_YK_GET_SERIAL => return success(&self.serial.to_be_bytes()),
            INS_SELECT if p1 == 0x04 && view.data() == PIV_AID_SHORT => {
                return self.dispatch_select_full_aid(view);
            }
            INS_GET_DATA if p1 == 0x3F && p2 == 0xFF && view.data() == GET_KEY_HISTORY => {
                return status(Status::NotFound);
            }
            i if ADMIN_INSTRUCTIONS.contains(&i) && !self.admin_authenticated => {
                return status(Status::SecurityStatusNotSatisfied);
            }
            _ => {}
        }

        let mut reply = Box::new(heapless::Vec::<u8, MAX_RESPONSE>::new());
        let result = self.applet.respond(view, reply.as_mut_view());
        if ins == INS_SELECT && result.is_ok() {
            // The applet only accepts its own AID: PIV was (re)selected.
            self.log_out();
        }
        if ins == INS_GENERAL_AUTHENTICATE && p2 == MANAGEMENT_KEY_REF {
            // Mutual authentication ends with the card's answer to the host's challenge
            // (dynamic authentication template 7C holding a response, tag 82).
            self.admin_authenticated = result.is_ok() && reply.first() == Some(&0x7C) && reply.get(2) == Some(&0x82);
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
            reply.extend_from_slice(&self.answer).map_err(|_| Status::WrongLength)
        }
    }

    fn card() -> PivCard<Fake> {
        PivCard::new(Fake::default(), 12_345_678)
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
        let mut c = card();
        let generate = [0x00, 0x47, 0x00, 0x9C, 0x05, 0xAC, 0x03, 0x80, 0x01, 0x11, 0x00];
        assert_eq!(c.execute(&generate), vec![0x69, 0x82]);
        // Step 1 of mutual authentication (witness request) is not enough.
        c.applet.answer = vec![0x7C, 0x0A, 0x80, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        c.execute(&[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]);
        assert_eq!(c.execute(&generate), vec![0x69, 0x82]);
        // Step 2 answered with the card's response (tag 82): authenticated.
        c.applet.answer = vec![0x7C, 0x0A, 0x82, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        c.execute(&[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]);
        c.applet.answer.clear();
        assert_eq!(c.execute(&generate), vec![0x90, 0x00]);
        // A reset (new PC/SC connection) forgets it and logs the PIN out.
        c.reset();
        assert_eq!(c.execute(&generate), vec![0x69, 0x82]);
        let last = c.applet.seen.last().cloned();
        assert_eq!(last, Some((0x00, 0x20, 0xFF, 0x80, vec![])));
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
        c.applet.fail = Some(Status::SecurityStatusNotSatisfied);
        c.applet.answer = vec![0x7C, 0x0A, 0x82, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(c.execute(&[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]), vec![0x69, 0x82]);
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
