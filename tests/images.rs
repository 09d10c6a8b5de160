//! Remote image URLs: fetched and inlined only where the operator enabled it, with the
//! SSRF guard (internal addresses refused unless explicitly allowed), a size cap and a
//! content-type check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Mock};
use serde_json::{json, Value};

fn body(model: &str, url: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
}

fn config(mock: &Mock, allow_private: bool) -> String {
    format!(
        "[server]\nimage_allow_private = {allow_private}\nimage_max_size = \"1MiB\"\n[health]\nprobe_interval = \"0s\"\n\
         [providers.gemini]\nbase_url = \"{root}\"\napi_key = \"k\"\nfetch_images = true\n\
         [providers.ollama]\nbase_url = \"{v1}\"\nfetch_images = true\n\
         [providers.gemini-nofetch]\nkind = \"gemini\"\nbase_url = \"{root}\"\napi_key = \"k\"\n",
        root = mock.root(),
        v1 = mock.v1()
    )
}

#[tokio::test]
async fn fetched_and_inlined_when_enabled() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, true)).await;
    let cat = format!("{}/images/cat.jpg", mock.root());
    let (status, v) = gw.chat(&body("gemini/gemini-2.0-flash", &cat)).await;
    assert_eq!(status, 200, "{v}");
    let last = mock.last().await;
    let parts = &last["body"]["contents"][0]["parts"];
    assert_eq!(
        parts[1]["inlineData"],
        json!({"mimeType": "image/jpeg", "data": "/9j/4A=="}),
        "{last}"
    );

    let (status, v) = gw.chat(&body("ollama/llava", &cat)).await;
    assert_eq!(status, 200, "{v}");
    let last = mock.last().await;
    assert_eq!(
        last["body"]["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,/9j/4A=="
    );

    for (url, what) in [
        ("/images/big.jpg", "larger than"),
        ("/images/page.html", "not an image"),
        ("/images/missing.png", "HTTP 404"),
    ] {
        let (status, v) = gw.chat(&body("gemini/g", &format!("{}{url}", mock.root()))).await;
        assert_eq!(status, 400, "{url}: {v}");
        assert_eq!(v["error"]["code"], "image_fetch_failed");
        assert_eq!(v["error"]["param"], "messages[0].content[1].image_url.url");
        assert!(v["error"]["message"].as_str().unwrap().contains(what), "{url}: {v}");
    }
}

#[tokio::test]
async fn internal_addresses_and_disabled_fetching_are_refused() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock, false)).await;
    let before = mock.stats().await["requests"].as_u64().unwrap_or(0);
    for url in [
        format!("{}/images/cat.jpg", mock.root()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/x.png".to_string(),
        "http://[::1]:80/x.png".to_string(),
    ] {
        let (status, v) = gw.chat(&body("gemini/g", &url)).await;
        assert_eq!(status, 400, "{url}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("internal address"),
            "{url}: {v}"
        );
    }
    let (status, v) = gw.chat(&body("gemini-nofetch/g", "https://example.com/cat.jpg")).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("disabled"), "{v}");
    assert_eq!(
        mock.stats().await["requests"].as_u64().unwrap_or(0),
        before,
        "nothing fetched, nothing sent"
    );
}
