//! The store backends keep the same records alike: one set of checks run against the memory store,
//! SQLite and a real redis-server, and records written before a field existed still read back.

use crate::redis::RedisServer;
use crate::support::keys::now;
use gatehouse::store::{
    CodeRecord, CodeUse, MemoryStore, RedisStore, RefreshRecord, Rotation, SqliteStore, Store,
};

const RESOURCE: &str = "https://gw.test/mcp";

/// The time the checks take as now, read once so every record agrees; Redis lets a record go when
/// its time has passed, so it is the real time.
fn t0() -> u64 {
    static T0: std::sync::LazyLock<u64> = std::sync::LazyLock::new(now);
    *T0
}

fn at(seconds: u64) -> u64 {
    t0() + seconds
}

fn refresh(hash: &str, family: &str, resource: &str) -> RefreshRecord {
    RefreshRecord {
        hash: hash.into(),
        family: family.into(),
        client_id: "c".into(),
        subject: "alice".into(),
        scopes: "openid mcp".into(),
        resource: resource.into(),
        jkt: String::new(),
        expires_at: at(100),
        family_expires_at: at(1000),
    }
}

const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

/// A public client's refresh family keeps its DPoP key (RFC 9449 §5) across rotations.
fn keeps_dpop_keys(s: &dyn Store) {
    let rec = RefreshRecord {
        jkt: JKT.into(),
        ..refresh("k-1", "fk", "")
    };
    s.put_refresh(&rec).unwrap();
    assert_eq!(s.active_refresh("k-1", t0()).unwrap(), Some(rec.clone()));
    assert_eq!(
        s.rotate_refresh("k-1", "c", "k-2", at(200), t0()).unwrap(),
        Rotation::Rotated(rec)
    );
    let successor = s.active_refresh("k-2", t0()).unwrap().unwrap();
    assert_eq!(successor.jkt, JKT);
}

fn code(hash: &str, resource: &str) -> CodeRecord {
    CodeRecord {
        hash: hash.into(),
        client_id: "c".into(),
        redirect_uri: "https://app.test/cb".into(),
        challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        subject: "alice".into(),
        scopes: "openid".into(),
        nonce: "n".into(),
        resource: resource.into(),
        auth_time: t0(),
        expires_at: at(100),
    }
}

/// A refresh token's and a code's resource (RFC 8707) read back as written, empty included, and a
/// rotation's successor carries the family's resource on.
fn keeps_resources(s: &dyn Store) {
    for (n, resource) in [RESOURCE, ""].into_iter().enumerate() {
        let (h1, h2, fam) = (format!("r{n}-1"), format!("r{n}-2"), format!("f{n}"));
        let rec = refresh(&h1, &fam, resource);
        s.put_refresh(&rec).unwrap();
        assert_eq!(s.active_refresh(&h1, t0()).unwrap(), Some(rec.clone()));
        assert_eq!(
            s.rotate_refresh(&h1, "c", &h2, at(200), t0()).unwrap(),
            Rotation::Rotated(rec.clone())
        );
        let successor = s.active_refresh(&h2, t0()).unwrap().unwrap();
        assert_eq!(
            (
                successor.resource.as_str(),
                successor.family,
                successor.expires_at
            ),
            (resource, fam, at(200))
        );
        let c = code(&format!("c{n}"), resource);
        s.put_code(&c).unwrap();
        assert_eq!(s.take_code(&c.hash, t0()).unwrap(), CodeUse::Fresh(c));
    }
}

#[test]
fn the_memory_store_keeps_resources() {
    keeps_resources(&MemoryStore::default());
    keeps_dpop_keys(&MemoryStore::default());
}

#[test]
fn the_sqlite_store_keeps_resources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    keeps_resources(&SqliteStore::open(&path).unwrap());
    keeps_dpop_keys(&SqliteStore::open(&path).unwrap());
}

/// An access token recorded in a family leads back to it, and revoking the family returns it.
fn finds_the_family_of_a_token(s: &dyn Store) {
    assert_eq!(s.token_family("jti-1").unwrap(), None);
    s.family_token("fam-x", "jti-1", at(600)).unwrap();
    s.family_token("fam-x", "jti-2", at(600)).unwrap();
    assert_eq!(s.token_family("jti-1").unwrap().as_deref(), Some("fam-x"));
    assert_eq!(s.token_family("jti-2").unwrap().as_deref(), Some("fam-x"));
    let mut revoked = s.revoke_family("fam-x").unwrap();
    revoked.sort();
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[0].0, "jti-1");
}

#[test]
fn every_store_finds_the_family_of_a_token() {
    finds_the_family_of_a_token(&MemoryStore::default());
    let dir = tempfile::tempdir().unwrap();
    finds_the_family_of_a_token(&SqliteStore::open(&dir.path().join("g.db")).unwrap());
    if let Some(redis) = RedisServer::start() {
        finds_the_family_of_a_token(&redis_store(&redis));
    }
}

fn redis_store(redis: &RedisServer) -> RedisStore {
    RedisStore::open(&format!("redis://127.0.0.1:{}/0", redis.port)).unwrap()
}

#[test]
fn the_redis_store_keeps_resources() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    keeps_resources(&redis_store(&redis));
    keeps_dpop_keys(&redis_store(&redis));
}

#[test]
fn redis_refresh_tokens_written_before_dpop_keys_were_kept_are_bound_to_none() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = redis_store(&redis);
    s.put_refresh(&refresh("pre-1", "pre", "")).unwrap();
    let mut db = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let removed: i64 = ::redis::cmd("HDEL")
        .arg("gatehouse:refresh:pre-1")
        .arg("jkt")
        .query(&mut db)
        .unwrap();
    assert_eq!(removed, 1);
    let before = refresh("pre-1", "pre", "");
    assert_eq!(
        s.rotate_refresh("pre-1", "c", "pre-2", at(200), t0())
            .unwrap(),
        Rotation::Rotated(before)
    );
    assert_eq!(s.active_refresh("pre-2", t0()).unwrap().unwrap().jkt, "");
}

#[test]
fn redis_records_written_before_resources_were_kept_read_as_having_none() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = redis_store(&redis);
    s.put_refresh(&refresh("old-1", "old", RESOURCE)).unwrap();
    s.put_code(&code("old-code", RESOURCE)).unwrap();
    // as an earlier version wrote them: without the field
    let mut db = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    for k in ["gatehouse:refresh:old-1", "gatehouse:code:old-code"] {
        let removed: i64 = ::redis::cmd("HDEL")
            .arg(k)
            .arg("resource")
            .query(&mut db)
            .unwrap();
        assert_eq!(removed, 1, "{k} had the field");
    }
    let before = refresh("old-1", "old", "");
    assert_eq!(
        s.active_refresh("old-1", t0()).unwrap(),
        Some(before.clone())
    );
    assert_eq!(
        s.rotate_refresh("old-1", "c", "old-2", at(200), t0())
            .unwrap(),
        Rotation::Rotated(before)
    );
    let successor = s.active_refresh("old-2", t0()).unwrap().unwrap();
    assert_eq!(
        (successor.resource.as_str(), successor.expires_at),
        ("", at(200))
    );
    assert_eq!(
        s.take_code("old-code", t0()).unwrap(),
        CodeUse::Fresh(code("old-code", ""))
    );
}
