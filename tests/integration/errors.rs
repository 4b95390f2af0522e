//! Failures, the gateway's own and the backends', in the one error shape.

use serde_json::{Value, json};

use crate::support::{Reply, start_in_process, start_in_process_with};

fn assert_status_shape(reply: &Reply, http: u16, code: i64) {
    assert_eq!(reply.status.as_u16(), http, "{:?}", reply.json);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.json["code"], code, "{:?}", reply.json);
    assert!(
        reply.json["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{:?}",
        reply.json
    );
    assert!(reply.json["details"].is_array(), "{:?}", reply.json);
}

#[tokio::test]
async fn unknown_path_is_404_not_found() {
    let stack = start_in_process().await;
    let reply = stack.get("/v9/nothing").await;
    assert_status_shape(&reply, 404, 5);
    assert_eq!(reply.json["message"], "no route for /v9/nothing");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let stack = start_in_process().await;
    let reply = stack.call("PUT", "/v1/users/1", None).await;
    assert_status_shape(&reply, 405, 12);
    assert_eq!(reply.headers["allow"], "DELETE, GET, PATCH");
}

#[tokio::test]
async fn dot_segments_are_rejected() {
    let stack = start_in_process().await;
    // HTTP clients normalize dot segments away, so write the request by hand.
    for path in ["/v1/users/%2e%2e", "/v1/users/../users/1", "/v1/./users/1"] {
        let (status, body) = stack.raw_get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["code"], 3, "{path}");
    }
}

/// Issue "Correct on the wire": `%zz` was matched as literal text.
#[tokio::test]
async fn malformed_percent_escapes_are_400_invalid_argument() {
    let stack = start_in_process().await;
    for path in [
        // In a variable segment, a literal segment, and the verb.
        "/v1/users/a%zzb",
        "/v1/us%zzers/1",
        "/v1/users/1/orders/2:cancel%zz",
        "/v1/inventory:batch%zzGet",
        // A lone `%`, and `%4` at the end.
        "/v1/users/1%",
        "/v1/users/%4",
    ] {
        let (status, body) = stack.raw_get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json,
            json!({
                "code": 3,
                "message": format!("path {path} has a malformed percent-escape"),
                "details": [],
            }),
            "{path}"
        );
    }
    // A valid escape of a literal's letter still matches.
    let (status, body) = stack.raw_get("/v1/us%65rs/1").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn bad_query_input_is_400_with_bad_request_details() {
    let stack = start_in_process().await;
    for (path, field, message) in [
        (
            "/v1/users?colour=red",
            "colour",
            r#"unknown query parameter "colour""#,
        ),
        (
            "/v1/users?pageSize=ten",
            "pageSize",
            r#"invalid value "ten" for query parameter "pageSize": expected int32"#,
        ),
        (
            "/v1/users?role=ROLE_KING",
            "role",
            r#"invalid value "ROLE_KING" for query parameter "role": unknown value "ROLE_KING" for enum shop.user.v1.Role"#,
        ),
        (
            "/v1/users/1?id=2",
            "id",
            r#"query parameter "id" sets a field already bound by the path"#,
        ),
        (
            "/v1/users/abc",
            "id",
            r#"invalid value "abc" for path variable "id": expected int64"#,
        ),
    ] {
        let reply = stack.get(path).await;
        assert_status_shape(&reply, 400, 3);
        assert_eq!(reply.json["message"], message, "{path}");
        assert_eq!(
            reply.json["details"],
            json!([{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}]
            }]),
            "{path}"
        );
    }
}

