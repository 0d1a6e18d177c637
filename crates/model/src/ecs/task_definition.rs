//! The rules a task definition must satisfy, and the defaults ECS fills in.
//!
//! A [`TaskDefinitionSpec`] can only be obtained from [`TaskDefinitionSpec::parse`], so
//! everything downstream (the scheduler, the agent) may rely on these rules holding:
//! container names are unique, dependencies name real containers and form no cycle, port
//! mappings fit the network mode, task sizes are ones the launch types accept.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::shapes::{
    Compatibility, ContainerDefinition, HealthCheck, LogDriver, NetworkMode, PortMapping,
    RegisterTaskDefinitionRequest, Secret, TransportProtocol,
};
use crate::ids::{is_ecs_name, Family};
use crate::tags::Tags;
use crate::{Invalid, Violation};

/// The most containers one task definition may hold.
pub const MAX_CONTAINERS: usize = 10;
/// The largest task definition ECS accepts, measured as its JSON document.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Docker refuses containers with a hard memory limit below this many MiB.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;

/// A task definition to register: the next revision of `family`, with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskDefinition {
    pub family: Family,
    pub spec: TaskDefinitionSpec,
    pub tags: Tags,
}

impl NewTaskDefinition {
    /// Checks a registration request: its tags first, then the document's rules
    /// ([`TaskDefinitionSpec::parse`]).
    pub fn parse(mut doc: RegisterTaskDefinitionRequest) -> Result<Self, Invalid> {
        let tags = doc
            .tags
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()));
        let tags = Tags::parse(tags)?;
        let (family, spec) = TaskDefinitionSpec::parse(doc)?;
        Ok(NewTaskDefinition { family, spec, tags })
    }
}

/// A validated task definition document, with ECS's defaults filled in. It is the
/// registration request without its tags; `family` is held separately by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionSpec {
    pub doc: RegisterTaskDefinitionRequest,
    pub compatibilities: Vec<Compatibility>,
    pub requires_attributes: Vec<String>,
}

