//! A real moto server, started once per test binary on a free port of 127.0.0.1.
//!
//! The server is `tests/moto/launcher.py` run by the workspace's `.venv` Python (override with
//! `FINOPS_MOTO_PYTHON`). It exits when the test binary's end closes its standard input, so no server outlives
//! the tests. Tests share the server one at a time: [`moto`] takes a lock and resets moto's state first.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;

pub struct MotoServer {
    pub endpoint: String,
    pub port: u16,
    _child: Mutex<Child>,
}

static SERVER: tokio::sync::OnceCell<MotoServer> = tokio::sync::OnceCell::const_new();
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

impl MotoServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Starts a server with extra environment, for example `MOTO_PORT` pointing its Step Functions interpreter's
    /// Lambda calls at a local Lambda endpoint. The server binds port 0 and says which port it got (a port found
    /// free here and bound there later could be taken in between: two chaos workers once shared one moto so).
    pub async fn start_with_env(env: &[(&str, String)]) -> Self {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("finops-moto-{}-{n}", std::process::id());
        let launcher = workspace_root().join("tests/moto/launcher.py");
        let mut log = std::env::temp_dir().join(format!("{name}.log"));
        let port_file = std::env::temp_dir().join(format!("{name}.port"));
        let _ = tokio::fs::remove_file(&port_file).await;
        let output = std::fs::File::create(&log).expect("moto log");
        let mut child = Command::new(python())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg(&launcher)
            .arg("0")
            .arg(&port_file)
            .stdin(Stdio::piped())
            .stdout(output.try_clone().expect("moto log"))
            .stderr(output)
            .spawn()
            .expect("start moto server");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = tokio::fs::read_to_string(&port_file).await.ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            let exited = child.try_wait().ok().flatten();
            assert!(exited.is_none(), "moto exited ({exited:?}) before listening; see {}", log.display());
            assert!(Instant::now() < deadline, "moto did not start; see {}", log.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = tokio::fs::remove_file(&port_file).await;
        // Named by its port from now on, as before: one log per port, not one more per server ever started.
        let by_port = std::env::temp_dir().join(format!("finops-moto-{port}.log"));
        if tokio::fs::rename(&log, &by_port).await.is_ok() {
            log = by_port;
        }
        loop {
            if let Ok((200, _)) = http(port, "GET", "/moto-api/data.json", "").await {
                break;
            }
            assert!(Instant::now() < deadline, "moto did not answer on port {port}; see {}", log.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { endpoint: format!("http://127.0.0.1:{port}"), port, _child: Mutex::new(child) }
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
    let server = SERVER.get_or_init(MotoServer::start).await;
    let (status, body) = http(server.port, "POST", "/moto-api/reset", "").await.expect("reset moto");
    assert_eq!(status, 200, "moto reset failed: {body}");
    MotoSession { endpoint: server.endpoint.clone(), port: server.port, _guard: guard }
}

impl MotoSession {
    /// SDK configuration pointing every client at this moto server, with dummy credentials.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        sdk_config(&self.endpoint, region).await
    }

    /// POSTs JSON to a moto control endpoint (`/moto-api/config`, ...).
    pub async fn control(&self, path: &str, json: &str) -> (u16, String) {
        http(self.port, "POST", path, json).await.expect("moto control call")
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

/// Minimal HTTP/1.1 client for moto's control API, ChromeDriver and the local approval page (no dependency for a
/// few calls). Async on purpose: the harnesses call it from the runtime that also serves the pages they ask, and a
/// blocking read there can hold both worker threads while the answer waits for one of them. Reads the body by
/// Content-Length: some servers keep the connection open despite `Connection: close`. Gives up after 60 s.
pub async fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_with_headers(port, method, path, &[("Content-Type", "application/json")], body).await
}

/// [`http`] with the request's own headers (Content-Type among them).
pub async fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut reader = tokio::io::BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await?;
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length: Option<usize> = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
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
                reader.read_line(&mut size_line).await?;
                let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
                if size == 0 {
                    break;
                }
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).await?;
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            reader.read_exact(&mut body).await?;
        } else {
            reader.read_to_end(&mut body).await?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(Duration::from_secs(60), exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{method} {path}: no answer in 60 s"))),
    }
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
pub async fn ses_sent(port: u16) -> Vec<SentEmail> {
    try_ses_sent(port).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`ses_sent`], or why moto could not say: its `/moto-api/data.json` answers 500 now and then while other requests
/// change its state (seen under six chaos workers), and a harness must not end a batch for that.
pub async fn try_ses_sent(port: u16) -> Result<Vec<SentEmail>, String> {
    let (status, body) = http(port, "GET", "/moto-api/data.json", "").await.map_err(|e| format!("moto's data: {e}"))?;
    if status != 200 {
        return Err(format!("moto's data: HTTP {status}: {}", body.chars().take(200).collect::<String>()));
    }
    let data: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("moto's data is not JSON: {e}"))?;
    let text = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_owned();
    Ok(data["ses"]["Message"]
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
        .collect())
}
