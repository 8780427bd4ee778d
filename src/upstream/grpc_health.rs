//! Health checks in the gRPC health checking protocol: `grpc.health.v1.Health/Check` over HTTP/2,
//! healthy when the call ends with `grpc-status: 0` and the answer says SERVING.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::prelude::{HttpPeer, RequestHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::{Error, ErrorType, Result};

/// The method every gRPC server with health checking answers.
pub const CHECK: &str = "/grpc.health.v1.Health/Check";
/// An empty `HealthCheckRequest` (the whole server's health), framed: not compressed, length 0.
const EMPTY_REQUEST: [u8; 5] = [0, 0, 0, 0, 0];

/// The serving status in a framed `HealthCheckResponse`: field 1, a varint (1 = SERVING).
pub fn serving(framed: &[u8]) -> bool {
    // 1 byte compressed flag, 4 bytes length, then the message: tag 0x08, the status
    match framed {
        [0, _, _, _, _, 0x08, status, ..] => *status == 1,
        _ => false,
    }
}

fn failed(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::Custom("grpc health"), why)
}

pub struct GrpcHealthCheck {
    pub peer_template: HttpPeer,
    authority: String,
    connector: Connector,
}

impl GrpcHealthCheck {
    pub fn new(peer_template: HttpPeer, authority: &str) -> Self {
        GrpcHealthCheck {
            peer_template,
            authority: authority.to_string(),
            connector: Connector::new(None),
        }
    }

    async fn call(&self, session: &mut HttpSession) -> Result<()> {
        let mut req = RequestHeader::build("POST", CHECK.as_bytes(), None)?;
        req.insert_header("host", &self.authority)?;
        req.insert_header("content-type", "application/grpc")?;
        req.insert_header("te", "trailers")?;
        req.insert_header("user-agent", "gatehouse-health-check")?;
        session.write_request_header(Box::new(req)).await?;
        session
            .write_request_body(Bytes::from_static(&EMPTY_REQUEST), true)
            .await?;
        session.set_read_timeout(self.peer_template.options.read_timeout);
        session.read_response_header().await?;
        let status_ok = session
            .response_header()
            .is_some_and(|r| r.status.as_u16() == 200);
        if !status_ok {
            return Err(failed("the health check did not answer 200"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await? {
            if body.len() < 64 {
                body.extend_from_slice(&chunk);
            }
        }
        let HttpSession::H2(h2) = session else {
            return Err(failed("the upstream did not speak HTTP/2"));
        };
        // a trailers-only answer carries grpc-status in its headers
        let in_headers = h2
            .response_header()
            .and_then(|r| r.headers.get("grpc-status").cloned());
        let trailers = h2.read_trailers().await?;
        let status = in_headers.or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()));
        if status.as_ref().map(|s| s.as_bytes()) != Some(b"0") {
            return Err(failed("the health check ended with a gRPC error"));
        }
        if !serving(&body) {
            return Err(failed("the server is not SERVING"));
        }
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for GrpcHealthCheck {
    fn health_threshold(&self, _success: bool) -> usize {
        1
    }

    async fn check(&self, target: &Backend) -> Result<()> {
        let mut peer = self.peer_template.clone();
        peer._address = target.addr.clone();
        let (mut session, _) = self.connector.get_http_session(&peer).await?;
        let outcome = self.call(&mut session).await;
        session.shutdown().await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_serving_is_healthy() {
        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 1]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 2])); // NOT_SERVING
        assert!(!serving(&[0, 0, 0, 0, 0])); // UNKNOWN (the default, omitted)
        assert!(!serving(&[1, 0, 0, 0, 2, 0x08, 1])); // compressed: not read
        assert!(!serving(&[]));
    }
}
