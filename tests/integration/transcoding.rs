//! Every kind of binding of the example services, end to end.

use serde_json::{Value, json};

use crate::support::{start, start_in_process};

#[tokio::test]
async fn get_with_path_variable_renders_proto3_json() {
    let stack = start_in_process().await;
    let reply = stack.get("/v1/users/1").await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(
        reply.json,
        json!({
            "id": "1",
            "email": "ada@example.com",
            "displayName": "Ada Lovelace",
            "role": "ROLE_ADMIN",
            "createTime": "2026-01-15T09:30:00Z",
            "updateTime": "2026-01-15T09:30:00Z",
            "labels": {"tier": "gold"},
            "address": {"street": "12 St James's Square", "city": "London", "postalCode": "SW1Y 4JH", "country": "GB"},
            "phone": "+44 20 7946 0000"
        })
    );
}

#[tokio::test]
async fn additional_binding_reaches_the_same_method() {
    let stack = start_in_process().await;
    let main = stack.get("/v1/users/2").await;
    let extra = stack.get("/v1/customers/2").await;
    assert_eq!(extra.status, 200);
    assert_eq!(main.json, extra.json);
    assert_eq!(extra.json["slackHandle"], "@grace");
}

#[tokio::test]
async fn query_parameters_page_and_filter() {
    let stack = start_in_process().await;
    let reply = stack.get("/v1/users?pageSize=1&role=ROLE_CUSTOMER").await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let users = reply.json["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], "2");
    let token = reply.json["nextPageToken"].as_str().unwrap().to_owned();
    // Proto names work as well as JSON names.
    let next = stack
        .get(&format!("/v1/users?page_size=1&role=1&page_token={token}"))
        .await;
    assert_eq!(next.json["users"][0]["id"], "3", "{:?}", next.json);
}

#[tokio::test]
async fn post_body_field_then_get_it_back() {
    let stack = start_in_process().await;
    let created = stack
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "katherine@example.com", "displayName": "Katherine Johnson", "role": "ROLE_CUSTOMER", "labels": {"team": "nasa"}}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    assert_eq!(created.headers["location"], "/v1/users/4");
    assert_eq!(created.json["id"], "4");
    assert_eq!(created.json["labels"], json!({"team": "nasa"}));
    let fetched = stack.get("/v1/users/4").await;
    assert_eq!(fetched.json, created.json);
}

