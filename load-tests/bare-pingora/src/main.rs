//! bare-pingora: the "floor" a Pingora proxy can reach on this machine, for Prism's load tests.
//!
//! A `ProxyHttp` with nothing in it but `upstream_peer`: every request goes, unchanged, to one
//! plain-HTTP upstream over Pingora's keep-alive pool. No auth, no body parsing, no logging.
//!
//! ```text
//! bare-pingora --listen 127.0.0.1:18082 --upstream 127.0.0.1:19000 [--threads 1]
//! ```
//! Each flag falls back to an environment variable: `BARE_LISTEN`, `BARE_UPSTREAM`,
//! `BARE_THREADS`.

use std::process::ExitCode;

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, Opt, Result, Server};
use pingora::proxy::{http_proxy_service_with_name, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

struct PassThrough {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for PassThrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstream: String,
    threads: usize,
}

fn usage() -> &'static str {
    "usage: bare-pingora --listen ADDR --upstream HOST:PORT [--threads N]\n\
     (or BARE_LISTEN, BARE_UPSTREAM, BARE_THREADS)"
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut listen = std::env::var("BARE_LISTEN").ok();
    let mut upstream = std::env::var("BARE_UPSTREAM").ok();
    let mut threads = std::env::var("BARE_THREADS").ok();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "--threads" => &mut threads,
            "-h" | "--help" => return Err(usage().to_owned()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        };
        *slot = Some(it.next().ok_or_else(|| format!("{flag} needs a value"))?);
    }
    let threads = match threads {
        Some(t) => t.parse::<usize>().map_err(|e| format!("--threads {t}: {e}"))?,
        None => 1,
    };
    if threads == 0 {
        return Err("--threads must be at least 1".to_owned());
    }
    Ok(Args {
        listen: listen.unwrap_or_else(|| "127.0.0.1:18082".to_owned()),
        upstream: upstream.ok_or_else(|| format!("no upstream given\n{}", usage()))?,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bare-pingora: {e}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: args.threads,
        pid_file: format!("/tmp/bare-pingora-{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/bare-pingora-{}.sock", std::process::id()),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let upstream = match args.upstream.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bare-pingora: --upstream {}: {e} (want IP:PORT)", args.upstream);
            return ExitCode::from(2);
        }
    };
    let proxy = PassThrough { upstream };
    let mut service = http_proxy_service_with_name(&server.configuration, proxy, "bare-pingora");
    service.add_tcp(&args.listen);
    server.add_service(service);
    eprintln!(
        "bare-pingora listening on http://{} -> {} ({} thread(s))",
        args.listen, args.upstream, args.threads
    );
    server.run_forever()
}
