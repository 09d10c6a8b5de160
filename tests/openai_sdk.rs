//! The official `openai` Python SDK, unchanged, through Prism to every provider kind backed
//! by the mock: chat, streams, streamed parallel tool calls, completions, embeddings (the
//! SDK's default base64 encoding) and models. `scripts/setup.sh` installs the SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Mock, KEY};

fn run_sdk(gw: &Gateway, models: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("{}/v1", gw.url()))
        .arg(KEY)
        .args(models)
        .output()
        .expect("python3 must be installed (scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK checks failed (is the openai package installed? run scripts/setup.sh)\n{stdout}\n{stderr}\ngateway log:\n{}",
        gw.log()
    );
    println!("{stdout}");
}

#[tokio::test]
async fn openai_sdk_through_every_openai_compatible_kind() {
    let mock = Mock::start();
    let mut config = String::from("[health]\nprobe_interval = \"0s\"\n");
    for k in ["openai", "mistral", "ollama", "vllm", "lmstudio"] {
        config.push_str(&format!(
            "[providers.{k}]\nbase_url = \"{}\"\napi_key = \"sk-up\"\nmodels = [\"m\"]\n",
            mock.v1()
        ));
    }
    let gw = Gateway::start(&config).await;
    run_sdk(
        &gw,
        &[
            "openai/gpt-4o-mini",
            "own-usage:mistral/mistral-small",
            "ollama/llama3.2",
            "vllm/qwen",
            "lmstudio/qwen",
        ],
    );
}

#[tokio::test]
async fn openai_sdk_through_anthropic_gemini_and_cohere() {
    let mock = Mock::start();
    let mut config = String::from("[health]\nprobe_interval = \"0s\"\n");
    for k in ["anthropic", "gemini", "cohere"] {
        config.push_str(&format!(
            "[providers.{k}]\nbase_url = \"{}\"\napi_key = \"sk-up\"\nmodels = [\"m\"]\n",
            mock.root()
        ));
    }
    let gw = Gateway::start(&config).await;
    run_sdk(
        &gw,
        &[
            "chat-only:anthropic/claude-haiku-4-5",
            "gemini/gemini-2.0-flash",
            "cohere/command-a-03-2025",
        ],
    );
}