impl TaskDefinitionSpec {
    /// Validates a registration request as ECS does and normalizes it: task `cpu` and
    /// `memory` given as "1 vCPU" or "2GB" become units and MiB, omitted container members
    /// that ECS always returns get their defaults.
    pub fn parse(mut doc: RegisterTaskDefinitionRequest) -> Result<(Family, Self), Invalid> {
        let mut violations = Vec::new();
        doc.validate_at("", &mut violations);
        if let Some(v) = violations.first() {
            return Err(Invalid::Parameter(describe(v, violations.len())));
        }
        let family = Family::parse(doc.family.as_deref().unwrap_or_default())?;
        doc.tags = None;
        // ECS takes an empty role ARN as no role (ecs-deploy re-registers a definition
        // without roles with `taskRoleArn: ""` and `executionRoleArn: ""`).
        for role in [&mut doc.task_role_arn, &mut doc.execution_role_arn] {
            if role.as_deref() == Some("") {
                *role = None;
            }
        }
        let size = serde_json::to_vec(&doc).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_DOCUMENT_BYTES {
            return Err(Invalid::Client(format!(
                "The task definition is {size} bytes; the largest ECS accepts is {MAX_DOCUMENT_BYTES} bytes."
            )));
        }

        let network_mode = doc.network_mode.unwrap_or(NetworkMode::Bridge);
        doc.network_mode = Some(network_mode);
        doc.cpu = doc.cpu.as_deref().map(normalize_cpu).transpose()?;
        doc.memory = doc.memory.as_deref().map(normalize_memory).transpose()?;
        let task_cpu: Option<i64> = doc.cpu.as_deref().and_then(|c| c.parse().ok());
        let task_memory: Option<i64> = doc.memory.as_deref().and_then(|m| m.parse().ok());
        let requires = doc.requires_compatibilities.clone().unwrap_or_default();

        let containers = doc.container_definitions.get_or_insert_with(Vec::new);
        if containers.is_empty() {
            return Err(Invalid::Client("Container definitions must contain at least one container.".into()));
        }
        if containers.len() > MAX_CONTAINERS {
            return Err(Invalid::Client(format!(
                "A task definition may have at most {MAX_CONTAINERS} containers; this one has {}.",
                containers.len()
            )));
        }
        let volume_names = check_volumes(&doc.volumes)?;
        let containers = doc.container_definitions.as_mut().expect("set above");
        let names = check_container_names(containers)?;
        let mut host_ports = BTreeSet::new();
        for c in containers.iter_mut() {
            check_container(c, &names, &volume_names, network_mode, task_memory.is_some())?;
            fill_container_defaults(c, network_mode);
            for pm in c.port_mappings.iter().flatten() {
                let host = pm.host_port.unwrap_or(0);
                if host != 0 && !host_ports.insert((host, pm.protocol.unwrap_or(TransportProtocol::Tcp))) {
                    return Err(Invalid::Client(format!(
                        "Host port {host} is mapped more than once in this task definition."
                    )));
                }
            }
        }
        check_dependency_cycles(containers)?;
        if !containers.iter().any(|c| c.essential != Some(false)) {
            return Err(Invalid::Client("At least one container of a task definition must be essential.".into()));
        }
        check_task_size(containers, task_cpu, task_memory)?;
        check_secrets(containers, doc.execution_role_arn.is_some())?;

        for compat in &requires {
            match compat {
                Compatibility::Fargate => check_fargate(&doc, network_mode, task_cpu, task_memory)?,
                Compatibility::External if network_mode == NetworkMode::Awsvpc => {
                    return Err(Invalid::Client(
                        "Tasks for external instances do not support network mode 'awsvpc'.".into(),
                    ))
                }
                _ => {}
            }
        }
        let mut compatibilities = vec![Compatibility::Ec2];
        if network_mode != NetworkMode::Awsvpc {
            compatibilities.push(Compatibility::External);
        }
        if check_fargate(&doc, network_mode, task_cpu, task_memory).is_ok() {
            compatibilities.push(Compatibility::Fargate);
        }
        let requires_attributes = required_attributes(&doc);
        Ok((family, TaskDefinitionSpec { doc, compatibilities, requires_attributes }))
    }

    pub fn network_mode(&self) -> NetworkMode {
        self.doc.network_mode.unwrap_or(NetworkMode::Bridge)
    }

    pub fn containers(&self) -> &[ContainerDefinition] {
        self.doc.container_definitions.as_deref().unwrap_or_default()
    }
}

/// Secrets and private registry credentials are read with the execution role, so ECS
/// wants one; a `valueFrom` must name a parameter or a secret. Environment files live in
/// S3, which Berth does not have.
fn check_secrets(containers: &[ContainerDefinition], has_execution_role: bool) -> Result<(), Invalid> {
    for c in containers {
        let name = c.name.as_deref().unwrap_or_default();
        let log_secrets = c.log_configuration.iter().flat_map(|l| l.secret_options.iter().flatten());
        let secrets: Vec<&Secret> = c.secrets.iter().flatten().chain(log_secrets).collect();
        if !secrets.is_empty() && !has_execution_role {
            return Err(Invalid::Client(
                "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."
                    .into(),
            ));
        }
        for s in secrets {
            let from = s.value_from.as_deref().unwrap_or_default();
            let service = from.strip_prefix("arn:").map(|rest| rest.split(':').nth(1).unwrap_or_default());
            if service.is_some_and(|s| s != "ssm" && s != "secretsmanager") {
                return Err(Invalid::Client(format!(
                    "The secret '{}' of container '{name}' has an invalid valueFrom '{from}': give the ARN of an \
                     SSM parameter or a Secrets Manager secret, or the name of an SSM parameter.",
                    s.name.as_deref().unwrap_or_default()
                )));
            }
        }
        if c.repository_credentials.is_some() && !has_execution_role {
            return Err(Invalid::Client(
                "Private repository authentication requires that the task definition specify a value for executionRoleArn."
                    .into(),
            ));
        }
        if c.environment_files.as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(Invalid::Client(format!(
                "Container '{name}' has environmentFiles, which Berth cannot read: they are S3 objects, and Berth \
                 has no S3. Put the variables in environment or secrets."
            )));
        }
    }
    Ok(())
}

