//! What a newcomer meets first, through the real binary: start-up failures that say what to
//! change, and a `token` command that refuses what the server would not honour.

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
fn a_missing_sqlite_file_is_named_with_the_url_that_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", db.display());
    let out = workspaced(dir.path(), &["migrate", "--database-url", &url]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(err.contains(&format!("{url}?mode=rwc")), "{err}");
    // SeaORM's variant name and SQLite's result code say nothing to an operator.
    assert!(
        !err.contains("Connection Error") && !err.contains("code: 14"),
        "{err}"
    );
    assert!(!db.exists());
}

#[test]
fn a_missing_sqlite_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("data");
    let url = format!("sqlite://{}/w.db?mode=rwc", missing.display());
    let out = workspaced(dir.path(), &["migrate", "--database-url", &url]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "the directory {} does not exist",
            missing.display()
        )),
        "{err}"
    );
}

/// PostgreSQL reports the line of its C source that raised an error, and sqlx printed it
/// ("database \"x\" does not exist at line 948"). Runs when the suite runs on PostgreSQL.
#[test]
fn a_missing_postgres_database_is_told_without_the_servers_source_line() {
    let Ok(base) = std::env::var("WORKSPACED_TEST_DATABASE_URL") else {
        return;
    };
    let Some((prefix, _)) = base
        .rsplit_once('/')
        .filter(|_| base.starts_with("postgres"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("wst_absent_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{prefix}/{name}");
    let out = workspaced(dir.path(), &["migrate", "--database-url", &url]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("database \"{name}\" does not exist")),
        "{err}"
    );
    assert!(!err.contains(" at line "), "{err}");
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
