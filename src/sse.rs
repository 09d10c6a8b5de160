//! Server-sent events: a push decoder for upstream streams (bytes arrive split anywhere:
//! mid-line, mid-UTF-8, CR/LF/CRLF) and the line rules of the SSE spec (`providers.md` §0.6).

/// One decoded event. `event` is the `event:` field if any; `data` joins `data:` lines with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

/// Incremental decoder. Feed it bytes; it yields complete events.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the current, unterminated line.
    line: Vec<u8>,
    /// The previous byte was CR: a following LF belongs to the same line end.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// Upper bound on one event's size; beyond it `push` reports an error.
    max_event_bytes: usize,
    pending_bytes: usize,
}

/// An event grew past the decoder's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTooLarge;

impl Decoder {
    pub fn new() -> Self {
        Decoder::with_limit(16 * 1024 * 1024)
    }

    pub fn with_limit(max_event_bytes: usize) -> Self {
        Decoder {
            max_event_bytes,
            ..Default::default()
        }
    }

    /// Feed bytes; `on_event` is called for every completed event, in order.
    pub fn push(&mut self, input: &[u8], mut on_event: impl FnMut(Event)) -> Result<(), EventTooLarge> {
        let mut start = 0;
        for (i, &b) in input.iter().enumerate() {
            if b == b'\n' || b == b'\r' {
                if b == b'\n' && self.after_cr {
                    self.after_cr = false;
                    start = i + 1;
                    continue;
                }
                self.line.extend_from_slice(&input[start..i]);
                self.after_cr = b == b'\r';
                start = i + 1;
                self.end_line(&mut on_event)?;
            } else {
                self.after_cr = false;
            }
        }
        self.line.extend_from_slice(&input[start..]);
        if self.line.len() + self.pending_bytes > self.max_event_bytes {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// End of input: an event not terminated by a blank line is returned, if any. A stream
    /// that closes without the final blank line still delivers its last event.
    pub fn finish(&mut self) -> Option<Event> {
        if !self.line.is_empty() {
            let mut last = None;
            let _ = self.end_line(&mut |e| last = Some(e));
            if last.is_some() {
                return last;
            }
        }
        self.take_event()
    }

    /// Whether partial, undelivered data is buffered.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.data.is_some()
    }

    fn take_event(&mut self) -> Option<Event> {
        self.pending_bytes = 0;
        let event = self.event.take();
        self.data.take().map(|data| Event { event, data })
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(Event)) -> Result<(), EventTooLarge> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if let Some(e) = self.take_event() {
                on_event(e);
            } else {
                self.event = None;
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                self.pending_bytes += value.len() + 1;
                if self.pending_bytes > self.max_event_bytes {
                    return Err(EventTooLarge);
                }
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            b"event" => self.event = Some(value.into_owned()),
            _ => {}
        }
        Ok(())
    }
}

/// Split a byte stream of newline-delimited JSON (Cohere's legacy generate stream) the same
/// incremental way: complete lines out, partial line kept.
#[derive(Debug, Default)]
pub struct LineDecoder {
    buf: Vec<u8>,
}

impl LineDecoder {
    pub fn push(&mut self, input: &[u8], mut on_line: impl FnMut(&[u8])) {
        for &b in input {
            if b == b'\n' {
                let line = std::mem::take(&mut self.buf);
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                if !line.is_empty() {
                    on_line(line);
                }
            } else {
                self.buf.push(b);
            }
        }
    }

    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let line = std::mem::take(&mut self.buf);
        (!line.is_empty()).then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, |e| out.push(e)).unwrap_or(());
        }
        if let Some(e) = d.finish() {
            out.push(e);
        }
        out
    }

    const STREAM: &[u8] = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: line1\ndata:line2\n\ndata: héllo wörld\r\rdata: [DONE]\n\n".as_bytes();

    #[test]
    fn decodes_whole_stream() {
        let ev = decode_all(&[STREAM]);
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].data, "line1\nline2");
        assert_eq!(ev[2].data, "héllo wörld");
        assert_eq!(ev[3].data, "[DONE]");
    }

    #[test]
    fn any_split_decodes_the_same() {
        let whole = decode_all(&[STREAM]);
        for i in 0..STREAM.len() {
            for j in i..STREAM.len() {
                let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(decode_all(&parts), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let parts: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(decode_all(&parts), decode_all(&[STREAM]));
    }

    #[test]
    fn unterminated_last_event_is_delivered() {
        let ev = decode_all(&[b"data: {\"x\":1}"]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "{\"x\":1}");
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut d = Decoder::with_limit(10);
        assert!(d.push(b"data: 0123456789abcdef", |_| {}).is_err());
    }

    #[test]
    fn ndjson_lines() {
        let mut d = LineDecoder::default();
        let mut lines = Vec::new();
        d.push(b"{\"a\":1}\r\n{\"b\"", |l| lines.push(l.to_vec()));
        d.push(b":2}\n", |l| lines.push(l.to_vec()));
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
    }
}