fn describe(v: &Violation, count: usize) -> String {
    if count > 1 {
        format!("{v} (and {} more problems)", count - 1)
    } else {
        v.to_string()
    }
}

/// Task CPU may be given in units ("1024") or vCPUs ("1 vCPU", "0.5 vcpu"); ECS stores units.
fn normalize_cpu(s: &str) -> Result<String, Invalid> {
    let bad = || {
        Invalid::Client(format!(
            "Invalid 'cpu' setting for task: '{s}'. Use CPU units such as '1024' or vCPUs such as '1 vCPU'."
        ))
    };
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let units = if let Some(v) = lower.strip_suffix("vcpu") {
        let v: f64 = v.trim().parse().map_err(|_| bad())?;
        (v * 1024.0).round() as i64
    } else {
        t.parse::<i64>().map_err(|_| bad())?
    };
    if !(128..=196_608).contains(&units) {
        return Err(Invalid::Client(format!(
            "Invalid 'cpu' setting for task: {units} CPU units. The task CPU must be between 128 and 196608 units."
        )));
    }
    Ok(units.to_string())
}

/// Task memory may be given in MiB ("512") or GB ("1GB", "0.5 gb"); ECS stores MiB.
fn normalize_memory(s: &str) -> Result<String, Invalid> {
    let bad = || {
        Invalid::Client(format!(
            "Invalid 'memory' setting for task: '{s}'. Use MiB such as '512' or GB such as '1 GB'."
        ))
    };
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let mib = if let Some(v) = lower.strip_suffix("gb") {
        let v: f64 = v.trim().parse().map_err(|_| bad())?;
        (v * 1024.0).round() as i64
    } else {
        t.parse::<i64>().map_err(|_| bad())?
    };
    if mib < i64::from(MIN_CONTAINER_MEMORY_MIB) {
        return Err(Invalid::Client(format!(
            "Invalid 'memory' setting for task: {mib} MiB is below the minimum of {MIN_CONTAINER_MEMORY_MIB} MiB."
        )));
    }
    Ok(mib.to_string())
}

fn check_volumes(volumes: &Option<Vec<super::shapes::Volume>>) -> Result<BTreeSet<String>, Invalid> {
    let mut names = BTreeSet::new();
    for v in volumes.iter().flatten() {
        let name = v.name.clone().unwrap_or_default();
        if !is_ecs_name(&name) {
            return Err(Invalid::Client(format!(
                "Invalid volume name '{name}': use 1 to 255 letters, numbers, hyphens and underscores."
            )));
        }
        if !names.insert(name.clone()) {
            return Err(Invalid::Client(format!("Duplicate volume name '{name}' in the task definition.")));
        }
        if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.as_deref()) {
            if !path.starts_with('/') {
                return Err(Invalid::Client(format!(
                    "Invalid host sourcePath '{path}' for volume '{name}': it must be an absolute path."
                )));
            }
        }
    }
    Ok(names)
}

fn check_container_names(containers: &[ContainerDefinition]) -> Result<BTreeSet<String>, Invalid> {
    let mut names = BTreeSet::new();
    for c in containers {
        let name = c.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(Invalid::Client("Container.name should not be null or empty.".into()));
        }
        if !is_ecs_name(name) {
            return Err(Invalid::Client(format!(
                "Invalid container name '{name}': use 1 to 255 letters, numbers, hyphens and underscores."
            )));
        }
        if !names.insert(name.to_string()) {
            return Err(Invalid::Client(format!("Duplicate container name '{name}' in the task definition.")));
        }
    }
    Ok(names)
}

fn is_valid_image(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 255
        && image.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:./#@".contains(&b))
}

