//! prism-mock: one deterministic upstream that speaks OpenAI (and compatibles), Anthropic
//! Messages, Gemini GenAI REST, Cohere v2 and Ollama's tag list, with injectable faults.
//!
//! Used by integration tests, load tests and the README demo. Standalone on purpose: it does not
//! depend on the gateway crate, so a gateway bug cannot hide in a shared translation.
//!
//! Replies: `prism-mock received {N} bytes. tok1 héllo tok3 ...` (N = request body length),
//! one word per stream content event; tool calls when tools are declared and forced (or the last
//! user message says "call tools"); faults via `model@directive,...` or `POST /_mock/fault`
//! (see `directives.rs` and `control.rs`).

mod anthropic;
mod body;
mod cohere;
mod control;
mod directives;
mod gemini;
mod ollama;
mod openai;
mod reply;
mod respond;
mod service;
mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::body::Split;
use crate::state::{Config, State};

/// A mock LLM upstream (OpenAI, Anthropic, Gemini, Cohere, Ollama wire formats) with faults.
#[derive(Debug, Parser)]
#[command(
    name = "prism-mock",
    version,
    about = "Mock LLM upstream for Prism tests: OpenAI, Anthropic, Gemini, Cohere and Ollama wire formats, with faults chosen by `model@directive,...` or POST /_mock/fault",
    long_about = None
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: String,

    /// Delay between stream events, in milliseconds (per request: `model@pace=MS`).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    token_delay_ms: u64,

    /// Smallest body frame a stream event is cut into, in bytes.
    #[arg(long, value_name = "B", default_value_t = 1)]
    chunk_min: usize,

    /// Largest body frame a stream event is cut into, in bytes.
    #[arg(long, value_name = "B", default_value_t = 48)]
    chunk_max: usize,

    /// Write each stream event as one frame (for load tests).
    #[arg(long)]
    no_split: bool,

    /// Require this key in each provider's auth header (`Authorization: Bearer`, `x-api-key`,
    /// `x-goog-api-key`); requests without it get the provider's native auth error.
    #[arg(long, value_name = "KEY")]
    require_key: Option<String>,

    /// PEM certificate chain: serve HTTPS (ALPN h2 and http/1.1).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Words in a reply when the request does not say (`model@tokens=N`).
    #[arg(long, value_name = "N", default_value_t = 8)]
    tokens: usize,

    /// Embedding dimensions when the request does not say.
    #[arg(long, value_name = "N", default_value_t = 8)]
    dims: usize,

    /// Log one line per request to stderr.
    #[arg(long)]
    log: bool,
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key found", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("TLS: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.chunk_min == 0 || cli.chunk_max < cli.chunk_min {
        eprintln!("prism-mock: need 1 <= --chunk-min <= --chunk-max");
        return ExitCode::from(2);
    }
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("prism-mock: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let listener = match TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("prism-mock: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("prism-mock: {e}");
            return ExitCode::FAILURE;
        }
    };
    let split = if cli.no_split {
        Split::Whole
    } else {
        Split::Random {
            min: cli.chunk_min,
            max: cli.chunk_max,
        }
    };
    let state = Arc::new(State::new(Config {
        token_delay: Duration::from_millis(cli.token_delay_ms),
        split,
        require_key: cli.require_key.clone(),
        default_tokens: cli.tokens,
        default_dims: cli.dims.max(1),
        log: cli.log,
    }));
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        let mut out = std::io::stdout().lock();
        // If stdout is gone nobody reads the port; keep serving anyway.
        let _ = writeln!(out, "prism-mock listening on {scheme}://{local}");
        let _ = out.flush();
    }

    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(_) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| service::handle(state.clone(), req));
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}
