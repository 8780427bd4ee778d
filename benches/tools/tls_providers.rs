//! The server's TLS cost with each rustls crypto provider, ring and aws-lc-rs: handshakes and records.
//! Usage: tls_providers [ROUNDS [HANDSHAKES [MIB]]] (defaults 15, 300, 64). Client and server talk
//! through buffers, no sockets; only the server's calls are timed. Each round runs every case with both
//! providers, their order alternating from round to round. A round's figure is its median handshake,
//! or its median batch of 16 records; the tables give the median over the rounds and the spread
//! (lowest..highest round). Build with `--release`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, ring, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The gateway's session cache size (`listener::tls_accept::SESSION_CACHE`).
const SESSION_CACHE: usize = 20_000;
/// The plaintext each record of the bulk runs carries: the largest a TLS record holds.
const RECORD: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Provider {
    Ring,
    AwsLc,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::Ring => "ring",
            Provider::AwsLc => "aws-lc-rs",
        }
    }

    fn provider(self) -> CryptoProvider {
        match self {
            Provider::Ring => ring::default_provider(),
            Provider::AwsLc => aws_lc_rs::default_provider(),
        }
    }

    fn ticketer(self) -> Arc<dyn ProducesTickets> {
        match self {
            Provider::Ring => ring::Ticketer::new().unwrap(),
            Provider::AwsLc => aws_lc_rs::Ticketer::new().unwrap(),
        }
    }

    /// The provider's TLS 1.3 suite of that name: the bulk runs negotiate exactly it.
    fn suite(self, bulk: Bulk) -> SupportedCipherSuite {
        use aws_lc_rs::cipher_suite as a;
        use ring::cipher_suite as r;
        match (self, bulk) {
            (Provider::Ring, Bulk::Aes128) => r::TLS13_AES_128_GCM_SHA256,
            (Provider::Ring, Bulk::Aes256) => r::TLS13_AES_256_GCM_SHA384,
            (Provider::Ring, Bulk::ChaCha) => r::TLS13_CHACHA20_POLY1305_SHA256,
            (Provider::AwsLc, Bulk::Aes128) => a::TLS13_AES_128_GCM_SHA256,
            (Provider::AwsLc, Bulk::Aes256) => a::TLS13_AES_256_GCM_SHA384,
            (Provider::AwsLc, Bulk::ChaCha) => a::TLS13_CHACHA20_POLY1305_SHA256,
        }
    }
}

/// A certificate chain (here one self-signed certificate) and its key.
struct Cert {
    name: &'static str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// The kind of certificate `write_self_signed` makes for the gateway: rcgen's default, ECDSA P-256.
fn gateway_cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(names()).unwrap();
    Cert {
        name: "ECDSA P-256",
        chain: vec![ck.cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
    }
}

/// An RSA-2048 certificate, as many deployments have.
fn rsa_cert() -> Cert {
    use ::aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use ::aws_lc_rs::rsa::{KeyPair, KeySize};
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der = kp.as_der().unwrap();
    let key = PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
    let signer =
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(names())
        .unwrap()
        .self_signed(&signer)
        .unwrap();
    Cert {
        name: "RSA-2048",
        chain: vec![cert.der().clone()],
        key,
    }
}

/// Narrows a provider to one key exchange group and, for the bulk runs, one cipher suite.
fn narrowed(
    p: Provider,
    kx: Option<&'static dyn SupportedKxGroup>,
    suite: Option<SupportedCipherSuite>,
) -> Arc<CryptoProvider> {
    let mut provider = p.provider();
    if let Some(kx) = kx {
        provider.kx_groups = vec![kx];
    }
    if let Some(suite) = suite {
        provider.cipher_suites = vec![suite];
    }
    Arc::new(provider)
}

/// The gateway's listener settings (`listener::tls_accept::server_config`) on `provider`: TLS 1.2
/// and 1.3, ALPN h2 then http/1.1, a session cache and rotating ticket keys of the same provider.
fn server_config(p: Provider, provider: Arc<CryptoProvider>, cert: &Cert) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(cert.key.clone_key());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS12, &TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = p.ticketer();
    Arc::new(config)
}

