//! `finops ask` as a user runs it: the real binary against a local endpoint that answers InvokeAgent with a
//! recorded-style event stream (Bedrock cannot be reached from here).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;

use finops_testkit::eventstream::{chunk, event};
use serde_json::json;

/// Serves one request with the given event-stream body; sends back the request line.
fn one_shot_endpoint(body: Vec<u8>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut request_body = vec![0; length];
        reader.read_exact(&mut request_body).unwrap();
        tx.send(format!("{}{}", request_line.trim(), String::from_utf8_lossy(&request_body))).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nx-amz-bedrock-agent-session-id: s-1\r\nx-amzn-bedrock-agent-content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
    });
    (url, rx)
}

#[test]
fn ask_streams_the_answer_and_prints_the_trace() {
    let frames = [
        event("trace", &json!({"agentId": "AG", "sessionId": "s-1", "trace": {"orchestrationTrace": {"rationale": {"text": "I should list idle instances first."}}}})),
        event("trace", &json!({"agentId": "AG", "sessionId": "s-1", "trace": {"orchestrationTrace": {"invocationInput": {"invocationType": "ACTION_GROUP", "actionGroupInvocationInput": {"apiPath": "/underutilised-resources", "verb": "get"}}}}})),
        chunk("Two instances in ap-southeast-2 are idle: "),
        chunk("dev-ana-workstation ($75.92/month) and dev-raj-sandbox."),
    ]
    .concat();
    let (url, requests) = one_shot_endpoint(frames);
    let out = Command::new(env!("CARGO_BIN_EXE_finops"))
        .args([
            "ask",
            "Find underutilised instances in ap-southeast-2",
            "--agent-id",
            "AG",
            "--agent-alias-id",
            "AL",
            "--session-id",
            "s-1",
            "--trace",
        ])
        .args(["--endpoint-url", &url, "--region", "ap-southeast-2"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "Two instances in ap-southeast-2 are idle: dev-ana-workstation ($75.92/month) and dev-raj-sandbox."
    );
    assert!(stderr.contains("trace: rationale: I should list idle instances first."), "{stderr}");
    assert!(stderr.contains("trace: tool call: get /underutilised-resources"), "{stderr}");
    let request = requests.recv().unwrap();
    assert!(request.starts_with("POST /agents/AG/agentAliases/AL/sessions/s-1/text"), "{request}");
    assert!(request.contains("\"enableTrace\":true") && request.contains("Find underutilised instances"), "{request}");
}

#[test]
fn ask_without_an_agent_or_model_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(["ask", "hello"])
        .env_remove("FINOPS_AGENT_ID")
        .env_remove("FINOPS_AGENT_ALIAS_ID")
        .env_remove("FINOPS_MODEL_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent-id"));
}
