//! Weak DA against a real S3 server: `s3s-fs` (the s3s project's file-system-backed server,
//! installed from crates.io by `scripts/setup.sh`), started here on a free loopback port.
//!
//! Without the binary the test is skipped with a message on a developer machine, and fails
//! under CI (`CI=true`), where the setup script must have installed it.

use da_weak::{
    WeakDa, WeakDaError,
    testing::{self, S3Server},
};
use object_store::{ObjectStoreExt, PutPayload};

fn start_server() -> Option<S3Server> {
    let Some(binary) = testing::s3s_fs_binary() else {
        let message = "s3s-fs not found: run scripts/setup.sh or set TICKRATE_S3S_FS";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("skipping: {message}");
        return None;
    };
    Some(S3Server::start(&binary).expect("s3s-fs starts"))
}

#[tokio::test]
async fn bodies_round_trip_through_a_real_s3_server_and_tampering_is_detected() {
    let Some(server) = start_server() else {
        return;
    };
    let da = WeakDa::from_url(&server.url()).expect("S3 store");

    let mut headers = Vec::new();
    for height in 0..4 {
        let (header, body, encoded) = testing::block(7, height, 3, 200);
        da.put_body(&header, encoded).await.expect("put over S3");
        assert_eq!(da.get_body(&header).await.expect("get over S3"), body);
        headers.push(header);
    }

    let listed = da
        .list_blocks(&headers[0].sequencer, 1, 100)
        .await
        .expect("list over S3");
    assert_eq!(
        listed
            .iter()
            .map(|block| (block.height, block.root))
            .collect::<Vec<_>>(),
        headers[1..]
            .iter()
            .map(|header| (header.height, header.root))
            .collect::<Vec<_>>()
    );

    // Someone with write access to the bucket replaces a body with another of the same size.
    let (_, _, other) = testing::block(8, 3, 3, 200);
    let victim = &headers[2];
    assert_eq!(other.len(), victim.body_bytes as usize);
    da.object_store()
        .put(&WeakDa::key(victim), PutPayload::from(other))
        .await
        .expect("overwrite");
    assert!(matches!(
        da.get_body(victim).await,
        Err(WeakDaError::RootMismatch { .. })
    ));
    // A truncated object is refused by size before decoding.
    da.object_store()
        .put(&WeakDa::key(victim), PutPayload::from(vec![1u8; 10]))
        .await
        .expect("overwrite");
    assert!(matches!(
        da.get_body(victim).await,
        Err(WeakDaError::SizeMismatch { len: 10, .. })
    ));

    let mut missing = headers[0].clone();
    missing.height = 99;
    assert!(matches!(
        da.get_body(&missing).await,
        Err(WeakDaError::NotFound { .. })
    ));
}

#[tokio::test]
async fn wrong_credentials_are_an_error_not_a_body() {
    let Some(server) = start_server() else {
        return;
    };
    let url = server
        .url()
        .replace(testing::S3_SECRET_KEY, "not-the-secret");
    let da = WeakDa::from_url(&url).expect("S3 store");
    let (header, _, encoded) = testing::block(7, 0, 1, 0);
    assert!(matches!(
        da.put_body(&header, encoded).await,
        Err(WeakDaError::Store(_))
    ));
}
