//! Fidelity of the ECR API to AWS's (issue 14's audit): members ECR always
//! returns, and `registryId` naming another account's registry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Fixture;
use serde_json::json;

const POLICY: &str = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#;

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