/// A client that trusts `cert`, speaks only `version`, and resumes or not.
fn client_config(
    provider: Arc<CryptoProvider>,
    cert: &Cert,
    version: &'static SupportedProtocolVersion,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.chain[0].clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

/// Feeds all of `bytes` to the server and lets it process them.
fn server_takes(server: &mut ServerConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        server.read_tls(&mut bytes).unwrap();
        server.process_new_packets().unwrap();
    }
}

fn client_takes(client: &mut ClientConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).unwrap();
        client.process_new_packets().unwrap();
    }
}

/// One whole handshake, including the tickets the server sends after it; adds the server's own time
/// (its read_tls, process_new_packets and write_tls calls) to `spent`.
fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    spent: &mut Duration,
) -> (ServerConnection, ClientConnection) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    loop {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let started = Instant::now();
        server_takes(&mut s, &buf);
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        *spent += started.elapsed();
        client_takes(&mut c, &buf);
        let quiet = !c.wants_write() && !s.wants_write();
        if quiet && !c.is_handshaking() && !s.is_handshaking() {
            return (s, c);
        }
    }
}

/// One handshake case: a protocol version, fresh or resumed, a certificate, and optionally a single
/// key exchange group that both sides are held to.
struct Case {
    label: String,
    version: &'static SupportedProtocolVersion,
    resume: bool,
    cert: usize,
    kx: Option<&'static dyn SupportedKxGroup>,
}

fn cases(certs: &[Cert]) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, cert) in certs.iter().enumerate() {
        let kinds: [(&str, &'static SupportedProtocolVersion, bool); 3] = [
            ("TLS 1.3 fresh", &TLS13, false),
            ("TLS 1.3 resumed (ticket)", &TLS13, true),
            ("TLS 1.2 fresh", &TLS12, false),
        ];
        for (kind, version, resume) in kinds {
            out.push(Case {
                label: format!("{kind}, {}", cert.name),
                version,
                resume,
                cert: i,
                kx: None,
            });
        }
    }
    out.push(Case {
        label: format!("TLS 1.3 fresh, {}, X25519MLKEM768", certs[0].name),
        version: &TLS13,
        resume: false,
        cert: 0,
        kx: Some(aws_lc_rs::kx_group::X25519MLKEM768),
    });
    out
}

/// The configurations of one case for one provider, made once and kept across rounds (so the
/// server's session cache and ticket keys live on, as in a running gateway).
struct Prepared {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    resume: bool,
}

/// None when the provider cannot run the case (ring has no post-quantum key exchange).
fn prepare(case: &Case, p: Provider, certs: &[Cert]) -> Option<Prepared> {
    if case.kx.is_some() && p == Provider::Ring {
        return None;
    }
    let provider = narrowed(p, case.kx, None);
    let cert = &certs[case.cert];
    let prepared = Prepared {
        server: server_config(p, provider.clone(), cert),
        client: client_config(provider, cert, case.version, case.resume),
        resume: case.resume,
    };
    // the first handshake gives a resuming client its ticket and says what was negotiated
    let (s, _) = handshake(&prepared.server, &prepared.client, &mut Duration::default());
    eprintln!(
        "{:<45} {:<10} {:?} {:?} {:?}",
        case.label,
        p.name(),
        s.protocol_version().unwrap(),
        s.negotiated_cipher_suite().unwrap().suite(),
        s.negotiated_key_exchange_group().unwrap().name(),
    );
    Some(prepared)
}

/// The server's median time over `n` handshakes, in microseconds: the median rather than the mean,
/// so that the few handshakes during which another process had the core do not count.
fn time_handshakes(p: &Prepared, n: usize) -> f64 {
    let expected = if p.resume {
        HandshakeKind::Resumed
    } else {
        HandshakeKind::Full
    };
    let mut each = Vec::with_capacity(n);
    for _ in 0..n {
        let mut spent = Duration::ZERO;
        let (s, _) = handshake(&p.server, &p.client, &mut spent);
        assert_eq!(
            s.handshake_kind(),
            Some(expected),
            "unexpected handshake kind"
        );
        each.push(spent.as_secs_f64() * 1e6);
    }
    median_and_spread(&each).0
}

