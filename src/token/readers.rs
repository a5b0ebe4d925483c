//! PC/SC readers and the cards in them, as the lock screen shows them.

use serde::Serialize;

/// What the lock screen needs to know about the smart-card subsystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ReaderStatus {
    /// pcscd is not running (or not reachable): the app cannot see any key.
    NoService,
    /// pcscd runs but reports no readers.
    NoReaders,
    /// Readers found; each says whether a card is present.
    Readers { readers: Vec<ReaderInfo> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
    /// A vpcd reader ("Virtual PCD ..."): whatever card sits in it is a demo token.
    pub is_virtual: bool,
}

/// True for readers of the vsmartcard `vpcd` driver, which only ever hold virtual cards.
pub fn is_virtual_reader(name: &str) -> bool {
    name.starts_with("Virtual PCD")
}

/// Ask pcscd for its readers and whether each holds a card. Never panics: a missing
/// service or reader is a state, not an error.
pub fn reader_status() -> ReaderStatus {
    let ctx = match pcsc::Context::establish(pcsc::Scope::User) {
        Ok(c) => c,
        Err(_) => return ReaderStatus::NoService,
    };
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => return ReaderStatus::NoReaders,
        // NoService, ServiceStopped and anything else: the app cannot see any key.
        Err(_) => return ReaderStatus::NoService,
    };
    if names.is_empty() {
        return ReaderStatus::NoReaders;
    }
    let mut states: Vec<pcsc::ReaderState> =
        names.iter().map(|n| pcsc::ReaderState::new(n.clone(), pcsc::State::UNAWARE)).collect();
    let ok = ctx.get_status_change(std::time::Duration::from_millis(0), &mut states).is_ok();
    let readers = states
        .iter()
        .map(|s| {
            let name = s.name().to_string_lossy().into_owned();
            ReaderInfo {
                is_virtual: is_virtual_reader(&name),
                card_present: ok && s.event_state().contains(pcsc::State::PRESENT),
                name,
            }
        })
        .collect();
    ReaderStatus::Readers { readers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpcd_readers_are_virtual() {
        assert!(is_virtual_reader("Virtual PCD 00 00"));
        assert!(!is_virtual_reader("Yubico YubiKey OTP+FIDO+CCID 00 00"));
    }
}
