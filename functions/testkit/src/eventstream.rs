//! AWS event-stream frames for mocked streaming responses (InvokeAgent), written with `aws-smithy-eventstream`.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

fn frame(headers: Vec<(&'static str, String)>, payload: Vec<u8>) -> Vec<u8> {
    let mut message = Message::new(payload);
    for (name, value) in headers {
        message = message.add_header(Header::new(name, HeaderValue::String(value.into())));
    }
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).expect("frame");
    out
}

/// An event frame (`chunk`, `trace`, `returnControl`) with a JSON payload.
pub fn event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    frame(
        vec![
            (":message-type", "event".into()),
            (":event-type", event_type.into()),
            (":content-type", "application/json".into()),
        ],
        payload.to_string().into_bytes(),
    )
}

/// A chunk of the agent's answer.
pub fn chunk(text: &str) -> Vec<u8> {
    event("chunk", &serde_json::json!({"bytes": aws_smithy_types::base64::encode(text)}))
}

/// An exception frame in the middle of a stream (`throttlingException`, `internalServerException`, ...).
pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
    frame(
        vec![
            (":message-type", "exception".into()),
            (":exception-type", exception_type.into()),
            (":content-type", "application/json".into()),
        ],
        serde_json::json!({"message": message}).to_string().into_bytes(),
    )
}

/// A 200 response whose body is the given frames.
pub fn stream_response(frames: &[Vec<u8>]) -> HttpResponse {
    let mut response = HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(frames.concat()));
    response.headers_mut().insert("content-type", "application/vnd.amazon.eventstream");
    response.headers_mut().insert("x-amz-bedrock-agent-session-id", "run-1");
    response.headers_mut().insert("x-amzn-bedrock-agent-content-type", "application/json");
    response
}