fn check_container(
    c: &ContainerDefinition,
    names: &BTreeSet<String>,
    volumes: &BTreeSet<String>,
    mode: NetworkMode,
    has_task_memory: bool,
) -> Result<(), Invalid> {
    let name = c.name.as_deref().unwrap_or_default();
    let image = c.image.as_deref().unwrap_or_default();
    if image.is_empty() {
        return Err(Invalid::Client(format!("Container.image should not be null or empty (container '{name}').")));
    }
    if !is_valid_image(image) {
        return Err(Invalid::Client(format!(
            "Invalid image '{image}' for container '{name}': up to 255 letters, numbers, hyphens, underscores, colons, periods, slashes, @ and #."
        )));
    }
    if let Some(m) = c.memory {
        if m < MIN_CONTAINER_MEMORY_MIB {
            return Err(Invalid::Client(format!(
                "Invalid 'memory' setting for container '{name}'. The minimum is {MIN_CONTAINER_MEMORY_MIB} MiB."
            )));
        }
    }
    if let Some(r) = c.memory_reservation {
        if r < MIN_CONTAINER_MEMORY_MIB {
            return Err(Invalid::Client(format!(
                "Invalid 'memoryReservation' setting for container '{name}'. The minimum is {MIN_CONTAINER_MEMORY_MIB} MiB."
            )));
        }
        if c.memory.is_some_and(|m| r > m) {
            return Err(Invalid::Client(format!(
                "Invalid 'memoryReservation' setting for container '{name}'. It must not exceed 'memory'."
            )));
        }
    }
    if !has_task_memory && c.memory.is_none() && c.memory_reservation.is_none() {
        return Err(Invalid::Client(format!(
            "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified (or set 'memory' for the whole task)."
        )));
    }
    if c.cpu.is_some_and(|cpu| cpu < 0) {
        return Err(Invalid::Client(format!("Invalid 'cpu' setting for container '{name}': it must not be negative.")));
    }
    for pm in c.port_mappings.iter().flatten() {
        check_port_mapping(name, pm, mode)?;
    }
    if c.links.as_ref().is_some_and(|l| !l.is_empty()) && mode != NetworkMode::Bridge {
        return Err(Invalid::Client(format!(
            "Container '{name}' uses links, which are only supported when networkMode is 'bridge'."
        )));
    }
    for link in c.links.iter().flatten() {
        let target = link.split(':').next().unwrap_or_default();
        if !names.contains(target) || target == name {
            return Err(Invalid::Client(format!(
                "Container '{name}' links to '{target}', which is not another container of this task definition."
            )));
        }
    }
    for dep in c.depends_on.iter().flatten() {
        let target = dep.container_name.as_deref().unwrap_or_default();
        if target == name {
            return Err(Invalid::Client(format!("Container '{name}' cannot depend on itself.")));
        }
        if !names.contains(target) {
            return Err(Invalid::Client(format!(
                "Container '{name}' depends on '{target}', which is not a container of this task definition."
            )));
        }
    }
    for mp in c.mount_points.iter().flatten() {
        let source = mp.source_volume.as_deref().unwrap_or_default();
        if !volumes.contains(source) {
            return Err(Invalid::Client(format!(
                "Invalid 'mountPoints' setting for container '{name}': the source volume '{source}' is not defined in the task definition's volumes."
            )));
        }
        if mp.container_path.as_deref().is_none_or(str::is_empty) {
            return Err(Invalid::Client(format!(
                "Invalid 'mountPoints' setting for container '{name}': containerPath is required."
            )));
        }
    }
    for vf in c.volumes_from.iter().flatten() {
        let source = vf.source_container.as_deref().unwrap_or_default();
        if !names.contains(source) || source == name {
            return Err(Invalid::Client(format!(
                "Invalid 'volumesFrom' setting for container '{name}': '{source}' is not another container of this task definition."
            )));
        }
    }
    if let Some(hc) = &c.health_check {
        check_health_check(name, hc)?;
    }
    Ok(())
}

