use serde_json::{Value, json};

use super::*;
use crate::auth::Authenticator;
use crate::config;
use crate::descriptor::pool_from_source;

const PROTO: &str = r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
import "google/api/field_behavior.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/any.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";

// A node of a tree.
message Node {
  // Its name.
  string name = 1 [(google.api.field_behavior) = REQUIRED];
  // Children, recursively.
  repeated Node children = 2;
  int64 id = 3 [(google.api.field_behavior) = OUTPUT_ONLY];
  string secret = 4 [(google.api.field_behavior) = INPUT_ONLY, deprecated = true];
  Color color = 5;
  bytes blob = 6;
  map<string, int32> counts = 7;
  oneof pick { string a = 8; int32 b = 9; }
  google.protobuf.Timestamp at = 10;
  google.protobuf.Duration ttl = 11;
  google.protobuf.Int32Value limit = 12;
  google.protobuf.Struct extra = 13;
  google.protobuf.Value any_value = 14;
  google.protobuf.Any detail = 15;
  google.protobuf.FieldMask mask = 16;
  uint64 big = 17;
  double ratio = 18;
  Node parent = 19;
}
// Colors.
enum Color {
  COLOR_UNSPECIFIED = 0;
  // Red.
  RED = 1;
  GREEN = 2 [deprecated = true];
}
message GetReq { string name = 1; Page page = 2; repeated string tags = 3; Color color = 4; Node filter = 5; }
message Page { int32 size = 1; string token = 2; }
message ListResp { repeated Node nodes = 1; }

// Manages nodes.
service Nodes {
  // Gets a node.
  //
  // Long description.
  rpc Get(GetReq) returns (Node) {
    option (google.api.http) = {
      get: "/v1/{name=trees/*/nodes/*}"
      additional_bindings { get: "/v1/nodes/{name}" }
    };
  }
  rpc Update(Node) returns (Node) { option (google.api.http) = { patch: "/v1/nodes/{name}:touch" body: "*" }; }
  rpc List(GetReq) returns (ListResp) { option (google.api.http) = { get: "/v1/trees/{name}/nodes" response_body: "nodes" }; }
  rpc Delete(GetReq) returns (google.protobuf.Empty) {
    option deprecated = true;
    option (google.api.http) = { delete: "/v1/{name=trees/*/nodes/*}" };
  }
  rpc Other(GetReq) returns (Node) { option (google.api.http) = { get: "/v1/{name=forests/*/nodes/*}" }; }
  rpc Watch(GetReq) returns (stream Node) { option (google.api.http) = { get: "/v1/nodes:watch" }; }
}
"#;

fn auth_for(config: &config::Config, routes: &RouteTable) -> Authenticator {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(Authenticator::build(&config.auth, routes))
        .unwrap()
}

fn doc(extra: &str) -> Value {
    let pool = pool_from_source(PROTO);
    let config = config::for_test("t.v1.Nodes", extra);
    let routes = RouteTable::build(&pool, &config).unwrap();
    let auth = auth_for(&config, &routes);
    serde_json::to_value(document(&routes, &pool, &config, &auth)).unwrap()
}

const ENCODED_SLASHES: &str = "transcoding:\n  match_encoded_slashes: true\n";

#[test]
fn multi_segment_variables_are_spelled_out_without_the_slash_fallback() {
    let d = doc("");
    let get = &d["paths"]["/v1/trees/{name_1}/nodes/{name_3}"]["get"];
    assert_eq!(get["operationId"], "Nodes_Get", "{}", d["paths"]);
    let names: Vec<&str> = get["parameters"].as_array().unwrap()[..2]
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["name_1", "name_3"]);
    assert_eq!(get["parameters"][0]["in"], "path");
    assert!(d["paths"].get("/v1/{name}").is_none());
}

