//! Headless Chromium driven through ChromeDriver's W3C WebDriver API (Debian's `chromium` and `chromium-driver`
//! packages; no browser download). A few endpoints over plain HTTP are all the browser tests need.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::moto::http;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    port: u16,
    session: String,
    driver: Child,
    profile: std::path::PathBuf,
}

async fn call(port: u16, method: &str, path: &str, body: &Value) -> Value {
    let (status, text) = http(port, method, path, &body.to_string()).await.expect("webdriver call");
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("webdriver {method} {path}: {status} {text}"));
    assert!((200..300).contains(&status), "webdriver {method} {path}: {status} {value}");
    value["value"].clone()
}

impl Browser {
    pub async fn start() -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: `make test` installs Debian's chromium and chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, so that dropping the browser ends ChromeDriver and every Chromium process it
        // started with one signal, without waiting on anything.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/status", "").await.map(|(s, _)| s != 200).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("finops-chromium-{port}"));
        // The flags keep Chromium from reaching for the network this machine does not have.
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())]
        }}}});
        let session =
            call(port, "POST", "/session", &capabilities).await["sessionId"].as_str().expect("session id").to_owned();
        Self { port, session, driver, profile }
    }

    pub async fn goto(&self, url: &str) {
        call(self.port, "POST", &format!("/session/{}/url", self.session), &json!({"url": url})).await;
    }

    pub async fn source(&self) -> String {
        call(self.port, "GET", &format!("/session/{}/source", self.session), &json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn element(&self, css: &str) -> String {
        let found = call(
            self.port,
            "POST",
            &format!("/session/{}/element", self.session),
            &json!({"using": "css selector", "value": css}),
        )
        .await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}")).to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        call(self.port, "POST", &format!("/session/{}/element/{id}/value", self.session), &json!({"text": text})).await;
    }

    /// Presses Enter in a field, as a person does after typing their name (WebDriver's key code U+E007).
    pub async fn press_enter(&self, css: &str) {
        self.type_into(css, "\u{E007}").await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        call(self.port, "POST", &format!("/session/{}/element/{id}/click", self.session), &json!({})).await;
    }

    /// Waits until the page source contains `text`.
    pub async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(Instant::now() < deadline, "page never showed {text:?}:\n{source}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGKILL to the whole group (ChromeDriver, Chromium and its helpers); the session needs no goodbye.
        // SAFETY: kill(2) with a negative pid signals the process group this browser created; no memory involved.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
