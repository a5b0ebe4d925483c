//! Running the `resetdesk` binary from integration tests: arguments, stdin (secrets are
//! read from there, never from arguments) and extra environment variables. The log
//! variables are cleared unless the test sets them.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// Run `resetdesk ARGS` with `stdin` and `env`; (exit code, stdout, stderr).
pub fn resetdesk_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_resetdesk"))
        .args(args)
        .env_remove("RESETDESK_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `resetdesk ARGS` with `stdin`; (exit code, stdout, stderr).
pub fn resetdesk(args: &[&str], stdin: &str) -> (i32, String, String) {
    resetdesk_env(args, stdin, &[])
}
