//! `chorus` commands that need no node: writing into a pipe whose reader is gone, and what
//! the keystore refuses to read or leaves readable.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn chorus(keystore: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
    command.arg("--keystore").arg(keystore).env_remove("CHORUS_JSON").env("CHORUS_PASSWORD", "pw").stdin(Stdio::null());
    command
}

/// Imports `chorusd dev` account `number` as `name`.
fn import_dev(keystore: &Path, name: &str, number: u32) {
    let imported =
        chorus(keystore).args(["wallet", "import", name, "--dev", &number.to_string()]).output().expect("chorus runs");
    assert!(imported.status.success(), "import: {}", String::from_utf8_lossy(&imported.stderr));
}

/// Runs `chorus` with `args` and the keystore `keystore`, its stdout a pipe already closed by
/// its reader.
fn into_closed_pipe(keystore: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    chorus(keystore).args(args).stdout(writer).stderr(Stdio::piped()).output().expect("chorus runs")
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keystore = dir.path().join("keys");
    import_dev(&keystore, "dev1", 1);
    import_dev(&keystore, "dev2", 2);
    // (arguments, exit code): what each command exits with when its output cannot be written.
    let cases: [(&[&str], i32); 8] = [
        (&["wallet", "list"], 0),
        (&["--json", "wallet", "list"], 0),
        (&["wallet", "export", "dev1"], 0),
        (&["--json", "wallet", "export", "dev1"], 0),
        (&["completions", "bash"], 0),
        (&["--help"], 0),
        (&["--version"], 0),
        // A failure printed as JSON on stdout keeps its own exit code (5: keystore).
        (&["--json", "balance", "nobody"], 5),
    ];
    for (args, code) in cases {
        let output = into_closed_pipe(&keystore, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "chorus {args:?} panicked: {stderr}");
        assert_eq!(output.status.code(), Some(code), "chorus {args:?}: {stderr}");
    }
}

#[test]
fn every_keys_balance_needs_a_key_and_says_so_before_any_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No node listens here: the empty keystore is refused first.
    let output = chorus(&dir.path().join("keys"))
        .args(["--rpc", "http://127.0.0.1:9", "balance"])
        .output()
        .expect("chorus runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(13), "an input failure: {stderr}");
    assert!(stderr.contains("holds no keys") && stderr.contains("chorus wallet new"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[cfg(unix)]
#[test]
fn the_keystore_is_created_private_and_a_password_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let keystore = dir.path().join("keys");
    import_dev(&keystore, "dev1", 1);
    let mode = std::fs::metadata(&keystore).expect("the keystore").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "keystore directory mode {mode:o}");

    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "pw\n").expect("write");
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let export = |json: bool| {
        let mut command = chorus(&keystore);
        command.env_remove("CHORUS_PASSWORD").arg("--password-file").arg(&password_file);
        if json {
            command.arg("--json");
        }
        command.args(["wallet", "export", "dev1"]).output().expect("chorus runs")
    };
    let refused = export(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "a readable password file is a keystore failure: {stderr}");
    assert!(stderr.contains("password file") && stderr.contains("chmod 600"), "{stderr}");
    assert!(refused.stdout.is_empty(), "nothing exported");

    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let exported = export(true);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let exported: serde_json::Value = serde_json::from_slice(&exported.stdout).expect("JSON");
    assert_eq!(exported["name"], "dev1");
    assert_eq!(exported["seed"].as_str().map(str::len), Some(64));
}
