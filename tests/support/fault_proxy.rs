//! A fault-injecting HTTP/1.1 proxy in front of LocalStack. IAM speaks the query protocol
//! (a POST whose form body says `Action=GetRole&RoleName=...`), so the proxy reads the
//! action and role of each request and, per a fault plan the test may change at any time,
//! forwards it or answers with a fault. Every request is recorded, so a test can count the
//! calls IAM actually served apart from the failures the proxy made up, with its decoded
//! form fields; with [`FaultProxy::record_resources`], also what IAM would know of the role
//! or provider it acts on (its ARN, tags and permissions boundary), so a test can evaluate
//! the request as IAM authorizes it (`iam_eval`).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use percent_encoding::percent_decode_str;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

/// What the proxy does to a request a rule picks.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 400 `Throttling`, as IAM answers when over its rate.
    Throttle,
    /// HTTP 500 `ServiceFailure`.
    ServerError,
    /// Waits, then forwards.
    Delay(Duration),
    /// Closes the connection without an answer.
    Drop,
    /// Never answers, until the plan changes; the request is then decided again.
    Hang,
    /// Holds the request until the plan changes, then forwards it even if its sender has
    /// gone meanwhile: a write IAM received just before the process that sent it died.
    Hold,
    /// Any IAM error answer.
    Error {
        status: u16,
        code: String,
        message: String,
    },
}

impl Fault {
    /// The 403 IAM gives a caller lacking a permission for `action` on `role`.
    pub fn access_denied(action: &str, role: &str) -> Self {
        Fault::Error {
            status: 403,
            code: "AccessDenied".into(),
            message: format!(
                "User: arn:aws:sts::000000000000:assumed-role/x/y is not authorized to perform: \
                 iam:{action} on resource: role {role} because no identity-based policy allows \
                 the iam:{action} action"
            ),
        }
    }

    fn error_answer(&self, request_id: &str) -> Option<Vec<u8>> {
        let (status, code, message) = match self {
            Fault::Throttle => (400, "Throttling", "Rate exceeded"),
            Fault::ServerError => (500, "ServiceFailure", "Service failure"),
            Fault::Error {
                status,
                code,
                message,
            } => (*status, code.as_str(), message.as_str()),
            Fault::Delay(_) | Fault::Drop | Fault::Hang | Fault::Hold => return None,
        };
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        let body = format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{kind}</Type>\
             <Code>{code}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            xml_escape(message)
        );
        Some(
            format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
                 x-amzn-RequestId: {request_id}\r\n\r\n{body}",
                reason_phrase(status),
                body.len()
            )
            .into_bytes(),
        )
    }

    fn label(&self) -> String {
        match self {
            Fault::Throttle => "Throttling".into(),
            Fault::ServerError => "ServiceFailure".into(),
            Fault::Delay(_) => "Delay".into(),
            Fault::Drop => "Drop".into(),
            Fault::Hang => "Hang".into(),
            Fault::Hold => "Hold".into(),
            Fault::Error { code, .. } => code.clone(),
        }
    }
}

/// Applies `fault` with `probability` to the requests matching the action and role, if set.
#[derive(Debug, Clone)]
pub struct Rule {
    action: Option<String>,
    role: Option<String>,
    probability: f64,
    fault: Fault,
}

impl Rule {
    /// Every request, every time.
    pub fn new(fault: Fault) -> Self {
        Self {
            action: None,
            role: None,
            probability: 1.0,
            fault,
        }
    }

    pub fn action(mut self, action: &str) -> Self {
        self.action = Some(action.into());
        self
    }

    pub fn role(mut self, role: &str) -> Self {
        self.role = Some(role.into());
        self
    }

    pub fn probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }

    fn matches(&self, request: &Call) -> bool {
        self.action.as_ref().is_none_or(|a| *a == request.action)
            && self
                .role
                .as_ref()
                .is_none_or(|r| request.role.as_ref() == Some(r))
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// LocalStack answered with this HTTP status.
    Served(u16),
    /// The proxy answered (or dropped, or hung up on the client) with this fault.
    Injected(String),
}

