//! Authentication end to end: the example config's rules over HTTP, identity
//! forwarding to a backend, and a remote JWKS served by a real local server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use protogate::auth::token::{SigningKey, TokenSpec, mint};
use serde_json::{Value, json};

use crate::probe;
use crate::support::{dev_token, root, start, start_in_process};

fn fixture_key(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/keys").join(name)).unwrap()
}

#[tokio::test]
async fn example_rules_over_http() {
    let stack = start_in_process().await.anonymous();
    assert_eq!(
        stack.get("/v1/users/1").await.status,
        200,
        "user lookups are public"
    );

    let missing = stack.get("/v1/users/1/orders/1001").await;
    assert_eq!(
        (missing.status.as_u16(), &missing.json["code"]),
        (401, &json!(16))
    );
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"protogate\""
    );

    let no_scope = dev_token("profile");
    let auth = format!("Bearer {no_scope}");
    let denied = stack
        .call_with(
            "GET",
            "/v1/users/1/orders/1001",
            None,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(
        (denied.status.as_u16(), &denied.json["code"]),
        (403, &json!(7))
    );
    assert_eq!(
        denied.headers["www-authenticate"],
        "Bearer realm=\"protogate\", error=\"insufficient_scope\", scope=\"orders\""
    );

    let good = format!("Bearer {}", dev_token("orders"));
    let ok = stack
        .call_with(
            "GET",
            "/v1/users/1/orders/1001",
            None,
            &[("authorization", &good)],
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);

    let wrong_key = stack
        .call_with(
            "GET",
            "/v1/inventory/sku-grinder",
            None,
            &[("x-api-key", "guess")],
        )
        .await;
    assert_eq!(
        (
            wrong_key.status.as_u16(),
            wrong_key.json["message"].as_str()
        ),
        (401, Some("invalid API key"))
    );
    let key = stack
        .call_with(
            "POST",
            "/v1/inventory/sku-grinder:reserve",
            Some(r#"{"quantity": 1}"#),
            &[("x-api-key", "dev-inventory-key")],
        )
        .await;
    assert_eq!(key.status, 200, "{:?}", key.json);
    // A token is not an API key.
    let token_on_inventory = stack
        .call_with(
            "GET",
            "/v1/inventory/sku-grinder",
            None,
            &[("authorization", &good)],
        )
        .await;
    assert_eq!(token_on_inventory.status, 401);
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let stack = start().await.anonymous();
    let garbage = stack.call("POST", "/v1/users", Some("{not json")).await;
    assert_eq!(garbage.status, 401, "no 400: the body was never parsed");
    // A declared body over the limit is not even read.
    let (status, _) = raw_post(stack.addr(), "/v1/users", 100_000_000).await;
    assert_eq!(status, 401);
}

async fn raw_post(addr: SocketAddr, path: &str, length: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut raw)).await;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[tokio::test]
async fn expired_token_gets_an_rfc_6750_challenge() {
    let stack = start_in_process().await.anonymous();
    let pem = std::fs::read_to_string(root().join("examples/keys/dev-signing.pem")).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let mut spec = TokenSpec {
        algorithm: Algorithm::ES256,
        issuer: "https://auth.shop.example".into(),
        audience: "shop-api".into(),
        subject: "1".into(),
        scope: Some("orders".into()),
        ttl: Duration::from_secs(60),
        key_id: None,
        claims: Default::default(),
    };
    spec.claims.insert("exp".into(), (now - 3600).into());
    let expired = format!("Bearer {}", mint(&spec, &SigningKey::Pem(pem)).unwrap());
    let reply = stack
        .call_with("GET", "/v1/orders", None, &[("authorization", &expired)])
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.json["message"].as_str()),
        (401, Some("invalid token: token expired"))
    );
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer realm=\"protogate\", error=\"invalid_token\", error_description=\"token expired\""
    );
}

const PROBE_AUTH: &str = "auth:
  jwt:
    local:
      issuer: https://probe.example
      audiences: [probe]
      algorithms: [HS256]
      secret: probe-secret
  forward:
    claims: { sub: x-user-id, tenant: x-tenant }
    payload: x-jwt-payload
";

fn probe_token(sub: &str) -> String {
    let mut spec = TokenSpec {
        algorithm: Algorithm::HS256,
        issuer: "https://probe.example".into(),
        audience: "probe".into(),
        subject: sub.into(),
        scope: None,
        ttl: Duration::from_secs(60),
        key_id: None,
        claims: Default::default(),
    };
    spec.claims.insert("tenant".into(), "acme".into());
    mint(&spec, &SigningKey::Secret(b"probe-secret".to_vec())).unwrap()
}