#[derive(Clone, Copy)]
enum Bulk {
    Aes128,
    Aes256,
    ChaCha,
}

impl Bulk {
    const ALL: [Bulk; 3] = [Bulk::Aes128, Bulk::Aes256, Bulk::ChaCha];

    fn name(self) -> &'static str {
        match self {
            Bulk::Aes128 => "TLS13_AES_128_GCM_SHA256",
            Bulk::Aes256 => "TLS13_AES_256_GCM_SHA384",
            Bulk::ChaCha => "TLS13_CHACHA20_POLY1305_SHA256",
        }
    }
}

/// A connection that negotiated exactly `bulk`, with its handshake done.
fn bulk_connection(p: Provider, bulk: Bulk, cert: &Cert) -> (ServerConnection, ClientConnection) {
    let provider = narrowed(p, None, Some(p.suite(bulk)));
    let server = server_config(p, provider.clone(), cert);
    let client = client_config(provider, cert, &TLS13, false);
    let (s, c) = handshake(&server, &client, &mut Duration::default());
    assert_eq!(s.negotiated_cipher_suite(), Some(p.suite(bulk)));
    (s, c)
}

/// Records timed together in the bulk runs: 256 KiB, long enough to time, short enough that few
/// batches share their core with another process.
const BATCH: usize = 16;

/// MiB/s of the median batch.
fn rate(batches: &[f64]) -> f64 {
    (BATCH * RECORD) as f64 / (1024.0 * 1024.0) / median_and_spread(batches).0
}

/// The server encrypting `mib` MiB in full records: MiB/s of plaintext.
fn time_encrypt(s: &mut ServerConnection, mib: usize) -> f64 {
    let plain = vec![0x5a_u8; RECORD];
    let mut sink = Vec::with_capacity(2 * RECORD);
    let mut batches = Vec::new();
    for _ in 0..mib * 1024 * 1024 / RECORD / BATCH {
        let started = Instant::now();
        for _ in 0..BATCH {
            s.writer().write_all(&plain).unwrap();
            while s.wants_write() {
                s.write_tls(&mut sink).unwrap();
            }
            sink.clear();
        }
        batches.push(started.elapsed().as_secs_f64());
    }
    rate(&batches)
}

/// The server decrypting `mib` MiB of full records that the client sealed (not timed): MiB/s.
fn time_decrypt(s: &mut ServerConnection, c: &mut ClientConnection, mib: usize) -> f64 {
    let plain = vec![0xa5_u8; RECORD];
    let mut got = vec![0_u8; RECORD];
    let mut wire = Vec::with_capacity(BATCH * (RECORD + 64));
    let mut batches = Vec::new();
    for _ in 0..mib * 1024 * 1024 / RECORD / BATCH {
        wire.clear();
        for _ in 0..BATCH {
            c.writer().write_all(&plain).unwrap();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
        }
        let (started, mut rd, mut read) = (Instant::now(), &wire[..], 0);
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
            while let Ok(n @ 1..) = s.reader().read(&mut got) {
                read += n;
            }
        }
        batches.push(started.elapsed().as_secs_f64());
        assert_eq!(read, BATCH * RECORD, "every record was read back");
    }
    rate(&batches)
}

/// Per case, per provider (ring first), the value of each round.
type Samples = Vec<[Vec<f64>; 2]>;

fn median_and_spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let mid = if !n.is_multiple_of(2) {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (mid, v[0], v[n - 1])
}

fn cell(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let (m, lo, hi) = median_and_spread(v);
    format!("{m:.1} ({lo:.1}..{hi:.1})")
}

/// aws-lc-rs against ring, as a percentage; `lower_is_better` for times, not for rates.
fn change(s: &[Vec<f64>; 2], lower_is_better: bool) -> String {
    if s[0].is_empty() || s[1].is_empty() {
        return "".into();
    }
    let (ring, aws) = (median_and_spread(&s[0]).0, median_and_spread(&s[1]).0);
    let pct = (aws / ring - 1.0) * 100.0;
    let verdict = if pct.abs() < 1.0 {
        "same"
    } else if (pct < 0.0) == lower_is_better {
        "better"
    } else {
        "worse"
    };
    format!("{pct:+.1}% ({verdict})")
}