/// One IAM (or STS) request as seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub action: String,
    pub role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub call: Call,
    pub outcome: Outcome,
    /// The request's form fields, decoded: `Action`, `RoleName`, `Tags.member.1.Key`, ...
    pub params: BTreeMap<String, String>,
    /// The role or provider the request acts on, as it was just before the request was
    /// decided; only with [`FaultProxy::record_resources`], and `None` for a create or when
    /// it does not exist.
    pub resource: Option<ResourceFacts>,
}

/// What IAM's authorization knows about an existing role or OIDC provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    /// The full ARN, with the role's path.
    pub arn: String,
    /// For `aws:ResourceTag/<key>`.
    pub tags: BTreeMap<String, String>,
    /// The role's current boundary: `iam:PermissionsBoundary` of PutRolePolicy and
    /// AttachRolePolicy.
    pub permissions_boundary: Option<String>,
}

struct State {
    rules: Vec<Rule>,
    rng: u64,
    records: Vec<Record>,
    /// Requests held by `Fault::Hold` right now.
    held: usize,
    /// Whether to look up the role or provider of each request (see [`Record::resource`]).
    record_resources: bool,
}

impl State {
    /// One uniform draw decides among the matching rules, whose probabilities add up:
    /// 0.30 throttling and 0.05 errors means 30 % and 5 % of the requests.
    fn decide(&mut self, call: &Call) -> Option<Fault> {
        let draw = self.next_unit();
        let mut threshold = 0.0;
        for rule in self.rules.iter().filter(|r| r.matches(call)) {
            threshold += rule.probability;
            if draw < threshold {
                return Some(rule.fault.clone());
            }
        }
        None
    }

