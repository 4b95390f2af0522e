use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};

use super::token::{SigningKey, TokenSpec, mint};
use super::*;
use crate::config;
use crate::descriptor::pool_from_source;

const PROTO: &str = r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
message M { string id = 1; }
service Open {
  rpc Get(M) returns (M) { option (google.api.http) = { get: "/v1/open/{id}" }; }
}
service Orders {
  rpc Get(M) returns (M) { option (google.api.http) = { get: "/v1/orders/{id}" }; }
  rpc Cancel(M) returns (M) { option (google.api.http) = { post: "/v1/orders/{id}:cancel" }; }
  rpc Admin(M) returns (M) { option (google.api.http) = { get: "/v1/admin/{id}" }; }
}
service Stock {
  rpc Get(M) returns (M) { option (google.api.http) = { get: "/v1/stock/{id}" }; }
}
"#;

fn key(name: &str) -> String {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn auth_yaml() -> String {
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("        {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        r#"auth:
  jwt:
    rsa:
      issuer: https://a.example
      audiences: [shop]
      algorithms: [RS256]
      public_key_pem: |
{}
    hmac:
      issuer: https://h.example
      audiences: [shop]
      algorithms: [HS256]
      secret: top-secret-for-tests
      from: {{ header: x-token }}
      max_token_bytes: 2048
    ec:
      issuer: https://e.example
      audiences: [shop, other]
      algorithms: [ES256]
      public_key_pem: |
{}
      from: {{ cookie: session }}
  api_keys:
    from: {{ query: api_key }}
    keys:
      - name: bot
        sha256: {}
        scopes: [stock.read]
  default: {{ allow: [rsa, hmac, ec] }}
  rules:
    - service: t.v1.Open
      public: true
    - method: t.v1.Orders.Cancel
      allow: [rsa]
      scopes: [orders.write]
    - route: GET /v1/admin/{{id}}
      claims: {{ role: [admin] }}
    - service: t.v1.Stock
      allow: [api_key]
      scopes: [stock.read]
  forward:
    claims: {{ sub: x-user-id }}
    payload: x-jwt-payload
    api_key_name: x-api-key-name
"#,
        indent(key("rsa-a.pub.pem")),
        indent(key("ec.pub.pem")),
        api_key::hash_hex("bot-key"),
    )
}

async fn authenticator(extra: &str) -> (Authenticator, RouteTable) {
    let pool = pool_from_source(PROTO);
    let config = config::for_test("t.v1.*", &format!("{}{extra}", auth_yaml()));
    let routes = RouteTable::build(&pool, &config).unwrap();
    (
        Authenticator::build(&config.auth, &routes).await.unwrap(),
        routes,
    )
}

fn spec(issuer: &str) -> TokenSpec {
    TokenSpec {
        algorithm: Algorithm::RS256,
        issuer: issuer.into(),
        audience: "shop".into(),
        subject: "user-1".into(),
        scope: Some("orders.read orders.write".into()),
        ttl: Duration::from_secs(600),
        key_id: None,
        claims: Map::new(),
    }
}

fn rsa_token(edit: impl FnOnce(&mut TokenSpec)) -> String {
    let mut s = spec("https://a.example");
    edit(&mut s);
    mint(&s, &SigningKey::Pem(key("rsa-a.pem"))).unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

/// A token with a hand-written header and payload, signed with nothing or with `secret`.
fn forged(header: Value, payload: Value, signature: &str) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.{signature}", enc(&header), enc(&payload))
}

fn valid_payload() -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"iss": "https://a.example", "aud": "shop", "sub": "x", "exp": now + 600})
}

