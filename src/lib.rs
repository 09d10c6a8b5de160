//! Prism: an OpenAI-compatible LLM gateway on Pingora.
//!
//! The request's way through the crate: `proxy` (listener, auth, body) → `router` (model name
//! → candidates from the `table` snapshot) → `providers` (translation) → `upstream` (the
//! exchange) → back through `providers` to the client.

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod providers;
pub mod proxy;
pub mod router;
pub mod server;
pub mod sse;
pub mod state;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod upstream;
