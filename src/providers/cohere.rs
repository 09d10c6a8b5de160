//! cohere: translation to and from the provider's native wire format (to be completed).

use bytes::BytesMut;

use super::{Ctx, StreamTranslator, Translated, UpstreamRequest, Usage};
use crate::error::{GatewayError, Result};

pub fn build_request(_body: &[u8], ctx: &Ctx) -> Result<UpstreamRequest> {
    Err(GatewayError::invalid_request(format!("provider kind {} is not implemented yet", ctx.kind.as_str())))
}

pub fn translate_response(_body: &[u8], _ctx: &Ctx) -> Result<Translated> {
    Err(GatewayError::bad_upstream("not implemented"))
}

pub fn translate_error(status: u16, _headers: &http::HeaderMap, body: &[u8], _now: u64) -> GatewayError {
    GatewayError::from_upstream_status(status, String::from_utf8_lossy(body).into_owned())
}

struct Stub;

impl StreamTranslator for Stub {
    fn feed(&mut self, _input: &[u8], _out: &mut BytesMut) -> Result<()> {
        Err(GatewayError::bad_upstream("not implemented"))
    }
    fn finish(&mut self, _out: &mut BytesMut) -> Result<()> {
        Err(GatewayError::bad_upstream("not implemented"))
    }
    fn committed(&self) -> bool {
        false
    }
    fn usage(&self) -> Option<Usage> {
        None
    }
}

pub fn stream_translator(_ctx: &Ctx) -> Box<dyn StreamTranslator> {
    Box::new(Stub)
}
