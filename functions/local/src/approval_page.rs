//! The approval callback over plain HTTP on a local address, for `make demo` and the browser tests: the same
//! [`ApprovalCallback`] the Lambda's Function URL runs, one task per connection. (Kept here, out of the Lambda.)

use std::sync::Arc;

use finops_approval_callback::{ApprovalCallback, HttpRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// Serves `callback` on `listener` until the task is dropped or the process ends.
pub async fn serve(listener: tokio::net::TcpListener, callback: Arc<ApprovalCallback>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let callback = callback.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let callback = callback.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let ip = peer.ip().to_string();
                    let headers =
                        parts.headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
                    let request = HttpRequest {
                        method: parts.method.as_str(),
                        path: parts.uri.path(),
                        query: parts.uri.query().unwrap_or(""),
                        body: &body,
                        source_ip: Some(&ip),
                        headers,
                    };
                    let r = callback.respond(request, chrono::Utc::now()).await;
                    let mut builder = hyper::Response::builder().status(r.status);
                    for (k, v) in r.headers {
                        builder = builder.header(k, v);
                    }
                    Ok::<_, std::convert::Infallible>(builder.body(Full::new(Bytes::from(r.body))).expect("response"))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// Starts [`serve`] on 127.0.0.1:`port` in the background; the server stops when the returned handle is dropped.
pub async fn start(port: u16, callback: ApprovalCallback) -> std::io::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    Ok(ServerHandle(tokio::spawn(serve(listener, Arc::new(callback)))))
}

/// The running local approval page; dropping it stops the server.
pub struct ServerHandle(tokio::task::JoinHandle<()>);

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}
