//! Streamed responses: events are rendered up front into one buffer, then sent with the
//! TTFT, pacing and stream faults of the request.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio::time::Instant;

use crate::behavior::{Fault, Knobs};
use crate::state::{MockState, Shared};

/// One rendered event. Content events carry generated tokens: they are paced and counted
/// by `cut-after` / `stall-after`.
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    bytes: Bytes,
    content: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `data: ...` events ended by this separator (Gemini uses CRLF).
    Sse(&'static str),
    /// Gemini's streamed JSON array (`streamGenerateContent` without `alt=sse`).
    JsonArray,
}

/// Renders events into one growing buffer, split into cheap shared slices.
pub(crate) struct Events {
    buf: BytesMut,
    list: Vec<Ev>,
    framing: Framing,
    /// A JSON array was already opened (by this or an earlier list of the same stream).
    opened: bool,
}

impl Events {
    pub fn new(framing: Framing, events_hint: usize) -> Events {
        Events {
            buf: BytesMut::with_capacity(events_hint.max(4) * 256),
            list: Vec::with_capacity(events_hint + 4),
            framing,
            opened: false,
        }
    }

    /// For events that follow another list's in the same JSON array.
    pub fn new_continuing(framing: Framing, events_hint: usize) -> Events {
        let mut ev = Events::new(framing, events_hint);
        ev.opened = true;
        ev
    }

    /// A `data:` event, with an `event:` line when `name` is given.
    pub fn data<T: Serialize + ?Sized>(&mut self, name: Option<&str>, value: &T, content: bool) {
        match self.framing {
            Framing::Sse(sep) => {
                if let Some(name) = name {
                    self.buf.put_slice(b"event: ");
                    self.buf.put_slice(name.as_bytes());
                    self.buf.put_slice(&sep.as_bytes()[..sep.len() / 2]);
                }
                self.buf.put_slice(b"data: ");
                self.write_json(value);
                self.buf.put_slice(sep.as_bytes());
            }
            Framing::JsonArray => {
                self.buf
                    .put_slice(if self.opened { b",\r\n" } else { b"[" });
                self.opened = true;
                self.write_json(value);
            }
        }
        self.cut(content);
    }

    pub fn raw(&mut self, bytes: &[u8], content: bool) {
        self.buf.put_slice(bytes);
        self.cut(content);
    }

    /// Closes a JSON array; nothing for SSE.
    pub fn end(&mut self) {
        if self.framing == Framing::JsonArray {
            if !self.opened {
                self.buf.put_slice(b"[");
                self.opened = true;
            }
            self.raw(b"]", false);
        }
    }

    fn write_json<T: Serialize + ?Sized>(&mut self, value: &T) {
        if serde_json::to_writer((&mut self.buf).writer(), value).is_err() {
            self.buf.put_slice(b"{}");
        }
    }

    fn cut(&mut self, content: bool) {
        let bytes = self.buf.split().freeze();
        self.list.push(Ev { bytes, content });
    }

    pub fn into_vec(self) -> Vec<Ev> {
        self.list
    }
}

/// Interleaves per-choice event lists round-robin, as the APIs do for `n > 1`.
pub(crate) fn interleave(lists: Vec<Vec<Ev>>) -> Vec<Ev> {
    if lists.len() == 1 {
        return lists.into_iter().flatten().collect();
    }
    let total = lists.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    loop {
        let mut any = false;
        for it in &mut iters {
            if let Some(ev) = it.next() {
                out.push(ev);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// Counts the stream as active while it lives, and as cancelled when dropped before its end.
struct StreamGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl StreamGuard {
    fn new(state: &MockState) -> StreamGuard {
        state.shared.active_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            shared: state.shared.clone(),
            done: false,
        }
    }
}

impl StreamGuard {
    /// The stream reached its planned end: not a cancellation.
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.shared.active_streams.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.shared
                .cancelled_streams
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The response body sending `events`, with `malformed` injected after the first event when
/// the request asked for a malformed stream.
pub(crate) fn body(
    state: &MockState,
    events: Vec<Ev>,
    knobs: &Knobs,
    malformed: &'static [u8],
) -> Body {
    let mut guard = StreamGuard::new(state);
    let ttft = Duration::from_millis(knobs.ttft_ms);
    let interval = knobs
        .tokens_per_second
        .and_then(|tps| Duration::try_from_secs_f64(1.0 / tps).ok());
    let fault = knobs.fault;
    let stream = async_stream::stream! {
        if !ttft.is_zero() {
            tokio::time::sleep(ttft).await;
        }
        let mut sent = 0u32;
        let mut next: Option<Instant> = None;
        for (i, ev) in events.into_iter().enumerate() {
            if ev.content {
                match fault {
                    Some(Fault::CutAfter(n)) if sent >= n => {
                        // Pending once so that hyper flushes what was sent before the error
                        // makes it drop the connection; the cut is ours, not a cancellation.
                        tokio::task::yield_now().await;
                        guard.finish();
                        yield Err(io::Error::other("mock fault: cut"));
                        return;
                    }
                    Some(Fault::StallAfter(n)) if sent >= n => {
                        std::future::pending::<()>().await;
                    }
                    _ => {}
                }
                if let Some(iv) = interval {
                    match next {
                        Some(at) => {
                            tokio::time::sleep_until(at).await;
                            next = at.checked_add(iv);
                        }
                        None => next = Instant::now().checked_add(iv),
                    }
                }
                sent += 1;
            }
            yield Ok::<Bytes, io::Error>(ev.bytes);
            if i == 0 && fault == Some(Fault::Malformed) {
                yield Ok(Bytes::from_static(malformed));
            }
        }
        guard.finish();
    };
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_named_events_and_arrays() {
        let mut ev = Events::new(Framing::Sse("\n\n"), 2);
        ev.data(Some("ping"), &json!({"type": "ping"}), false);
        ev.data(None, &json!({"a": 1}), true);
        let list = ev.into_vec();
        assert_eq!(
            &list[0].bytes[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(&list[1].bytes[..], b"data: {\"a\":1}\n\n");
        assert!(list[1].content);

        let mut ev = Events::new(Framing::Sse("\r\n\r\n"), 1);
        ev.data(None, &json!(1), true);
        assert_eq!(&ev.into_vec()[0].bytes[..], b"data: 1\r\n\r\n");

        let mut ev = Events::new(Framing::JsonArray, 2);
        ev.data(None, &json!(1), true);
        ev.data(None, &json!(2), true);
        ev.end();
        let all: Vec<u8> = ev
            .into_vec()
            .iter()
            .flat_map(|e| e.bytes.to_vec())
            .collect();
        assert_eq!(all, b"[1,\r\n2]");
    }

    #[test]
    fn interleaves_round_robin() {
        let mk = |s: &'static str| Ev {
            bytes: Bytes::from_static(s.as_bytes()),
            content: true,
        };
        let out = interleave(vec![vec![mk("a1"), mk("a2"), mk("a3")], vec![mk("b1")]]);
        let names: Vec<&[u8]> = out.iter().map(|e| &e.bytes[..]).collect();
        assert_eq!(names, vec![&b"a1"[..], b"b1", b"a2", b"a3"]);
    }
}
