//! Token benchmark on the real stack (`scripts/pcscd.sh start` first): agent login and
//! PIN + 9c signature through ResetDesk, next to the same card work as bare APDUs over
//! `pcsc` transmit. Prints timings and the overhead ratio; asserts nothing about time.
//!
//! `cargo bench --bench token` (holds the virtual-reader lock while it runs). Short runs
//! with `RESETDESK_BENCH_QUICK=1`, and when run by `cargo test --all-targets` (no `--bench`).

use std::time::{Duration, Instant};

use resetdesk::ca::OrgCa;
use resetdesk::config::Config;
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::login::login;
use resetdesk::secret::Secret;
use resetdesk::token::card::PivCard;
use resetdesk::token::enrol::{enrol, EnrolRequest};
use resetdesk::token::registry::TokenRegistry;
use resetdesk::token::RecordSigner;
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT};

const PIN: &str = "246810";
const SELECT_PIV: [u8; 10] = [0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08];
const GET_SERIAL: [u8; 4] = [0x00, 0xF8, 0x00, 0x00];

/// Any failure aborts the benchmark with its error: the numbers would be meaningless.
type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Iterations: `full`, or a fifth of it (at least 3) for quick runs.
fn iterations(full: usize) -> usize {
    let quick = std::env::var_os("RESETDESK_BENCH_QUICK").is_some() || !std::env::args().any(|a| a == "--bench");
    if quick {
        (full / 5).max(3)
    } else {
        full
    }
}

/// Median and mean of `n` runs of `f`; the first failing run aborts.
fn time(n: usize, mut f: impl FnMut() -> BenchResult<()>) -> BenchResult<(Duration, Duration)> {
    let n = iterations(n);
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed())
        })
        .collect::<BenchResult<_>>()?;
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    Ok((samples[n / 2], mean))
}

fn report(what: &str, (median, mean): (Duration, Duration)) {
    println!("{what:<66} median {:>8.2} ms   mean {:>8.2} ms", ms(median), ms(mean));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VERIFY (PIN, padded with 0xFF to 8 bytes).
fn verify_apdu() -> Vec<u8> {
    let mut apdu = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    let mut pin = [0xFFu8; 8];
    pin[..PIN.len()].copy_from_slice(PIN.as_bytes());
    apdu.extend_from_slice(&pin);
    apdu
}

/// GENERAL AUTHENTICATE: ECDSA P-256 sign of a 32-byte digest with `slot`.
fn sign_apdu(slot: u8, digest: &[u8; 32]) -> Vec<u8> {
    let mut apdu = vec![0x00, 0x87, 0x11, slot, 0x26, 0x7C, 0x24, 0x82, 0x00, 0x81, 0x20];
    apdu.extend_from_slice(digest);
    apdu.push(0x00);
    apdu
}

fn transmit(card: &pcsc::Card, apdu: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    match card.transmit(apdu, &mut buf) {
        Ok(r) => r.to_vec(),
        Err(e) => {
            eprintln!("transmit failed: {e}");
            std::process::exit(1);
        }
    }
}

fn status_ok(resp: &[u8]) -> bool {
    resp.len() >= 2 && resp[resp.len() - 2..] == [0x90, 0x00]
}

fn main() -> BenchResult<()> {
    let _lock = lock_readers();
    let dir = tempfile::tempdir()?;
    let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    let mut directory = EmbeddedDirectory::open(dir.path(), &config)?;
    resetdesk::demo::init(&mut directory, OffsetDateTime::now_utc())?;
    let (ca, _) =
        OrgCa::init(dir.path(), &config.organisation, &Secret::from("bench CA passphrase"), OffsetDateTime::now_utc())?;
    let card = VirtualCard::insert(READER_0_PORT)?;
    {
        let mut piv = PivCard::open_reader(card.reader_name())?;
        let mut registry = TokenRegistry::open(dir.path())?;
        let req = EnrolRequest::factory_card("alice", Secret::from(PIN), Secret::from("87654321"));
        enrol(&mut piv, &ca, &mut registry, None, &[], &req, OffsetDateTime::now_utc())?;
    }
    println!("token benchmark: virtual card in {} (vpcd), serial {}", card.reader_name(), card.serial());

    // Raw APDUs over pcsc, no ResetDesk and no `yubikey` crate.
    let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
    let reader = std::ffi::CString::new(card.reader_name())?;
    let raw = ctx.connect(&reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)?;
    assert!(status_ok(&transmit(&raw, &SELECT_PIV)));
    let digest = [0x5Au8; 32];
    let raw_serial = time(100, || {
        let r = transmit(&raw, &GET_SERIAL);
        assert!(status_ok(&r) && r.len() == 6, "GET SERIAL: {r:02x?}");
        Ok(())
    })?;
    let raw_verify = time(50, || {
        let r = transmit(&raw, &verify_apdu());
        assert!(status_ok(&r));
        Ok(())
    })?;
    let raw_sign_9c = time(30, || {
        assert!(status_ok(&transmit(&raw, &verify_apdu())));
        let r = transmit(&raw, &sign_apdu(0x9C, &digest));
        assert!(status_ok(&r), "raw 9c sign: {r:02x?}");
        Ok(())
    })?;
    let raw_login = time(30, || {
        // The card work of a login: select, verify, sign a challenge with 9a.
        assert!(status_ok(&transmit(&raw, &SELECT_PIV)));
        assert!(status_ok(&transmit(&raw, &verify_apdu())));
        assert!(status_ok(&transmit(&raw, &sign_apdu(0x9A, &digest))));
        Ok(())
    })?;
    drop(raw);

    // Through ResetDesk.
    let full_login = time(20, || {
        login(&config, &directory, card.reader_name(), Secret::from(PIN), OffsetDateTime::now_utc())?;
        Ok(())
    })?;
    let mut session = login(&config, &directory, card.reader_name(), Secret::from(PIN), OffsetDateTime::now_utc())?;
    let full_sign = time(30, || {
        let signer = session.signer()?;
        signer.sign_digest(&digest)?;
        Ok(())
    })?;

    println!();
    report("raw APDU: GET SERIAL round trip", raw_serial);
    report("raw APDU: VERIFY PIN", raw_verify);
    report("raw APDU: VERIFY + sign 9c", raw_sign_9c);
    report("raw APDU: SELECT + VERIFY + sign 9a (login card work)", raw_login);
    report("ResetDesk: PivSigner::sign_digest (PIN + 9c)", full_sign);
    report("ResetDesk: login (open, PIN, 2 certs, challenge, dir, registry)", full_login);
    println!();
    println!("overhead ratio, 9c signature: {:.2}x raw APDUs (medians)", ms(full_sign.0) / ms(raw_sign_9c.0));
    println!("overhead ratio, login:        {:.2}x raw card work (medians)", ms(full_login.0) / ms(raw_login.0));
    drop(session);
    card.remove()?;
    Ok(())
}
