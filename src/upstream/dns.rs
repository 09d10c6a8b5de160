//! Asynchronous DNS with a small TTL cache, so no worker thread ever blocks on a lookup.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct DnsCache {
    ttl: Duration,
    entries: Mutex<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

impl DnsCache {
    pub fn new(ttl: Duration) -> Self {
        DnsCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Ok(entries) = self.entries.lock() {
            if let Some((addr, at)) = entries.get(&key) {
                if at.elapsed() < self.ttl {
                    return Ok(*addr);
                }
            }
        }
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| "no address found".to_string())?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, (found, Instant::now()));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_localhost() {
        let d = DnsCache::new(Duration::from_secs(60));
        assert_eq!(d.resolve("127.0.0.1", 80).await.unwrap().port(), 80);
        assert!(d.resolve("localhost", 81).await.unwrap().ip().is_loopback());
        assert!(d.resolve("no-such-host.invalid", 80).await.is_err());
    }
}