#[tokio::test]
async fn verified_identity_reaches_the_backend_and_spoofs_do_not() {
    let (stack, _) = probe::start_in_process(PROBE_AUTH).await;
    let auth = format!("Bearer {}", probe_token("user-7"));
    let reply = stack
        .echo(
            json!({}),
            &[
                ("authorization", &auth),
                ("x-user-id", "admin"),
                ("grpc-metadata-x-user-id", "admin"),
                ("grpc-metadata-x-tenant", "other"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let md = &reply.json["metadata"];
    assert_eq!(md["x-user-id"], "user-7");
    assert_eq!(md["x-tenant"], "acme");
    assert!(
        md.get("authorization").is_none(),
        "the token itself is not forwarded: {md}"
    );
    assert!(
        md["x-jwt-payload"]
            .as_str()
            .is_some_and(|p| !p.contains('=')),
        "base64url: {md}"
    );

    let anonymous = stack
        .echo(json!({}), &[("grpc-metadata-x-user-id", "admin")])
        .await;
    assert_eq!(
        anonymous.status, 401,
        "the default requires a token once a provider exists"
    );
}

/// A JWKS endpoint whose keys, availability and `Cache-Control` the test controls.
#[derive(Clone)]
struct JwksServer {
    keys: Arc<Mutex<Option<JwkSet>>>,
    hits: Arc<Mutex<usize>>,
    cache_control: Arc<Mutex<&'static str>>,
}

impl JwksServer {
    async fn spawn() -> (SocketAddr, Self) {
        let server = JwksServer {
            keys: Arc::new(Mutex::new(None)),
            hits: Arc::new(Mutex::new(0)),
            cache_control: Arc::new(Mutex::new("max-age=3600")),
        };
        let state = server.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            get(move || {
                let state = state.clone();
                async move {
                    *state.hits.lock().unwrap() += 1;
                    let cache_control = *state.cache_control.lock().unwrap();
                    match state.keys.lock().unwrap().clone() {
                        Some(set) => (
                            axum::http::StatusCode::OK,
                            [("cache-control", cache_control)],
                            serde_json::to_string(&set).unwrap(),
                        ),
                        None => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [("cache-control", "no-store")],
                            String::new(),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, server)
    }

    fn serve(&self, keys: &[(&str, &str)]) {
        let set = JwkSet {
            keys: keys
                .iter()
                .map(|(kid, pem)| {
                    let key = EncodingKey::from_rsa_pem(fixture_key(pem).as_bytes()).unwrap();
                    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                    jwk.common.key_id = Some((*kid).to_owned());
                    jwk
                })
                .collect(),
        };
        *self.keys.lock().unwrap() = Some(set);
    }

    fn down(&self) {
        *self.keys.lock().unwrap() = None;
    }

    fn hits(&self) -> usize {
        *self.hits.lock().unwrap()
    }
}

fn rsa_token(pem: &str, kid: &str) -> String {
    let spec = TokenSpec {
        algorithm: Algorithm::RS256,
        issuer: "https://idp.example".into(),
        audience: "probe".into(),
        subject: "u".into(),
        scope: None,
        ttl: Duration::from_secs(60),
        key_id: Some(kid.into()),
        claims: Default::default(),
    };
    mint(&spec, &SigningKey::Pem(fixture_key(pem))).unwrap()
}

#[tokio::test]
async fn remote_jwks_rotation_outage_and_unknown_kids() {
    let (jwks_addr, jwks) = JwksServer::spawn().await;
    jwks.serve(&[("a", "rsa-a.pem")]);
    let auth = format!(
        "auth:\n  jwt:\n    idp:\n      issuer: https://idp.example\n      audiences: [probe]\n      algorithms: [RS256]\n      jwks_url: http://{jwks_addr}/jwks.json\n      jwks_min_refresh: 200ms\n"
    );
    let (stack, _) = probe::start_in_process(&auth).await;
    let call = |token: String| {
        let stack = &stack;
        async move {
            let header = format!("Bearer {token}");
            stack.echo(json!({}), &[("authorization", &header)]).await
        }
    };
    assert_eq!(call(rsa_token("rsa-a.pem", "a")).await.status, 200);
    let fetched = jwks.hits();

    // Rotation: key b appears; a token with kid b triggers a refetch at once.
    jwks.serve(&[("a", "rsa-a.pem"), ("b", "rsa-b.pem")]);
    tokio::time::sleep(Duration::from_millis(250)).await; // past jwks_min_refresh since startup
    let rotated = call(rsa_token("rsa-b.pem", "b")).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.json);
    assert_eq!(jwks.hits(), fetched + 1);

    // Outage: cached keys keep serving, and unknown kids are refused without
    // more than one fetch per min_refresh. Tokens are signed before the
    // counted part: RSA signing is slow in a debug build.
    let unknown = rsa_token("rsa-a.pem", "zzz");
    jwks.down();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call(rsa_token("rsa-a.pem", "a")).await.status, 200);
    let before = jwks.hits();
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        let refused = call(unknown.clone()).await;
        assert_eq!(
            refused.json["message"],
            "invalid token: unknown signing key"
        );
    }
    // Unlimited, that would be five fetches. Limited: one on demand and one
    // background retry per min_refresh (200ms) that the calls took, so a
    // slow machine gets a larger allowance rather than a failure.
    let periods = started.elapsed().as_millis() / 200 + 1;
    let fetches = jwks.hits() - before;
    assert!(
        fetches as u128 <= 2 * periods,
        "rate limited: {fetches} fetches in {periods} periods"
    );
    assert_eq!(
        call(rsa_token("rsa-b.pem", "b")).await.status,
        200,
        "still cached during the outage"
    );

    // A token signed by a key the set does not hold, under a known kid.
    let forged = call(rsa_token("rsa-b.pem", "a")).await;
    assert_eq!(forged.json["message"], "invalid token: bad signature");
    let _: Value = forged.json;
}

#[tokio::test]
async fn remote_jwks_is_refreshed_when_its_cache_lifetime_ends() {
    let (jwks_addr, jwks) = JwksServer::spawn().await;
    *jwks.cache_control.lock().unwrap() = "max-age=0";
    jwks.serve(&[("a", "rsa-a.pem")]);
    let auth = format!(
        "auth:\n  jwt:\n    idp:\n      issuer: https://idp.example\n      audiences: [probe]\n      algorithms: [RS256]\n      jwks_url: http://{jwks_addr}/jwks.json\n      jwks_min_refresh: 100ms\n"
    );
    let (_stack, _) = probe::start_in_process(&auth).await;
    let first = jwks.hits();
    // max-age=0 is clamped to jwks_min_refresh: a background fetch every 100ms.
    crate::support::eventually(30, "two background fetches", || async {
        jwks.hits() >= first + 2
    })
    .await;
}

#[tokio::test]
async fn gateway_endpoints_can_require_credentials() {
    let stack = crate::support::start_in_process_with(|c| c.auth.protect_gateway_endpoints = true)
        .await
        .anonymous();
    assert_eq!(stack.get_text("/openapi.json").await.0, 401);
    assert_eq!(stack.get_text("/healthz").await.0, 401);
    let token = format!("Bearer {}", dev_token("orders"));
    let allowed = stack
        .call_with("GET", "/openapi.json", None, &[("authorization", &token)])
        .await;
    assert_eq!(allowed.status, 200);
    let open = start_in_process().await;
    assert_eq!(open.get_text("/healthz").await.0, 200);
}

#[tokio::test]
async fn api_keys_from_a_file_and_the_query_string() {
    let dir = std::env::temp_dir().join(format!("protogate-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = protogate::auth::api_key::hash_hex("k-123");
    std::fs::write(
        dir.join("keys.yaml"),
        format!("- name: ci\n  sha256: {hash}\n  scopes: [echo]\n"),
    )
    .unwrap();
    let auth = format!(
        "auth:\n  api_keys:\n    from: {{ query: api_key }}\n    file: {}\n  default: {{ allow: [api_key], scopes: [echo] }}\n  forward:\n    api_key_name: x-api-key-name\n",
        dir.join("keys.yaml").display()
    );
    let (stack, _) = probe::start_in_process(&auth).await;
    // The credential parameter is not a request field, so it is no unknown-parameter 400.
    let ok = stack
        .0
        .call("POST", "/v1/echo?api_key=k-123", Some(r#"{"text": "hi"}"#))
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    assert_eq!(ok.json["metadata"]["x-api-key-name"], "ci");
    let bad = stack
        .0
        .call("POST", "/v1/echo?api_key=k-124", Some("{}"))
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.json["message"].as_str()),
        (401, Some("invalid API key"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}
