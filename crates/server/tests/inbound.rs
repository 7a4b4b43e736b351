//! Inbound connection limits (`inbound:`) and the answers to requests hyper cannot parse, over
//! raw sockets: every answer is OpenAI-shaped JSON with a stable code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{user, Gateway, MASTER_KEY};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

fn addr(gw: &Gateway) -> String {
    gw.url.trim_start_matches("http://").to_owned()
}

/// One HTTP/1.1 response read off a socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// An OpenAI-shaped error with this status and code.
    fn assert_error(&self, status: u16, code: &str, kind: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["param"].is_null(), "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

/// A complete response at the start of `bytes` (a `content-length` body), and its length.
fn parse_answer(bytes: &[u8]) -> Option<(Answer, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut answer = Answer {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = answer
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = bytes.get(end..end + len)?;
    answer.body = body.to_vec();
    Some((answer, end + len))
}

/// Reads the next response, keeping what follows it in `buf`.
async fn read_answer(r: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Answer {
    let read = async {
        loop {
            if let Some((answer, used)) = parse_answer(buf) {
                buf.drain(..used);
                return answer;
            }
            let mut chunk = [0u8; 4096];
            let n = r.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    timeout(Duration::from_secs(10), read)
        .await
        .expect("no response in time")
}

/// Whether the peer closes within `within` (EOF or reset), having sent nothing more.
async fn closes(r: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    match timeout(within, r.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&chunk[..n])
        ),
        Err(_) => false,
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: plexus\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_drippers_get_408_and_are_closed_while_requests_keep_succeeding() {
    let gw = Gateway::start_with("", "inbound: {header_read_timeout: 300ms}").await;
    let addr = addr(&gw);
    let started = Instant::now();
    let mut drippers = Vec::new();
    for _ in 0..200 {
        let addr = addr.clone();
        drippers.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.unwrap();
            let connected = Instant::now();
            let (mut r, mut w) = stream.into_split();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n) = r.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&chunk[..n]);
                }
                (connected.elapsed(), got)
            });
            w.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: plexus\r\nx-slow: ")
                .await
                .unwrap();
            // One header byte every 100 ms, until the gateway gives up on us.
            while !reader.is_finished() && connected.elapsed() < Duration::from_secs(5) {
                if w.write_all(b"a").await.is_err() {
                    break;
                }
                sleep(Duration::from_millis(100)).await;
            }
            drop(w);
            reader.await.unwrap()
        }));
    }
    // Meanwhile, normal requests keep being served promptly.
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        let resp = gw.chat(user("gpt", "hello")).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        slowest = slowest.max(t.elapsed());
        served += 1;
    }
    assert!(served > 5, "only {served} requests served");
    assert!(slowest < Duration::from_millis(500), "slowest {slowest:?}");
    for d in drippers {
        let (elapsed, got) = d.await.unwrap();
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(3),
            "closed after {elapsed:?}"
        );
        let (answer, _) = parse_answer(&got)
            .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&got)));
        answer.assert_error(408, "request_timeout", "invalid_request_error");
        assert_eq!(answer.header("connection").as_deref(), Some("close"));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let gw = Gateway::start_with(
        "",
        "inbound: {header_read_timeout: 300ms, keep_alive_timeout: 700ms}",
    )
    .await;
    // A connection that never sends anything: closed after the header timeout, unanswered.
    let mut silent = TcpStream::connect(addr(&gw)).await.unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    timeout(Duration::from_secs(5), silent.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );

    // A kept-alive connection may idle longer than the header timeout between requests...
    let mut kept = TcpStream::connect(addr(&gw)).await.unwrap();
    let mut buf = Vec::new();
    kept.write_all(HEALTH).await.unwrap();
    assert_eq!(read_answer(&mut kept, &mut buf).await.status, 200);
    sleep(Duration::from_millis(450)).await;
    kept.write_all(HEALTH).await.unwrap();
    assert_eq!(read_answer(&mut kept, &mut buf).await.status, 200);
    // ... but is closed once idle for the keep-alive timeout.
    let t = Instant::now();
    assert!(closes(&mut kept, Duration::from_secs(5)).await);
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    // A body the handler never read (refused before it) is no start of a new request: the
    // connection is not answered 408 later, only closed.
    let mut unread = TcpStream::connect(addr(&gw)).await.unwrap();
    let body = vec![b'x'; 12_000];
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: plexus\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    unread.write_all(&request).await.unwrap();
    let answer = read_answer(&mut unread, &mut Vec::new()).await;
    answer.assert_error(401, "invalid_api_key", "authentication_error");
    assert!(closes(&mut unread, Duration::from_secs(3)).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_body_dripper_gets_a_json_408() {
    let gw = Gateway::start_with("", "inbound: {body_idle_timeout: 300ms}").await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: plexus\r\nauthorization: Bearer {MASTER_KEY}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"model\": \"gpt\"").await.unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let answer = read_answer(&mut s, &mut buf).await;
    let elapsed = t.elapsed();
    answer.assert_error(408, "request_timeout", "invalid_request_error");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The rest of the body never came: the connection is not reused.
    assert!(closes(&mut s, Duration::from_secs(3)).await);

    // A body that keeps coming, slower than a whole request would take but never idle for
    // the timeout, is read to the end.
    let body = serde_json::to_vec(&user("gpt", "slow but steady")).unwrap();
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: plexus\r\nauthorization: Bearer {MASTER_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for part in body.chunks(body.len() / 4 + 1) {
        sleep(Duration::from_millis(150)).await;
        s.write_all(part).await.unwrap();
    }
    let answer = read_answer(&mut s, &mut Vec::new()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn past_the_connection_cap_a_json_503_while_existing_connections_keep_working() {
    let gw = Gateway::start_with("", "inbound: {max_connections: 4}").await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        s.write_all(HEALTH).await.unwrap();
        assert_eq!(read_answer(&mut s, &mut Vec::new()).await.status, 200);
        open.push(s);
    }
    let mut refused = TcpStream::connect(addr(&gw)).await.unwrap();
    let answer = read_answer(&mut refused, &mut Vec::new()).await;
    answer.assert_error(503, "too_many_connections", "overloaded_error");
    assert!(answer.head.starts_with("HTTP/1.1 503 "), "{}", answer.head);
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    assert_eq!(answer.header("retry-after").as_deref(), Some("1"));
    assert!(closes(&mut refused, Duration::from_secs(3)).await);

    // The connections already open are unaffected.
    for s in &mut open {
        s.write_all(HEALTH).await.unwrap();
        assert_eq!(read_answer(s, &mut Vec::new()).await.status, 200);
    }
    // One closes: a new connection is served again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        s.write_all(HEALTH).await.unwrap();
        let answer = read_answer(&mut s, &mut Vec::new()).await;
        if answer.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer:?}");
        sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await;
}

/// Sends `request`, half-closes, and reads every answer until the gateway closes.
async fn exchange(gw: &Gateway, request: Vec<u8>) -> Vec<Answer> {
    let stream = TcpStream::connect(addr(gw)).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The gateway may stop reading early: a failed write is fine.
        let _ = w.write_all(&request).await;
        let _ = w.shutdown().await;
    });
    let mut got = Vec::new();
    timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the gateway did not close the connection");
    writer.await.unwrap();
    let mut answers = Vec::new();
    let mut rest = &got[..];
    while let Some((answer, used)) = parse_answer(rest) {
        answers.push(answer);
        rest = &rest[used..];
    }
    assert!(
        rest.is_empty(),
        "trailing bytes: {:?}",
        String::from_utf8_lossy(rest)
    );
    answers
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let gw = Gateway::start().await;
    let chat = "POST /v1/chat/completions HTTP/1.1\r\nhost: plexus\r\n";
    let mut huge = b"GET /health HTTP/1.1\r\nhost: plexus\r\nx-big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let mut many = b"GET /health HTTP/1.1\r\nhost: plexus\r\n".to_vec();
    for i in 0..5000 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "invalid content-length",
            format!("{chat}content-length: abc\r\n\r\n").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "conflicting content-length",
            format!("{chat}content-length: 5\r\ncontent-length: 6\r\n\r\nhello!").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "control byte in a header",
            b"GET /health HTTP/1.1\r\nhost: plexus\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "invalid_request",
        ),
        ("a 1 MiB header", huge, 431, "headers_too_large"),
        ("5000 headers", many, 431, "headers_too_large"),
    ];
    for (name, request, status, code) in cases {
        let answers = exchange(&gw, request).await;
        assert_eq!(answers.len(), 1, "{name}: {answers:?}");
        let kind = "invalid_request_error";
        answers[0].assert_error(status, code, kind);
        assert_eq!(
            answers[0].header("connection").as_deref(),
            Some("close"),
            "{name}"
        );
    }

    // On a kept-alive connection too, after a request that was served.
    let mut request = HEALTH.to_vec();
    request.extend_from_slice(b"GET /health HTTP/1.1\r\nhost: plexus\r\nx-bad: a\x01b\r\n\r\n");
    let answers = exchange(&gw, request).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].status, 200);
    answers[1].assert_error(400, "invalid_request", "invalid_request_error");

    // A handler's own errors are untouched (they carry the request id).
    let answers = exchange(
        &gw,
        format!("{chat}authorization: Bearer {MASTER_KEY}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nnope!")
            .into_bytes(),
    )
    .await;
    answers[0].assert_error(400, "invalid_request", "invalid_request_error");
    assert!(
        answers[0].header("x-request-id").is_some(),
        "{:?}",
        answers[0]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_is_served_on_the_plain_port() {
    let gw = Gateway::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER_KEY)
        .json(&user("gpt", "over h2c"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    gw.shutdown().await;
}
