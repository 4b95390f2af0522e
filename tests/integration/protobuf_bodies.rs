//! Binary protobuf bodies and replies on REST routes: `Content-Type` and
//! `Accept` of `application/x-protobuf` (and its aliases), beside JSON.

use prost::Message;
use shop::pb::shop::user::v1::{Role, User};

use crate::support::{dev_token, start};

const PROTOBUF: &str = "application/x-protobuf";

#[tokio::test]
async fn rest_routes_take_and_answer_binary_messages() {
    let stack = start().await;
    let client = reqwest::Client::new();

    // A reply as binary, by Accept; every alias names itself in the answer.
    for accept in [PROTOBUF, "application/protobuf", "application/proto"] {
        let reply = client
            .get(stack.url("/v1/users/1"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()["content-type"], accept);
        let user = User::decode(reply.bytes().await.unwrap()).unwrap();
        assert_eq!((user.id, user.display_name.as_str()), (1, "Ada Lovelace"));
    }

    // A binary body for `body: "user"`, answered in binary.
    let new = User {
        email: "pb-first@example.com".into(),
        display_name: "Grace Hopper".into(),
        role: Role::Customer.into(),
        ..Default::default()
    };
    let reply = client
        .post(stack.url("/v1/users"))
        .bearer_auth(dev_token("users"))
        .header("content-type", PROTOBUF)
        .header("accept", PROTOBUF)
        .body(new.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let created = User::decode(reply.bytes().await.unwrap()).unwrap();
    assert_eq!(created.display_name, "Grace Hopper");
    assert!(created.id > 0);

    // The same body answered in JSON when JSON is what the client takes.
    let reply = client
        .post(stack.url("/v1/users"))
        .bearer_auth(dev_token("users"))
        .header("content-type", PROTOBUF)
        .body(
            User {
                email: "pb-second@example.com".into(),
                ..new.clone()
            }
            .encode_to_vec(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let json: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    assert_eq!(json["email"], "pb-second@example.com");

    // Bytes that are no User: refused at the edge.
    let reply = client
        .post(stack.url("/v1/users"))
        .bearer_auth(dev_token("users"))
        .header("content-type", PROTOBUF)
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let json: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("not a valid shop.user.v1.User message"),
        "{json}"
    );

    // Neither type acceptable, or a body of another type: 406 and 415,
    // each naming what is taken.
    let reply = client
        .get(stack.url("/v1/users/1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 406);
    let json: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf"),
        "{json}"
    );
    let reply = client
        .post(stack.url("/v1/users"))
        .bearer_auth(dev_token("users"))
        .header("content-type", "application/xml")
        .body("<user/>")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 415);
    let json: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("send application/json or application/x-protobuf"),
        "{json}"
    );
}

#[tokio::test]
async fn a_binary_whole_body_is_the_request_message() {
    let (stack, _) = crate::probe::start("").await;
    let client = reqwest::Client::new();
    let body = crate::probe::EchoRequest {
        text: "from the body".into(),
        ..Default::default()
    };
    let reply = client
        .post(stack.0.url("/v1/echo"))
        .header("content-type", "application/protobuf")
        .header("accept", "application/protobuf")
        .body(body.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let echo = crate::probe::EchoReply::decode(reply.bytes().await.unwrap()).unwrap();
    assert_eq!(echo.text, "from the body");
}