fn check_port_mapping(name: &str, pm: &PortMapping, mode: NetworkMode) -> Result<(), Invalid> {
    if mode == NetworkMode::None {
        return Err(Invalid::Client(format!(
            "Container '{name}' has port mappings, which are not supported when networkMode is 'none'."
        )));
    }
    match (pm.container_port, pm.container_port_range.as_deref()) {
        (Some(p), None) if (1..=65535).contains(&p) => {}
        (Some(p), None) => {
            return Err(Invalid::Client(format!(
                "Invalid containerPort {p} for container '{name}': ports are 1 to 65535."
            )))
        }
        (None, Some(range)) => {
            parse_port_range(range).ok_or_else(|| {
                Invalid::Client(format!(
                    "Invalid containerPortRange '{range}' for container '{name}': use 'first-last' with 1 <= first < last <= 65535."
                ))
            })?;
            if pm.host_port.is_some() {
                return Err(Invalid::Client(format!(
                    "Container '{name}': hostPort cannot be set together with containerPortRange."
                )));
            }
        }
        (Some(_), Some(_)) => {
            return Err(Invalid::Client(format!(
                "Container '{name}': set either containerPort or containerPortRange in a port mapping, not both."
            )))
        }
        (None, None) => {
            return Err(Invalid::Client(format!(
                "Container '{name}': each port mapping needs a containerPort or a containerPortRange."
            )))
        }
    }
    if let Some(h) = pm.host_port {
        if !(0..=65535).contains(&h) {
            return Err(Invalid::Client(format!("Invalid hostPort {h} for container '{name}': ports are 0 to 65535.")));
        }
        if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) && Some(h) != pm.container_port {
            return Err(Invalid::Client(format!(
                "When networkMode={mode}, the host ports and container ports in port mappings must match (container '{name}')."
            )));
        }
    }
    Ok(())
}

fn parse_port_range(s: &str) -> Option<(i32, i32)> {
    let (a, b) = s.split_once('-')?;
    let (a, b): (i32, i32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (1 <= a && a < b && b <= 65535).then_some((a, b))
}

fn check_health_check(name: &str, hc: &HealthCheck) -> Result<(), Invalid> {
    let command = hc.command.as_deref().unwrap_or_default();
    if command.is_empty() {
        return Err(Invalid::Client(format!("The health check of container '{name}' needs a command.")));
    }
    let bounds = [
        ("interval", hc.interval, 5, 300),
        ("timeout", hc.timeout, 2, 120),
        ("retries", hc.retries, 1, 10),
        ("startPeriod", hc.start_period, 0, 300),
    ];
    for (field, value, lo, hi) in bounds {
        if let Some(v) = value {
            if !(lo..=hi).contains(&v) {
                return Err(Invalid::Client(format!(
                    "Invalid healthCheck {field} {v} for container '{name}': it must be between {lo} and {hi}."
                )));
            }
        }
    }
    Ok(())
}

/// Fills in what ECS always returns for a container even when the user omitted it.
fn fill_container_defaults(c: &mut ContainerDefinition, mode: NetworkMode) {
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    c.system_controls.get_or_insert_with(Vec::new);
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        pm.protocol.get_or_insert(TransportProtocol::Tcp);
        if pm.container_port.is_some() {
            // awsvpc and host tasks use the container port on the host; bridge tasks
            // without a host port get a dynamic one, which ECS shows as 0.
            if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) {
                pm.host_port = pm.container_port;
            } else {
                pm.host_port.get_or_insert(0);
            }
        }
    }
    if let Some(hc) = &mut c.health_check {
        hc.interval.get_or_insert(30);
        hc.timeout.get_or_insert(5);
        hc.retries.get_or_insert(3);
    }
}

fn check_dependency_cycles(containers: &[ContainerDefinition]) -> Result<(), Invalid> {
    let edges: BTreeMap<&str, Vec<&str>> = containers
        .iter()
        .map(|c| {
            let deps = c.depends_on.iter().flatten().filter_map(|d| d.container_name.as_deref()).collect();
            (c.name.as_deref().unwrap_or_default(), deps)
        })
        .collect();
    // Depth-first search with three colours; a grey node reached again closes a cycle.
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        colour: &mut BTreeMap<&'a str, u8>,
    ) -> Option<&'a str> {
        match colour.get(n) {
            Some(1) => return Some(n),
            Some(2) => return None,
            _ => {}
        }
        colour.insert(n, 1);
        for d in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, edges, colour) {
                return Some(c);
            }
        }
        colour.insert(n, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut colour) {
            return Err(Invalid::Client(format!(
                "The dependsOn settings form a cycle through container '{c}'; containers could never start."
            )));
        }
    }
    Ok(())
}

