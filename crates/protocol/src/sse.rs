//! Server-sent events, decoded as the HTML standard's event stream interpretation says
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! lines end with CRLF, LF or CR; `data` lines accumulate, `event` names the event, `id` sets the
//! last event id, comments and unknown fields are ignored, an empty line dispatches, and an
//! event not finished when the stream ends is dropped.
//!
//! Pure and incremental: [`SseDecoder::feed`] takes the body's bytes as they arrive (split
//! anywhere, even inside a UTF-8 sequence or a CRLF), [`SseDecoder::next_event`] returns the
//! events completed so far. Each byte is looked at once and the buffer is compacted rather than
//! copied per line, so a body that arrives in one piece costs no more than one that trickles.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, or `message` when there was none.
    pub event: String,
    /// The `data` lines joined with LF.
    pub data: String,
    /// The last event id seen so far in the stream, if any.
    pub id: Option<String>,
}

/// An incremental event-stream decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Where the bytes not yet read start in `buf`.
    pos: usize,
    /// Whether the stream's first bytes (a possible byte order mark) were seen.
    started: bool,
    /// The last line ended with CR at the end of the bytes fed so far: an LF that comes next
    /// belongs to it.
    after_cr: bool,
    fields: Fields,
}

/// The event being gathered, and the last event id.
#[derive(Debug, Default)]
struct Fields {
    event: String,
    data: String,
    id: Option<String>,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Appends the next bytes of the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next event completed by the bytes fed so far.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        if !self.started {
            let rest = &self.buf[self.pos..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) {
                return None;
            }
            if rest.starts_with(BOM) {
                self.pos += BOM.len();
            }
            self.started = true;
        }
        loop {
            if self.after_cr && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.after_cr = false;
            }
            let rest = &self.buf[self.pos..];
            let end = memchr::memchr2(b'\n', b'\r', rest)?;
            let mut next = self.pos + end + 1;
            if rest[end] == b'\r' {
                match rest.get(end + 1) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            // Valid UTF-8 (the rule) is checked fast; anything else is replaced, as the
            // standard says.
            let dispatched = match std::str::from_utf8(&rest[..end]) {
                Ok(line) => self.fields.line(line),
                Err(_) => self.fields.line(&String::from_utf8_lossy(&rest[..end])),
            };
            self.pos = next;
            if dispatched.is_some() {
                return dispatched;
            }
        }
    }
}

impl Fields {
    /// Interprets one line; an empty line dispatches the event gathered so far.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.event.clear();
                return None;
            }
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            let event = match std::mem::take(&mut self.event) {
                e if e.is_empty() => "message".to_owned(),
                e => e,
            };
            return Some(SseEvent {
                event,
                data,
                id: self.id.clone(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` is for reconnecting clients; unknown fields are ignored.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn all(decoder: &mut SseDecoder) -> Vec<SseEvent> {
        std::iter::from_fn(|| decoder.next_event()).collect()
    }

    /// The events of `input` fed whole, and fed one byte at a time (they must agree).
    fn decode(input: &str) -> Vec<SseEvent> {
        let mut whole = SseDecoder::new();
        whole.feed(input.as_bytes());
        let a = all(&mut whole);
        let mut trickle = SseDecoder::new();
        let mut b = Vec::new();
        for byte in input.as_bytes() {
            trickle.feed(std::slice::from_ref(byte));
            b.extend(all(&mut trickle));
        }
        assert_eq!(a, b, "{input:?}");
        a
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    // The examples of the HTML standard's section on event streams.
    #[test]
    fn multi_line_data_joins_with_lf() {
        let ev = decode("data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(data(&ev), ["YHOO\n+2\n10"]);
        assert_eq!(ev[0].event, "message");
        assert_eq!(ev[0].id, None);
    }

    #[test]
    fn comments_ids_and_the_space_after_the_colon() {
        let ev = decode(
            ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        );
        assert_eq!(data(&ev), ["first event", "second event", " third event"]);
        assert_eq!(ev[0].id.as_deref(), Some("1"));
        assert_eq!(ev[1].id.as_deref(), Some(""), "a bare `id` resets it");
        assert_eq!(ev[2].id.as_deref(), Some(""));
    }

    #[test]
    fn empty_data_lines_and_an_unfinished_event() {
        let ev = decode("data\n\ndata\ndata\n\ndata:");
        assert_eq!(data(&ev), ["", "\n"]);
        let ev = decode("data:test\n\ndata: test\n\n");
        assert_eq!(data(&ev), ["test", "test"]);
    }

    #[test]
    fn every_line_ending_and_a_bom() {
        let ev = decode(
            "\u{feff}event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\nid: x\0y\ndata: 4\n\n",
        );
        let names: Vec<&str> = ev.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["a", "b", "message", "message"]);
        assert_eq!(data(&ev), ["1", "2", "3", "4"]);
        assert_eq!(ev[3].id, None, "an id with NUL is ignored");
    }

    #[test]
    fn an_event_name_without_data_is_forgotten() {
        let ev = decode("event: ping\n\ndata: x\n\nretry: 10\nfoo: bar\ndata: y\n\n");
        assert_eq!(data(&ev), ["x", "y"]);
        assert_eq!(ev[0].event, "message");
    }

    #[test]
    fn utf8_split_across_feeds_and_invalid_bytes() {
        let text = "data: héllo — 世界\n\n";
        let bytes = text.as_bytes();
        let mut d = SseDecoder::new();
        d.feed(&bytes[..8]);
        assert!(d.next_event().is_none());
        d.feed(&bytes[8..]);
        assert_eq!(d.next_event().unwrap().data, "héllo — 世界");
        d.feed(b"data: \xff\n\n");
        assert_eq!(d.next_event().unwrap().data, "\u{fffd}");
    }

    #[test]
    fn a_long_stream_in_one_piece_keeps_its_order() {
        let input: String = (0..500)
            .map(|i| format!("event: e{i}\ndata: {{\"n\":{i}}}\n\n"))
            .collect();
        let mut d = SseDecoder::new();
        d.feed(input.as_bytes());
        let ev = all(&mut d);
        assert_eq!(ev.len(), 500);
        assert_eq!(ev[499].event, "e499");
        assert_eq!(ev[499].data, "{\"n\":499}");
    }
}
