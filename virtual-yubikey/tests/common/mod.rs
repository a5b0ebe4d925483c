//! Helpers shared by the integration tests.

/// Whether pcscd reports a card in `reader` right now, asked independently of the
/// crate's own waiting code.
pub fn reader_has_card(reader: &str) -> bool {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("PC/SC context");
    let name = std::ffi::CString::new(reader).expect("reader name");
    let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    ctx.get_status_change(std::time::Duration::ZERO, &mut states).expect("reader state");
    states[0].event_state().contains(pcsc::State::PRESENT)
}
