//! A tiny gRPC health server: `grpc.health.v1.Health/Check` written by hand on
//! tonic (no generated code, no protobuf crate), so the gRPC probe has a real,
//! independent gRPC server to be tested against (integration/probes.rs runs
//! `serve` in a network namespace of its own).
//!
//!     cargo run --example grpc_health -- [ADDR [STATUS_FILE]]
//!
//! listens on ADDR (default 127.0.0.1:50051). Without STATUS_FILE the service
//! "" is SERVING; with one, each Check reads its lines `SERVICE=STATUS`
//! (`=NOT_SERVING` is the service ""). A service it does not know gets
//! NOT_FOUND, as the standard health server answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// The status (HealthCheckResponse.ServingStatus) of a service, None if unknown.
pub type Lookup = Arc<dyn Fn(&str) -> Option<i32> + Send + Sync>;

pub const SERVING: i32 = 1;
pub const NOT_SERVING: i32 = 2;

/// Serves the health service on `listener` until `stop` completes.
pub async fn serve(
    listener: std::net::TcpListener,
    lookup: Lookup,
    stop: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tonic::transport::Server::builder()
        .add_service(Health(lookup))
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), stop)
        .await?;
    Ok(())
}

#[derive(Clone)]
struct Health(Lookup);

impl NamedService for Health {
    const NAME: &'static str = "grpc.health.v1.Health";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl Service<http::Request<Body>> for Health {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let lookup = self.0.clone();
        Box::pin(async move {
            Ok(match req.uri().path() {
                "/grpc.health.v1.Health/Check" => {
                    Grpc::new(HealthCodec).unary(Check(lookup), req).await
                }
                _ => Status::unimplemented("unknown method").into_http(),
            })
        })
    }
}

struct Check(Lookup);

impl UnaryService<String> for Check {
    type Response = i32;
    type Future = BoxFuture<Response<i32>, Status>;

    fn call(&mut self, request: Request<String>) -> Self::Future {
        let answer = (self.0)(request.get_ref())
            .map(Response::new)
            .ok_or_else(|| Status::not_found("unknown service"));
        Box::pin(async move { answer })
    }
}

/// HealthCheckRequest in (its `service`), HealthCheckResponse out (its `status`).
struct HealthCodec;

impl Codec for HealthCodec {
    type Encode = i32;
    type Decode = String;
    type Encoder = StatusEncoder;
    type Decoder = ServiceDecoder;

    fn encoder(&mut self) -> StatusEncoder {
        StatusEncoder
    }

    fn decoder(&mut self) -> ServiceDecoder {
        ServiceDecoder
    }
}

struct StatusEncoder;

impl Encoder for StatusEncoder {
    type Item = i32;
    type Error = Status;

    fn encode(&mut self, status: i32, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // Field 1, varint; proto3 leaves a zero out.
        if status != 0 {
            dst.put_u8(0x08);
            dst.put_u8(status as u8);
        }
        Ok(())
    }
}

struct ServiceDecoder;

impl Decoder for ServiceDecoder {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let mut rest = &bytes[..];
        let mut service = String::new();
        let bad = || Status::invalid_argument("malformed HealthCheckRequest");
        while let Some((&key, after)) = rest.split_first() {
            // Only short fields are expected: a one-byte key and length.
            let (&len, after) = after.split_first().ok_or_else(bad)?;
            if key & 7 != 2 || len & 0x80 != 0 {
                return Err(bad());
            }
            let value = after.get(..len as usize).ok_or_else(bad)?;
            if key >> 3 == 1 {
                service = String::from_utf8_lossy(value).into_owned();
            }
            rest = &after[len as usize..];
        }
        Ok(Some(service))
    }
}

fn status_of(name: &str) -> Option<i32> {
    match name {
        "UNKNOWN" => Some(0),
        "SERVING" => Some(SERVING),
        "NOT_SERVING" => Some(NOT_SERVING),
        "SERVICE_UNKNOWN" => Some(3),
        _ => None,
    }
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let file = args.get(1).cloned();
    let lookup: Lookup = Arc::new(move |service| match &file {
        None => service.is_empty().then_some(SERVING),
        Some(path) => std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once('='))
            .find(|(name, _)| *name == service)
            .and_then(|(_, status)| status_of(status.trim())),
    });
    let listener = std::net::TcpListener::bind(&addr)?;
    eprintln!("grpc_health: serving on {addr}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listener, lookup, std::future::pending()))
}
