//! Example gRPC backends for protogate: a small shop split into four tonic
//! services, each on its own port, with in-memory, deterministically seeded
//! state.
//!
//! | service                              | proto                                      | default address   |
//! |--------------------------------------|--------------------------------------------|-------------------|
//! | `shop.user.v1.UserService`           | `protos/shop/user/v1/user.proto`           | `127.0.0.1:50051` |
//! | `shop.order.v1.OrderService`         | `protos/shop/order/v1/order.proto`         | `127.0.0.1:50052` |
//! | `shop.inventory.v1.InventoryService` | `protos/shop/inventory/v1/inventory.proto` | `127.0.0.1:50053` |
//! | `shop.user.v2.UserService`           | `protos/shop/user/v2/user.proto`           | `127.0.0.1:50054` |
//!
//! Every server also answers `grpc.health.v1.Health` (the whole server "" and
//! its shop service SERVING) and gRPC server reflection, `grpc.reflection.v1`
//! and `v1alpha`, with the protos' `google.api.http` options intact (see
//! `reflection.rs` for why that takes more than `tonic-reflection`'s builder).
//!
//! Run them as a process with `cargo run -p shop --bin shop` (flags `--users ADDR
//! --orders ADDR --inventory ADDR --users-v2 ADDR`), or in-process from a
//! test:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let backends = shop::spawn_ephemeral().await?;
//! println!("users on {}", backends.users);
//! backends.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Besides unary methods, OrderService streams (WatchOrder, SyncOrderStatus,
//! ExportOrders, UploadAttachment) and answers with `google.api.HttpBody`
//! (GetInvoice, ExportOrders), and InventoryService takes a stream of
//! reservations (BulkReserve): backends for the gateway's streaming and
//! raw-body routes. [`Backends::cancelled_watches`] tells a test whether the
//! order service noticed a WatchOrder client that went away.
//!
//! Every [`spawn`] starts from fresh seed data, so tests do not see each
//! other's writes. The services never call each other: orders know the seed
//! user ids statically, placing an order does not reserve stock, and the two
//! user service versions keep separate tables. Tests that need several
//! instances of one service start them with [`spawn_users_v1`].

mod backends;
mod clock;
mod instance;
pub mod inventory;
pub mod orders;
mod pagination;
mod reflection;
pub mod registry;
mod status;
pub mod users;
pub mod users_v2;

/// Locks a service's state. Handlers never panic while holding a lock and
/// leave the state consistent between statements, so a poisoned lock is usable.
pub(crate) fn lock<T>(state: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use backends::{Addresses, Backends, spawn, spawn_ephemeral};
pub use instance::{Instance, spawn_users_v1, spawn_users_v1_describing};

/// Encoded `google.protobuf.FileDescriptorSet` of the shop protos and all
/// their imports (google/api, google/protobuf), with source comments and the
/// `google.api.http` options; suitable for gRPC reflection or for loading
/// into a descriptor pool.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shop_descriptor_set.bin"));

/// Messages, servers and clients generated from the shop protos, plus the
/// google.api messages they import (google.protobuf maps to `prost_types`).
pub mod pb {
    /// The `google.*` proto packages other than google.protobuf.
    pub mod google {
        /// Proto package `google.api` (`HttpRule`, `FieldBehavior`, ...).
        pub mod api {
            tonic::include_proto!("google.api");
        }
    }
    /// The `shop.*` proto packages.
    pub mod shop {
        /// The `shop.user.*` proto packages.
        pub mod user {
            /// Proto package `shop.user.v1`.
            pub mod v1 {
                tonic::include_proto!("shop.user.v1");
            }
            /// Proto package `shop.user.v2`.
            pub mod v2 {
                tonic::include_proto!("shop.user.v2");
            }
        }
        /// The `shop.order.*` proto packages.
        pub mod order {
            /// Proto package `shop.order.v1`.
            pub mod v1 {
                tonic::include_proto!("shop.order.v1");
            }
        }
        /// The `shop.inventory.*` proto packages.
        pub mod inventory {
            /// Proto package `shop.inventory.v1`.
            pub mod v1 {
                tonic::include_proto!("shop.inventory.v1");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FILE_DESCRIPTOR_SET;
    use prost::Message as _;
    use prost_types::FileDescriptorSet;

    #[test]
    fn file_descriptor_set_holds_shop_protos_and_imports() {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let names: Vec<_> = set.file.iter().map(|f| f.name()).collect();
        for want in [
            "shop/user/v1/user.proto",
            "shop/user/v2/user.proto",
            "shop/order/v1/order.proto",
            "shop/inventory/v1/inventory.proto",
            "google/api/annotations.proto",
            "google/api/httpbody.proto",
            "google/protobuf/timestamp.proto",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // Proto comments become the gateway's API docs.
        let user_proto = set
            .file
            .iter()
            .find(|f| f.name() == "shop/user/v1/user.proto")
            .unwrap();
        let comments = &user_proto.source_code_info.as_ref().unwrap().location;
        assert!(
            comments
                .iter()
                .any(|l| l.leading_comments().contains("A shop user."))
        );
    }

    #[test]
    fn file_descriptor_set_keeps_http_rules() {
        // prost_types has no field for the google.api.http extension, so
        // look for one rule's path template in the raw bytes.
        let template = b"/v1/{name=users/*/orders/*}:cancel";
        assert!(
            FILE_DESCRIPTOR_SET
                .windows(template.len())
                .any(|w| w == template)
        );
    }
}
