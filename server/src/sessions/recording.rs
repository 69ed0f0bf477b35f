//! Shell recordings in asciicast v2, made on the server from the relayed
//! PTY output. Input is never recorded: it carries passwords.
//!
//! The encoder is pure (time is passed in); the relay feeds it and writes
//! the chunks it hands out to `session_recordings`.

/// Chunks are handed out at this size, or after `FLUSH_SECS`.
pub const CHUNK_BYTES: usize = 64 * 1024;
pub const FLUSH_SECS: f64 = 1.0;

/// Room kept below the limit for the truncation marker.
const MARKER_ROOM: u64 = 256;

#[derive(Debug)]
pub struct Recorder {
    buf: Vec<u8>,
    /// An incomplete UTF-8 sequence at the end of the last output frame.
    tail: Vec<u8>,
    /// Bytes of the .cast file so far (handed out and buffered).
    written: u64,
    max_bytes: u64,
    truncated: bool,
    last_flush: f64,
}

impl Recorder {
    /// Starts a recording with its header line.
    pub fn new(cols: u32, rows: u32, term: &str, unix_seconds: i64, max_bytes: u64) -> Self {
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": unix_seconds,
            "env": {"TERM": term},
        });
        let mut recorder = Recorder {
            buf: Vec::with_capacity(4096),
            tail: Vec::new(),
            written: 0,
            max_bytes,
            truncated: false,
            last_flush: 0.0,
        };
        recorder.push_line(header.to_string());
        recorder
    }

    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    fn push_line(&mut self, mut line: String) {
        line.push('\n');
        self.written += line.len() as u64;
        self.buf.extend_from_slice(line.as_bytes());
    }

    fn event(&mut self, t: f64, code: &str, data: &str) {
        if self.truncated {
            return;
        }
        let line = serde_json::json!([round_time(t), code, data]).to_string();
        if self.written + line.len() as u64 + 1 + MARKER_ROOM > self.max_bytes {
            self.truncated = true;
            let marker = format!(
                "recording truncated at {} bytes (sessions.max_recording_bytes)",
                self.max_bytes
            );
            self.push_line(serde_json::json!([round_time(t), "m", marker]).to_string());
            return;
        }
        self.push_line(line);
    }

    /// PTY output. Incomplete UTF-8 at the end waits for the next frame;
    /// invalid bytes become U+FFFD.
    pub fn output(&mut self, t: f64, data: &[u8]) {
        if self.truncated {
            return;
        }
        let mut bytes = std::mem::take(&mut self.tail);
        bytes.extend_from_slice(data);
        let mut text = String::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    break;
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    // Valid by construction.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            self.tail = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        if !text.is_empty() {
            self.event(t, "o", &text);
        }
    }

    pub fn resize(&mut self, t: f64, cols: u32, rows: u32) {
        self.event(t, "r", &format!("{cols}x{rows}"));
    }

    /// The buffered bytes, if a chunk is due (size or age) or `force`.
    pub fn take_chunk(&mut self, t: f64, force: bool) -> Option<Vec<u8>> {
        let due = self.buf.len() >= CHUNK_BYTES || t - self.last_flush >= FLUSH_SECS;
        if self.buf.is_empty() || !(due || force) {
            return None;
        }
        self.last_flush = t;
        Some(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES.min(4096)),
        ))
    }

    /// Ends the recording: a dangling partial character becomes U+FFFD.
    pub fn finish(&mut self, t: f64) -> Option<Vec<u8>> {
        if !self.tail.is_empty() {
            self.tail.clear();
            self.event(t, "o", "\u{FFFD}");
        }
        self.take_chunk(t, true)
    }
}

/// Microsecond precision keeps the file small and stable.
fn round_time(t: f64) -> f64 {
    (t.max(0.0) * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(recorder: &mut Recorder) -> Vec<serde_json::Value> {
        let data = recorder.finish(99.0).unwrap_or_default();
        String::from_utf8(data)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn header_and_output_events() {
        let mut r = Recorder::new(80, 24, "xterm-256color", 1_700_000_000, 1 << 20);
        r.output(0.5, b"hello\r\n");
        let l = lines(&mut r);
        assert_eq!(
            l[0],
            serde_json::json!({"version": 2, "width": 80, "height": 24,
                "timestamp": 1_700_000_000, "env": {"TERM": "xterm-256color"}})
        );
        assert_eq!(l[1], serde_json::json!([0.5, "o", "hello\r\n"]));
    }

    #[test]
    fn utf8_split_across_frames_is_joined() {
        let mut r = Recorder::new(80, 24, "xterm", 0, 1 << 20);
        let text = "Grüße €".as_bytes();
        // Split inside "ü" and inside "€".
        r.output(1.0, &text[..3]);
        r.output(1.1, &text[3..text.len() - 1]);
        r.output(1.2, &text[text.len() - 1..]);
        let l = lines(&mut r);
        let joined: String = l[1..].iter().map(|e| e[2].as_str().unwrap()).collect();
        assert_eq!(joined, "Grüße €");
        assert!(!joined.contains('\u{FFFD}'));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut r = Recorder::new(80, 24, "xterm", 0, 1 << 20);
        r.output(1.0, b"a\xffb");
        // A dangling lead byte at the very end.
        r.output(1.5, b"c\xe2\x82");
        let l = lines(&mut r);
        assert_eq!(l[1][2], "a\u{FFFD}b");
        assert_eq!(l[2][2], "c");
        assert_eq!(l[3][2], "\u{FFFD}");
    }

    #[test]
    fn resize_events() {
        let mut r = Recorder::new(80, 24, "xterm", 0, 1 << 20);
        r.resize(2.25, 120, 40);
        assert_eq!(lines(&mut r)[1], serde_json::json!([2.25, "r", "120x40"]));
    }

    #[test]
    fn truncates_with_a_marker() {
        let mut r = Recorder::new(80, 24, "xterm", 0, 4096);
        for i in 0..100 {
            r.output(i as f64, &[b'x'; 100]);
        }
        assert!(r.is_truncated());
        let data = r.finish(100.0).unwrap();
        assert!(data.len() <= 4096, "{}", data.len());
        let last: serde_json::Value =
            serde_json::from_str(String::from_utf8(data).unwrap().lines().last().unwrap()).unwrap();
        assert_eq!(last[1], "m");
        assert!(last[2].as_str().unwrap().contains("truncated"));
    }

    #[test]
    fn chunks_by_size_and_age() {
        let mut r = Recorder::new(80, 24, "xterm", 0, 1 << 30);
        assert!(r.take_chunk(0.1, false).is_none());
        assert!(r.take_chunk(1.2, false).is_some(), "age");
        r.output(1.3, &vec![b'y'; CHUNK_BYTES]);
        assert!(r.take_chunk(1.4, false).is_some(), "size");
        assert!(r.take_chunk(1.5, true).is_none(), "nothing left");
    }
}
