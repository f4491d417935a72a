//! One reading of every request's path, host and target (docs/security.md, "One reading of
//! every request"): a route `admin` (prefix /admin, guarded by `key_auth`) beside a route
//! `public` (prefix /) to the same backend, and raw request bytes in every spelling a client
//! library would have tidied. Each case asserts what the client got and exactly what the
//! backend received (or that it received nothing), over a plain listener and over TLS, and
//! for the host cases over HTTP/2.

use crate::common::*;
use std::time::Duration;

const KEY: &str = "X-Api-Key: k\r\n";

struct Setup {
    _ca: TestCa,
    gw: Gateway,
    backend: Backend,
}

/// `path`: the `server.path` settings, if any; `global`: a plugin of the global chain, if
/// any.
async fn setup_with(path: Option<&str>, global: Option<&str>) -> Setup {
    let ca = TestCa::new("edge paths CA");
    let cert = ca.issue(&["t.test", "api.test"]);
    let backend = Backend::http("app");
    let mut config = Config::new()
        .listener("tls", &tls(&[&cert], ""))
        .listener("redirect", "redirect_https: 8443")
        .upstream("app", &format!("{}, retries: 0", backends(&[backend.addr()])))
        .route("name: admin, match: { path: { prefix: /admin } }, upstream: app, plugins: [ { key_auth: { keys: { ci: k } } } ]")
        .route("name: api, match: { hosts: [api.test] }, upstream: app, plugins: [ { headers: { response: { set: { X-Route: api } } } } ]")
        .route("name: moved, match: { path: { prefix: /moved } }, plugins: [ { redirect: { url: \"https://new.test\", status: 301 } } ]")
        .route("name: public, match: { path: { prefix: / } }, upstream: app, plugins: [ { headers: { response: { set: { X-Route: public } } } } ]");
    if let Some(path) = path {
        config = config.server(&format!("path: {path}"));
    }
    if let Some(plugin) = global {
        config = config.plugin(plugin);
    }
    Setup {
        _ca: ca,
        gw: config.start().await,
        backend,
    }
}

async fn setup() -> Setup {
    setup_with(None, None).await
}

