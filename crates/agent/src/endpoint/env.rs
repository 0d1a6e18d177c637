//! What a container is told about the task endpoint: the variables the agent adds at
//! create, as the ECS agent names them, and how an adopting agent reads its ids back.
//!
//! The ids live only in the containers' environment (as on ECS): an agent that restarts
//! and adopts a task's containers takes the ids from there, so the URIs the running
//! containers already hold keep working.

use super::ids::EndpointId;

/// The address containers reach the endpoint at (the ECS agent's).
pub const ENDPOINT_ADDRESS: &str = "169.254.170.2";
pub const METADATA_V4_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";
pub const METADATA_V3_VAR: &str = "ECS_CONTAINER_METADATA_URI";
pub const CREDENTIALS_VAR: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// The path under which task role credentials are served.
pub const CREDENTIALS_PATH: &str = "/v2/credentials";

/// The variables for a container whose metadata id is `metadata`, in a task whose
/// credentials id is `credentials` (tasks with a task role only).
pub fn container_env(metadata: &EndpointId, credentials: Option<&EndpointId>) -> Vec<(String, String)> {
    let mut env = vec![
        (METADATA_V4_VAR.to_string(), format!("http://{ENDPOINT_ADDRESS}/v4/{metadata}")),
        (METADATA_V3_VAR.to_string(), format!("http://{ENDPOINT_ADDRESS}/v3/{metadata}")),
    ];
    if let Some(c) = credentials {
        env.push((CREDENTIALS_VAR.to_string(), format!("{CREDENTIALS_PATH}/{c}")));
    }
    env
}

/// The ids an existing container was given, read from its environment (`NAME=value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdsInEnv {
    pub metadata: Option<EndpointId>,
    pub credentials: Option<EndpointId>,
}

pub fn ids_in_env(env: &[String]) -> IdsInEnv {
    let value = |name: &str| env.iter().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    let v4_prefix = format!("http://{ENDPOINT_ADDRESS}/v4/");
    let credentials_prefix = format!("{CREDENTIALS_PATH}/");
    IdsInEnv {
        metadata: value(METADATA_V4_VAR)
            .and_then(|v| v.strip_prefix(&v4_prefix))
            .and_then(|id| EndpointId::parse(id).ok()),
        credentials: value(CREDENTIALS_VAR)
            .and_then(|v| v.strip_prefix(&credentials_prefix))
            .and_then(|id| EndpointId::parse(id).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_name_the_ids_and_read_back() {
        let (m, c) = (EndpointId::random(4000), EndpointId::random(4000));
        let env = container_env(&m, Some(&c));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, [METADATA_V4_VAR, METADATA_V3_VAR, CREDENTIALS_VAR]);
        assert_eq!(env[0].1, format!("http://169.254.170.2/v4/{m}"));
        assert_eq!(env[1].1, format!("http://169.254.170.2/v3/{m}"));
        assert_eq!(env[2].1, format!("/v2/credentials/{c}"));
        let lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(ids_in_env(&lines), IdsInEnv { metadata: Some(m), credentials: Some(c) });

        assert_eq!(container_env(&m, None).len(), 2, "no credentials without a task role");
        let foreign = vec![
            "PATH=/bin".to_string(),
            format!("{METADATA_V4_VAR}X=http://169.254.170.2/v4/{m}"),
            format!("{CREDENTIALS_VAR}=/v2/credentials/{m}/x"),
        ];
        assert_eq!(ids_in_env(&foreign), IdsInEnv::default());
    }
}
