//! The AWS-managed policies Berth ships, as AWS defines them: an account attaches them by
//! ARN (`arn:aws:iam::aws:policy/...`) and cannot change them.
//!
//! The documents are facts copied from AWS's managed policy reference (the "AWS Managed
//! Policy Reference Guide", one page per policy) into `managed/<Name>.json`, each as of the
//! default version recorded below. AWS revises some of them (new actions for new features);
//! the reference has the current text. One is deliberately not AWS's whole text:
//! `ReadOnlyAccess` lists read actions for every AWS service (thousands of entries), and
//! ours keeps only those of the services Berth serves (ecs, ecr, elasticloadbalancing, ec2,
//! logs, iam, sts, ssm, secretsmanager, events).

use std::sync::OnceLock;

use super::policy::{PolicyDocument, PolicyKind};

/// One AWS-managed policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub name: &'static str,
    /// `/` or `/service-role/`.
    pub path: &'static str,
    pub arn: &'static str,
    pub description: &'static str,
    /// The default version's id, as AWS numbers it.
    pub default_version_id: &'static str,
    /// The default version's document (JSON).
    pub document: &'static str,
}

impl ManagedPolicy {
    /// The document, parsed once.
    pub fn policy(&self) -> &'static PolicyDocument {
        static PARSED: OnceLock<Vec<PolicyDocument>> = OnceLock::new();
        let parsed = PARSED.get_or_init(|| {
            POLICIES
                .iter()
                .map(|p| match PolicyDocument::parse(p.document, PolicyKind::Identity) {
                    Ok(doc) => doc,
                    // The documents are compiled in and a unit test parses each.
                    Err(e) => panic!("managed policy {} does not parse: {e}", p.name),
                })
                .collect()
        });
        let index = POLICIES.iter().position(|p| p.name == self.name).unwrap_or_default();
        &parsed[index]
    }
}

/// Every AWS-managed policy Berth knows.
pub fn aws_managed() -> &'static [ManagedPolicy] {
    POLICIES
}

/// The managed policy with this ARN.
pub fn by_arn(arn: &str) -> Option<&'static ManagedPolicy> {
    POLICIES.iter().find(|p| p.arn == arn)
}

/// The account AWS-managed policies belong to in their ARNs.
pub const AWS_MANAGED_ACCOUNT: &str = "aws";