#[test]
fn operations_follow_the_bindings() {
    let d = doc(ENCODED_SLASHES);
    assert_eq!(d["openapi"], "3.1.0");
    let get = &d["paths"]["/v1/{name}"]["get"];
    assert_eq!(get["operationId"], "Nodes_Get");
    assert_eq!(get["tags"], json!(["Nodes"]));
    assert_eq!(get["summary"], "Gets a node.");
    assert_eq!(get["description"], "Long description.");
    let name = &get["parameters"][0];
    assert_eq!(name["in"], "path");
    assert_eq!(name["schema"]["pattern"], "^trees/[^/]+/nodes/[^/]+$");
    let query: Vec<&str> = get["parameters"].as_array().unwrap()[1..]
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        query.contains(&"page.size") && query.contains(&"tags") && query.contains(&"filter.name"),
        "{query:?}"
    );
    assert!(
        !query
            .iter()
            .any(|q| q.starts_with("filter.children") || *q == "filter.counts"),
        "{query:?}"
    );
    assert!(
        !query.iter().any(|q| q.starts_with("filter.parent.")),
        "recursion stops: {query:?}"
    );
    assert!(
        !query
            .iter()
            .any(|q| q.starts_with("filter.anyValue") || q.starts_with("filter.detail")),
        "{query:?}"
    );
    assert!(
        query.contains(&"filter.at") && query.contains(&"filter.limit"),
        "{query:?}"
    );
    assert_eq!(
        get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "tags")
            .unwrap()["schema"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert_eq!(
        d["paths"]["/v1/nodes/{name}"]["get"]["operationId"],
        "Nodes_Get2"
    );
    // Colliding paths are spelled out.
    let other = &d["paths"]["/v1/forests/{name_1}/nodes/{name_3}"]["get"];
    assert_eq!(other["operationId"], "Nodes_Other", "{}", d["paths"]);
    assert_eq!(d["paths"]["/v1/{name}"]["delete"]["deprecated"], true);
    // An Empty reply: 204, no content.
    let delete = &d["paths"]["/v1/{name}"]["delete"]["responses"];
    assert!(delete.get("200").is_none(), "{delete}");
    assert!(delete["204"].get("content").is_none(), "{delete}");
    let touch = &d["paths"]["/v1/nodes/{name}:touch"]["patch"];
    let body = &touch["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        body["properties"].get("name").is_none(),
        "path-bound field left out of the body: {body}"
    );
    assert!(body["properties"].get("children").is_some());
    assert_eq!(
        d["paths"]["/v1/trees/{name}/nodes"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"],
        json!({"type": "array", "items": {"$ref": "#/components/schemas/t.v1.Node"}})
    );
    let watch = &d["paths"]["/v1/nodes:watch"]["get"]["responses"]["200"]["content"];
    assert!(
        watch.get("application/x-ndjson").is_some() && watch.get("text/event-stream").is_some(),
        "{watch}"
    );
    assert_eq!(
        get["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/google.rpc.Status"
    );
    assert_eq!(
        d["tags"],
        json!([{"name": "Nodes", "description": "Manages nodes."}])
    );
}

#[test]
fn schemas_use_proto3_json_forms() {
    let d = doc(ENCODED_SLASHES);
    let node = &d["components"]["schemas"]["t.v1.Node"];
    let p = &node["properties"];
    assert_eq!(
        node["description"].as_str().unwrap().lines().next(),
        Some("A node of a tree.")
    );
    assert!(
        node["description"]
            .as_str()
            .unwrap()
            .contains("At most one of `a`, `b` is set (oneof `pick`).")
    );
    assert_eq!(node["required"], json!(["name"]));
    assert_eq!(
        p["name"],
        // REQUIRED: its empty value is missing.
        json!({"type": "string", "description": "Its name.", "minLength": 1})
    );
    assert_eq!(
        p["children"]["items"],
        json!({"$ref": "#/components/schemas/t.v1.Node"})
    );
    assert_eq!(
        p["id"],
        json!({"type": "string", "format": "int64", "readOnly": true})
    );
    assert_eq!(p["secret"]["writeOnly"], true);
    assert_eq!(p["secret"]["deprecated"], true);
    assert_eq!(p["color"]["$ref"], "#/components/schemas/t.v1.Color");
    assert_eq!(p["blob"], json!({"type": "string", "format": "byte"}));
    assert_eq!(
        p["counts"],
        json!({"type": "object", "additionalProperties": {"type": "integer", "format": "int32"}})
    );
    assert_eq!(p["at"]["format"], "date-time");
    assert_eq!(p["ttl"]["type"], "string");
    assert_eq!(p["limit"], json!({"type": "integer", "format": "int32"}));
    assert_eq!(p["extra"]["type"], "object");
    assert!(
        p["anyValue"].get("type").is_none(),
        "any JSON value: {}",
        p["anyValue"]
    );
    assert_eq!(p["detail"]["required"], json!(["@type"]));
    assert_eq!(p["mask"]["type"], "string");
    assert_eq!(p["big"], json!({"type": "string", "format": "uint64"}));
    assert_eq!(p["ratio"], json!({"type": "number", "format": "double"}));
    let color = &d["components"]["schemas"]["t.v1.Color"];
    assert_eq!(color["enum"], json!(["COLOR_UNSPECIFIED", "RED", "GREEN"]));
    assert_eq!(
        color["description"],
        "Colors.\n- `COLOR_UNSPECIFIED`\n- `RED`: Red.\n- `GREEN` (deprecated)"
    );
    assert!(d["components"]["schemas"]["google.rpc.Status"]["properties"]["details"].is_object());
}

#[test]
fn options_change_names_enums_and_info() {
    let d = doc(
        "transcoding:\n  json:\n    use_proto_names: true\n    enums_as_ints: true\nopenapi:\n  title: Trees\n  version: 2.0.0\n  servers: [https://api.example.com]\n",
    );
    let node = &d["components"]["schemas"]["t.v1.Node"];
    assert!(node["properties"].get("any_value").is_some());
    assert_eq!(
        d["components"]["schemas"]["t.v1.Color"]["enum"],
        json!([0, 1, 2])
    );
    assert_eq!(d["info"]["title"], "Trees");
    assert_eq!(d["info"]["version"], "2.0.0");
    assert_eq!(d["servers"], json!([{"url": "https://api.example.com"}]));
}

#[test]
fn api_versions_come_from_the_package() {
    let proto = |pkg: &str| {
        format!(
            "syntax = \"proto3\"; package {pkg}; message M {{}} service S {{ rpc Get(M) returns (M); }}"
        )
    };
    for (pkg, want) in [
        ("shop.user.v1", Some("v1")),
        ("shop.user.v2beta1", Some("v2beta1")),
        ("shop.user.v1alpha", Some("v1alpha")),
        ("shop.user", None),
        ("shop.v", None),
        ("shop.vnext", None),
        ("shop.v1gamma", None),
    ] {
        let pool = pool_from_source(&proto(pkg));
        let service = pool.services().next().unwrap();
        assert_eq!(api_version(&service), want, "{pkg}");
    }
}

#[test]
fn one_document_per_version() {
    let file = |version: &str| {
        format!(
            "syntax = \"proto3\"; package t.{version}; import \"google/api/annotations.proto\";\n\
             message M {{ string id = 1; }}\n\
             service Users {{ rpc Get(M) returns (M) {{ option (google.api.http) = {{ get: \"/{version}/users/{{id}}\" }}; }} }}\n"
        )
    };
    let (v1, v2) = (file("v1"), file("v2"));
    let pool = crate::descriptor::pool_from_files(&[("v1.proto", &v1), ("v2.proto", &v2)]);
    let config = config::for_test("t.*", "");
    let routes = RouteTable::build(&pool, &config).unwrap();
    let grouped = versions(&routes);
    assert_eq!(grouped.keys().collect::<Vec<_>>(), ["v1", "v2"]);

    let auth = auth_for(&config, &routes);
    let combined = serde_json::to_value(document(&routes, &pool, &config, &auth)).unwrap();
    let paths: Vec<&String> = combined["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/v1/users/{id}", "/v2/users/{id}"]);
    // Two services named Users: the combined document tells them apart by version.
    assert_eq!(
        combined["paths"]["/v2/users/{id}"]["get"]["operationId"],
        "Users_v2_Get"
    );

    let only_v2 =
        serde_json::to_value(document_for(&grouped["v2"], &pool, &config, &auth)).unwrap();
    let paths: Vec<&String> = only_v2["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/v2/users/{id}"]);
    assert_eq!(
        only_v2["paths"]["/v2/users/{id}"]["get"]["operationId"],
        "Users_Get"
    );
    assert!(only_v2["components"]["schemas"].get("t.v1.M").is_none());
}

