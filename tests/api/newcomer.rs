//! What a newcomer meets first, through the real binary: a `token` command that refuses what
//! the server would not honour.

use std::process::{Command, Output};

fn workspaced(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_workspaced"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn token_refuses_an_unknown_role_and_a_ttl_that_is_not_positive() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), "a-secret-for-the-token-command").unwrap();
    let base = [
        "token",
        "--subject",
        "alice",
        "--jwt-hs256-secret-file",
        "k",
    ];
    let ok = workspaced(
        dir.path(),
        &[&base[..], &["--role", "platform-admin"][..]].concat(),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    for (extra, says) in [
        (&["--role", "admin"][..], "platform-admin"),
        (&["--ttl", "0s"], "at least 1s"),
        (&["--ttl", "-1h"], "positive"),
    ] {
        let out = workspaced(dir.path(), &[&base[..], extra].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(out.stdout.is_empty(), "{extra:?} printed a token");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}
