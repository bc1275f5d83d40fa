//! Inside a Lambda function (AWS_LAMBDA_FUNCTION_NAME and _X_AMZN_TRACE_ID set by the runtime), every AWS SDK call
//! carries the invocation's trace header, so X-Ray links the service calls to the step. This binary holds this one
//! test because it sets process environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use finops_aws::{load_sdk_config, AwsSettings, RunStore, S3RunStore};

#[tokio::test]
async fn sdk_calls_carry_the_invocation_trace_header() {
    let trace = "Root=1-65dfb5a1-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1";
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "finops-inventory");
    std::env::set_var("_X_AMZN_TRACE_ID", trace);
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut headers = Vec::new();
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
            headers.push(line.trim().to_owned());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
        headers
    });

    let config =
        load_sdk_config(&AwsSettings { profile: None, endpoint_url: Some(url), region: Some("ap-southeast-2".into()) })
            .await;
    S3RunStore::new(&config, "runs").put("runs/r/inventory.json", b"{}".to_vec()).await.expect("put");
    let headers = server.join().unwrap();
    let header = headers.iter().find(|h| h.to_ascii_lowercase().starts_with("x-amzn-trace-id:")).expect("trace header");
    assert_eq!(header.split_once(':').unwrap().1.trim(), trace);
}
