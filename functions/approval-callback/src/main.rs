//! Lambda `finops-approval-callback` behind a Function URL: each request goes to [`ApprovalCallback::respond`].
#![recursion_limit = "256"]

use finops_approval_callback::{ApprovalCallback, HttpRequest, HttpResponse};
use lambda_http::{Body, Request, RequestExt, Response};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let callback = &ApprovalCallback::from_vars(&sdk, &vars)?;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        let source_ip = match req.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        };
        let headers = req.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
        let request = HttpRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            body: req.body().as_ref(),
            source_ip: source_ip.as_deref(),
            headers,
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
