//! The SQLite store against a file of its own: durability, rotations, and readers that do not
//! wait for the writer.

use super::*;

#[test]
fn survives_reopening_and_refuses_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/gatehouse.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.revoke("a", 100).unwrap();
        s.revoke("old", 5).unwrap();
        assert!(s.use_assertion("c", "j", 100, 10).unwrap());
        assert!(!s.use_assertion("c", "j", 100, 10).unwrap());
        assert!(s.use_assertion("other", "j", 100, 10).unwrap());
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.revoked(10).unwrap(), vec![("a".to_string(), 100)]);
    assert!(!s.use_assertion("c", "j", 100, 50).unwrap());
    s.purge(200).unwrap();
    assert!(s.revoked(0).unwrap().is_empty());
    assert!(s.use_assertion("c", "j", 300, 200).unwrap());
}

#[test]
fn a_change_by_another_process_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let gateway = SqliteStore::open(&path).unwrap();
    assert!(gateway.changed_elsewhere().unwrap(), "the first answer");
    assert!(!gateway.changed_elsewhere().unwrap(), "nothing happened");
    // the command line opens the same file and revokes a token
    SqliteStore::open(&path).unwrap().revoke("j", 100).unwrap();
    assert!(gateway.changed_elsewhere().unwrap());
    assert!(!gateway.changed_elsewhere().unwrap());
    assert_eq!(gateway.revoked(10).unwrap(), vec![("j".to_string(), 100)]);
}

#[test]
fn refresh_tokens_rotate_once_and_reuse_revokes_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("g.db")).unwrap();
    let rec = RefreshRecord {
        hash: "h1".into(),
        family: "f".into(),
        client_id: "c".into(),
        subject: "alice".into(),
        scopes: "openid".into(),
        resource: "https://rs.test/mcp".into(),
        jkt: String::new(),
        expires_at: 100,
        family_expires_at: 1000,
    };
    s.put_refresh(&rec).unwrap();
    assert_eq!(
        s.rotate_refresh("h1", "other", "h2", 200, 10).unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        s.rotate_refresh("h1", "c", "h2", 200, 10).unwrap(),
        Rotation::Rotated(rec.clone())
    );
    let successor = s.active_refresh("h2", 10).unwrap().unwrap();
    assert_eq!(successor.resource, rec.resource, "the successor keeps it");
    assert!(s.active_refresh("h1", 10).unwrap().is_none());
    assert_eq!(
        s.rotate_refresh("h1", "c", "h3", 200, 10).unwrap(),
        Rotation::Reused { family: "f".into() }
    );
    assert!(
        s.active_refresh("h2", 10).unwrap().is_none(),
        "the family is revoked"
    );
    assert_eq!(
        s.rotate_refresh("h2", "c", "h4", 200, 10).unwrap(),
        Rotation::Invalid
    );
}

#[test]
fn a_database_from_before_resources_opens_and_its_rows_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    // the schema of the six steps before resources were kept, with a refresh token and a code
    let before = 6;
    {
        let conn = Connection::open(&path).unwrap();
        for (i, step) in MIGRATIONS.iter().enumerate().take(before) {
            conn.execute_batch(&format!(
                "BEGIN; {step} PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO refresh_families (family, expires_at) VALUES ('f', 1000);
             INSERT INTO refresh_tokens (hash, family, client_id, subject, scopes, expires_at)
                 VALUES ('h1', 'f', 'c', 'alice', 'openid', 100);
             INSERT INTO auth_codes (hash, client_id, redirect_uri, challenge, subject, scopes, nonce,
                                     auth_time, expires_at)
                 VALUES ('code', 'c', '', 'x', 'alice', 'openid', '', 1, 100);",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let version: usize = s
        .reader()
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version > before);
    let old = s.active_refresh("h1", 10).unwrap().unwrap();
    assert_eq!((old.subject.as_str(), old.resource.as_str()), ("alice", ""));
    assert!(matches!(
        s.rotate_refresh("h1", "c", "h2", 200, 10).unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(s.active_refresh("h2", 10).unwrap().unwrap().resource, "");
    match s.take_code("code", 10).unwrap() {
        CodeUse::Fresh(c) => assert_eq!((c.subject.as_str(), c.resource.as_str()), ("alice", "")),
        other => panic!("{other:?}"),
    }
}

fn session(hash: &str) -> SessionRecord {
    SessionRecord {
        hash: hash.into(),
        subject: "alice".into(),
        provider: "local".into(),
        provider_sid: String::new(),
        data: "{}".into(),
        auth_time: 1,
        idle_until: 100,
        expires_at: 200,
    }
}

#[test]
fn session_lookups_answer_while_a_write_transaction_holds_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let s = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    s.put_session(&session("kept")).unwrap();
    // the store's writer is taken, holding the database's write lock in the middle of a change
    let mut writer = s.writer.lock().unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute(
        "UPDATE sessions SET subject = 'mallory' WHERE hash = 'kept'",
        [],
    )
    .unwrap();
    let (looked_up, answers) = std::sync::mpsc::channel();
    let store = s.clone();
    std::thread::spawn(move || {
        let _ = looked_up.send((
            store.session("kept", 10),
            store.active_refresh("none", 10),
            store.families_of("alice", 10),
            store.revoked(10),
        ));
    });
    let (found, refresh, families, revoked) = answers
        .recv_timeout(Duration::from_secs(5))
        .expect("a lookup waited for the writer");
    // the last commit, not the write in progress
    assert_eq!(found.unwrap().unwrap().subject, "alice");
    assert_eq!(refresh.unwrap(), None);
    assert!(families.unwrap().is_empty());
    assert!(revoked.unwrap().is_empty());
    tx.commit().unwrap();
    drop(writer);
    assert_eq!(s.session("kept", 10).unwrap().unwrap().subject, "mallory");
}

#[test]
fn a_reader_sees_each_commit_at_once_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("g.db")).unwrap();
    for i in 0..READERS * 2 {
        let h = format!("s{i}");
        s.put_session(&session(&h)).unwrap();
        assert!(s.session(&h, 10).unwrap().is_some(), "read after write");
        assert!(s.end_session(&h).unwrap());
        assert!(s.session(&h, 10).unwrap().is_none(), "read after delete");
    }
    let reader = s.reader().unwrap();
    assert!(reader
        .execute("DELETE FROM sessions", [])
        .is_err_and(|e| e.to_string().contains("readonly")));
}
