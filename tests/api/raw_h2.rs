//! A raw HTTP/2 client, for sending what a gRPC client never would: bodies that are not
//! valid protobuf, frames with a compression flag but no `grpc-encoding`, other
//! content-types. It reads the gRPC status from the headers (trailers-only replies, which
//! every error is) or from the trailers.
use bytes::Bytes;
use std::net::SocketAddr;

pub struct RawClient {
    addr: SocketAddr,
    send: h2::client::SendRequest<Bytes>,
}

#[derive(Debug)]
pub struct RawReply {
    pub http_status: u16,
    pub code: Option<i32>,
    pub message: String,
}

/// One gRPC message frame: compression flag, big-endian length, payload.
pub fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(flag);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

fn status_of(map: &http::HeaderMap) -> Option<(i32, String)> {
    let code = map.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = map
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // grpc-message is percent-encoded; the messages checked here are plain ASCII apart from
    // spaces and the odd punctuation.
    let message = url::form_urlencoded::parse(format!("m={message}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Some((code, message))
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        RawClient { addr, send }
    }

    /// Like `connect`, from another local address (any of 127.0.0.0/8 on Linux): another
    /// peer, as far as the server can tell.
    pub async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(local, 0)).expect("bind");
        let tcp = socket.connect(addr).await.expect("connect");
        let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        RawClient { addr, send }
    }

    /// POSTs `body` to `path` with `application/grpc` and the given extra headers.
    pub async fn call(&mut self, path: &str, headers: &[(&str, &str)], body: Bytes) -> RawReply {
        let mut all = vec![("content-type", "application/grpc"), ("te", "trailers")];
        all.extend_from_slice(headers);
        self.call_exact(path, &all, body).await
    }

    /// POSTs `body` with exactly these headers.
    pub async fn call_exact(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> RawReply {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut send = self.send.clone().ready().await.expect("connection ready");
        let (response, mut stream) = send
            .send_request(req.body(()).unwrap(), false)
            .expect("send request");
        // A server may answer (and end the stream) before reading the body, e.g. a refusal
        // decided from the headers: the reply, not the send, is what the test checks.
        let _ = stream.send_data(body, true);
        let response = response.await.expect("response");
        let http_status = response.status().as_u16();
        if let Some((code, message)) = status_of(response.headers()) {
            return RawReply {
                http_status,
                code: Some(code),
                message,
            };
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("response data");
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
        let (code, message) =
            status_of(&trailers).map_or((None, String::new()), |(c, m)| (Some(c), m));
        RawReply {
            http_status,
            code,
            message,
        }
    }
}
