//! Lambda `finops-approval-callback` behind a Function URL; with `FINOPS_LOCAL_LISTEN=127.0.0.1:PORT` it serves the same
//! handler over plain HTTP instead (the local demo and the browser test).

use std::net::SocketAddr;

use finops_approval_callback::{handle, HttpRequest, HttpResponse};
use finops_approval_store::{DynamoApprovals, SecretsManagerKey, SfnCallback};
use finops_aws::{load_sdk_config, AwsSettings, FinopsError};
use http_body_util::{BodyExt, Full};
use lambda_http::{Body, Request, RequestExt, Response};

fn required(name: &str) -> Result<String, FinopsError> {
    std::env::var(name).map_err(|_| FinopsError::Configuration(format!("{name} is not set")))
}

struct Clients {
    records: DynamoApprovals,
    key: SecretsManagerKey,
    callback: SfnCallback,
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let clients = Clients {
        records: DynamoApprovals::new(&config, required("FINOPS_APPROVALS_TABLE")?),
        key: SecretsManagerKey::new(&config, required("FINOPS_SIGNING_SECRET_ID")?),
        callback: SfnCallback::new(&config),
    };
    if let Ok(addr) = std::env::var("FINOPS_LOCAL_LISTEN") {
        return serve_locally(addr.parse()?, clients).await;
    }
    let clients = &clients;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        let source_ip = match req.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        };
        let response = handle(
            HttpRequest {
                method: req.method().as_str(),
                path: req.uri().path(),
                query: req.uri().query().unwrap_or(""),
                body: req.body().as_ref(),
                source_ip: source_ip.as_deref(),
            },
            &clients.records,
            &clients.key,
            &clients.callback,
            chrono::Utc::now(),
        )
        .await;
        Ok::<_, lambda_http::Error>(to_lambda(response))
    }))
    .await
}

fn to_lambda(r: HttpResponse) -> Response<Body> {
    let mut builder = Response::builder().status(r.status);
    for (k, v) in r.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::Text(r.body)).expect("valid response")
}

/// Plain HTTP/1.1 on a local address, one task per connection.
async fn serve_locally(addr: SocketAddr, clients: Clients) -> Result<(), lambda_http::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the approval callback locally");
    let clients = std::sync::Arc::new(clients);
    loop {
        let (stream, peer) = listener.accept().await?;
        let clients = clients.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let clients = clients.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let ip = peer.ip().to_string();
                    let r = handle(
                        HttpRequest {
                            method: parts.method.as_str(),
                            path: parts.uri.path(),
                            query: parts.uri.query().unwrap_or(""),
                            body: &body,
                            source_ip: Some(&ip),
                        },
                        &clients.records,
                        &clients.key,
                        &clients.callback,
                        chrono::Utc::now(),
                    )
                    .await;
                    let mut builder = hyper::Response::builder().status(r.status);
                    for (k, v) in r.headers {
                        builder = builder.header(k, v);
                    }
                    Ok::<_, std::convert::Infallible>(
                        builder.body(Full::new(hyper::body::Bytes::from(r.body))).expect("response"),
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}
