//! An upstream failure as the client sees it: the status and the answer for each kind of error
//! Pingora reports (connect, TLS, timeouts, the client going away).

use super::ErrorAnswer;
use pingora::prelude::*;
use pingora::ErrorSource;

/// An upstream failure as the client sees it; 0 when nothing can be written any more.
pub fn failure(e: &Error) -> (u16, Option<ErrorAnswer>) {
    let code = match e.etype() {
        HTTPStatus(c) => *c,
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
        | TLSHandshakeTimedout | InvalidCert | HandshakeError => 502,
        ReadTimedout | WriteTimedout => 504,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => 0,
                _ => 400,
            },
            _ => 500,
        },
    };
    let (err, desc) = match code {
        0 => return (0, None),
        502 => ("bad_gateway", "the upstream could not be reached"),
        503 => (
            "no_healthy_upstream",
            "no healthy upstream peer is available",
        ),
        504 => ("gateway_timeout", "the upstream did not answer in time"),
        413 => ("request_too_large", crate::respond::TOO_LARGE),
        400 => ("invalid_request", "the request could not be read"),
        _ => ("internal_error", "the gateway could not handle the request"),
    };
    let answer = ErrorAnswer {
        status: code,
        code: err,
        description: desc,
        headers: vec![],
    };
    (code, Some(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_status() {
        let status = |e: Box<Error>| failure(&e).0;
        assert_eq!(status(Error::new(ConnectRefused)), 502);
        assert_eq!(status(Error::new(TLSHandshakeFailure)), 502);
        assert_eq!(status(Error::new(ReadTimedout)), 504);
        assert_eq!(status(Error::new(HTTPStatus(503))), 503);
        assert_eq!(status(Error::new(HTTPStatus(413))), 413);
        assert_eq!(status(Error::new_up(ReadError)), 502);
        // the client went away: nothing can be written
        let gone = Error::new_down(ConnectionClosed);
        assert_eq!(failure(&gone), (0, None));
        assert_eq!(status(Error::new_down(InvalidHTTPHeader)), 400);
        let (_, answer) = failure(&Error::new(HTTPStatus(503)));
        assert_eq!(answer.map(|a| a.code), Some("no_healthy_upstream"));
    }
}
