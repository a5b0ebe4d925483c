//! The `virtual-yubikey` demo binary: announces the card, keeps it inserted until
//! SIGTERM, then removes it and exits cleanly. Needs `scripts/pcscd.sh start` first.

mod common;
use common::reader_has_card;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use virtual_yubikey::{lock_readers, READER_1_PORT};

#[test]
fn binary_inserts_until_sigterm_then_removes_the_card() {
    let _lock = lock_readers();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtual-yubikey"))
        .args(["--port", &READER_1_PORT.to_string(), "--serial", "31337"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start virtual-yubikey");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();

    // Blocks until the binary has seen pcscd report the card (or exits early).
    let first = lines.next().expect("a line before exiting").expect("utf-8 line");
    // The demo card acts as a YubiKey 5.7 (AES-192 management key) unless told otherwise.
    assert_eq!(first, "virtual PIV card inserted in Virtual PCD 00 01 (serial 31337, firmware 5.7.1)");
    assert!(reader_has_card("Virtual PCD 00 01"));

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for virtual-yubikey");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, ["virtual PIV card removed from Virtual PCD 00 01"]);
    assert!(!reader_has_card("Virtual PCD 00 01"), "the card is gone once it exits");
}

#[test]
fn binary_acts_as_a_5_4_card_when_told_and_rejects_unknown_firmware() {
    let out = Command::new(env!("CARGO_BIN_EXE_virtual-yubikey"))
        .args(["--port", &READER_1_PORT.to_string(), "--firmware", "5.2"])
        .output()
        .expect("run virtual-yubikey");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5.4 (3DES) or 5.7 (AES-192)"), "{stderr}");

    let _lock = lock_readers();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtual-yubikey"))
        .args(["--port", &READER_1_PORT.to_string(), "--serial", "31338", "--firmware", "5.4"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start virtual-yubikey");
    let first = BufReader::new(child.stdout.take().expect("piped stdout")).lines().next();
    let first = first.expect("a line before exiting").expect("utf-8 line");
    assert_eq!(first, "virtual PIV card inserted in Virtual PCD 00 01 (serial 31338, firmware 5.4.3)");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(killed.success());
    assert!(child.wait().expect("wait for virtual-yubikey").success());
}

#[test]
fn binary_rejects_a_port_that_is_not_a_vpcd_reader() {
    let out = Command::new(env!("CARGO_BIN_EXE_virtual-yubikey"))
        .args(["--port", "35965"])
        .output()
        .expect("run virtual-yubikey");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("35963"), "the message names the valid ports: {stderr}");
    assert!(out.stdout.is_empty());
}
