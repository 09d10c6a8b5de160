//! Fault directives: the `@a=1,b` suffix of a model name, or the body of `POST /_mock/fault`.
//!
//! Unknown directives and unparsable values are ignored, so a typo degrades to a normal reply
//! instead of an error the test did not ask for.

/// Every behaviour a request can be bent into. `None`/`false` means "behave normally".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// Answer this HTTP status with the provider's native error body.
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with `status`.
    pub retry_after: Option<u64>,
    /// Milliseconds to wait before the response headers.
    pub delay_ms: Option<u64>,
    /// Stream this many content events, then the provider's in-band error event.
    pub inband_error_after: Option<usize>,
    /// Stream this many content events, then abort the connection (truncated body).
    pub reset_after: Option<usize>,
    /// 200 with stream headers and no event at all.
    pub empty: bool,
    /// 200 `text/html` `<html>oops</html>`.
    pub garbage: bool,
    /// Reply with tool calls whenever the request declares tools.
    pub tools: bool,
    /// Reply with this many words.
    pub tokens: Option<usize>,
    /// Per-request delay between stream events, overriding `--token-delay-ms`.
    pub pace_ms: Option<u64>,
    /// Read the request, then drop the connection without any response.
    pub close: bool,
}

impl Directives {
    /// Parses a comma-separated list such as `status=503,retry_after=2,empty`.
    pub fn parse(list: &str) -> Directives {
        let mut d = Directives::default();
        for item in list.split(',') {
            let item = item.trim();
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let num = || value.and_then(|v| v.parse::<u64>().ok());
            match key {
                "status" => d.status = num().and_then(|v| u16::try_from(v).ok()),
                "retry_after" => d.retry_after = num(),
                "delay" => d.delay_ms = num(),
                "inband_error_after" => d.inband_error_after = num().map(to_usize),
                "reset_after" => d.reset_after = num().map(to_usize),
                "empty" => d.empty = true,
                "garbage" => d.garbage = true,
                "tools" => d.tools = true,
                "tokens" => d.tokens = num().map(to_usize),
                "pace" => d.pace_ms = num(),
                "close" => d.close = true,
                _ => {}
            }
        }
        d
    }

    /// Splits `claude-x@status=529` into the bare model name and its directives.
    pub fn from_model(model: &str) -> (&str, Directives) {
        match model.split_once('@') {
            Some((base, list)) => (base, Directives::parse(list)),
            None => (model, Directives::default()),
        }
    }

    /// Lays `other` over `self`: whatever `other` sets wins.
    pub fn overlay(&mut self, other: &Directives) {
        fn pick<T: Copy>(dst: &mut Option<T>, src: Option<T>) {
            if src.is_some() {
                *dst = src;
            }
        }
        pick(&mut self.status, other.status);
        pick(&mut self.retry_after, other.retry_after);
        pick(&mut self.delay_ms, other.delay_ms);
        pick(&mut self.inband_error_after, other.inband_error_after);
        pick(&mut self.reset_after, other.reset_after);
        pick(&mut self.tokens, other.tokens);
        pick(&mut self.pace_ms, other.pace_ms);
        self.empty |= other.empty;
        self.garbage |= other.garbage;
        self.tools |= other.tools;
        self.close |= other.close;
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_directive() {
        let d = Directives::parse(
            "status=529, retry_after=3,delay=10,inband_error_after=2,reset_after=4,empty,garbage,tools,tokens=5,pace=7,close,bogus=1",
        );
        assert_eq!(d.status, Some(529));
        assert_eq!(d.retry_after, Some(3));
        assert_eq!(d.delay_ms, Some(10));
        assert_eq!(d.inband_error_after, Some(2));
        assert_eq!(d.reset_after, Some(4));
        assert!(d.empty && d.garbage && d.tools && d.close);
        assert_eq!(d.tokens, Some(5));
        assert_eq!(d.pace_ms, Some(7));
    }

    #[test]
    fn model_suffix_and_overlay() {
        let (base, d) = Directives::from_model("gpt-4o@tokens=3");
        assert_eq!(base, "gpt-4o");
        let mut g = Directives::parse("status=503,tokens=9");
        g.overlay(&d);
        assert_eq!(g.status, Some(503));
        assert_eq!(g.tokens, Some(3));
        assert_eq!(Directives::from_model("plain").1, Directives::default());
    }
}
