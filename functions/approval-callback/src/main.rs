//! Lambda `finops-approval-callback` behind a Function URL: each request goes to [`ApprovalCallback::respond`].
#![recursion_limit = "256"]

use finops_approval_callback::{ApprovalCallback, HttpRequest, HttpResponse};
use finops_approval_store::StoreConfig;
use lambda_http::{Body, Request, RequestExt, Response};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let callback = &ApprovalCallback::new(&sdk, StoreConfig::from_vars(std::env::vars())?);
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        let source_ip = match req.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        };
        let request = HttpRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            body: req.body().as_ref(),
            source_ip: source_ip.as_deref(),
        };
        let response = callback.respond(request, chrono::Utc::now()).await;
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