async fn check(
    auth: &Authenticator,
    routes: &RouteTable,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Principal>, AuthError> {
    let m = http::Method::from_bytes(method.as_bytes()).unwrap();
    let found = routes.lookup(&m, path).unwrap();
    auth.authenticate(&auth.requirement(found.route), headers, query)
        .await
}

fn invalid(reason: &str) -> Result<(), AuthError> {
    Err(AuthError::InvalidToken {
        reason: reason.into(),
    })
}

#[tokio::test]
async fn security_cases_are_rejected() {
    let (auth, routes) = authenticator("").await;
    // HS256 signed with the RSA *public* key as HMAC secret: algorithm confusion.
    let confused = mint(
        &TokenSpec {
            algorithm: Algorithm::HS256,
            ..spec("https://a.example")
        },
        &SigningKey::Secret(key("rsa-a.pub.pem").into_bytes()),
    )
    .unwrap();
    let good = rsa_token(|_| {});
    let now = jsonwebtoken::get_current_timestamp();
    let mut tampered: Vec<&str> = good.split('.').collect();
    let other_payload = URL_SAFE_NO_PAD
        .encode(br#"{"iss":"https://a.example","aud":"shop","sub":"admin","exp":9999999999}"#);
    tampered[1] = &other_payload;
    let tampered = tampered.join(".");
    let other_provider_key = mint(
        &spec("https://a.example"),
        &SigningKey::Pem(key("rsa-b.pem")),
    )
    .unwrap();
    let huge = rsa_token(|s| {
        s.claims.insert("pad".into(), "x".repeat(9000).into());
    });
    let cases: Vec<(&str, String, Result<(), AuthError>)> = vec![
        ("valid", good.clone(), Ok(())),
        (
            "alg none",
            forged(json!({"alg": "none", "typ": "JWT"}), valid_payload(), ""),
            invalid("malformed token"),
        ),
        (
            "algorithm confusion",
            confused,
            invalid("token algorithm not allowed"),
        ),
        ("expired", rsa_token(|s| s.ttl = Duration::ZERO), Ok(())),
        (
            "expired beyond skew",
            rsa_token(|s| {
                s.ttl = Duration::ZERO;
                s.claims.insert("exp".into(), (now - 3600).into());
            }),
            invalid("token expired"),
        ),
        (
            "not yet valid",
            rsa_token(|s| {
                s.claims.insert("nbf".into(), (now + 3600).into());
            }),
            invalid("token not yet valid"),
        ),
        (
            "wrong issuer",
            rsa_token(|s| s.issuer = "https://evil.example".into()),
            invalid("wrong issuer"),
        ),
        (
            "wrong audience",
            rsa_token(|s| s.audience = "billing".into()),
            invalid("wrong audience"),
        ),
        ("bad signature", tampered, invalid("bad signature")),
        (
            "key of another provider",
            other_provider_key,
            invalid("bad signature"),
        ),
        (
            "truncated",
            good[..good.len() / 2].to_owned(),
            invalid("malformed token"),
        ),
        (
            "garbage",
            "not.a.jwt".to_owned(),
            invalid("malformed token"),
        ),
        (
            "empty segments",
            "..".to_owned(),
            invalid("malformed token"),
        ),
        ("oversized", huge, invalid("token too large")),
    ];
    for (name, token, want) in cases {
        let got = check(&auth, &routes, "GET", "/v1/orders/1", &bearer(&token), None)
            .await
            .map(|_| ());
        // "expired" within the 60s skew still passes; beyond it, not.
        let want = if name == "expired" { Ok(()) } else { want };
        assert_eq!(got, want, "{name}");
    }
}

#[tokio::test]
async fn missing_credentials_and_public_routes() {
    let (auth, routes) = authenticator("").await;
    let none = HeaderMap::new();
    assert_eq!(
        check(&auth, &routes, "GET", "/v1/open/1", &none, None)
            .await
            .map(|p| p.is_none()),
        Ok(true)
    );
    assert!(matches!(
        check(&auth, &routes, "GET", "/v1/orders/1", &none, None)
            .await
            .map(|_| ()),
        Err(AuthError::Missing { bearer: true, accepts }) if accepts.contains("as Authorization: Bearer")
    ));
    let mut basic = HeaderMap::new();
    basic.insert(
        "authorization",
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert!(matches!(
        check(&auth, &routes, "GET", "/v1/orders/1", &basic, None)
            .await
            .map(|_| ()),
        Err(AuthError::Missing { bearer: true, accepts }) if accepts.contains("as Authorization: Bearer")
    ));
}

#[tokio::test]
async fn token_locations_header_cookie_query() {
    let (auth, routes) = authenticator("").await;
    let hmac = mint(
        &TokenSpec {
            algorithm: Algorithm::HS256,
            ..spec("https://h.example")
        },
        &SigningKey::Secret(b"top-secret-for-tests".to_vec()),
    )
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-token", HeaderValue::from_str(&hmac).unwrap());
    assert!(
        matches!(check(&auth, &routes, "GET", "/v1/orders/1", &h, None).await, Ok(Some(Principal::Jwt { provider, .. })) if &*provider == "hmac")
    );

    let ec = mint(
        &TokenSpec {
            algorithm: Algorithm::ES256,
            ..spec("https://e.example")
        },
        &SigningKey::Pem(key("ec.pem")),
    )
    .unwrap();
    let mut c = HeaderMap::new();
    c.insert(
        "cookie",
        HeaderValue::from_str(&format!("theme=dark; session={ec}")).unwrap(),
    );
    assert!(
        matches!(check(&auth, &routes, "GET", "/v1/orders/1", &c, None).await, Ok(Some(Principal::Jwt { provider, .. })) if &*provider == "ec")
    );

    // The HMAC provider's token in the bearer slot is not the RSA provider's.
    assert_eq!(
        check(&auth, &routes, "GET", "/v1/orders/1", &bearer(&hmac), None)
            .await
            .map(|_| ()),
        invalid("token algorithm not allowed")
    );
}

#[tokio::test]
async fn api_keys_scopes_and_claims() {
    let (auth, routes) = authenticator("").await;
    let none = HeaderMap::new();
    let principal = check(
        &auth,
        &routes,
        "GET",
        "/v1/stock/1",
        &none,
        Some("api_key=bot-key&x=1"),
    )
    .await;
    assert!(
        matches!(principal, Ok(Some(Principal::ApiKey { key: ref k, .. })) if k.name == "bot"),
        "{principal:?}"
    );
    assert_eq!(
        check(
            &auth,
            &routes,
            "GET",
            "/v1/stock/1",
            &none,
            Some("api_key=wrong")
        )
        .await
        .map(|_| ()),
        Err(AuthError::InvalidApiKey)
    );
    // A valid JWT is not an API key.
    assert!(matches!(
        check(
            &auth,
            &routes,
            "GET",
            "/v1/stock/1",
            &bearer(&rsa_token(|_| {})),
            None
        )
        .await
        .map(|_| ()),
        Err(AuthError::Missing { bearer: false, accepts }) if accepts.contains("an API key")
    ));
    // Scopes: Cancel needs orders.write.
    let read_only = rsa_token(|s| s.scope = Some("orders.read".into()));
    assert_eq!(
        check(
            &auth,
            &routes,
            "POST",
            "/v1/orders/1:cancel",
            &bearer(&read_only),
            None
        )
        .await
        .map(|_| ()),
        Err(AuthError::InsufficientScope {
            scopes: vec!["orders.write".into()]
        })
    );
    let scp_array = rsa_token(|s| {
        s.scope = None;
        s.claims.insert("scp".into(), json!(["orders.write"]));
    });
    assert!(
        check(
            &auth,
            &routes,
            "POST",
            "/v1/orders/1:cancel",
            &bearer(&scp_array),
            None
        )
        .await
        .is_ok()
    );
    // Claims: admin route needs role=admin.
    let admin = rsa_token(|s| {
        s.claims.insert("role".into(), json!(["staff", "admin"]));
    });
    assert!(
        check(&auth, &routes, "GET", "/v1/admin/1", &bearer(&admin), None)
            .await
            .is_ok()
    );
    assert_eq!(
        check(
            &auth,
            &routes,
            "GET",
            "/v1/admin/1",
            &bearer(&rsa_token(|_| {})),
            None
        )
        .await
        .map(|_| ()),
        Err(AuthError::ClaimMismatch {
            claim: "role".into()
        })
    );
}

/// The metadata a backend gets from a client's `headers` on a call by
/// `principal`: the metadata step (every header offered for forwarding),
/// then what auth vouches for.
fn crossing(
    auth: &Authenticator,
    principal: Option<&Principal>,
    headers: &[(&str, &str)],
) -> MetadataMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let options = crate::config::MetadataOptions {
        forward_request_headers: vec![
            http::HeaderName::from_static("x-user-id"),
            http::HeaderName::from_static("x-request-id"),
        ],
        trust_forwarded_for: false,
        forward_authorization: true,
        ..Default::default()
    };
    let mut metadata = crate::upstream::metadata::request_metadata(
        &map,
        None,
        &options,
        None,
        None,
        auth.withheld(principal),
    )
    .unwrap();
    auth.forward(principal, &mut metadata);
    metadata
}

#[tokio::test]
async fn forwarding_sets_identity_and_removes_spoofs() {
    let (auth, _) = authenticator("").await;
    let metadata = crossing(
        &auth,
        None,
        &[
            ("x-user-id", "spoofed"),
            ("authorization", "Bearer abc"),
            ("x-request-id", "r1"),
        ],
    );
    assert!(
        metadata.get("x-user-id").is_none(),
        "a client's identity header never reaches the backend"
    );
    assert_eq!(
        metadata.get("authorization").unwrap(),
        "Bearer abc",
        "a route the gateway does not authenticate passes Authorization on"
    );
    assert_eq!(metadata.get("x-request-id").unwrap(), "r1");

    let mut claims = Map::new();
    claims.insert("sub".into(), "user-1".into());
    let principal = Principal::Jwt {
        provider: "rsa".into(),
        claims: claims.clone().into(),
        caller: None,
        token: "verified.jwt.token".into(),
    };
    let metadata = crossing(
        &auth,
        Some(&principal),
        &[("x-user-id", "spoofed"), ("authorization", "Bearer abc")],
    );
    assert_eq!(metadata.get("x-user-id").unwrap(), "user-1");
    assert!(
        metadata.get("authorization").is_none(),
        "credentials of an authenticated route are not forwarded by default"
    );
    let payload = metadata.get("x-jwt-payload").unwrap().to_str().unwrap();
    let decoded: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(decoded, claims);

    let cfg = config::for_test(
        "t.v1.*",
        &auth_yaml().replace(
            "api_key_name: x-api-key-name",
            "api_key_name: x-api-key-name\n    credentials: true",
        ),
    );
    assert!(cfg.auth.forward.credentials);
    let routes = RouteTable::build(&pool_from_source(PROTO), &cfg).unwrap();
    let open = Authenticator::build(&cfg.auth, &routes).await.unwrap();
    // Only the verified credential is forwarded; nothing on a public route (review finding).
    let metadata = crossing(&open, None, &[("authorization", "Bearer forged")]);
    assert!(metadata.get("authorization").is_none());
    let metadata = crossing(
        &open,
        Some(&principal),
        &[("authorization", "Bearer forged")],
    );
    assert_eq!(
        metadata.get("authorization").unwrap(),
        "Bearer verified.jwt.token"
    );
}

#[tokio::test]
async fn review_findings_stay_fixed() {
    let (auth, routes) = authenticator("").await;
    // An encoded credential parameter name is still the credential parameter.
    assert_eq!(
        strip_query(
            Some("api%5Fkey=k&id=1&api_key=x"),
            auth.credential_query_params()
        )
        .as_deref(),
        Some("id=1")
    );
    let none = HeaderMap::new();
    let principal = check(
        &auth,
        &routes,
        "GET",
        "/v1/stock/1",
        &none,
        Some("api%5Fkey=bot-key"),
    )
    .await;
    assert!(
        matches!(principal, Ok(Some(Principal::ApiKey { .. }))),
        "{principal:?}"
    );
    // `crit` extensions are not ignored.
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-must-check".into()]);
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": "https://h.example", "aud": "shop", "sub": "x", "exp": now + 60});
    let crit = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"top-secret-for-tests"),
    )
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-token", HeaderValue::from_str(&crit).unwrap());
    assert_eq!(
        check(&auth, &routes, "GET", "/v1/orders/1", &h, None)
            .await
            .map(|_| ()),
        invalid("token has critical header extensions")
    );
}