fn table(title: &str, unit: &str, rows: &[String], samples: &Samples, lower_is_better: bool) {
    println!("\n{title}\n");
    println!("| case | ring {unit} | aws-lc-rs {unit} | aws-lc-rs vs ring |");
    println!("| --- | --- | --- | --- |");
    for (row, s) in rows.iter().zip(samples) {
        println!(
            "| {row} | {} | {} | {} |",
            cell(&s[0]),
            cell(&s[1]),
            change(s, lower_is_better)
        );
    }
}

/// The order of the providers in round `r`: alternating, so neither always runs first.
fn order(r: usize) -> [(usize, Provider); 2] {
    if r.is_multiple_of(2) {
        [(0, Provider::Ring), (1, Provider::AwsLc)]
    } else {
        [(1, Provider::AwsLc), (0, Provider::Ring)]
    }
}

fn run_handshakes(certs: &[Cert], rounds: usize, n: usize) -> (Vec<String>, Samples) {
    let cases = cases(certs);
    let prepared: Vec<[Option<Prepared>; 2]> = cases
        .iter()
        .map(|c| {
            [
                prepare(c, Provider::Ring, certs),
                prepare(c, Provider::AwsLc, certs),
            ]
        })
        .collect();
    // one round that is not kept, to warm caches and the CPU's clock
    for p in prepared.iter().flatten().flatten() {
        time_handshakes(p, n / 4 + 1);
    }
    let mut samples: Samples = cases.iter().map(|_| Default::default()).collect();
    for r in 0..rounds {
        for (i, pair) in prepared.iter().enumerate() {
            for (slot, _) in order(r) {
                if let Some(p) = &pair[slot] {
                    samples[i][slot].push(time_handshakes(p, n));
                }
            }
        }
        eprintln!("handshakes: round {} of {rounds} done", r + 1);
    }
    (cases.into_iter().map(|c| c.label).collect(), samples)
}

fn run_bulk(cert: &Cert, rounds: usize, mib: usize) -> (Vec<String>, Samples, Samples) {
    let mut enc: Samples = Bulk::ALL.iter().map(|_| Default::default()).collect();
    let mut dec: Samples = Bulk::ALL.iter().map(|_| Default::default()).collect();
    for r in 0..rounds {
        for (i, bulk) in Bulk::ALL.into_iter().enumerate() {
            for (slot, p) in order(r) {
                let (mut s, mut c) = bulk_connection(p, bulk, cert);
                enc[i][slot].push(time_encrypt(&mut s, mib));
                dec[i][slot].push(time_decrypt(&mut s, &mut c, mib));
            }
        }
        eprintln!("bulk: round {} of {rounds} done", r + 1);
    }
    let rows = Bulk::ALL.iter().map(|b| b.name().to_string()).collect();
    (rows, enc, dec)
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| {
            a.parse()
                .expect("usage: tls_providers [ROUNDS [HANDSHAKES [MIB]]]")
        })
        .unwrap_or(default)
}

fn main() {
    let (rounds, n, mib) = (arg(1, 15), arg(2, 300), arg(3, 64));
    let certs = [gateway_cert(), rsa_cert()];
    let (rows, samples) = run_handshakes(&certs, rounds, n);
    let (bulk_rows, enc, dec) = run_bulk(&certs[0], rounds, mib);
    println!(
        "rustls {rounds} rounds; {n} handshakes a round per case; bulk {mib} MiB in {} KiB records",
        RECORD / 1024
    );
    table(
        "Server time per handshake, µs: median of the rounds' median handshakes (lowest..highest round)",
        "µs",
        &rows,
        &samples,
        true,
    );
    table(
        "Server encryption, MiB/s of plaintext, from the median 256 KiB batch: median (lowest..highest round)",
        "MiB/s",
        &bulk_rows,
        &enc,
        false,
    );
    table(
        "Server decryption, MiB/s of plaintext, from the median 256 KiB batch: median (lowest..highest round)",
        "MiB/s",
        &bulk_rows,
        &dec,
        false,
    );
}
