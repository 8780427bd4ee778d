//! gRPC refusals as frames on the wire: a raw HTTP/2 client, over TLS (h2 by ALPN) and h2c, checks
//! that each refusal is a trailers-only response, one HEADERS frame that ends the stream, as the
//! C core and grpc-go require (tonic would also read a header block followed by an empty DATA frame).

use crate::grpc::h2c_gateway;
use crate::tokens::Auth;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One call: its method path, extra header fields and how many body bytes it sends.
struct Req<'a> {
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body_len: usize,
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to the gateway: TLS offering only `h2` by ALPN, or h2c on the plain listener.
async fn connect(a: &Auth, tls: bool) -> Box<dyn Io> {
    if !tls {
        return Box::new(tokio::net::TcpStream::connect(a.gw.plain).await.unwrap());
    }
    let pem = std::fs::read(a.gw.path("certs/gateway.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(a.gw.tls).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = pingora::tls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    Box::new(stream)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().to_be_bytes();
    let mut out = len[len.len() - 3..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, prefix_bits: u32, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(n as u8);
        return;
    }
    out.push(max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header field as a literal without indexing, new name, no Huffman (RFC 7541 §6.2.2).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    hpack_int(out, 7, name.len());
    out.extend(name.as_bytes());
    hpack_int(out, 7, value.len());
    out.extend(value.as_bytes());
}

/// Everything a client sends for one unary call on stream 1: the preface, its settings, the
/// request header block and a body of `body_len` bytes (at least an empty message) that ends it.
fn unary_call(tls: bool, authority: &str, req: &Req) -> Vec<u8> {
    let mut block = Vec::new();
    let scheme = if tls { "https" } else { "http" };
    for (k, v) in [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", req.path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .iter()
    .chain(req.headers)
    {
        literal(&mut block, k, v);
    }
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &block));
    out.extend(frame(DATA, END_STREAM, 1, &vec![0; req.body_len.max(5)]));
    out
}

async fn read_frame(io: &mut Box<dyn Io>) -> Option<Frame> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    io.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream,
        payload,
    })
}

/// The HEADERS, CONTINUATION, DATA and RST_STREAM frames the gateway sends on the call's stream,
/// up to the one that ends it and whatever else arrives within 300 ms after that.
async fn call(a: &Auth, tls: bool, req: &Req<'_>) -> Vec<Frame> {
    let mut io = connect(a, tls).await;
    let authority = match tls {
        true => format!("localhost:{}", a.gw.tls.port()),
        false => a.gw.plain.to_string(),
    };
    let bytes = unary_call(tls, &authority, req);
    io.write_all(&bytes).await.unwrap();
    let mut frames = Vec::new();
    let mut until = Instant::now() + Duration::from_secs(10);
    while let Ok(Some(f)) = timeout_at(until, read_frame(&mut io)).await {
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            io.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        }
        if f.stream != 1 || ![HEADERS, CONTINUATION, DATA, RST_STREAM].contains(&f.kind) {
            continue;
        }
        if f.kind == RST_STREAM || f.flags & END_STREAM != 0 {
            until = until.min(Instant::now() + Duration::from_millis(300));
        }
        frames.push(f);
    }
    frames
}

/// A trailers-only response: one HEADERS frame with END_STREAM and END_HEADERS whose block starts
/// with `:status: 200` (static table entry 8), no DATA, and no reset other than the NO_ERROR a
/// server may send for a request body it did not read (RFC 9113 §8.1).
fn assert_trailers_only(frames: &[Frame], what: &str) {
    let Some((first, rest)) = frames.split_first() else {
        panic!("{what}: nothing came on the stream");
    };
    assert_eq!(first.kind, HEADERS, "{what}: {frames:?}");
    assert_eq!(
        first.flags & (END_STREAM | END_HEADERS),
        END_STREAM | END_HEADERS,
        "{what}: the header block must end the stream: {frames:?}"
    );
    assert_eq!(first.payload.first(), Some(&0x88), "{what}: {frames:?}");
    for f in rest {
        assert!(
            f.kind == RST_STREAM && f.payload == [0, 0, 0, 0],
            "{what}: nothing but RST_STREAM(NO_ERROR) may follow: {frames:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_one_headers_frame_that_ends_the_stream() {
    let a = h2c_gateway().await;
    let token = a.svc_token(None).await;
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let req = |path, headers, body_len| Req {
        path,
        headers,
        body_len,
    };
    let refusals = [
        (req("/test.Echo/Say", &[], 0), "no token (401)"),
        (req("/test.Echo/Admin", &auth, 0), "the wrong role (403)"),
        (req("/nope.Svc/Method", &[], 0), "no route (404)"),
        (
            req("/test.Echo/Small", &[("content-length", "100")], 100),
            "a body announced over the limit (413)",
        ),
        (
            req("/test.Echo/Small", &[], 100),
            "a body over the limit (413)",
        ),
        (
            req("/dead.Svc/Method", &[], 0),
            "an upstream that is down (502)",
        ),
    ];
    for tls in [true, false] {
        let on = if tls { "h2 over TLS" } else { "h2c" };
        // the raw client reads an answer that is let through: headers, the message, trailers
        let ok = call(&a, tls, &req("/test.Echo/Say", &auth, 0)).await;
        let kinds: Vec<_> = ok.iter().map(|f| (f.kind, f.flags & END_STREAM)).collect();
        assert_eq!(
            kinds,
            [(HEADERS, 0), (DATA, 0), (HEADERS, END_STREAM)],
            "{on}"
        );
        for (r, what) in &refusals {
            let frames = call(&a, tls, r).await;
            assert_trailers_only(&frames, &format!("{what} on {on}"));
        }
    }
}
