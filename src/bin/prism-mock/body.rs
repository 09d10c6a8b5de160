//! Response bodies: a whole buffer, or a paced stream of pre-rendered events.
//!
//! Streams are polled by hyper directly (no task, no channel per request). Each event may be cut
//! into frames of random sizes; between two frames the body yields once so that hyper flushes
//! and the client really receives events split mid-line and mid-UTF-8 character.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// One step of a streamed body.
pub enum Step {
    /// Bytes of one event (or of a truncated JSON document).
    Data(Bytes),
    /// Abort the connection: HTTP/1.1 chunked bodies stay unterminated, h2 streams are reset.
    Abort,
}

/// How stream events are cut into body frames.
#[derive(Debug, Clone, Copy)]
pub enum Split {
    /// One frame per event.
    Whole,
    /// Frames of a random size in `[min, max]` bytes.
    Random { min: usize, max: usize },
}

/// The body of every mock response.
pub enum MockBody {
    Full(Option<Bytes>),
    Stream(Box<EventStream>),
}

impl MockBody {
    pub fn full(bytes: impl Into<Bytes>) -> MockBody {
        MockBody::Full(Some(bytes.into()))
    }

    pub fn stream(steps: Vec<Step>, delay: Duration, split: Split) -> MockBody {
        MockBody::Stream(Box::new(EventStream::new(steps, delay, split)))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(stream) => stream.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// A paced, optionally split, sequence of [`Step`]s.
pub struct EventStream {
    steps: VecDeque<Step>,
    /// The remainder of the event being written in pieces.
    current: Option<Bytes>,
    /// A step whose pacing delay is running.
    waiting: Option<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    delay: Duration,
    split: Split,
    rng: u64,
    started: bool,
    yield_next: bool,
    abort_yielded: bool,
}

impl EventStream {
    fn new(steps: Vec<Step>, delay: Duration, split: Split) -> EventStream {
        EventStream {
            steps: steps.into(),
            current: None,
            waiting: None,
            sleep: None,
            delay,
            split,
            rng: rand::random::<u64>() | 1,
            started: false,
            yield_next: false,
            abort_yielded: false,
        }
    }

    /// xorshift64: cheap, Send, good enough to pick frame sizes.
    fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn piece_len(&mut self, available: usize) -> usize {
        match self.split {
            Split::Whole => available,
            Split::Random { min, max } => {
                let span = (max - min + 1) as u64;
                let n = min + (self.next_rand() % span) as usize;
                n.clamp(1, available)
            }
        }
    }

    /// Wakes the task and returns `Pending`, so hyper flushes what it has buffered.
    fn yield_now(cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            if self.yield_next {
                self.yield_next = false;
                return Self::yield_now(cx);
            }
            if let Some(mut current) = self.current.take() {
                let n = self.piece_len(current.len());
                let piece = current.split_to(n);
                if !current.is_empty() {
                    self.current = Some(current);
                    self.yield_next = true;
                }
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let step = match self.waiting.take() {
                Some(step) => step,
                None => match self.steps.pop_front() {
                    None => return Poll::Ready(None),
                    Some(step) => {
                        if self.started && !self.delay.is_zero() {
                            self.waiting = Some(step);
                            self.sleep = Some(Box::pin(tokio::time::sleep(self.delay)));
                            continue;
                        }
                        step
                    }
                },
            };
            self.started = true;
            match step {
                Step::Data(bytes) => {
                    if !bytes.is_empty() {
                        self.current = Some(bytes);
                    }
                }
                Step::Abort => {
                    if !self.abort_yielded {
                        // Let hyper flush the headers and earlier events before the abort.
                        self.abort_yielded = true;
                        self.waiting = Some(Step::Abort);
                        return Self::yield_now(cx);
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "prism-mock: stream reset on purpose",
                    ))));
                }
            }
        }
    }
}