fn check_task_size(containers: &[ContainerDefinition], cpu: Option<i64>, memory: Option<i64>) -> Result<(), Invalid> {
    if let Some(task_cpu) = cpu {
        let sum: i64 = containers.iter().map(|c| i64::from(c.cpu.unwrap_or(0))).sum();
        if sum > task_cpu {
            return Err(Invalid::Client(format!(
                "The containers ask for {sum} CPU units in total, more than the task's cpu of {task_cpu}."
            )));
        }
    }
    if let Some(task_mem) = memory {
        for c in containers {
            let own = c.memory.or(c.memory_reservation).map(i64::from).unwrap_or(0);
            if own > task_mem {
                return Err(Invalid::Client(format!(
                    "Container '{}' asks for {own} MiB, more than the task's memory of {task_mem} MiB.",
                    c.name.as_deref().unwrap_or_default()
                )));
            }
        }
        let reserved: i64 = containers.iter().map(|c| i64::from(c.memory_reservation.or(c.memory).unwrap_or(0))).sum();
        if reserved > task_mem {
            return Err(Invalid::Client(format!(
                "The containers reserve {reserved} MiB in total, more than the task's memory of {task_mem} MiB."
            )));
        }
    }
    Ok(())
}

/// The task sizes Fargate offers: for each CPU value, the memory values (MiB) allowed.
pub fn fargate_memory_options(cpu: i64) -> Option<Vec<i64>> {
    let gib = |from: i64, to: i64, step: i64| (from..=to).step_by(step as usize).map(|g| g * 1024).collect();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => gib(1, 4, 1),
        1024 => gib(2, 8, 1),
        2048 => gib(4, 16, 1),
        4096 => gib(8, 30, 1),
        8192 => gib(16, 60, 4),
        16384 => gib(32, 120, 8),
        _ => return None,
    })
}

fn check_fargate(
    doc: &RegisterTaskDefinitionRequest,
    mode: NetworkMode,
    cpu: Option<i64>,
    memory: Option<i64>,
) -> Result<(), Invalid> {
    if mode != NetworkMode::Awsvpc {
        return Err(Invalid::Client("Fargate only supports network mode 'awsvpc'.".into()));
    }
    let (Some(cpu), Some(memory)) = (cpu, memory) else {
        return Err(Invalid::Client("Fargate requires that 'cpu' and 'memory' be defined at the task level.".into()));
    };
    if !fargate_memory_options(cpu).is_some_and(|opts| opts.contains(&memory)) {
        return Err(Invalid::Client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Fargate task size table for valid combinations."
        )));
    }
    let containers = doc.container_definitions.as_deref().unwrap_or_default();
    if containers.iter().any(|c| c.privileged == Some(true)) {
        return Err(Invalid::Client("Fargate does not support privileged containers.".into()));
    }
    if doc.volumes.iter().flatten().any(|v| v.host.as_ref().is_some_and(|h| h.source_path.is_some())) {
        return Err(Invalid::Client("Fargate does not support host volumes with a sourcePath.".into()));
    }
    if doc.placement_constraints.as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(Invalid::Client("Fargate does not support task placement constraints.".into()));
    }
    if doc.ipc_mode.is_some() {
        return Err(Invalid::Client("Fargate does not support ipcMode.".into()));
    }
    // On Fargate there is no container id to name a stream after, so ECS wants the prefix.
    for c in doc.container_definitions.iter().flatten() {
        let Some(l) = &c.log_configuration else { continue };
        let prefix = l.options.as_ref().and_then(|o| o.get("awslogs-stream-prefix")).filter(|p| !p.is_empty());
        if l.log_driver == Some(LogDriver::Awslogs) && prefix.is_none() {
            return Err(Invalid::Client(
                "Log driver awslogs option 'awslogs-stream-prefix' should not be null or empty.".into(),
            ));
        }
    }
    Ok(())
}

