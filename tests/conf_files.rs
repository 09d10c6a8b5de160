//! Every file under `conf/` parses and validates (with the variables it references set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prism_gateway::{config, table::Table};

fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("conf dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_conf_file_is_valid() {
    let mut list = Vec::new();
    files(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")),
        &mut list,
    );
    assert!(list.len() >= 3, "{list:?}");
    // Any variable a file references is "set" to a plausible value.
    let env = |name: &str| {
        if name.starts_with("PRISM_") && name != "PRISM_CLIENT_KEY" {
            return None;
        }
        Some(if name.ends_with("_URL") {
            "http://127.0.0.1:1".to_string()
        } else {
            format!("test-{}", name.to_lowercase())
        })
    };
    for path in list {
        let text = std::fs::read_to_string(&path).unwrap();
        let c = config::load(&text, &env).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        Table::build(&c, Vec::new()).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    }
}

#[test]
fn multi_provider_example_needs_its_client_key() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/examples/multi-provider.toml"
    ))
    .unwrap();
    let errs = config::load(&text, &|_| None).unwrap_err();
    let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("auth.api_keys[0]") && l.contains("PRISM_CLIENT_KEY")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("providers.openai.api_key") && l.contains("OPENAI_API_KEY")),
        "{lines:?}"
    );
}