#[test]
fn security_schemes_and_requirements_follow_auth() {
    let d = doc(
        "auth:\n  jwt:\n    idp:\n      issuer: https://idp.example\n      audiences: [a]\n      algorithms: [HS256]\n      secret: s\n  api_keys:\n    from: { query: key }\n    keys: []\n  rules:\n    - method: t.v1.Nodes.Update\n      allow: [idp]\n      scopes: [nodes.write]\n    - service: t.v1.Nodes\n      public: true\n",
    );
    assert_eq!(
        d["components"]["securitySchemes"],
        json!({
            "idp": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "JWT issued by https://idp.example"},
            "api_key": {"type": "apiKey", "in": "query", "name": "key", "description": "API key"}
        })
    );
    let touch = &d["paths"]["/v1/nodes/{name}:touch"]["patch"];
    assert_eq!(touch["security"], json!([{"idp": ["nodes.write"]}]));
    let get = &d["paths"]["/v1/nodes/{name}"]["get"];
    assert!(get.get("security").is_none(), "public: {get}");
}

const ANNOTATED: &str = r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
import "protoc-gen-openapiv2/options/annotations.proto";

option (grpc.gateway.protoc_gen_openapiv2.options.openapiv2_swagger) = {
  info: {
    title: "Annotated"
    version: "2.1"
    description: "From the proto."
    contact: {name: "API team" email: "api@example.com"}
    license: {name: "Apache-2.0"}
  }
  schemes: HTTPS
  host: "api.example.com"
  base_path: "/base"
  tags: {name: "Things" description: "Things, from the file."}
  external_docs: {url: "https://docs.example.com" description: "More"}
};

