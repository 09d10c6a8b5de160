//! Ollama's native `GET /api/tags`, which gateways use as a health probe.

use http::Response;
use serde_json::json;

use crate::body::MockBody;
use crate::respond::json_response;

pub fn tags() -> Response<MockBody> {
    json_response(
        200,
        &json!({"models": [{
            "name": "llama3.2:latest",
            "model": "llama3.2:latest",
            "modified_at": "2025-10-01T12:00:00.000000000Z",
            "size": 2019393189u64,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {
                "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "3.2B", "quantization_level": "Q4_K_M"
            }
        }]}),
    )
}
