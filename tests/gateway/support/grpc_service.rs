//! A small gRPC service for the gateway's tests, written out as tonic's generated code would be:
//! `test.Echo` with a unary, a server-streaming and a bidirectional method, beside the standard
//! health service, served over h2c or TLS; and a client for it.

use prost::Message;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CountReq {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    /// end with this error status after the messages, with metadata `x-reason` in the trailers
    #[prost(bool, tag = "2")]
    pub fail: bool,
    /// wait this long before each message
    #[prost(uint32, tag = "3")]
    pub pause_ms: u32,
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// What each method does.
#[derive(Clone, Default)]
pub struct Echo;

impl Echo {
    /// Answers with the text and who the gateway said the caller is.
    async fn say(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        let who = req
            .metadata()
            .get("x-auth-subject")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody")
            .to_string();
        let roles = req
            .metadata()
            .get("x-auth-roles")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = format!("{} from {who} ({roles})", req.into_inner().text);
        Ok(Response::new(Msg { text }))
    }

    async fn count(&self, req: Request<CountReq>) -> Result<Response<MsgStream>, Status> {
        let CountReq { n, fail, pause_ms } = req.into_inner();
        let items = (0..n).map(|i| {
            Ok(Msg {
                text: format!("message {i}"),
            })
        });
        if pause_ms > 0 {
            let pause = std::time::Duration::from_millis(pause_ms.into());
            let paced = tokio_stream::iter(items.collect::<Vec<_>>()).throttle(pause);
            return Ok(Response::new(Box::pin(paced) as MsgStream));
        }
        let tail = fail.then(|| {
            let mut meta = tonic::metadata::MetadataMap::new();
            meta.insert("x-reason", "counted-enough".parse().unwrap());
            Err(Status::with_metadata(
                tonic::Code::FailedPrecondition,
                "stopped after the messages",
                meta,
            ))
        });
        let stream = tokio_stream::iter(items.chain(tail));
        Ok(Response::new(Box::pin(stream) as MsgStream))
    }

    async fn chat(&self, req: Request<Streaming<Msg>>) -> Result<Response<MsgStream>, Status> {
        let incoming = req.into_inner();
        let out = incoming.map(|m| {
            m.map(|m| Msg {
                text: format!("echo {}", m.text),
            })
        });
        Ok(Response::new(Box::pin(out) as MsgStream))
    }

    async fn slow(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        Ok(Response::new(req.into_inner()))
    }
}

struct Say(Echo);
impl tonic::server::UnaryService<Msg> for Say {
    type Response = Msg;
    type Future = tonic::codegen::BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let e = self.0.clone();
        Box::pin(async move { e.say(req).await })
    }
}

struct Slow(Echo);
impl tonic::server::UnaryService<Msg> for Slow {
    type Response = Msg;
    type Future = tonic::codegen::BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let e = self.0.clone();
        Box::pin(async move { e.slow(req).await })
    }
}

struct Count(Echo);
impl tonic::server::ServerStreamingService<CountReq> for Count {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = tonic::codegen::BoxFuture<Response<MsgStream>, Status>;
    fn call(&mut self, req: Request<CountReq>) -> Self::Future {
        let e = self.0.clone();
        Box::pin(async move { e.count(req).await })
    }
}

struct Chat(Echo);
impl tonic::server::StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = tonic::codegen::BoxFuture<Response<MsgStream>, Status>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        let e = self.0.clone();
        Box::pin(async move { e.chat(req).await })
    }
}

/// The `test.Echo` service as a tower service, routing by method path.
#[derive(Clone, Default)]
pub struct EchoServer(Echo);

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "test.Echo";
}

impl tonic::codegen::Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let e = self.0.clone();
        Box::pin(async move {
            let resp = match req.uri().path() {
                "/test.Echo/Say" | "/test.Echo/Admin" | "/test.Echo/Small" => {
                    tonic::server::Grpc::new(ProstCodec::default())
                        .unary(Say(e), req)
                        .await
                }
                "/test.Echo/Slow" => {
                    tonic::server::Grpc::new(ProstCodec::default())
                        .unary(Slow(e), req)
                        .await
                }
                "/test.Echo/Count" => {
                    tonic::server::Grpc::new(ProstCodec::default())
                        .server_streaming(Count(e), req)
                        .await
                }
                "/test.Echo/Chat" => {
                    tonic::server::Grpc::new(ProstCodec::default())
                        .streaming(Chat(e), req)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(resp)
        })
    }
}

/// Serves `test.Echo` and the health service (SERVING) on an ephemeral port: h2c, or TLS (h2 by
/// ALPN) with this certificate and key.
pub async fn serve(tls: Option<(Vec<u8>, Vec<u8>)>) -> std::net::SocketAddr {
    serve_as(tls, tonic_health::ServingStatus::Serving).await
}

/// An h2c server whose health service says NOT_SERVING.
pub async fn serve_not_serving() -> std::net::SocketAddr {
    serve_as(None, tonic_health::ServingStatus::NotServing).await
}

async fn serve_as(
    tls: Option<(Vec<u8>, Vec<u8>)>,
    status: tonic_health::ServingStatus,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", status).await;
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    let router = builder
        .add_service(health)
        .add_service(EchoServer::default());
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        let _reporter = reporter;
        let _ = router.serve_with_incoming(incoming).await;
    });
    addr
}

/// A client of `test.Echo` through a channel, with an optional bearer token.
pub struct Client {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    token: Option<String>,
}

impl Client {
    pub fn new(channel: tonic::transport::Channel, token: Option<&str>) -> Self {
        Client {
            grpc: tonic::client::Grpc::new(channel),
            token: token.map(str::to_string),
        }
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        if let Some(t) = &self.token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    }

    pub async fn unary(
        &mut self,
        method: &'static str,
        text: &str,
    ) -> Result<Response<Msg>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let req = self.request(Msg { text: text.into() });
        let path = http::uri::PathAndQuery::from_static(method);
        self.grpc.unary(req, path, ProstCodec::default()).await
    }

    /// The slow method, with a deadline the server and the gateway are told of (`grpc-timeout`).
    pub async fn slow_with_deadline(
        &mut self,
        text: &str,
        deadline: std::time::Duration,
    ) -> Result<Response<Msg>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let mut req = self.request(Msg { text: text.into() });
        req.set_timeout(deadline);
        let path = http::uri::PathAndQuery::from_static("/test.Echo/Slow");
        self.grpc.unary(req, path, ProstCodec::default()).await
    }

    pub async fn say(&mut self, text: &str) -> Result<Response<Msg>, Status> {
        self.unary("/test.Echo/Say", text).await
    }

    pub async fn count(&mut self, n: u32, fail: bool) -> Result<Response<Streaming<Msg>>, Status> {
        self.count_at("/test.Echo/Count", n, fail, 0).await
    }

    /// The server-streaming method at `path`, with a pause before each message.
    pub async fn count_at(
        &mut self,
        path: &'static str,
        n: u32,
        fail: bool,
        pause_ms: u32,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let req = self.request(CountReq { n, fail, pause_ms });
        let path = http::uri::PathAndQuery::from_static(path);
        self.grpc
            .server_streaming(req, path, ProstCodec::default())
            .await
    }

    pub async fn chat(
        &mut self,
        outgoing: impl Stream<Item = Msg> + Send + 'static,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let req = self.request(outgoing);
        let path = http::uri::PathAndQuery::from_static("/test.Echo/Chat");
        self.grpc.streaming(req, path, ProstCodec::default()).await
    }
}
