//! Code generated from `stream.proto`, shared by the streaming benchmark's
//! backend and load driver.

/// Messages, client and server of `benchstream.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("benchstream.v1");
}
