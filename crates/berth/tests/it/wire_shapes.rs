//! Snapshots of whole responses as they go over the wire, so that any change to a
//! response's shape shows up as a reviewed diff. Account ids and times are redacted.

use serde_json::{json, Value};
use testkit::Berth;

use crate::bad_input::signed_ecs_request;
use crate::berth;

/// Calls an ECS operation with a raw signed request and returns the JSON response with
/// the (random) account id replaced by a fixed one.
async fn call(b: &Berth, operation: &str, body: Value) -> Value {
    let http = reqwest::Client::new();
    let resp = signed_ecs_request(&http, &b.endpoint, &b.key, operation, body.to_string()).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.1");
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    let text = resp.text().await.unwrap().replace(&b.key.account, "123456789012");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn cluster_responses() {
    let b = berth().await;
    let created =
        call(&b, "CreateCluster", json!({"clusterName": "demo", "tags": [{"key": "team", "value": "web"}]})).await;
    insta::assert_json_snapshot!("create_cluster", created);
    let described =
        call(&b, "DescribeClusters", json!({"clusters": ["demo", "missing"], "include": ["SETTINGS", "TAGS"]})).await;
    insta::assert_json_snapshot!("describe_clusters", described);
}

#[tokio::test]
async fn task_definition_responses() {
    let b = berth().await;
    let body = json!({
        "family": "simplehttp",
        "containerDefinitions": [{
            "name": "web", "image": "simplehttp:latest", "memory": 128,
            "portMappings": [{"containerPort": 8080}],
            "healthCheck": {"command": ["CMD", "/simplehttp", "-check"]},
            "dependsOn": [{"containerName": "sidecar", "condition": "START"}]
        }, {
            "name": "sidecar", "image": "sidecar:1", "memoryReservation": 32, "essential": false
        }],
        "tags": [{"key": "app", "value": "simplehttp"}]
    });
    let registered = call(&b, "RegisterTaskDefinition", body).await;
    insta::assert_json_snapshot!("register_task_definition", registered, {".taskDefinition.registeredAt" => "[timestamp]"});
    let error = call(&b, "DescribeTaskDefinition", json!({"taskDefinition": "missing"})).await;
    insta::assert_json_snapshot!("describe_task_definition_missing", error);
}
