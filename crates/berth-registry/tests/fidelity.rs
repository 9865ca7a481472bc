//! Fidelity of the ECR API to AWS's (issue 14's audit): members ECR always
//! returns, and `registryId` naming another account's registry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::Fixture;
use serde_json::json;

const POLICY: &str = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#;
const OTHER: &str = "111122223333";

#[test]
fn lifecycle_policy_has_last_evaluated_at_before_any_evaluation() {
    let f = Fixture::new();
    f.create("lc");
    f.ecr(
        "PutLifecyclePolicy",
        json!({ "repositoryName": "lc", "lifecyclePolicyText": POLICY }),
    )
    .unwrap();
    let got = f
        .ecr("GetLifecyclePolicy", json!({ "repositoryName": "lc" }))
        .unwrap();
    assert_eq!(got["lastEvaluatedAt"], json!(0.0), "{got}");
    let deleted = f
        .ecr("DeleteLifecyclePolicy", json!({ "repositoryName": "lc" }))
        .unwrap();
    assert_eq!(deleted["lastEvaluatedAt"], json!(0.0), "{deleted}");
}

#[test]
fn lifecycle_policy_reports_the_evaluation_time_once_evaluated() {
    let f = Fixture::new();
    f.create("lc");
    f.ecr(
        "PutLifecyclePolicy",
        json!({ "repositoryName": "lc", "lifecyclePolicyText": POLICY }),
    )
    .unwrap();
    f.registry.enforce_lifecycle().unwrap();
    let got = f
        .ecr("GetLifecyclePolicy", json!({ "repositoryName": "lc" }))
        .unwrap();
    assert_eq!(got["lastEvaluatedAt"], json!(1_700_000_000.0), "{got}");
}

#[test]
fn describe_repositories_of_another_registry_lists_nothing() {
    let f = Fixture::new();
    f.create("mine");
    let got = f
        .ecr("DescribeRepositories", json!({ "registryId": OTHER }))
        .unwrap();
    assert_eq!(got, json!({ "repositories": [] }));
    let err = f
        .ecr(
            "DescribeRepositories",
            json!({ "registryId": OTHER, "repositoryNames": ["mine"] }),
        )
        .unwrap_err();
    assert_eq!(err.code, "RepositoryNotFoundException");
    assert!(err.message.contains(OTHER), "{}", err.message);
    // The caller's own id is served as if absent.
    let own = f
        .ecr(
            "DescribeRepositories",
            json!({ "registryId": f.registry.registry_id() }),
        )
        .unwrap();
    assert_eq!(own["repositories"].as_array().unwrap().len(), 1);
}

#[test]
fn every_operation_naming_another_registry_finds_no_repository() {
    let f = Fixture::new();
    f.create("mine");
    f.ecr(
        "PutLifecyclePolicy",
        json!({ "repositoryName": "mine", "lifecyclePolicyText": POLICY }),
    )
    .unwrap();
    for op in [
        "ListImages",
        "DescribeImages",
        "BatchGetImage",
        "BatchDeleteImage",
        "BatchCheckLayerAvailability",
        "DeleteRepository",
        "GetRepositoryPolicy",
        "DeleteRepositoryPolicy",
        "GetLifecyclePolicy",
        "DeleteLifecyclePolicy",
        "GetLifecyclePolicyPreview",
        "InitiateLayerUpload",
        "PutImageTagMutability",
        "PutImageScanningConfiguration",
    ] {
        let err = f
            .ecr(op, json!({ "registryId": OTHER, "repositoryName": "mine" }))
            .unwrap_err();
        assert_eq!(err.code, "RepositoryNotFoundException", "{op}: {err:?}");
        assert!(err.message.contains(OTHER), "{op}: {}", err.message);
    }
    // Nothing was deleted by the calls above.
    f.ecr("GetLifecyclePolicy", json!({ "repositoryName": "mine" }))
        .unwrap();
    let err = f
        .ecr(
            "CreateRepository",
            json!({ "registryId": OTHER, "repositoryName": "theirs" }),
        )
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameterException");
}

#[test]
fn a_malformed_registry_id_is_an_invalid_parameter() {
    let f = Fixture::new();
    f.create("mine");
    for id in ["12345", "abcdefghijkl", "0000000000001"] {
        let err = f
            .ecr(
                "ListImages",
                json!({ "registryId": id, "repositoryName": "mine" }),
            )
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameterException", "{id}");
    }
}

#[test]
fn batch_check_layer_availability_gives_the_layer_media_type() {
    let f = Fixture::new();
    f.create("layers");
    let data = b"a layer";
    let digest = common::sha(data);
    let up = f
        .ecr("InitiateLayerUpload", json!({ "repositoryName": "layers" }))
        .unwrap();
    let id = up["uploadId"].as_str().unwrap();
    f.ecr(
        "UploadLayerPart",
        json!({
            "repositoryName": "layers", "uploadId": id, "partFirstByte": 0,
            "partLastByte": data.len() - 1,
            "layerPartBlob": base64::engine::general_purpose::STANDARD.encode(data),
        }),
    )
    .unwrap();
    f.ecr(
        "CompleteLayerUpload",
        json!({ "repositoryName": "layers", "uploadId": id, "layerDigests": [digest] }),
    )
    .unwrap();
    let got = f
        .ecr(
            "BatchCheckLayerAvailability",
            json!({ "repositoryName": "layers", "layerDigests": [digest] }),
        )
        .unwrap();
    let layer = &got["layers"][0];
    assert_eq!(layer["layerAvailability"], "AVAILABLE", "{got}");
    assert_eq!(
        layer["mediaType"], "application/vnd.docker.container.image.rootfs.diff+json",
        "{got}"
    );
}
