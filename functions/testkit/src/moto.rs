//! A real moto server, started once per test binary on a free port of 127.0.0.1.
//!
//! The server is `tests/moto/launcher.py` run by the workspace's `.venv` Python (override with
//! `FINOPS_MOTO_PYTHON`). It exits when the test binary's end closes its standard input, so no server outlives
//! the tests. Tests share the server one at a time: [`moto`] takes a lock and resets moto's state first.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;

pub struct MotoServer {
    pub endpoint: String,
    pub port: u16,
    _child: Mutex<Child>,
}

static SERVER: OnceLock<MotoServer> = OnceLock::new();
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Exclusive use of the shared moto server, freshly reset.
pub struct MotoSession {
    pub endpoint: String,
    pub port: u16,
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("FINOPS_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "moto is not installed: {} is missing. Run `make test` (it creates .venv with moto[server]) or set FINOPS_MOTO_PYTHON",
        venv.display()
    );
    venv
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

impl MotoServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts a server with extra environment, for example `MOTO_PORT` pointing its Step Functions interpreter's
    /// Lambda calls at a local Lambda endpoint.
    pub fn start_with_env(env: &[(&str, String)]) -> Self {
        let port = free_port();
        let launcher = workspace_root().join("tests/moto/launcher.py");
        let log = std::env::temp_dir().join(format!("finops-moto-{port}.log"));
        let child = Command::new(python())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg(&launcher)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).expect("moto log"))
            .stderr(std::fs::File::create(&log).expect("moto log"))
            .spawn()
            .expect("start moto server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/moto-api/data.json", "") {
                break;
            }
            assert!(Instant::now() < deadline, "moto did not start on port {port}; see {}", log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { endpoint, port, _child: Mutex::new(child) }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let mut child = self._child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Takes the shared server (starting it on first use) and resets every service's state.
pub async fn moto() -> MotoSession {
    let guard = EXCLUSIVE.lock().await;
    let server = SERVER.get_or_init(MotoServer::start);
    let (status, body) = http(server.port, "POST", "/moto-api/reset", "").expect("reset moto");
    assert_eq!(status, 200, "moto reset failed: {body}");
    MotoSession { endpoint: server.endpoint.clone(), port: server.port, _guard: guard }
}

impl MotoSession {
    /// SDK configuration pointing every client at this moto server, with dummy credentials.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        sdk_config(&self.endpoint, region).await
    }

    /// POSTs JSON to a moto control endpoint (`/moto-api/config`, ...).
    pub fn control(&self, path: &str, json: &str) -> (u16, String) {
        http(self.port, "POST", path, json).expect("moto control call")
    }
}

/// SDK configuration pointing every client at a moto endpoint, with dummy credentials.
pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    let settings = finops_aws::AwsSettings {
        profile: None,
        endpoint_url: Some(endpoint.to_owned()),
        region: Some(region.to_owned()),
    };
    finops_aws::load_sdk_config(&settings)
        .await
        .into_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .build()
}

/// Minimal HTTP/1.1 client for moto's control API and ChromeDriver (no dependency for a few calls). Reads the
/// body by Content-Length: some servers keep the connection open despite `Connection: close`.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = &stream;
    write!(
        writer,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = std::io::BufReader::new(&stream);
    let mut status_line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut status_line)?;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut size_line)?;
            let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One email SES sent (moto keeps them; `/moto-api/data.json` lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    pub source: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// Every email SES (v1 or v2) has sent on the moto at `port`, in order.
pub fn ses_sent(port: u16) -> Vec<SentEmail> {
    let (status, body) = http(port, "GET", "/moto-api/data.json", "").expect("moto's data");
    assert_eq!(status, 200, "{body}");
    let data: serde_json::Value = serde_json::from_str(&body).expect("moto's data is JSON");
    let text = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_owned();
    data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| SentEmail {
            source: text(m, "source"),
            to: m["destinations"]["ToAddresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            subject: text(m, "subject"),
            body: text(m, "body"),
        })
        .collect()
}