    /// splitmix64: deterministic for a seed, and needs no crate.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shared {
    upstream: String,
    state: Mutex<State>,
    /// Bumped on every plan change, so hung requests are decided again.
    plan: watch::Sender<u64>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

/// The proxy; it stops, with every connection it holds, when dropped.
pub struct FaultProxy {
    url: String,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("url", &self.url)
            .finish()
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                rules: Vec::new(),
                rng: seed,
                records: Vec::new(),
                held: 0,
                record_resources: false,
            }),
            plan: watch::channel(0).0,
        });
        let acceptor = tokio::spawn(accept(listener, shared.clone()));
        Self {
            url,
            shared,
            acceptor,
        }
    }

    /// The URL to give the operator as `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the fault plan; hung requests are decided again under the new one.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.state().rules = rules;
        self.shared.plan.send_modify(|version| *version += 1);
    }

    /// Forwards everything from now on.
    pub fn clear(&self) {
        self.set_rules(Vec::new());
    }

    /// From now on, looks up the role or provider of each request in LocalStack before
    /// deciding it, directly and not through the proxy (no call is counted), and records
    /// it in [`Record::resource`].
    pub fn record_resources(&self) {
        self.shared.state().record_resources = true;
    }

    pub fn records(&self) -> Vec<Record> {
        self.shared.state().records.clone()
    }

    /// Requests of `action` that LocalStack answered (any status).
    pub fn served(&self, action: &str) -> usize {
        self.count(|r| r.call.action == action && matches!(r.outcome, Outcome::Served(_)))
    }

    /// Requests LocalStack answered, every action together.
    pub fn served_total(&self) -> usize {
        self.count(|r| matches!(r.outcome, Outcome::Served(_)))
    }

    /// Requests held by `Fault::Hold` right now.
    pub fn held(&self) -> usize {
        self.shared.state().held
    }

    /// Requests of `action` that reached the proxy, served or not.
    pub fn attempts(&self, action: &str) -> usize {
        self.count(|r| r.call.action == action)
    }

    pub fn injected(&self) -> usize {
        self.count(|r| matches!(r.outcome, Outcome::Injected(_)))
    }

    /// Requests answered with this fault (its IAM error code, or `Drop`, `Hang`).
    pub fn injected_as(&self, fault: &str) -> usize {
        self.count(|r| matches!(&r.outcome, Outcome::Injected(f) if f == fault))
    }

    fn count(&self, keep: impl Fn(&Record) -> bool) -> usize {
        self.shared
            .state()
            .records
            .iter()
            .filter(|r| keep(r))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The acceptor owns the connections' JoinSet: aborting it ends them all.
        self.acceptor.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.spawn(serve_connection(stream, shared.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A parsed request: its head (request line and headers, without the blank line) and body.
struct Request {
    head: String,
    body: Vec<u8>,
}

/// Serves requests on one client connection, keeping it alive between them.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader, &mut write).await {
        let params = parse_form(&request.body);
        let call = Call {
            action: params.get("Action").cloned().unwrap_or_default(),
            role: params.get("RoleName").cloned(),
        };
        let seen = Seen {
            call,
            params,
            request,
        };
        let Some(answer) = answer(&shared, &seen, &mut reader).await else {
            return;
        };
        if write.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// One request as read from the client.
struct Seen {
    call: Call,
    params: BTreeMap<String, String>,
    request: Request,
}

/// The bytes to send back, or `None` to close the connection.
async fn answer<R: AsyncRead + Unpin>(
    shared: &Shared,
    seen: &Seen,
    client: &mut R,
) -> Option<Vec<u8>> {
    let (call, request) = (&seen.call, &seen.request);
    let mut plan = shared.plan.subscribe();
    let mut probe = [0u8; 1];
    loop {
        // Seen before deciding, so a change made meanwhile still wakes a hang.
        plan.borrow_and_update();
        let decision = shared.state().decide(call);
        let outcome = match decision {
            Some(Fault::Hang) => {
                tokio::select! {
                    _ = plan.changed() => continue,
                    // A client that gives up closes the connection; the request must then
                    // never reach IAM.
                    _ = client.read(&mut probe) => {
                        let facts = resource_facts(shared, seen).await;
                        record(shared, seen, Outcome::Injected("Hang".into()), facts);
                        return None;
                    }
                }
            }
            Some(Fault::Drop) => {
                let facts = resource_facts(shared, seen).await;
                record(shared, seen, Outcome::Injected(Fault::Drop.label()), facts);
                return None;
            }
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                let facts = resource_facts(shared, seen).await;
                (forward(shared, request).await, facts)
            }
            Some(Fault::Hold) => {
                shared.state().held += 1;
                let _ = plan.changed().await;
                shared.state().held -= 1;
                let facts = resource_facts(shared, seen).await;
                (forward(shared, request).await, facts)
            }
            Some(fault) => {
                let request_id = format!("{:032x}", u128::from(shared.state().next_u64()));
                let answer = fault.error_answer(&request_id)?;
                let facts = resource_facts(shared, seen).await;
                record(shared, seen, Outcome::Injected(fault.label()), facts);
                return Some(answer);
            }
            None => {
                // Looked up before forwarding: IAM authorizes on the state before the write.
                let facts = resource_facts(shared, seen).await;
                (forward(shared, request).await, facts)
            }
        };
        let ((status, answer), facts) = (outcome.0?, outcome.1);
        record(shared, seen, Outcome::Served(status), facts);
        return Some(answer);
    }
}

fn record(shared: &Shared, seen: &Seen, outcome: Outcome, resource: Option<ResourceFacts>) {
    shared.state().records.push(Record {
        call: seen.call.clone(),
        outcome,
        params: seen.params.clone(),
        resource,
    });
}

/// The role or OIDC provider `seen` acts on, asked of LocalStack directly, when
/// [`FaultProxy::record_resources`] is on and it exists.
async fn resource_facts(shared: &Shared, seen: &Seen) -> Option<ResourceFacts> {
    if !shared.state().record_resources {
        return None;
    }
    let params = &seen.params;
    let action = params.get("Action").map(String::as_str);
    let (form, provider_arn) = if let Some(role) = params.get("RoleName") {
        if action == Some("CreateRole") {
            return None;
        }
        (
            vec![("Action", "GetRole"), ("RoleName", role.as_str())],
            None,
        )
    } else if let Some(arn) = params.get("OpenIDConnectProviderArn") {
        let form = vec![
            ("Action", "GetOpenIDConnectProvider"),
            ("OpenIDConnectProviderArn", arn.as_str()),
        ];
        (form, Some(arn.clone()))
    } else {
        return None;
    };
    let body: String = form
        .iter()
        .chain(&[("Version", "2010-05-08")])
        .map(|(key, value)| format!("{key}={}", form_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    // The original credentials: LocalStack picks the account from the access key.
    let authorization = header(&seen.request.head, "authorization")
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let lookup = Request {
        head: format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
             Content-Length: {}\r\n{authorization}",
            shared.upstream,
            body.len()
        ),
        body: body.into_bytes(),
    };
    let (status, answer) = forward(shared, &lookup).await?;
    if status != 200 {
        return None;
    }
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let raw = &answer[split + 4..];
    let body = if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    let xml = String::from_utf8_lossy(&body);
    let tags: BTreeMap<String, String> = xml_section(&xml, "Tags")
        .map(|tags| {
            tags.split("<member>")
                .skip(1)
                .filter_map(|member| Some((xml_text(member, "Key")?, xml_text(member, "Value")?)))
                .collect()
        })
        .unwrap_or_default();
    Some(ResourceFacts {
        arn: provider_arn.or_else(|| xml_text(&xml, "Arn"))?,
        tags,
        permissions_boundary: xml_text(&xml, "PermissionsBoundaryArn"),
    })
}

/// The text of the first `<tag>` element, unescaped.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_section(xml, tag).map(|text| {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    })
}

/// What lies between the first `<tag>` and the next `</tag>`.
fn xml_section<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

/// A chunked HTTP/1.1 body, joined.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || raw.len() < start + size {
            break;
        }
        body.extend_from_slice(&raw[start..start + size]);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    body
}