/// A response read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
    closed: bool,
    /// What the backend received from this request, if anything.
    seen: Option<String>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The backend's description of the request (its answer's JSON body).
    fn echoed(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// A request target, the status the client gets and the path the backend sees (`None`: the
/// request never reaches it).
type Target<'a> = (&'a [u8], u16, Option<&'a str>);

/// `GET target` on the listener `web` for each of `cases`, each answered and forwarded as the
/// case says (`what` names the setup in a failure).
async fn check_targets(s: &Setup, what: &str, cases: &[Target<'_>]) {
    for (target, status, seen) in cases {
        let a = raw(s, "web", None, &get(target, HOST)).await;
        assert_eq!(
            (a.status, a.seen.as_deref()),
            (*status, *seen),
            "{what} {}: {a:?}",
            String::from_utf8_lossy(target)
        );
    }
}

/// Sends `bytes` as they are on a new connection (TLS when `sni`), reads the answer until the
/// gateway closes the connection (every request here says `Connection: close` or is refused)
/// and returns it with what the backend saw meanwhile.
async fn raw(s: &Setup, listener: &str, sni: Option<&str>, bytes: &[u8]) -> Answer {
    let before = s.backend.seen_paths().len();
    let ex = exchange(s.gw.listener(listener), bytes, sni, Duration::from_secs(5)).await;
    let text = ex.text();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    // Whatever reached the backend did so before its answer came back.
    let seen = s.backend.seen_paths()[before..].to_vec();
    assert!(
        seen.len() <= 1,
        "the backend got {seen:?} for {:?}",
        String::from_utf8_lossy(bytes)
    );
    Answer {
        status: ex.status().unwrap_or(0),
        head: head.to_string(),
        body,
        closed: ex.closed,
        seen: seen.into_iter().next(),
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A request: the request line, then `headers` (each ending in CRLF), then
/// `Connection: close`.
fn request(line: &[u8], headers: &str) -> Vec<u8> {
    let mut r = line.to_vec();
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(headers.as_bytes());
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    r
}

fn get(target: &[u8], headers: &str) -> Vec<u8> {
    let mut line = b"GET ".to_vec();
    line.extend_from_slice(target);
    line.extend_from_slice(b" HTTP/1.1");
    request(&line, headers)
}

const HOST: &str = "Host: t.test\r\n";

/// The issue's table, and more spellings of `/admin/x`: without the key every one is the
/// admin route's 401 (nothing reaches the backend); with it, the backend receives the path
/// in its one spelling (parameters kept).
#[tokio::test]
async fn every_spelling_of_a_guarded_path_meets_its_guard() {
    let s = setup().await;
    let spellings: &[(&[u8], &str)] = &[
        (b"/admin/x", "/admin/x"),
        (b"/%61dmin/x", "/admin/x"),
        (b"/%61%64%6D%69%6e/x", "/admin/x"),
        (b"//admin/x", "/admin/x"),
        (b"///admin//x", "/admin/x"),
        (b"/public/../admin/x", "/admin/x"),
        (b"/public/%2e%2E/admin/x", "/admin/x"),
        (b"/./admin/./x", "/admin/x"),
        (b"/admin/y/../x", "/admin/x"),
        (b"/admin;a/x", "/admin;a/x"),
        (b"/admin;jsessionid=1/x", "/admin;jsessionid=1/x"),
        (b"/;a/admin/x", "/;a/admin/x"),
        (b"/admin", "/admin"),
        (b"/admin?x=1", "/admin?x=1"),
        (b"http://t.test/admin/x", "/admin/x"),
        (b"http://t.test/public/../admin/x", "/admin/x"),
    ];
    for (listener, sni) in [("web", None), ("tls", Some("t.test"))] {
        for (target, want) in spellings {
            let shown = String::from_utf8_lossy(target);
            let a = raw(&s, listener, sni, &get(target, HOST)).await;
            assert_eq!(
                (a.status, a.seen.as_deref()),
                (401, None),
                "{listener}: GET {shown} without a key: {a:?}"
            );
            let a = raw(&s, listener, sni, &get(target, &format!("{HOST}{KEY}"))).await;
            assert_eq!(
                (a.status, a.seen.as_deref()),
                (200, Some(*want)),
                "{listener}: GET {shown} with the key: {a:?}"
            );
        }
    }
}

/// Paths outside the guard: the backend receives the one spelling, and the query string
/// exactly as it was sent.
#[tokio::test]
async fn the_backend_receives_the_normalized_path_and_the_query_as_sent() {
    let s = setup().await;
    let cases: &[(&[u8], &str)] = &[
        (b"/public/./x", "/public/x"),
        (b"/a/b/..", "/a/"),
        (b"/%7Euser/%41", "/~user/A"),
        (b"/a%3ab%2c", "/a%3Ab%2C"),
        (b"/a%20b", "/a%20b"),
        (b"/caf\xc3\xa9", "/caf%C3%A9"),
        (b"/a{b}|c", "/a%7Bb%7D%7Cc"),
        (b"/Admin/x", "/Admin/x"),
        (b"/ADMIN/x", "/ADMIN/x"),
        (b"/adminx", "/adminx"),
        (b"/admin%3Bx/y", "/admin%3Bx/y"),
        (
            b"/p/../q?x=%2F..&y=a+b&z=%zz&w=/../&&",
            "/q?x=%2F..&y=a+b&z=%zz&w=/../&&",
        ),
        (b"//?a=//b", "/?a=//b"),
    ];
    for (listener, sni) in [("web", None), ("tls", Some("t.test"))] {
        for (target, want) in cases {
            let a = raw(&s, listener, sni, &get(target, HOST)).await;
            assert_eq!(
                (a.status, a.seen.as_deref()),
                (200, Some(*want)),
                "{listener}: GET {}: {a:?}",
                String::from_utf8_lossy(target)
            );
            assert_eq!(a.header("x-route"), Some("public"), "{a:?}");
        }
    }
}

/// Every request with no single reading: 400 with the request id, `Connection: close`,
/// nothing at the backend. A global `ip_filter` that refuses everyone shows that the 400
/// comes before any plugin runs (a plugin would have answered 403).
#[tokio::test]
async fn what_has_no_single_reading_is_refused_before_any_plugin() {
    let s = setup_with(None, Some("ip_filter: { deny: [127.0.0.1] }")).await;
    let a = raw(&s, "web", None, &get(b"/public/x", HOST)).await;
    assert_eq!(
        a.status, 403,
        "the global plugin runs on a readable request: {a:?}"
    );
    let lines: &[&[u8]] = &[
        // bad escapes
        b"GET /a% HTTP/1.1",
        b"GET /a%4 HTTP/1.1",
        b"GET /a%G1 HTTP/1.1",
        b"GET /%%61dmin/x HTTP/1.1",
        // control characters, escaped and raw (Pingora escapes raw ones first)
        b"GET /a%00b HTTP/1.1",
        b"GET /admin%00/x HTTP/1.1",
        b"GET /a%1f HTTP/1.1",
        b"GET /a%7F HTTP/1.1",
        b"GET /a%0d%0aX:%20y HTTP/1.1",
        b"GET /a\x01b HTTP/1.1",
        b"GET /a\x7fb HTTP/1.1",
        // backslashes
        b"GET /a%5Cb HTTP/1.1",
        b"GET /a%5cb HTTP/1.1",
        b"GET /a\\b HTTP/1.1",
        b"GET /public\\..\\admin/x HTTP/1.1",
        b"GET /public%5C..%5Cadmin/x HTTP/1.1",
        // escaped slashes (server.path.escaped_slashes: reject, the default)
        b"GET /admin%2Fx HTTP/1.1",
        b"GET /public%2f..%2fadmin/x HTTP/1.1",
        // climbing above the root
        b"GET /.. HTTP/1.1",
        b"GET /../admin/x HTTP/1.1",
        b"GET /a/../../admin/x HTTP/1.1",
        b"GET /%2e%2e/admin/x HTTP/1.1",
        // a dot segment hidden behind parameters (Tomcat reads `..;` as `..`)
        b"GET /public/..;/admin/x HTTP/1.1",
        b"GET /public/..;a=b/admin/x HTTP/1.1",
        b"GET /public/%2e%2e;/admin/x HTTP/1.1",
        b"GET /public/.;/admin/x HTTP/1.1",
        b"GET /x/..;a/../admin/x HTTP/1.1",
        // a `..` removing a segment that is only parameters (a servlet container reads
        // `/c/;x/../admin/x` as `/admin/x`)
        b"GET /c/;x/../admin/x HTTP/1.1",
        // targets that are not origin-form, absolute-form or OPTIONS *
        b"GET admin/x HTTP/1.1",
        b"GET t.test:80 HTTP/1.1",
        b"GET ?x=1 HTTP/1.1",
        b"GET * HTTP/1.1",
        b"POST * HTTP/1.1",
        b"GET ftp://t.test/admin/x HTTP/1.1",
        b"GET foo:bar HTTP/1.1",
    ];
    for (listener, sni) in [("web", None), ("tls", Some("t.test"))] {
        for line in lines {
            let shown = String::from_utf8_lossy(line);
            let a = raw(&s, listener, sni, &request(line, &format!("{HOST}{KEY}"))).await;
            assert_eq!(a.status, 400, "{listener}: {shown}: {a:?}");
            assert_eq!(a.seen, None, "{listener}: {shown}");
            assert!(a.closed, "{listener}: {shown}: the connection stays open");
            assert_eq!(
                a.header("connection"),
                Some("close"),
                "{listener}: {shown}: {a:?}"
            );
            let id = a
                .header("x-request-id")
                .unwrap_or_else(|| panic!("{shown}: no id: {a:?}"));
            assert!(
                a.body.starts_with("400 ") && a.body.contains(id),
                "{listener}: {shown}: a short body with the request id: {a:?}"
            );
        }
    }
    // Refusing is not breaking: the listener still serves.
    let a = raw(&s, "web", None, &get(b"/x", HOST)).await;
    assert_eq!(a.status, 403);
}

/// `server.path.escaped_slashes: keep` leaves `%2F` as data inside its segment (so
/// `/admin%2Fx` is not under `/admin`); `decode` makes it a `/` before dot segments go.
#[tokio::test]
async fn escaped_slashes_keep_and_decode() {
    let keep = setup_with(Some("{ escaped_slashes: keep }"), None).await;
    let cases: &[Target] = &[
        (b"/a%2fb", 200, Some("/a%2Fb")),
        (b"/admin%2Fx", 200, Some("/admin%2Fx")),
        (
            b"/public%2F..%2Fadmin/x",
            200,
            Some("/public%2F..%2Fadmin/x"),
        ),
        (b"/admin/a%2Fb", 401, None),
        (b"/a%5Cb", 400, None),
    ];
    check_targets(&keep, "keep", cases).await;
    let decode = setup_with(Some("{ escaped_slashes: decode }"), None).await;
    let cases: &[Target] = &[
        (b"/a%2fb", 200, Some("/a/b")),
        (b"/admin%2Fx", 401, None),
        (b"/public%2F..%2Fadmin/x", 401, None),
        (b"/a%2F%2F%2Fb", 200, Some("/a/b")),
        (b"/%2F..", 400, None),
    ];
    check_targets(&decode, "decode", cases).await;
}

/// With `merge_slashes: false` empty segments stay (and `//admin/x` is not under
/// `/admin`); dot segments are still removed.
#[tokio::test]
async fn merge_slashes_off_keeps_empty_segments() {
    let s = setup_with(Some("{ merge_slashes: false }"), None).await;
    let cases: &[Target] = &[
        (b"//admin/x", 200, Some("//admin/x")),
        (b"/a//b/", 200, Some("/a//b/")),
        (b"/a//../b", 200, Some("/a/b")),
        (b"/x/../admin//x", 401, None),
    ];
    check_targets(&s, "", cases).await;
}

/// An absolute-form target is routed on its authority and reaches the backend in
/// origin-form, with that authority as Host; an HTTP/1.0 request may leave Host out.
#[tokio::test]
async fn absolute_form_is_routed_on_its_authority_and_forwarded_in_origin_form() {
    let s = setup().await;
    let a = raw(
        &s,
        "web",
        None,
        &get(b"http://api.test/x/../y?q=%2F", "Host: api.test\r\n"),
    )
    .await;
    assert_eq!(
        (a.status, a.seen.as_deref()),
        (200, Some("/y?q=%2F")),
        "{a:?}"
    );
    assert_eq!(a.header("x-route"), Some("api"));
    assert_eq!(a.echoed()["headers"]["host"], "api.test");

    let a = raw(
        &s,
        "tls",
        Some("t.test"),
        &get(b"HTTPS://t.test//admin/x", HOST),
    )
    .await;
    assert_eq!((a.status, a.seen.as_deref()), (401, None), "{a:?}");
    let a = raw(&s, "web", None, &get(b"http://t.test", HOST)).await;
    assert_eq!((a.status, a.seen.as_deref()), (200, Some("/")), "{a:?}");

    let a = raw(
        &s,
        "web",
        None,
        &request(b"GET http://api.test:80/z HTTP/1.0", ""),
    )
    .await;
    assert_eq!((a.status, a.seen.as_deref()), (200, Some("/z")), "{a:?}");
    assert_eq!(
        a.header("x-route"),
        Some("api"),
        "routed on the authority: {a:?}"
    );
    assert_eq!(a.echoed()["headers"]["host"], "api.test:80");

    // A Host that names another host than the target: Pingora's own 400.
    let a = raw(&s, "web", None, &get(b"http://api.test/x", HOST)).await;
    assert_eq!((a.status, a.seen.as_deref()), (400, None), "{a:?}");
}

/// `OPTIONS *` passes (routed as the path `/` would be, forwarded as `*`); `*` with any other
/// method is refused.
#[tokio::test]
async fn options_asterisk_passes() {
    let s = setup().await;
    let a = raw(&s, "web", None, &request(b"OPTIONS * HTTP/1.1", HOST)).await;
    assert_eq!((a.status, a.seen.as_deref()), (200, Some("*")), "{a:?}");
    assert_eq!(a.header("x-route"), Some("public"));
    assert_eq!(a.echoed()["method"], "OPTIONS");
    let a = raw(&s, "web", None, &request(b"GET * HTTP/1.1", HOST)).await;
    assert_eq!((a.status, a.seen.as_deref()), (400, None), "{a:?}");
}

/// HTTP/1.1 needs one well-formed Host; a trailing dot is dropped for routing; HTTP/1.0 may
/// leave Host out (then only routes without `hosts` match).
#[tokio::test]
async fn host_is_read_one_way() {
    let s = setup().await;
    let refused: &[&str] = &[
        "",
        "Host: \r\n",
        "Host: t.test\r\nHost: t.test\r\n",
        "Host: t.test\r\nhost: api.test\r\n",
        "Host: t.test:xx\r\n",
        "Host: t.test:\r\n",
        "Host: t.test:0\r\n",
        "Host: t.test:65536\r\n",
        "Host: t.test:123456\r\n",
        "Host: t.test:80:80\r\n",
        "Host: t test\r\n",
        "Host: t.test/admin\r\n",
        "Host: t.test,api.test\r\n",
        "Host: t..test\r\n",
        "Host: .t.test\r\n",
        "Host: t.test@api.test\r\n",
        "Host: [::1\r\n",
        "Host: [::1]x\r\n",
        "Host: [zz::1]\r\n",
        "Host: t.t\u{e9}st\r\n",
        "Host: %61pi.test\r\n",
    ];
    for (listener, sni) in [("web", None), ("tls", Some("t.test"))] {
        for headers in refused {
            let a = raw(&s, listener, sni, &get(b"/x", headers)).await;
            assert_eq!(
                (a.status, a.seen.as_deref()),
                (400, None),
                "{listener}: {headers:?}: {a:?}"
            );
        }
    }
    let accepted: &[(&str, &str)] = &[
        ("Host: api.test\r\n", "api"),
        ("Host: api.test.\r\n", "api"),
        ("Host: API.Test.:8080\r\n", "api"),
        ("Host: api.test:65535\r\n", "api"),
        ("Host: 127.0.0.1:1\r\n", "public"),
        ("Host: [::1]:443\r\n", "public"),
        ("Host: my_service\r\n", "public"),
        ("Host: t.test.\r\n", "public"),
    ];
    for (headers, route) in accepted {
        let a = raw(&s, "web", None, &get(b"/x", headers)).await;
        assert_eq!(
            (a.status, a.header("x-route"), a.seen.as_deref()),
            (200, Some(*route), Some("/x")),
            "{headers:?}: {a:?}"
        );
    }
    // The backend is told the host as routed: the trailing dot dropped, the client's case
    // and port kept (Host and X-Forwarded-Host alike).
    for (headers, host) in [
        ("Host: API.Test.:8080\r\n", "API.Test:8080"),
        ("Host: t.test.\r\n", "t.test"),
    ] {
        let a = raw(&s, "web", None, &get(b"/x", headers)).await;
        let seen = a.echoed();
        let told = |name: &str| seen["headers"][name].as_str().map(str::to_string);
        assert_eq!(
            (told("host"), told("x-forwarded-host")),
            (Some(host.to_string()), Some(host.to_string())),
            "{a:?}"
        );
    }
    // HTTP/1.0 without Host: served by the routes without hosts.
    let a = raw(&s, "web", None, &request(b"GET /x HTTP/1.0", "")).await;
    assert_eq!(
        (a.status, a.header("x-route"), a.seen.as_deref()),
        (200, Some("public"), Some("/x")),
        "{a:?}"
    );
    let a = raw(&s, "web", None, &request(b"GET /admin/x HTTP/1.0", "")).await;
    assert_eq!((a.status, a.seen.as_deref()), (401, None), "{a:?}");
}

/// Two `Authorization` headers: the auth plugins would read one, a backend maybe the other.
#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let s = setup().await;
    let two = "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n";
    for target in [&b"/public/x"[..], b"/admin/x"] {
        let a = raw(&s, "web", None, &get(target, &format!("{HOST}{KEY}{two}"))).await;
        assert_eq!((a.status, a.seen.as_deref()), (400, None), "{a:?}");
        assert_eq!(a.header("connection"), Some("close"));
    }
    let a = raw(
        &s,
        "web",
        None,
        &get(
            b"/public/x",
            &format!("{HOST}Authorization: Bearer a, Bearer b\r\n"),
        ),
    )
    .await;
    assert_eq!(
        a.status, 200,
        "one header (whatever its value) is one reading: {a:?}"
    );
}

/// The redirect listener and the `redirect` plugin build their `Location` from the
/// normalized path (and the query as sent).
#[tokio::test]
async fn redirects_see_the_normalized_path() {
    let s = setup().await;
    let a = raw(&s, "redirect", None, &get(b"//a/./b/../c?x=%2F..", HOST)).await;
    assert_eq!(a.status, 308, "{a:?}");
    assert_eq!(
        a.header("location"),
        Some("https://t.test:8443/a/c?x=%2F..")
    );
    let a = raw(&s, "redirect", None, &get(b"/a%2Fb", HOST)).await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = raw(&s, "web", None, &get(b"/x/..//moved/%61", HOST)).await;
    assert_eq!(a.status, 301, "{a:?}");
    assert_eq!(a.header("location"), Some("https://new.test/moved/a"));
}

/// HTTP/2 routes by `:authority` (trailing dot dropped), normalizes `:path` the same way,
/// and refuses a `Host` that disagrees with `:authority`.
#[tokio::test]
async fn http2_routes_by_authority_and_reads_paths_the_same_way() {
    let s = setup().await;
    let addr = s.gw.listener("tls");
    let opts = TlsClientOpts::insecure().alpn(&["h2"]);
    let mut conn = HttpConn::tls(addr, "t.test", &opts).await.unwrap();
    assert_eq!(conn.version(), http::Version::HTTP_2);
    for (path, status) in [
        ("/%61dmin/x", 401),
        ("//admin/x", 401),
        ("/public/../admin/x", 401),
        ("/admin;a/x", 401),
        ("/a%2Fb", 400),
        ("/..", 400),
    ] {
        let r = conn.get(path).await.unwrap();
        assert_eq!(r.status, status, "h2 {path}: {}", r.text());
    }
    let r = conn
        .request("GET", "/p/./q?a=%2f", &[("x-api-key", "k")], Body::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/p/q?a=%2f");

    let mut api = HttpConn::tls(addr, "api.test", &opts).await.unwrap();
    // :authority is the connection's host; `api.test.` must route as `api.test`.
    let mut dotted = HttpConn::h2_over(
        tls_connect(addr, "api.test", &opts)
            .await
            .unwrap()
            .into_stream(),
        "api.test.",
        None,
    )
    .await
    .unwrap();
    let r = dotted.get("/x").await.unwrap();
    assert_eq!(
        (r.status, r.header("x-route")),
        (200, Some("api")),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["headers"]["host"], "api.test", "{}", r.text());
    let r = api.get("/x").await.unwrap();
    assert_eq!((r.status, r.header("x-route")), (200, Some("api")));
    // A Host beside :authority must say the same.
    let r = api
        .request("GET", "/x", &[("host", "t.test")], Body::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = api
        .request("GET", "/x", &[("host", "api.test")], Body::empty())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        s.backend
            .seen_paths()
            .iter()
            .filter(|p| p.contains("admin"))
            .count(),
        0,
        "no spelling of /admin reached the backend: {:?}",
        s.backend.seen_paths()
    );
}

/// A route path is compared with normalized request paths, so one that is not written
/// normalized could never match: a config error naming the spelling to write.
#[tokio::test]
async fn route_paths_must_be_written_normalized() {
    let cases = [
        (
            "{ prefix: /a/../b }",
            "routes[0].match.path.prefix",
            "\"/b\"",
        ),
        ("{ exact: //a }", "routes[0].match.path.exact", "\"/a\""),
        (
            "{ prefix: /%7euser }",
            "routes[0].match.path.prefix",
            "\"/~user\"",
        ),
        (
            "{ prefix: /a%3ab }",
            "routes[0].match.path.prefix",
            "\"/a%3Ab\"",
        ),
        (
            "{ prefix: /a;b }",
            "routes[0].match.path.prefix",
            ";parameters",
        ),
        ("{ prefix: /a%2Fb }", "routes[0].match.path.prefix", "%2F"),
        (
            "{ exact: /.. }",
            "routes[0].match.path.exact",
            "above the root",
        ),
    ];
    for (rule, key, says) in cases {
        let yaml = format!(
            "listeners:\n  - {{ name: web, listen: \"127.0.0.1:1\" }}\n\
             upstreams:\n  app: {{ backends: [ {{ addr: \"127.0.0.1:1\" }} ] }}\n\
             routes:\n  - name: r\n    match: {{ path: {rule} }}\n    upstream: app\n"
        );
        let (code, out) = validate_config(&yaml).await;
        assert_eq!(code, 1, "{rule}: {out}");
        assert!(out.contains(key) && out.contains(says), "{rule}: {out}");
        assert!(out.contains("(line 7)"), "{rule}: {out}");
    }
    let yaml = "server: { path: { escaped_slashes: sometimes } }\n\
                listeners:\n  - { name: web, listen: \"127.0.0.1:1\" }\n";
    let (code, out) = validate_config(yaml).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("server.path.escaped_slashes") && out.contains("(line 1)"),
        "{out}"
    );
}