#[tokio::test]
async fn bad_json_bodies_are_400_naming_the_field() {
    let stack = start_in_process().await;
    for (body, field) in [
        (
            r#"{"email": "x@example.com", "nickname": "x"}"#,
            "user.nickname",
        ),
        (r#"{"email": 7}"#, "user.email"),
        (r#"{"role": "ROLE_KING"}"#, "user.role"),
        (r#"{"email": "#, "user.email"),
        (r#"{"email": "a@example.com"} {}"#, "user"),
    ] {
        let reply = stack.call("POST", "/v1/users", Some(body)).await;
        assert_status_shape(&reply, 400, 3);
        assert_eq!(
            reply.json["details"][0]["fieldViolations"][0]["field"], field,
            "{body}: {:?}",
            reply.json
        );
    }
    let reply = stack.call("GET", "/v1/users/1", Some("[1]")).await;
    assert_status_shape(&reply, 400, 3);
    assert_eq!(
        reply.json["message"],
        "this method does not take a request body"
    );
}

#[tokio::test]
async fn unknown_input_can_be_ignored_by_config() {
    let stack = start_in_process_with(|c| {
        c.transcode.unknown_query_parameters = protogate::config::UnknownFields::Ignore;
        c.transcode.unknown_json_fields = protogate::config::UnknownFields::Ignore;
    })
    .await;
    assert_eq!(stack.get("/v1/users/1?utm_source=mail").await.status, 200);
    let created = stack
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "x@example.com", "displayName": "X", "nickname": "x"}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
}

#[tokio::test]
async fn backend_rich_errors_keep_their_details() {
    // The gateway's own validation would refuse the empty name first.
    let stack = start_in_process_with(|c| c.validation.enabled = false).await;
    let reply = stack
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "not-an-email", "displayName": ""}"#),
        )
        .await;
    assert_status_shape(&reply, 400, 3);
    let detail = &reply.json["details"][0];
    assert_eq!(
        detail["@type"], "type.googleapis.com/google.rpc.BadRequest",
        "{:?}",
        reply.json
    );
    let fields: Vec<&Value> = detail["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["field"])
        .collect();
    assert_eq!(fields, vec!["user.email", "user.display_name"]);

    let duplicate = stack
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "ada@example.com", "displayName": "Ada"}"#),
        )
        .await;
    assert_status_shape(&duplicate, 409, 6);

    let missing = stack.get("/v1/users/99").await;
    assert_status_shape(&missing, 404, 5);
    assert_eq!(missing.json["message"], "user 99 not found");

    stack
        .call("POST", "/v1/users/1/orders/1002:cancel", Some("{}"))
        .await;
    let again = stack
        .call("POST", "/v1/users/1/orders/1002:cancel", Some("{}"))
        .await;
    assert_status_shape(&again, 400, 9);
    assert_eq!(
        again.json["details"][0]["@type"], "type.googleapis.com/google.rpc.PreconditionFailure",
        "{:?}",
        again.json
    );
}

#[tokio::test]
async fn unreachable_backend_is_503_without_internal_detail() {
    let stack = start_in_process_with(|c| {
        let users = c.backends.iter_mut().find(|b| b.name == "users").unwrap();
        // A port nobody listens on: bind one, then drop it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        users.endpoints = vec![format!("http://{closed}").parse().unwrap()];
    })
    .await;
    let reply = stack.get("/v1/users/1").await;
    assert_status_shape(&reply, 503, 14);
    assert_eq!(reply.json["message"], "backend users is unavailable");
    // The other backends keep working.
    assert_eq!(stack.get("/v1/inventory/sku-espresso").await.status, 200);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let stack = start_in_process_with(|c| c.transcode.max_body_bytes = 64).await;
    let body = format!(
        r#"{{"email": "a@example.com", "displayName": "{}"}}"#,
        "x".repeat(100)
    );
    let reply = stack.call("POST", "/v1/users", Some(&body)).await;
    assert_status_shape(&reply, 413, 8);
}

#[tokio::test]
async fn malformed_grpc_timeout_is_400() {
    let stack = start_in_process().await;
    let reply = stack
        .call_with("GET", "/v1/users/1", None, &[("grpc-timeout", "soon")])
        .await;
    assert_status_shape(&reply, 400, 3);
    assert!(
        reply.json["message"]
            .as_str()
            .unwrap()
            .contains("Grpc-Timeout")
    );
}