/// The instance attributes a task of this definition needs, named as the ECS agent
/// advertises its capabilities, so that placement can match them later.
fn required_attributes(doc: &RegisterTaskDefinitionRequest) -> Vec<String> {
    let mut out = BTreeSet::new();
    let containers = doc.container_definitions.as_deref().unwrap_or_default();
    if doc.network_mode == Some(NetworkMode::Awsvpc) {
        out.insert("ecs.capability.task-eni".to_string());
    }
    if doc.task_role_arn.is_some() {
        out.insert("com.amazonaws.ecs.capability.task-iam-role".to_string());
    }
    for c in containers {
        if c.health_check.is_some() {
            out.insert("ecs.capability.container-health-check".to_string());
        }
        if c.depends_on.as_ref().is_some_and(|d| !d.is_empty()) {
            out.insert("ecs.capability.container-ordering".to_string());
        }
        if let Some(driver) = c.log_configuration.as_ref().and_then(|l| l.log_driver) {
            out.insert(format!("com.amazonaws.ecs.capability.logging-driver.{driver}"));
        }
        if c.memory_reservation.is_some() {
            out.insert("com.amazonaws.ecs.capability.docker-remote-api.1.21".to_string());
        }
        for s in c.secrets.iter().flatten() {
            let asm = s
                .value_from
                .as_deref()
                .is_some_and(|v| v.starts_with("arn:") && v.split(':').nth(2) == Some("secretsmanager"));
            let store = if asm { "asm" } else { "ssm" };
            out.insert(format!("ecs.capability.secrets.{store}.environment-variables"));
        }
        if c.repository_credentials.is_some() {
            out.insert("ecs.capability.private-registry-authentication.secretsmanager".to_string());
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<(Family, TaskDefinitionSpec), Invalid> {
        TaskDefinitionSpec::parse(serde_json::from_value(v).expect("shape"))
    }

    fn web() -> serde_json::Value {
        json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "simplehttp", "memory": 128,
            "portMappings": [{"containerPort": 8080}]}]})
    }

    #[test]
    fn secrets_need_an_execution_role_and_a_parameter_or_secret() {
        let refused = |v: serde_json::Value| match parse(v) {
            Err(Invalid::Client(m)) => m,
            other => panic!("{other:?}"),
        };
        let mut v = web();
        v["containerDefinitions"][0]["secrets"] = json!([{"name": "DB", "valueFrom": "/web/db"}]);
        assert!(refused(v.clone()).contains("you must also specify a value for 'executionRoleArn'"));
        v["executionRoleArn"] = json!("arn:aws:iam::123456789012:role/ecsTaskExecutionRole");
        let (_, spec) = parse(v.clone()).unwrap();
        assert!(spec.requires_attributes.contains(&"ecs.capability.secrets.ssm.environment-variables".to_string()));
        v["containerDefinitions"][0]["secrets"][0]["valueFrom"] =
            json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf:user::");
        let (_, spec) = parse(v.clone()).unwrap();
        assert!(spec.requires_attributes.contains(&"ecs.capability.secrets.asm.environment-variables".to_string()));
        v["containerDefinitions"][0]["secrets"][0]["valueFrom"] = json!("arn:aws:s3:::bucket/key");
        assert!(refused(v.clone()).contains("invalid valueFrom"));
        let mut v = web();
        v["containerDefinitions"][0]["repositoryCredentials"] =
            json!({"credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:r"});
        assert!(refused(v.clone()).contains("Private repository authentication requires"));
        let mut v = web();
        v["containerDefinitions"][0]["environmentFiles"] = json!([{"value": "arn:aws:s3:::b/k.env", "type": "s3"}]);
        assert!(refused(v).contains("environmentFiles"));
    }

    #[test]
    fn fills_defaults() {
        let (family, spec) = parse(web()).unwrap();
        assert_eq!(family.as_str(), "web");
        let c = &spec.containers()[0];
        assert_eq!((c.cpu, c.essential), (Some(0), Some(true)));
        assert_eq!(c.port_mappings.as_ref().unwrap()[0].protocol, Some(TransportProtocol::Tcp));
        assert_eq!(spec.network_mode(), NetworkMode::Bridge);
        assert_eq!(spec.compatibilities, vec![Compatibility::Ec2, Compatibility::External]);
    }

    #[test]
    fn normalizes_task_size_and_checks_fargate_table() {
        let mut v = web();
        v["networkMode"] = json!("awsvpc");
        v["cpu"] = json!("0.25 vCPU");
        v["memory"] = json!("0.5GB");
        v["requiresCompatibilities"] = json!(["FARGATE"]);
        let (_, spec) = parse(v.clone()).unwrap();
        assert_eq!((spec.doc.cpu.as_deref(), spec.doc.memory.as_deref()), (Some("256"), Some("512")));
        assert!(spec.compatibilities.contains(&Compatibility::Fargate));
        assert_eq!(spec.containers()[0].port_mappings.as_ref().unwrap()[0].host_port, Some(8080));
        let mut logs = v.clone();
        logs["containerDefinitions"][0]["logConfiguration"] =
            json!({"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web"}});
        let err = parse(logs.clone()).unwrap_err().to_string();
        assert!(err.contains("'awslogs-stream-prefix' should not be null or empty"), "{err}");
        logs["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-stream-prefix"] = json!("ecs");
        assert!(parse(logs).is_ok());
        v["memory"] = json!("4096");
        let err = parse(v).unwrap_err().to_string();
        assert!(err.contains("No Fargate configuration exists for given values: 256 CPU, 4096 memory"), "{err}");
    }

    #[test]
    fn rejections() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                json!({"family": "bad name", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}]}),
                "Family",
            ),
            (json!({"family": "f", "containerDefinitions": []}), "at least one container"),
            (json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]}), "memoryReservation"),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}, {"name": "a", "image": "i", "memory": 64}]}),
                "Duplicate container name",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "dependsOn": [{"containerName": "b", "condition": "START"}]}]}),
                "depends on 'b'",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "dependsOn": [{"containerName": "b", "condition": "START"}]}, {"name": "b", "image": "i", "memory": 64, "dependsOn": [{"containerName": "a", "condition": "START"}]}]}),
                "cycle",
            ),
            (
                json!({"family": "f", "networkMode": "awsvpc", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 81}]}]}),
                "must match",
            ),
            (json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 4}]}), "minimum"),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "memoryReservation": 128}]}),
                "memoryReservation",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "essential": false}]}),
                "essential",
            ),
            (json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "", "memory": 64}]}), "image"),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "mountPoints": [{"sourceVolume": "v", "containerPath": "/d"}]}]}),
                "source volume 'v'",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "healthCheck": {"command": ["CMD", "true"], "interval": 1}}]}),
                "interval",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 80}]}, {"name": "b", "image": "i", "memory": 64, "portMappings": [{"containerPort": 81, "hostPort": 80}]}]}),
                "more than once",
            ),
            (
                json!({"family": "f", "cpu": "64", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}]}),
                "between 128 and 196608",
            ),
            (
                json!({"family": "f", "requiresCompatibilities": ["FARGATE"], "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}]}),
                "awsvpc",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "environment": [{"name": "X", "value": "x".repeat(70_000)}]}]}),
                "bytes",
            ),
        ];
        for (doc, needle) in cases {
            let err = parse(doc.clone()).expect_err(&doc.to_string()).to_string();
            assert!(err.contains(needle), "{doc}: {err} lacks {needle}");
        }
    }

    #[test]
    fn missing_required_members_are_named() {
        let err = parse(json!({"family": "f"})).unwrap_err().to_string();
        assert!(err.contains("containerDefinitions is required"), "{err}");
        let err = parse(json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "healthCheck": {}}]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("containerDefinitions[0].healthCheck.command is required"), "{err}");
    }
}