message Thing {
  option (grpc.gateway.protoc_gen_openapiv2.options.openapiv2_schema) = {
    json_schema: {title: "A thing" required: ["label"]}
    example: "{\"label\": \"lamp\", \"size\": 3}"
  };
  string label = 1 [(grpc.gateway.protoc_gen_openapiv2.options.openapiv2_field) = {
    description: "What it is called."
    example: "\"lamp\""
    pattern: "^[a-z]+$"
    max_length: 20
  }];
  int32 size = 2 [(grpc.gateway.protoc_gen_openapiv2.options.openapiv2_field) = {
    minimum: 1 maximum: 10 exclusive_maximum: true format: "int32" read_only: true
  }];
  repeated string tags = 3 [(grpc.gateway.protoc_gen_openapiv2.options.openapiv2_field) = {
    max_items: 4 unique_items: true
  }];
}

service Things {
  option (grpc.gateway.protoc_gen_openapiv2.options.openapiv2_tag) = {
    description: "Things, from the service."
    external_docs: {url: "https://docs.example.com/things"}
  };
  rpc Make(Thing) returns (Thing) {
    option (google.api.http) = { post: "/v1/things" body: "*" };
    option (grpc.gateway.protoc_gen_openapiv2.options.openapiv2_operation) = {
      summary: "Make a thing"
      description: "Makes one."
      tags: "Things"
      operation_id: "MakeThing"
      deprecated: true
      external_docs: {url: "https://docs.example.com/make"}
      responses: {key: "200" value: {description: "The thing made."}}
      responses: {key: "409" value: {description: "It exists."}}
      security: {security_requirement: {key: "api_key" value: {}}}
    };
  }
}
"#;

#[test]
fn grpc_gateway_openapi_options_are_honoured() {
    let pool = pool_from_source(ANNOTATED);
    let config = config::for_test("t.v1.Things", "");
    let routes = RouteTable::build(&pool, &config).unwrap();
    let auth = auth_for(&config, &routes);
    let d = serde_json::to_value(document(&routes, &pool, &config, &auth)).unwrap();
    assert_eq!(d["info"]["title"], "Annotated");
    assert_eq!(d["info"]["version"], "2.1");
    assert_eq!(d["info"]["description"], "From the proto.");
    assert_eq!(d["info"]["contact"]["email"], "api@example.com");
    assert_eq!(d["info"]["license"]["name"], "Apache-2.0");
    assert_eq!(
        d["servers"],
        json!([{"url": "https://api.example.com/base"}])
    );
    assert_eq!(d["externalDocs"]["url"], "https://docs.example.com");
    let tags = d["tags"].as_array().unwrap();
    let tag = |name: &str| tags.iter().find(|t| t["name"] == name).cloned().unwrap();
    assert_eq!(tag("Things")["description"], "Things, from the file.");
    let op = &d["paths"]["/v1/things"]["post"];
    assert_eq!(op["summary"], "Make a thing");
    assert_eq!(op["description"], "Makes one.");
    assert_eq!(op["operationId"], "MakeThing");
    assert_eq!(op["tags"], json!(["Things"]));
    assert_eq!(op["deprecated"], true);
    assert_eq!(op["externalDocs"]["url"], "https://docs.example.com/make");
    assert_eq!(op["responses"]["200"]["description"], "The thing made.");
    assert_eq!(op["responses"]["409"]["description"], "It exists.");
    assert_eq!(op["security"], json!([{"api_key": []}]));
    let thing = &d["components"]["schemas"]["t.v1.Thing"];
    assert_eq!(thing["title"], "A thing");
    assert_eq!(thing["required"], json!(["label"]));
    assert_eq!(thing["examples"], json!([{"label": "lamp", "size": 3}]));
    let p = &thing["properties"];
    assert_eq!(p["label"]["description"], "What it is called.");
    assert_eq!(p["label"]["examples"], json!(["lamp"]));
    assert_eq!(p["label"]["pattern"], "^[a-z]+$");
    assert_eq!(p["label"]["maxLength"], 20);
    // Swagger 2.0's boolean exclusive bound is 3.1's numeric one.
    assert_eq!(p["size"]["exclusiveMaximum"], 10.0);
    assert_eq!(p["size"]["minimum"], 1.0);
    assert!(p["size"].get("maximum").is_none());
    assert_eq!(p["size"]["readOnly"], true);
    assert_eq!(p["tags"]["maxItems"], 4);
    assert_eq!(p["tags"]["uniqueItems"], true);
    // The service's own tag option, on its generated tag.
    let service = tags.iter().find(|t| t["name"] != "Things").cloned();
    if let Some(service) = service {
        assert_eq!(service["description"], "Things, from the service.");
    }
}

#[test]
fn a_proto_without_options_documents_as_before() {
    let plain = doc("");
    assert!(plain.get("externalDocs").is_none());
    assert_eq!(plain["info"]["title"], "protogate");
}