/// Percent-encodes a form value (RFC 3986 unreserved characters stay).
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads one request; `None` at the end of the connection or on a malformed request.
async fn read_request<R, W>(reader: &mut BufReader<R>, writer: &mut W) -> Option<Request>
where
    R: AsyncRead + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    if header(&head, "transfer-encoding").is_some() {
        // The SDK sends IAM requests with a Content-Length; nothing else is supported.
        return None;
    }
    let length: usize = header(&head, "content-length")
        .map(|v| v.parse().ok())
        .unwrap_or(Some(0))?;
    if header(&head, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Request { head, body })
}

/// The value of header `name` in `head`, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// The fields of a query-protocol form body, decoded; the first of a repeated name wins.
fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let form = String::from_utf8_lossy(body);
    let decode = |text: &str| {
        percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut fields = BTreeMap::new();
    for pair in form.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.entry(decode(key)).or_insert_with(|| decode(value));
    }
    fields
}

/// Sends `request` upstream on a fresh connection and returns (status, answer for the client).
async fn forward(shared: &Shared, request: &Request) -> Option<(u16, Vec<u8>)> {
    let mut upstream = TcpStream::connect(&shared.upstream).await.ok()?;
    let mut head = without_header(&request.head, "connection");
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes()).await.ok()?;
    upstream.write_all(&request.body).await.ok()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await.ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let response_head = String::from_utf8_lossy(&response[..split + 2]).into_owned();
    let body = &response[split + 4..];
    let status = response_head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())?;
    // The client connection stays open, so the answer must carry its own framing.
    let mut head = without_header(&response_head, "connection");
    let framed =
        header(&head, "content-length").is_some() || header(&head, "transfer-encoding").is_some();
    if !framed {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut answer = head.into_bytes();
    answer.extend_from_slice(body);
    Some((status, answer))
}

/// `head` (lines ending in CRLF) without the header `name`.
fn without_header(head: &str, name: &str) -> String {
    head.split_inclusive('\n')
        .filter(|line| {
            line.split_once(':')
                .is_none_or(|(key, _)| !key.trim().eq_ignore_ascii_case(name))
        })
        .map(|line| format!("{}\r\n", line.trim_end_matches(['\r', '\n'])))
        .collect()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
