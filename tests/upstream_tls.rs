//! Upstream connections: TLS by rustls to a mock with its own CA (per-provider `ca_file`),
//! HTTP/2 where the upstream offers it, and the per-provider timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat_body, collect_stream, Gateway, Mock};

/// A private CA and a server certificate for 127.0.0.1/localhost signed by it.
fn private_ca(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let s = |p: std::path::PathBuf| p.display().to_string();
    (s(ca_path), s(cert_path), s(key_path))
}

#[tokio::test]
async fn tls_upstream_with_private_ca_over_http2() {
    let dir = common::temp_dir("tls");
    let (ca, cert, key) = private_ca(&dir);
    let mock = Mock::start_with(&["--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://localhost:{}/v1", mock.port);
    let cfg = format!(
        "[health]\nprobe_interval = \"0s\"\n\
         [providers.private]\nkind = \"openai\"\nbase_url = \"{url}\"\nca_file = \"{ca}\"\n\
         [providers.h1only]\nkind = \"openai\"\nbase_url = \"{url}\"\nca_file = \"{ca}\"\nhttp2 = false\n\
         [providers.untrusted]\nkind = \"openai\"\nbase_url = \"{url}\"\n"
    );
    let gw = Gateway::start(&cfg).await;
    for size in [1024, 1 << 20] {
        let (status, v) = gw.chat(&chat_body("private/m", size, false)).await;
        assert_eq!(status, 200, "{v}\n{}", gw.log());
        let last = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
            .get(format!("https://localhost:{}/_mock/last", mock.port))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        assert_eq!(last["version"], "HTTP/2.0", "h2 negotiated by ALPN");
        assert!(last["body_len"].as_u64().unwrap() as usize >= size - 200);
        let (status, events) = gw.chat_stream(&chat_body("private/m", size, true)).await;
        assert_eq!(status, 200);
        assert_eq!(collect_stream(&events).1.as_deref(), Some("stop"));
    }
    // Several requests at once share the HTTP/2 connection (multiplexed streams).
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = gw.url();
        set.spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(common::KEY)
                .json(&chat_body("private/m@delay=200", 200, false))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap(), 200);
    }
    let (status, _) = gw.chat(&chat_body("h1only/m", 100, false)).await;
    assert_eq!(status, 200);
    // A certificate from a CA the provider does not trust is refused, with a clear error.
    let (status, v) = gw.chat(&chat_body("untrusted/m", 100, false)).await;
    assert_eq!(status, 502, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("untrusted"), "{v}");
}

#[tokio::test]
async fn first_byte_and_idle_timeouts() {
    let mock = Mock::start();
    let cfg = format!(
        "[health]\nprobe_interval = \"0s\"\nretries = 0\n\
         [providers.openai]\nbase_url = \"{}\"\nfirst_byte_timeout = \"300ms\"\nidle_timeout = \"300ms\"\n",
        mock.v1()
    );
    let gw = Gateway::start(&cfg).await;
    let t0 = std::time::Instant::now();
    let (status, v) = gw.chat(&chat_body("openai/m@delay=2000", 100, false)).await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(1500),
        "gave up at the first-byte timeout"
    );
    // A stream that goes silent longer than the idle timeout after content: an error event.
    let (status, events) = gw.chat_stream(&chat_body("openai/m@pace=1000", 100, true)).await;
    assert_eq!(
        status, 504,
        "silence before the first content fails over / errors: {events:?}"
    );
    let (status, v) = gw.chat(&chat_body("openai/m@delay=100", 100, false)).await;
    assert_eq!(status, 200, "{v}");
}
