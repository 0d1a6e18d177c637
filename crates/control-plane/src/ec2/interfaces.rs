//! What EC2 shows of ECS's resources: the network interfaces of awsvpc tasks
//! (DescribeNetworkInterfaces) and the container instances as EC2 instances
//! (DescribeInstances). Nothing here is stored: both are read from the tasks and
//! instances.
//!
//! An interface exists while its task holds its address (every state before STOPPED),
//! as ECS deletes a task's ENI once the task has stopped. Its description is the one ECS
//! gives the ENIs it creates, the task's attachment ARN, which is how a user finds a
//! task's interface.

use model::ecs::task::Eni;
use model::Scope;

use super::vpcs::find_subnet;
use super::Network;
use crate::state::State;

/// One task's interface.
#[derive(Debug, Clone)]
pub struct NetworkInterface {
    pub eni: Eni,
    pub vpc_id: String,
    pub task_arn: String,
    /// `arn:aws:ecs:<region>:<account>:attachment/<attachment id>`, ECS's description.
    pub description: String,
    /// The EC2 instance of an EC2 task; Fargate tasks run on capacity the user never sees.
    pub instance_id: Option<String>,
    /// Fargate's interfaces are managed by AWS on the user's behalf.
    pub requester_managed: bool,
}

/// The interfaces of `scope`'s live awsvpc tasks, in task order.
pub fn network_interfaces(state: &State, scope: &Scope, net: &Network) -> Vec<NetworkInterface> {
    state
        .tasks()
        .values()
        .filter(|t| &t.scope == scope && t.holds_resources())
        .filter_map(|t| {
            let eni = t.eni.clone()?;
            let fargate = t.launch_type == "FARGATE";
            let instance_id = match (&t.container_instance, fargate) {
                (Some(ci), false) => state
                    .instances
                    .get(&(t.scope.clone(), t.cluster.clone(), ci.clone()))
                    .map(|i| i.ec2_instance_id.clone()),
                _ => None,
            };
            let vpc_id =
                find_subnet(state, scope, net, &eni.subnet_id).map_or_else(|| net.vpc_id.clone(), |s| s.vpc_id.clone());
            Some(NetworkInterface {
                description: scope.arn("ecs", &format!("attachment/{}", eni.attachment_id)).to_string(),
                task_arn: t.arn().to_string(),
                vpc_id,
                instance_id,
                requester_managed: fargate,
                eni,
            })
        })
        .collect()
}

/// A container instance seen as an EC2 instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub instance_id: String,
    pub cluster_arn: String,
    pub container_instance_arn: String,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    pub launched_at: model::Timestamp,
    pub tags: Vec<(String, String)>,
}

/// The container instances of `scope` under their EC2 instance ids, one per id (an id an
/// agent registered in two clusters is shown once, with the first registration).
pub fn instances(state: &State, scope: &Scope) -> Vec<Instance> {
    let mut out: Vec<Instance> = Vec::new();
    for i in state.instances.values().filter(|i| &i.scope == scope) {
        if i.ec2_instance_id.is_empty() || out.iter().any(|o| o.instance_id == i.ec2_instance_id) {
            continue;
        }
        let attr = |name: &str| i.attribute(name).cloned().flatten();
        out.push(Instance {
            instance_id: i.ec2_instance_id.clone(),
            cluster_arn: model::ecs::cluster_arn(&i.scope, &i.cluster).to_string(),
            container_instance_arn: i.arn().to_string(),
            zone: attr("ecs.availability-zone"),
            instance_type: attr("ecs.instance-type"),
            launched_at: i.registered_at,
            tags: i.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
    }
    out
}
