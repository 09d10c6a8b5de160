//! Model name → ordered candidates: `provider/model`, a bare name for the default provider,
//! or a route's targets; each provider's configured fallbacks follow.

use std::sync::Arc;

use crate::config::Strategy;
use crate::error::{GatewayError, Result};
use crate::table::{Provider, Table};

/// One way to serve a request: a provider and the model name it knows.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub provider: Arc<Provider>,
    pub model: String,
}

/// Ordered candidates for `model`. `pick` in `[0,1)` chooses among weighted targets (passed
/// in so routing is deterministic under test).
pub fn resolve(table: &Table, model: &str, pick: f64) -> Result<Vec<Candidate>> {
    let mut out: Vec<Candidate> = Vec::new();
    if let Some(route) = table.routes.get(model) {
        let mut targets: Vec<&(String, String, u32)> = route.targets.iter().collect();
        if route.strategy == Strategy::Weighted && targets.len() > 1 {
            let total: u64 = targets.iter().map(|t| u64::from(t.2)).sum();
            let mut point = (pick.clamp(0.0, 0.999_999) * total as f64) as u64;
            let mut first = 0;
            for (i, t) in targets.iter().enumerate() {
                if point < u64::from(t.2) {
                    first = i;
                    break;
                }
                point -= u64::from(t.2);
            }
            let chosen = targets.remove(first);
            targets.insert(0, chosen);
        }
        for (p, m, _) in targets {
            push(table, &mut out, p, m);
        }
    } else if let Some((p, m)) = model
        .split_once('/')
        .filter(|(p, m)| !m.is_empty() && table.providers.contains_key(*p))
    {
        push(table, &mut out, p, m);
    } else if !model.contains('/') || !table.providers.contains_key(&table.default_provider) {
        push(table, &mut out, &table.default_provider.clone(), model);
    }
    if out.is_empty() {
        return Err(GatewayError::model_not_found(model));
    }
    // Each candidate's fallbacks follow, once each, in order.
    let mut i = 0;
    while i < out.len() && out.len() < 16 {
        let fallbacks = out[i].provider.fallbacks.clone();
        for f in fallbacks {
            if let Some((p, m)) = f.split_once('/') {
                push(table, &mut out, p, m);
            }
        }
        i += 1;
    }
    Ok(out)
}

fn push(table: &Table, out: &mut Vec<Candidate>, provider: &str, model: &str) {
    if model.is_empty() {
        return;
    }
    if let Some(p) = table.providers.get(provider) {
        if !out.iter().any(|c| c.provider.name == provider && c.model == model) {
            out.push(Candidate {
                provider: p.clone(),
                model: model.to_string(),
            });
        }
    }
}

/// Every routable model name for `/v1/models`: routes, then `provider/model` for each
/// configured model, and bare names for the default provider. (id, owned_by)
pub fn list_models(
    table: &Table,
    discovered: &std::collections::HashMap<String, Vec<String>>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = table
        .route_order
        .iter()
        .map(|r| (r.clone(), "prism".to_string()))
        .collect();
    let mut names: Vec<&String> = table.providers.keys().collect();
    names.sort();
    for name in names {
        let p = &table.providers[name];
        let found = discovered.get(name).filter(|_| p.discover_models);
        let mut listed: Vec<&String> = p.models.iter().collect();
        for m in found.into_iter().flatten() {
            if !listed.contains(&m) {
                listed.push(m);
            }
        }
        for m in listed {
            out.push((format!("{name}/{m}"), name.clone()));
            if *name == table.default_provider {
                out.push((m.clone(), name.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn table(text: &str) -> Table {
        let c = config::load(text, &|_| None).unwrap();
        Table::build(&c, Vec::new()).unwrap()
    }

    const CONF: &str = r#"
[providers.openai]
models = ["gpt-4o-mini"]
[providers.anthropic]
fallbacks = ["openai/gpt-4o"]
[providers.gpu]
kind = "vllm"
base_url = "http://127.0.0.1:8000/v1"
[[routes]]
model = "smart"
targets = ["anthropic/claude-sonnet-4-5", "openai/gpt-4o"]
[[routes]]
model = "split"
strategy = "weighted"
targets = [{ target = "openai/a", weight = 1 }, { target = "gpu/b", weight = 3 }]
"#;

    fn names(c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| format!("{}/{}", c.provider.name, c.model)).collect()
    }

    #[test]
    fn provider_prefix_bare_and_routes() {
        let t = table(CONF);
        assert_eq!(names(&resolve(&t, "gpt-4o-mini", 0.0).unwrap()), ["openai/gpt-4o-mini"]);
        assert_eq!(
            names(&resolve(&t, "gpu/meta-llama/Llama-3.1-8B-Instruct", 0.0).unwrap()),
            ["gpu/meta-llama/Llama-3.1-8B-Instruct"]
        );
        // Route targets in order; anthropic's fallback is already in the list once.
        assert_eq!(
            names(&resolve(&t, "smart", 0.0).unwrap()),
            ["anthropic/claude-sonnet-4-5", "openai/gpt-4o"]
        );
        assert_eq!(
            names(&resolve(&t, "anthropic/claude-haiku-4-5", 0.0).unwrap()),
            ["anthropic/claude-haiku-4-5", "openai/gpt-4o"]
        );
    }

    #[test]
    fn weighted_pick_goes_first() {
        let t = table(CONF);
        assert_eq!(names(&resolve(&t, "split", 0.1).unwrap()), ["openai/a", "gpu/b"]);
        assert_eq!(names(&resolve(&t, "split", 0.5).unwrap()), ["gpu/b", "openai/a"]);
    }

    #[test]
    fn unknown_provider_is_model_not_found() {
        let t = table(CONF);
        let e = resolve(&t, "nope/x", 0.0).unwrap_err();
        assert_eq!(e.status, 404);
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
        assert!(e.message.contains("nope/x"));
        let t = table("[providers.anthropic]\n");
        assert_eq!(resolve(&t, "gpt-4o", 0.0).unwrap_err().status, 404);
    }

    #[test]
    fn models_listing() {
        let t = table(CONF);
        let ids: Vec<String> = list_models(&t, &Default::default())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["smart", "split", "openai/gpt-4o-mini", "gpt-4o-mini"]);
    }
}
