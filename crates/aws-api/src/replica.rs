//! Which requests a follower replica answers itself, from its own copy of the state.
//!
//! A follower (a replica of a PostgreSQL store that does not lead) keeps its view current
//! from the store's change log and answers the reads below from it; `berth` sends every
//! other request on to the leading replica. The reads listed are those whose answer is
//! the published state alone: none that reads what lives only in the leader's process
//! (agent connections in `DescribeContainerInstances` and in `ListContainerInstances`'
//! filters, target health, CloudWatch Logs' events, the registry) or that may write (`GetSessionToken` may create its sealing key).
//! Should a listed read still try to write, the control plane refuses it on a follower
//! and the answer carries [`crate::error::DEFER_HEADER`], on which `berth` sends the
//! request to the leader all the same.
//!
//! Decision: a follower's reads are as fresh as its view, which trails the leader's by
//! the time a change takes to reach it (milliseconds); AWS's own Describe and List calls
//! are eventually consistent in the same way. A client that wrote through a follower
//! reads its write there: the follower waits for its view to reach the leader's position
//! after the write before it answers it.

/// The JSON-protocol reads a follower answers, by `X-Amz-Target`.
fn json_read(target: &str) -> bool {
    let Some((prefix, operation)) = target.split_once('.') else { return false };
    let reads: &[&str] = match prefix {
        crate::ecs::TARGET_PREFIX => &[
            "DescribeClusters",
            "ListClusters",
            "DescribeTaskDefinition",
            "ListTaskDefinitions",
            "ListTaskDefinitionFamilies",
            "ListTagsForResource",
            "ListAccountSettings",
            "ListAttributes",
            "DescribeServices",
            "ListServices",
            "ListServicesByNamespace",
            "ListServiceDeployments",
            "DescribeServiceDeployments",
            "DescribeServiceRevisions",
            "DescribeTasks",
            "ListTasks",
        ],
        crate::ssm::TARGET_PREFIX => &[
            "GetParameter",
            "GetParameters",
            "GetParametersByPath",
            "DescribeParameters",
            "GetParameterHistory",
            "ListTagsForResource",
        ],
        crate::secretsmanager::TARGET_PREFIX => &[
            "GetSecretValue",
            "BatchGetSecretValue",
            "DescribeSecret",
            "ListSecrets",
            "ListSecretVersionIds",
            "GetResourcePolicy",
        ],
        crate::events::TARGET_PREFIX => {
            &["DescribeRule", "ListRules", "ListTargetsByRule", "ListRuleNamesByTarget", "ListTagsForResource"]
        }
        _ => &[],
    };
    reads.contains(&operation)
}

/// The query-protocol reads a follower answers, by `Action`. No action below writes in
/// any of the query services (ELBv2, EC2, IAM, STS).
const QUERY_READS: &[&str] = &[
    // ELBv2
    "DescribeLoadBalancers",
    "DescribeLoadBalancerAttributes",
    "DescribeTargetGroups",
    "DescribeTargetGroupAttributes",
    "DescribeListeners",
    "DescribeListenerAttributes",
    "DescribeRules",
    "DescribeTags",
    "DescribeAccountLimits",
    "DescribeSSLPolicies",
    // EC2
    "DescribeSecurityGroups",
    "DescribeSecurityGroupRules",
    "DescribeAvailabilityZones",
    "DescribeNetworkInterfaces",
    "DescribeVpcs",
    "DescribeSubnets",
    "DescribeVpcAttribute",
    "DescribeAccountAttributes",
    "DescribeInternetGateways",
    "DescribeRouteTables",
    "DescribeNetworkAcls",
    // IAM
    "GetUser",
    "ListUsers",
    "ListUserTags",
    "GetGroup",
    "ListGroups",
    "ListGroupsForUser",
    "ListAccessKeys",
    "GetRole",
    "ListRoles",
    "ListRoleTags",
    "GetUserPolicy",
    "GetRolePolicy",
    "GetGroupPolicy",
    "ListUserPolicies",
    "ListRolePolicies",
    "ListGroupPolicies",
    "GetPolicy",
    "ListPolicies",
    "GetPolicyVersion",
    "ListPolicyVersions",
    "ListAttachedUserPolicies",
    "ListAttachedRolePolicies",
    "ListAttachedGroupPolicies",
    "GetAccountAuthorizationDetails",
    // STS
    "GetCallerIdentity",
];

/// Whether a follower answers an AWS API request itself: one with this `X-Amz-Target`,
/// or, without one, this form-encoded body (the query protocol's `Action`).
pub fn follower_answers(target: Option<&str>, form: &[u8]) -> bool {
    match target.filter(|t| !t.is_empty()) {
        Some(target) => json_read(target),
        None => crate::query::Params::parse(form)
            .ok()
            .and_then(|p| p.get("Action").map(|a| QUERY_READS.contains(&a)))
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_of_the_state_are_answered_and_everything_else_is_not() {
        let ecs = |op: &str| format!("{}.{op}", crate::ecs::TARGET_PREFIX);
        assert!(follower_answers(Some(&ecs("DescribeClusters")), b""));
        assert!(!follower_answers(Some(&ecs("CreateCluster")), b""));
        assert!(!follower_answers(Some(&ecs("DescribeContainerInstances")), b""));
        assert!(!follower_answers(Some("Logs_20140328.DescribeLogGroups"), b""));
        assert!(!follower_answers(Some("AmazonEC2ContainerRegistry_V20150921.DescribeImages"), b""));
        assert!(!follower_answers(Some("nonsense"), b""));
        assert!(follower_answers(None, b"Action=DescribeLoadBalancers&Version=2015-12-01"));
        assert!(follower_answers(Some(""), b"Action=GetCallerIdentity&Version=2011-06-15"));
        assert!(!follower_answers(None, b"Action=DescribeTargetHealth&Version=2015-12-01"));
        assert!(!follower_answers(None, b"Action=CreateUser&UserName=a"));
        assert!(!follower_answers(None, b"not a form %zz"));
    }
}
