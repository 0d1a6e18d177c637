//! What a Berth finds on its Docker engine at start of the subnet networks earlier Berths
//! made (`berth-subnet-...`, label `berth.managed`), and what it does about those that
//! overlap its default VPC.
//!
//! Decision: a network nothing is attached to belongs to no live task, whoever made it (a
//! Berth whose data dir is gone, another account): it is removed, so that the first awsvpc
//! task of a fresh Berth does not fail on Docker's overlap check. A network that running
//! containers of accounts this Berth does not know are attached to belongs to another
//! live Berth on the same engine: starting anyway would fail every awsvpc task later, so
//! the start fails now and says which flag moves this Berth's default VPC. Networks in
//! use by this Berth's own accounts (a restart) are left as they are.

use std::collections::HashMap;

use crate::awsvpc::Ipv4Cidr;
use crate::docker::{labels, Docker, ManagedNetwork};

/// Why a Berth cannot use its default VPC's block on this engine.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the Docker network {network} ({cidr}) of subnet {subnet_id} overlaps this Berth's default VPC {vpc} and is in \
     use by {users}: another Berth on this Docker engine runs tasks there. Start this Berth with --vpc-cidr \
     (BERTH_VPC_CIDR) set to a block that overlaps no Docker network (for example 10.201.0.0/16), or stop the other \
     Berth's tasks first"
)]
pub struct VpcConflict {
    pub network: String,
    pub cidr: String,
    pub subnet_id: String,
    pub vpc: Ipv4Cidr,
    pub users: String,
}

/// The account in a container's ECS cluster label (`arn:aws:ecs:<region>:<account>:cluster/...`).
fn account_of(labels: &HashMap<String, String>) -> Option<&str> {
    labels.get(labels::CLUSTER)?.split(':').nth(4)
}

/// Who, other than `own_accounts`, uses network `n`: a description, or `None` when nobody
/// else does.
pub fn foreign_users(n: &ManagedNetwork, own_accounts: &[String]) -> Option<String> {
    let foreign: Vec<String> = n
        .attached
        .iter()
        .filter(|l| account_of(l).is_none_or(|a| !own_accounts.iter().any(|o| o == a)))
        .map(|l| match account_of(l) {
            Some(a) => format!("a task container of account {a}"),
            None => "a container Berth did not start".to_string(),
        })
        .collect();
    match foreign.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [first, rest @ ..] => Some(format!("{first} and {} more", rest.len())),
    }
}

/// Removes the unused subnet networks that overlap `vpc` and fails with [`VpcConflict`]
/// if one is in use by accounts other than `own_accounts`. Returns the removed networks'
/// names.
pub async fn prepare(docker: &Docker, vpc: Ipv4Cidr, own_accounts: &[String]) -> anyhow::Result<Vec<String>> {
    let removed = docker.remove_unused_subnet_networks(vpc, "").await?;
    for n in docker.subnet_networks_overlapping(vpc).await? {
        if let Some(users) = foreign_users(&n, own_accounts) {
            let cidr = n.cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            return Err(VpcConflict { network: n.name, cidr, subnet_id: n.subnet_id, vpc, users }.into());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(attached: &[Option<&str>]) -> ManagedNetwork {
        ManagedNetwork {
            name: "berth-subnet-1".into(),
            subnet_id: "subnet-1".into(),
            cidrs: vec![Ipv4Cidr::parse("172.31.0.0/20").unwrap()],
            endpoints: attached.len(),
            attached: attached
                .iter()
                .map(|a| match a {
                    Some(acct) => HashMap::from([(
                        labels::CLUSTER.to_string(),
                        format!("arn:aws:ecs:us-east-1:{acct}:cluster/default"),
                    )]),
                    None => HashMap::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_other_accounts_and_strangers_conflict() {
        let own = ["111111111111".to_string()];
        assert_eq!(foreign_users(&net(&[]), &own), None);
        assert_eq!(foreign_users(&net(&[Some("111111111111")]), &own), None);
        assert_eq!(
            foreign_users(&net(&[Some("222222222222")]), &own).as_deref(),
            Some("a task container of account 222222222222")
        );
        assert_eq!(
            foreign_users(&net(&[None, Some("111111111111"), Some("3")]), &own).as_deref(),
            Some("a container Berth did not start and 1 more")
        );
    }
}
