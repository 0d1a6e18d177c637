//! What CreateService and UpdateService ask for, as the control plane takes it: the
//! protocol edge builds these from the wire requests, and the operations check them.
//!
//! The members are ECS's own vocabulary (load balancers, network and deployment
//! configurations, capacity provider strategies), the types a service's revision keeps.

use model::ecs::shapes::{
    AvailabilityZoneRebalancing, CapacityProviderStrategyItem, DeploymentConfiguration, DeploymentControllerType,
    LaunchType, LoadBalancer, NetworkConfiguration, PlacementConstraint, PlacementStrategy, PropagateTags,
    SchedulingStrategy, ServiceConnectConfiguration, ServiceRegistry, ServiceVolumeConfiguration,
    VpcLatticeConfiguration,
};

/// A new service (CreateService).
#[derive(Debug, Clone, Default)]
pub struct ServiceSpec {
    pub cluster: Option<String>,
    pub name: String,
    pub task_definition: Option<String>,
    /// Required for REPLICA services, refused for DAEMON ones.
    pub desired_count: Option<i32>,
    /// REPLICA unless given.
    pub scheduling_strategy: Option<SchedulingStrategy>,
    pub deployment_controller: Option<DeploymentControllerType>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub placement_constraints: Vec<PlacementConstraint>,
    pub placement_strategy: Vec<PlacementStrategy>,
    pub health_check_grace_period_seconds: Option<i32>,
    /// Makes a repeated CreateService answer with the service it created.
    pub client_token: Option<String>,
    pub launch_type: Option<LaunchType>,
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub platform_version: Option<String>,
    pub network_configuration: Option<NetworkConfiguration>,
    pub load_balancers: Vec<LoadBalancer>,
    pub role: Option<String>,
    pub service_registries: Vec<ServiceRegistry>,
    pub service_connect_configuration: Option<ServiceConnectConfiguration>,
    pub volume_configurations: Vec<ServiceVolumeConfiguration>,
    pub vpc_lattice_configurations: Vec<VpcLatticeConfiguration>,
    /// (key, value) pairs, checked by `Tags::parse`.
    pub tags: Vec<(String, String)>,
    pub propagate_tags: Option<PropagateTags>,
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub availability_zone_rebalancing: Option<AvailabilityZoneRebalancing>,
}

/// A change to a service (UpdateService): every member given replaces the service's.
#[derive(Debug, Clone, Default)]
pub struct ServiceUpdate {
    pub cluster: Option<String>,
    /// The service's name or ARN.
    pub service: String,
    pub desired_count: Option<i32>,
    pub task_definition: Option<String>,
    pub deployment_controller: Option<DeploymentControllerType>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    pub health_check_grace_period_seconds: Option<i32>,
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub platform_version: Option<String>,
    pub network_configuration: Option<NetworkConfiguration>,
    pub load_balancers: Option<Vec<LoadBalancer>>,
    pub service_registries: Option<Vec<ServiceRegistry>>,
    pub service_connect_configuration: Option<ServiceConnectConfiguration>,
    pub volume_configurations: Option<Vec<ServiceVolumeConfiguration>>,
    pub vpc_lattice_configurations: Option<Vec<VpcLatticeConfiguration>>,
    pub propagate_tags: Option<PropagateTags>,
    pub enable_ecs_managed_tags: Option<bool>,
    pub enable_execute_command: Option<bool>,
    pub availability_zone_rebalancing: Option<AvailabilityZoneRebalancing>,
    /// A new deployment even when nothing it runs changed.
    pub force_new_deployment: bool,
}
