//! grpc probes: grpc.health.v1.Health/Check over plaintext HTTP/2. The two
//! messages are written out here (two fields; no proto code generation).

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;

use super::{Outcome, host_port};
use crate::probe::USER_AGENT;

const CHECK: &str = "/grpc.health.v1.Health/Check";

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// ServingStatus: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const SERVING: i32 = 1;

fn status_name(s: i32) -> String {
    match s {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// Ask `host:port`'s health service about `service`, all within `timeout`.
pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    let secs = timeout.as_secs();
    let endpoint = match Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(USER_AGENT))
    {
        Ok(e) => e.connect_timeout(timeout),
        Err(e) => return Outcome::Error(format!("gRPC endpoint {addr}: {e}")),
    };
    let (h, p) = (host.to_owned(), port);
    let connect =
        endpoint.connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let h = h.clone();
            async move {
                tokio::net::TcpStream::connect((h.as_str(), p))
                    .await
                    .map(TokioIo::new)
            }
        }));
    let channel = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                chain(&e)
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {secs}s"
            ));
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(chain(&e)))?;
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        req.set_timeout(timeout);
        grpc.unary(
            req,
            PathAndQuery::from_static(CHECK),
            tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
        )
        .await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) if r.get_ref().status == SERVING => Outcome::Success,
        Ok(Ok(r)) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(r.get_ref().status)
        )),
        Ok(Err(st)) if st.code() == tonic::Code::Unimplemented => Outcome::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            st.message()
        )),
        Ok(Err(st)) if st.code() == tonic::Code::DeadlineExceeded => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {secs}s"
        )),
        Ok(Err(st)) => Outcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            st.code(),
            st.message()
        )),
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {secs}s"
        )),
    }
}

/// An error with its sources (tonic's transport errors say little alone).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use tonic::body::Body;
    use tonic::codegen::http;
    use tonic::server::{Grpc, NamedService, UnaryService};

    /// A health service answering `status` for service "app", NOT_FOUND
    /// for others (as grpc-go's does).
    #[derive(Clone)]
    struct Health(i32);

    impl UnaryService<HealthCheckRequest> for Health {
        type Response = HealthCheckResponse;
        type Future =
            std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;
        fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
            std::future::ready(if req.get_ref().service == "app" {
                Ok(tonic::Response::new(HealthCheckResponse { status: self.0 }))
            } else {
                Err(tonic::Status::not_found("unknown service"))
            })
        }
    }

    impl tower::Service<http::Request<Body>> for Health {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
        >;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let svc = self.clone();
            Box::pin(async move {
                if req.uri().path() != CHECK {
                    return Ok(tonic::Status::unimplemented("").into_http());
                }
                let mut g = Grpc::new(tonic_prost::ProstCodec::<
                    HealthCheckResponse,
                    HealthCheckRequest,
                >::default());
                Ok(g.unary(svc, req).await)
            })
        }
    }

    impl NamedService for Health {
        const NAME: &'static str = "grpc.health.v1.Health";
    }

    async fn serve(status: i32) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let incoming = tokio_stream_from(l);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Health(status))
                .serve_with_incoming(incoming),
        );
        port
    }

    /// The listener's connections as the stream tonic's server takes.
    fn tokio_stream_from(
        l: tokio::net::TcpListener,
    ) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        futures_util::stream::unfold(l, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        })
    }

    #[tokio::test]
    async fn health_checks() {
        let t = Duration::from_secs(3);
        let port = serve(SERVING).await;
        assert_eq!(probe("127.0.0.1", port, "app", t).await, Outcome::Success);
        match probe("127.0.0.1", port, "other", t).await {
            Outcome::Failure(m) => assert!(m.contains("code = NotFound"), "{m}"),
            o => panic!("{o:?}"),
        }
        let port = serve(2).await;
        assert_eq!(
            probe("127.0.0.1", port, "app", t).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = l.local_addr().unwrap().port();
        drop(l);
        match probe("127.0.0.1", closed, "", t).await {
            Outcome::Failure(m) => {
                assert!(m.starts_with("error: failed to connect service at"), "{m}")
            }
            o => panic!("{o:?}"),
        }
    }
}