#[tokio::test]
async fn one_provider_may_mix_public_key_families() {
    let keys = [
        jwk("rsa-a.pem", "r", Algorithm::RS256),
        jwk("ec.pem", "e", Algorithm::ES256),
    ];
    let (auth, routes, dir) = jwks_file_provider("mixed", "[RS256, ES256]", &keys).await;
    let rsa = rsa_token(|s| s.key_id = Some("r".into()));
    let ec = mint(
        &TokenSpec {
            algorithm: Algorithm::ES256,
            key_id: Some("e".into()),
            ..spec("https://a.example")
        },
        &SigningKey::Pem(key("ec.pem")),
    )
    .unwrap();
    for token in [rsa, ec] {
        assert!(
            check(&auth, &routes, "GET", "/v1/orders/1", &bearer(&token), None)
                .await
                .is_ok()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn rules_that_match_nothing_are_startup_errors() {
    let pool = pool_from_source(PROTO);
    let yaml = auth_yaml().replace("method: t.v1.Orders.Cancel", "method: t.v1.Orders.Cancle");
    let config = config::for_test("t.v1.*", &yaml);
    let routes = RouteTable::build(&pool, &config).unwrap();
    let err = Authenticator::build(&config.auth, &routes)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "auth.rules[1]: matches no route");
}

#[test]
fn config_errors_name_the_key() {
    for (edit, want) in [
        (
            ("algorithms: [RS256]", "algorithms: [none]"),
            "auth.jwt.rsa.algorithms: \"none\" is not a supported algorithm",
        ),
        (
            ("algorithms: [HS256]", "algorithms: [HS256, RS256]"),
            "auth.jwt.hmac.algorithms: do not mix HMAC and public-key algorithms",
        ),
        (
            (
                "secret: top-secret-for-tests",
                "jwks_url: https://keys.example/jwks.json",
            ),
            "auth.jwt.hmac: HMAC algorithms need a secret",
        ),
        (
            ("allow: [api_key]", "allow: [apikey]"),
            "auth.rules[3].allow: \"apikey\" is neither a JWT provider",
        ),
        (
            ("public: true", "public: true\n      scopes: [x]"),
            "auth.rules[0]: a public rule cannot also require",
        ),
    ] {
        let yaml = auth_yaml().replacen(edit.0, edit.1, 1);
        let text = format!(
            "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [t.v1.Open]\n{yaml}"
        );
        let err = config::parse(&text, std::path::Path::new("gateway.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "got {err:?}\nwant {want:?}");
    }
    let bad_hash = auth_yaml().replace(&api_key::hash_hex("bot-key"), "abc");
    let text = format!(
        "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [t.v1.Open]\n{bad_hash}"
    );
    let err = config::parse(&text, std::path::Path::new("gateway.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.api_keys.keys[0].sha256"), "{err}");
}

#[test]
fn challenges_follow_rfc_6750() {
    assert_eq!(
        AuthError::Missing {
            bearer: true,
            accepts: "a token".into()
        }
        .challenge(),
        "Bearer realm=\"protogate\""
    );
    assert_eq!(
        AuthError::InvalidToken {
            reason: "token expired".into()
        }
        .challenge(),
        "Bearer realm=\"protogate\", error=\"invalid_token\", error_description=\"token expired\""
    );
    assert_eq!(
        AuthError::InsufficientScope {
            scopes: vec!["a".into(), "b".into()]
        }
        .challenge(),
        "Bearer realm=\"protogate\", error=\"insufficient_scope\", scope=\"a b\""
    );
    assert!(
        AuthError::ClaimMismatch {
            claim: "role".into()
        }
        .is_forbidden()
    );
    assert!(!AuthError::InvalidApiKey.is_forbidden());
}

#[tokio::test]
async fn jwks_file_keys_are_chosen_by_kid() {
    let keys = [
        jwk("rsa-a.pem", "a", Algorithm::RS256),
        jwk("rsa-b.pem", "b", Algorithm::RS256),
    ];
    let (auth, routes, dir) = jwks_file_provider("file", "[RS256]", &keys).await;
    let signed = |pem: &str, kid: Option<&str>| {
        let mut s = spec("https://a.example");
        s.key_id = kid.map(str::to_owned);
        mint(&s, &SigningKey::Pem(key(pem))).unwrap()
    };
    for (token, want) in [
        (signed("rsa-b.pem", Some("b")), Ok(())),
        (signed("rsa-a.pem", Some("a")), Ok(())),
        (signed("rsa-a.pem", Some("b")), invalid("bad signature")),
        (
            signed("rsa-a.pem", Some("c")),
            invalid("unknown signing key"),
        ),
        // Two keys and no kid: which one is ambiguous, so none.
        (signed("rsa-a.pem", None), invalid("unknown signing key")),
    ] {
        let got = check(&auth, &routes, "GET", "/v1/orders/1", &bearer(&token), None)
            .await
            .map(|_| ());
        assert_eq!(got, want);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A public JWK of a fixture private key.
fn jwk(pem: &str, kid: &str, alg: Algorithm) -> jsonwebtoken::jwk::Jwk {
    let text = key(pem);
    let encoding = match alg {
        Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(text.as_bytes()),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(text.as_bytes()),
    }
    .unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

/// An authenticator whose one provider reads `keys` from a JWKS file; the
/// returned directory holds the file, for the caller to remove.
async fn jwks_file_provider(
    name: &str,
    algorithms: &str,
    keys: &[jsonwebtoken::jwk::Jwk],
) -> (Authenticator, RouteTable, std::path::PathBuf) {
    let set = jsonwebtoken::jwk::JwkSet {
        keys: keys.to_vec(),
    };
    let dir = std::env::temp_dir().join(format!("protogate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("jwks.json"), serde_json::to_string(&set).unwrap()).unwrap();
    let yaml = format!(
        "auth:\n  jwt:\n    {name}:\n      issuer: https://a.example\n      audiences: [shop]\n      algorithms: {algorithms}\n      jwks_file: {}\n",
        dir.join("jwks.json").display()
    );
    let config = config::for_test("t.v1.*", &yaml);
    let routes = RouteTable::build(&pool_from_source(PROTO), &config).unwrap();
    let auth = Authenticator::build(&config.auth, &routes).await.unwrap();
    (auth, routes, dir)
}

#[tokio::test]
async fn verified_tokens_are_remembered_never_past_their_expiry() {
    let (auth, _) = authenticator("").await;
    let provider = auth
        .providers
        .iter()
        .find(|p| p.issuer == "https://a.example")
        .unwrap();
    let good = rsa_token(|_| {});
    let first = provider.verify(&good).await.unwrap();
    let second = provider.verify(&good).await.unwrap();
    assert_eq!(first.claims, second.claims);
    assert_eq!(provider.verified.len(), 1, "verified once, remembered");
    assert!(first.caller.as_deref().unwrap().ends_with(":user-1"));
    // A token that fails is never remembered.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[2] = URL_SAFE_NO_PAD.encode(b"not the signature");
    assert!(provider.verify(&parts.join(".")).await.is_err());
    assert_eq!(provider.verified.len(), 1);

    // An expired token answered from the cache while its entry is fresh ...
    let expired = rsa_token(|s| {
        s.claims.insert("exp".into(), 1_000.into());
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let remember = |expires: u64, stored: tokio::time::Instant| super::jwt::Cached {
        verified: first.clone(),
        expires,
        stored,
    };
    let fresh = tokio::time::Instant::now();
    provider
        .verified
        .insert(expired.clone(), remember(now + 60, fresh));
    assert!(
        provider.verify(&expired).await.is_ok(),
        "answered from the cache"
    );
    // ... is checked again once its expiry passed, or the entry is too old.
    provider
        .verified
        .insert(expired.clone(), remember(now - 1, fresh));
    assert_eq!(
        provider.verify(&expired).await.unwrap_err().0,
        "token expired"
    );
    provider.verified.insert(
        expired.clone(),
        remember(now + 60, tokio::time::Instant::now()),
    );
    tokio::time::pause();
    tokio::time::advance(super::jwt::CACHE_MAX_AGE).await;
    assert_eq!(
        provider.verify(&expired).await.unwrap_err().0,
        "token expired"
    );
}