#[tokio::test]
async fn patch_with_field_mask_from_query() {
    let stack = start_in_process().await;
    let reply = stack
        .call(
            "PATCH",
            "/v1/users/3?updateMask=displayName,address",
            Some(r#"{"displayName": "A. M. Turing", "email": "ignored@example.com", "address": {"city": "Wilmslow"}}"#),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.json["displayName"], "A. M. Turing");
    assert_eq!(reply.json["email"], "alan@example.com", "not in the mask");
    assert_eq!(reply.json["address"], json!({"city": "Wilmslow"}));
    assert_ne!(reply.json["updateTime"], reply.json["createTime"]);
}

#[tokio::test]
async fn an_empty_reply_is_no_content() {
    let stack = start_in_process().await;
    let reply = stack.call("DELETE", "/v1/users/3", None).await;
    assert_eq!(reply.status, 204);
    assert!(reply.headers.get("content-type").is_none());
    assert_eq!(reply.json, Value::Null, "no body");
    assert_eq!(stack.get("/v1/users/3").await.status, 404);
    // Switched off: 200 with `{}`, as before conventions.
    let stack =
        crate::support::start_in_process_with(|c| c.transcode.conventional_status = false).await;
    let reply = stack.call("DELETE", "/v1/users/2", None).await;
    assert_eq!((reply.status.as_u16(), &reply.json), (200, &json!({})));
}

#[tokio::test]
async fn nested_path_variables_and_custom_verb() {
    let stack = start_in_process().await;
    let order = stack.get("/v1/users/1/orders/1002").await;
    assert_eq!(order.status, 200, "{:?}", order.json);
    assert_eq!(order.json["name"], "users/1/orders/1002");
    assert_eq!(order.json["status"], "ORDER_STATUS_PENDING");

    let cancelled = stack
        .call(
            "POST",
            "/v1/users/1/orders/1002:cancel",
            Some(r#"{"reason": "changed my mind"}"#),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.json);
    assert_eq!(cancelled.json["status"], "ORDER_STATUS_CANCELLED");
    assert_eq!(cancelled.json["cancelReason"], "changed my mind");
}

#[tokio::test]
async fn list_filters_from_query_including_repeated_nested_and_timestamp() {
    let stack = start_in_process().await;
    let all = stack.get("/v1/orders").await;
    assert_eq!(all.status, 200, "{:?}", all.json);
    assert_eq!(all.json["orders"].as_array().unwrap().len(), 3);

    let tagged = stack
        .get("/v1/users/1/orders?tags=gift&status=ORDER_STATUS_PAID")
        .await;
    let names: Vec<_> = tagged.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("users/1/orders/1001")],
        "{:?}",
        tagged.json
    );

    let paged = stack.get("/v1/orders?page.size=2").await;
    assert_eq!(
        paged.json["orders"].as_array().unwrap().len(),
        2,
        "{:?}",
        paged.json
    );
    assert!(paged.json["nextPageToken"].is_string());

    let later = stack
        .get("/v1/orders?createdAfter=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(later.status, 200);
    assert_eq!(later.json, json!({}), "no orders after 2100");
}

#[tokio::test]
async fn int64_money_and_oneof_message_render() {
    let stack = start_in_process().await;
    let order = stack.get("/v1/users/1/orders/1001").await;
    assert!(
        order.json["total"]["units"].is_string(),
        "int64 as string: {:?}",
        order.json
    );
    assert!(
        order.json["card"].is_object(),
        "oneof message member: {:?}",
        order.json
    );
    assert!(order.json["items"].as_array().is_some_and(|i| i.len() == 2));
}

#[tokio::test]
async fn inventory_batch_get_and_reserve_with_duration() {
    let stack = start_in_process().await;
    let batch = stack
        .get("/v1/inventory:batchGet?skus=sku-espresso&skus=sku-grinder")
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.json);
    let skus: Vec<_> = batch.json["stocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sku"].clone())
        .collect();
    assert_eq!(skus, vec![json!("sku-espresso"), json!("sku-grinder")]);

    let reserved = stack
        .call(
            "POST",
            "/v1/inventory/sku-espresso:reserve",
            Some(r#"{"quantity": 3, "ttl": "60s", "orderName": "users/1/orders/1002"}"#),
        )
        .await;
    assert_eq!(reserved.status, 200, "{:?}", reserved.json);
    assert_eq!(reserved.json["quantity"], 3);
    assert_eq!(reserved.json["sku"], "sku-espresso");
    let stock = stack.get("/v1/inventory/sku-espresso").await;
    assert_eq!(stock.json["available"], "117");
    assert_eq!(stock.json["reserved"], "3");
}

#[tokio::test]
async fn json_output_options_apply() {
    let stack = crate::support::start_in_process_with(|c| {
        c.transcode.json.use_proto_names = true;
        c.transcode.json.enums_as_ints = true;
        c.transcode.json.emit_unpopulated = true;
    })
    .await;
    let reply = stack.get("/v1/users/3").await;
    assert_eq!(reply.json["display_name"], "Alan Turing");
    assert_eq!(reply.json["role"], 1);
    assert_eq!(reply.json["labels"], json!({}));
    assert_eq!(reply.json["address"], json!(null));
}

// Issue "Correct on the wire": what clients put on the wire by habit.

/// Many clients send `{}` (or `null`) with every request, DELETE and GET included.
#[tokio::test]
async fn bodyless_binding_takes_empty_json_bodies() {
    let stack = start_in_process().await;
    for body in ["{}", " { }\n", "null", "\r\n null "] {
        let reply = stack.call("GET", "/v1/users/1", Some(body)).await;
        assert_eq!(reply.status, 200, "{body:?}: {:?}", reply.json);
        assert_eq!(reply.json["id"], "1", "{body:?}");
    }
    let deleted = stack.call("DELETE", "/v1/users/3", Some("{}")).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(stack.get("/v1/users/3").await.status, 404);
}

/// A body that sets fields is refused on a binding without `body`, naming
/// them, unless `unknown_json_fields: ignore` drops it; what is not JSON is
/// refused either way.
#[tokio::test]
async fn bodyless_binding_refuses_body_fields_unless_ignored() {
    let strict = start_in_process().await;
    let lenient = crate::support::start_in_process_with(|c| {
        c.transcode.unknown_json_fields = protogate::config::UnknownFields::Ignore;
    })
    .await;
    for (stack, body, want, field) in [
        (&strict, r#"{"id": "2"}"#, 400, Some("id")),
        (&strict, "[1]", 400, None),
        (&strict, "{", 400, None),
        (&lenient, r#"{"id": "2", "nickname": "x"}"#, 200, None),
        (&lenient, "[1]", 200, None),
        (&lenient, "{", 400, None),
    ] {
        let reply = stack.call("GET", "/v1/users/1", Some(body)).await;
        assert_eq!(reply.status, want, "{body}: {:?}", reply.json);
        if want == 200 {
            assert_eq!(
                reply.json["id"], "1",
                "{body}: the path's id, not the body's"
            );
            continue;
        }
        assert_eq!(reply.json["code"], 3, "{body}: {:?}", reply.json);
        assert_eq!(
            reply.json["details"][0]["fieldViolations"][0]["field"].as_str(),
            field,
            "{body}: {:?}",
            reply.json
        );
    }
    let named = strict
        .call(
            "GET",
            "/v1/users/1",
            Some(r#"{"id": "2", "nickname": "x"}"#),
        )
        .await;
    assert_eq!(
        named.json["message"],
        r#"this method does not take a request body; the body sets "id", "nickname""#
    );
}

/// Go's `http.Post(url, "", body)` sends `Content-Type:` with no value: that
/// is no content type, not an unsupported one.
#[tokio::test]
async fn empty_content_type_is_no_content_type() {
    let stack = start().await;
    let send = |method: reqwest::Method, path: &str, content_type: &'static [u8], body: &str| {
        let mut req = stack
            .client()
            .request(method, stack.url(path))
            .header(
                "content-type",
                reqwest::header::HeaderValue::from_bytes(content_type).unwrap(),
            )
            .body(body.to_owned());
        for (k, v) in &stack.credentials {
            req = req.header(k, v);
        }
        req.send()
    };
    let created = send(
        reqwest::Method::POST,
        "/v1/users",
        b"",
        r#"{"email": "dorothy@example.com", "displayName": "Dorothy Vaughan"}"#,
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let deleted = send(reqwest::Method::DELETE, "/v1/users/3", b"", "{}")
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // A value that is not text is still no JSON type.
    let binary = send(reqwest::Method::POST, "/v1/users", b"\xff", "{}")
        .await
        .unwrap();
    assert_eq!(binary.status(), 415);
}

/// A query parameter naming a field the path or body binds is a 400 by
/// default and dropped under `unknown_query_parameters: ignore`, where the
/// path's or body's value wins (grpc-gateway's behaviour).
#[tokio::test]
async fn query_parameters_for_bound_fields_are_dropped_under_ignore() {
    let strict = start_in_process().await;
    let lenient = crate::support::start_in_process_with(|c| {
        c.transcode.unknown_query_parameters = protogate::config::UnknownFields::Ignore;
    })
    .await;
    for (stack, want) in [(&strict, 400), (&lenient, 200)] {
        let got = stack.get("/v1/users/1?id=2").await;
        assert_eq!(got.status, want, "{:?}", got.json);
        if want == 200 {
            assert_eq!(got.json["id"], "1");
        } else {
            assert_eq!(got.json["code"], 3);
        }
    }
    // `user.id` is bound by the path and `user.*` by the body.
    let body = Some(r#"{"displayName": "Alan M. Turing"}"#);
    let target = "/v1/users/3?updateMask=displayName&user.id=2&user.displayName=Q";
    let refused = strict.call("PATCH", target, body).await;
    assert_eq!(refused.status, 400, "{:?}", refused.json);
    assert_eq!(
        refused.json["details"][0]["fieldViolations"][0]["field"], "user.id",
        "{:?}",
        refused.json
    );
    let updated = lenient.call("PATCH", target, body).await;
    assert_eq!(updated.status, 200, "{:?}", updated.json);
    assert_eq!(updated.json["id"], "3");
    assert_eq!(updated.json["displayName"], "Alan M. Turing");
    assert_eq!(
        lenient.get("/v1/users/2").await.json["displayName"],
        "Grace Hopper"
    );
}

/// A key given twice in a JSON object (at any depth, a field by its JSON and
/// proto names, a map key) is a 400 naming it, as protobuf's JSON parsers
/// answer; before, the last one won.
#[tokio::test]
async fn duplicate_json_keys_are_400_naming_the_key() {
    let stack = start_in_process().await;
    for (method, target, body, field) in [
        (
            "POST",
            "/v1/users",
            r#"{"email": "a@example.com", "email": "b@example.com", "displayName": "D"}"#,
            "user.email",
        ),
        (
            "POST",
            "/v1/users",
            r#"{"email": "a@example.com", "displayName": "D", "display_name": "E"}"#,
            "user.display_name",
        ),
        (
            "POST",
            "/v1/users",
            r#"{"email": "a@example.com", "displayName": "D", "labels": {"a": "1", "a": "2"}}"#,
            "user.labels.a",
        ),
        (
            "POST",
            "/v1/users",
            r#"{"email": "a@example.com", "displayName": "D", "address": {"city": "X", "city": "Y"}}"#,
            "user.address.city",
        ),
        // With a query on an input with a oneof, the reference path answers.
        (
            "PATCH",
            "/v1/users/3?updateMask=displayName",
            r#"{"displayName": "A", "display_name": "B"}"#,
            "user.display_name",
        ),
        (
            "PATCH",
            "/v1/users/3?updateMask=labels",
            r#"{"labels": {"a": "1", "a": "2"}}"#,
            "user.labels.a",
        ),
    ] {
        let reply = stack.call(method, target, Some(body)).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.json);
        assert_eq!(reply.json["code"], 3, "{body}: {:?}", reply.json);
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains("duplicate"), "{body}: {message}");
        assert_eq!(
            reply.json["details"][0]["fieldViolations"][0]["field"], field,
            "{body}: {:?}",
            reply.json
        );
    }
    assert_eq!(
        stack.get("/v1/users/4").await.status,
        404,
        "nothing created"
    );
    assert_eq!(
        stack.get("/v1/users/3").await.json["displayName"],
        "Alan Turing"
    );
}