static POLICIES: &[ManagedPolicy] = &[
    ManagedPolicy {
        name: "AmazonECSTaskExecutionRolePolicy",
        path: "/service-role/",
        arn: "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
        description: "Provides access to other AWS service resources that are required to run Amazon ECS tasks",
        default_version_id: "v1",
        document: include_str!("managed/AmazonECSTaskExecutionRolePolicy.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerServiceforEC2Role",
        path: "/service-role/",
        arn: "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
        description: "Default policy for the Amazon EC2 Role for Amazon EC2 Container Service.",
        // v8 (August 2025) is the snapshot; the reference lists a later default version.
        default_version_id: "v8",
        document: include_str!("managed/AmazonEC2ContainerServiceforEC2Role.json"),
    },
    ManagedPolicy {
        name: "AmazonECS_FullAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonECS_FullAccess",
        description: "Provides administrative access to Amazon ECS resources and enables ECS features through access to other AWS service resources, including VPCs, Auto Scaling groups, and CloudFormation stacks.",
        default_version_id: "v20",
        document: include_str!("managed/AmazonECS_FullAccess.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryReadOnly",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        description: "Provides read-only access to Amazon EC2 Container Registry repositories.",
        default_version_id: "v3",
        document: include_str!("managed/AmazonEC2ContainerRegistryReadOnly.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryPowerUser",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
        description: "Provides full access to Amazon EC2 Container Registry repositories, but does not allow repository deletion or policy changes.",
        default_version_id: "v3",
        document: include_str!("managed/AmazonEC2ContainerRegistryPowerUser.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryFullAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess",
        description: "Provides administrative access to Amazon ECR resources",
        default_version_id: "v3",
        document: include_str!("managed/AmazonEC2ContainerRegistryFullAccess.json"),
    },
    ManagedPolicy {
        name: "ReadOnlyAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/ReadOnlyAccess",
        description: "Provides read-only access to AWS services and resources.",
        // The snapshot's version; the statement is cut to Berth's services (see above).
        default_version_id: "v90",
        document: include_str!("managed/ReadOnlyAccess.json"),
    },
    ManagedPolicy {
        name: "AdministratorAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AdministratorAccess",
        description: "Provides full access to AWS services and resources.",
        default_version_id: "v1",
        document: include_str!("managed/AdministratorAccess.json"),
    },
    ManagedPolicy {
        name: "CloudWatchLogsFullAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/CloudWatchLogsFullAccess",
        description: "Provides full access to CloudWatch Logs",
        default_version_id: "v4",
        document: include_str!("managed/CloudWatchLogsFullAccess.json"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::{evaluate, Decision, Principal, RequestContext};
    use crate::AccountId;

    #[test]
    fn every_managed_policy_parses_as_an_identity_policy_with_its_arn() {
        for p in aws_managed() {
            let doc =
                PolicyDocument::parse(p.document, PolicyKind::Identity).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            doc.check_managed_version().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(p.policy().text(), p.document);
            let expected = format!("arn:aws:iam::{AWS_MANAGED_ACCOUNT}:policy{}{}", p.path, p.name);
            assert_eq!(p.arn, expected);
            assert!(p.path.starts_with('/') && p.path.ends_with('/'));
            assert!(p.default_version_id.starts_with('v'));
            assert_eq!(by_arn(p.arn), Some(p));
        }
        assert_eq!(aws_managed().len(), 9);
    }

    #[test]
    fn managed_policies_grant_what_their_names_say() {
        let account = AccountId::parse("123456789012").unwrap();
        let user = || Principal::user(&account, "arn:aws:iam::123456789012:user/alice");
        let decide = |name: &str, action: &str, resource: &str| {
            let p = aws_managed().iter().find(|p| p.name == name).unwrap();
            evaluate(&[p.policy()], None, &RequestContext::new(user(), action, resource))
        };
        let repo = "arn:aws:ecr:us-east-1:123456789012:repository/app";
        assert_eq!(decide("AmazonEC2ContainerRegistryReadOnly", "ecr:BatchGetImage", repo), Decision::Allow);
        assert_eq!(decide("AmazonEC2ContainerRegistryReadOnly", "ecr:PutImage", repo), Decision::ImplicitDeny);
        assert_eq!(decide("AmazonEC2ContainerRegistryPowerUser", "ecr:PutImage", repo), Decision::Allow);
        assert_eq!(decide("AmazonEC2ContainerRegistryPowerUser", "ecr:DeleteRepository", repo), Decision::ImplicitDeny);
        assert_eq!(decide("AmazonEC2ContainerRegistryFullAccess", "ecr:DeleteRepository", repo), Decision::Allow);
        assert_eq!(decide("ReadOnlyAccess", "ecs:DescribeClusters", "*"), Decision::Allow);
        assert_eq!(decide("ReadOnlyAccess", "ecs:CreateCluster", "*"), Decision::ImplicitDeny);
        assert_eq!(decide("AdministratorAccess", "iam:CreateUser", "*"), Decision::Allow);
        assert_eq!(decide("AmazonECS_FullAccess", "ecs:UpdateService", "*"), Decision::Allow);
        assert_eq!(decide("AmazonECS_FullAccess", "iam:CreateUser", "*"), Decision::ImplicitDeny);
        assert_eq!(decide("CloudWatchLogsFullAccess", "logs:DeleteLogGroup", "*"), Decision::Allow);
        assert_eq!(decide("AmazonECSTaskExecutionRolePolicy", "logs:PutLogEvents", "*"), Decision::Allow);
        assert_eq!(decide("AmazonECSTaskExecutionRolePolicy", "logs:DeleteLogGroup", "*"), Decision::ImplicitDeny);

        // iam:PassRole for task roles only when passed to ECS tasks.
        let p = by_arn("arn:aws:iam::aws:policy/AmazonECS_FullAccess").unwrap().policy();
        let pass = |service: &str| {
            let req = RequestContext::new(user(), "iam:PassRole", "arn:aws:iam::123456789012:role/app")
                .with("iam:PassedToService", service);
            evaluate(&[p], None, &req)
        };
        assert_eq!(pass("ecs-tasks.amazonaws.com"), Decision::Allow);
        assert_eq!(pass("lambda.amazonaws.com"), Decision::ImplicitDeny);
    }
}
