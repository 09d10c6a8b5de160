//! Remote image URLs for providers that take only inline images (Gemini, Ollama, LM Studio):
//! fetched by the gateway only when the operator enables it for the provider, and never as
//! an open fetch proxy: http(s) only, the host's address checked against private, loopback,
//! link-local (cloud metadata) and other internal ranges before connecting, no redirects,
//! an image content type, a size cap and a timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use super::Upstreams;
use crate::config::ProviderConfig;
use crate::error::{GatewayError, Result};
use crate::providers::{Kind, Notes, UpstreamRequest};
use crate::table::Provider;

#[derive(Debug, Clone)]
pub struct ImagePolicy {
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_images: usize,
    /// Only for tests and trusted networks: allow internal addresses.
    pub allow_private: bool,
}

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Whether `kind` needs remote images inlined by the gateway.
pub fn needs_inline(kind: Kind) -> bool {
    matches!(kind, Kind::Gemini | Kind::Ollama | Kind::Lmstudio)
}

/// Addresses a gateway must never fetch from on a client's behalf.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

/// Remote image URLs in the request, with their parameter paths, in order.
fn remote_images(body: &[u8]) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, m) in v["messages"].as_array().into_iter().flatten().enumerate() {
        for (j, p) in m["content"].as_array().into_iter().flatten().enumerate() {
            if p["type"] != "image_url" {
                continue;
            }
            let url = match &p["image_url"] {
                Value::String(s) => s.as_str(),
                other => other["url"].as_str().unwrap_or_default(),
            };
            if url.starts_with("http://") || url.starts_with("https://") {
                out.push((url.to_string(), format!("messages[{i}].content[{j}].image_url.url")));
            }
        }
    }
    out
}

fn refuse(param: &str, message: String) -> GatewayError {
    GatewayError::invalid_request(message)
        .with_param(param)
        .with_code("image_fetch_failed")
}

/// Fetch every remote image of the request: url → (mime, base64).
pub async fn fetch_all(
    body: &[u8],
    upstreams: &Upstreams,
    policy: &ImagePolicy,
) -> Result<HashMap<String, (String, String)>> {
    let mut out = HashMap::new();
    let list = remote_images(body);
    if list.len() > policy.max_images {
        return Err(refuse(
            "messages",
            format!("at most {} remote images per request", policy.max_images),
        ));
    }
    for (url, param) in list {
        if out.contains_key(&url) {
            continue;
        }
        let fetched = tokio::time::timeout(policy.timeout, fetch_one(&url, &param, upstreams, policy))
            .await
            .map_err(|_| {
                refuse(
                    &param,
                    format!("fetching the image took longer than {:?}", policy.timeout),
                )
            })??;
        out.insert(url, fetched);
    }
    Ok(out)
}

async fn fetch_one(url: &str, param: &str, upstreams: &Upstreams, policy: &ImagePolicy) -> Result<(String, String)> {
    let u = url::Url::parse(url).map_err(|e| refuse(param, format!("not a valid image URL: {e}")))?;
    let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let ip = upstreams
        .dns
        .resolve(&host, port)
        .await
        .map_err(|e| refuse(param, format!("cannot resolve the image host: {e}")))?
        .ip();
    if is_internal(ip) && !policy.allow_private {
        return Err(refuse(
            param,
            "the image URL points to an internal address; only public hosts are fetched".into(),
        ));
    }
    let base = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
    let base = match u.port() {
        Some(p) => format!("{base}:{p}"),
        None => base,
    };
    let pc = ProviderConfig {
        kind: Some("openai".into()),
        base_url: Some(base),
        http2: false,
        enabled: true,
        ..ProviderConfig::default()
    };
    let mut target = Provider::from_config("image-fetch", &pc, "file").map_err(|e| refuse(param, e.message))?;
    target.timeouts.first_byte = policy.timeout;
    target.timeouts.idle = policy.timeout;
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let req = UpstreamRequest {
        method: "GET",
        path,
        body: Bytes::new().into(),
        headers: vec![("accept", IMAGE_TYPES.join(", "))],
        notes: Notes::default(),
    };
    let mut x = upstreams
        .send(&target, &req)
        .await
        .map_err(|(_, e)| refuse(param, format!("cannot fetch the image: {}", e.message)))?;
    if x.status != 200 {
        let status = x.status;
        x.abort().await;
        return Err(refuse(
            param,
            format!("the image URL answered HTTP {status} (redirects are not followed)"),
        ));
    }
    let mime = x
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !IMAGE_TYPES.contains(&mime.as_str()) {
        x.abort().await;
        return Err(refuse(
            param,
            format!("the URL is not an image of a supported type (got `{mime}`)"),
        ));
    }
    let bytes = match x.read_all(policy.max_bytes).await {
        Ok(b) => b,
        Err(_) => {
            x.abort().await;
            return Err(refuse(
                param,
                format!("the image is larger than {} bytes", policy.max_bytes),
            ));
        }
    };
    upstreams.release(x).await;
    Ok((mime, base64::engine::general_purpose::STANDARD.encode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn finds_remote_images_only() {
        let body = br#"{"messages":[{"role":"user","content":[{"type":"text","text":"x"},
            {"type":"image_url","image_url":{"url":"https://example.com/a.png"}},
            {"type":"image_url","image_url":"http://example.com/b.jpg"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}]}"#;
        let found = remote_images(body);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, "messages[0].content[1].image_url.url");
        assert_eq!(found[1].0, "http://example.com/b.jpg");
    }
}
