//! Descriptors from a binary FileDescriptorSet instead of .proto files.

use crate::support::{Stack, default_config, serve};

#[tokio::test]
async fn descriptor_set_alone_serves_the_same_routes() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = std::env::temp_dir().join(format!("protogate-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let set = dir.join("shop.binpb");
    std::fs::write(&set, shop::FILE_DESCRIPTOR_SET).unwrap();

    let mut config = default_config(&backends);
    config.descriptors.include.clear();
    config.descriptors.protos.clear();
    config.descriptors.descriptor_sets = vec![set];
    let (addr, stop) = serve(config).await;
    let stack = Stack::for_gateway(addr, stop).with_credentials();

    let user = stack.get("/v1/users/1").await;
    assert_eq!(user.status, 200, "{:?}", user.json);
    assert_eq!(user.json["email"], "ada@example.com");
    let cancel = stack
        .call("POST", "/v1/users/2/orders/1003:cancel", Some("{}"))
        .await;
    assert_eq!(
        cancel.json["details"][0]["@type"],
        "type.googleapis.com/google.rpc.PreconditionFailure"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
