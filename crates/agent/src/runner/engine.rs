//! The runner's Engine work that takes more than one call: pulling a task's images and
//! putting its volumes in place, setting up an awsvpc subnet's network and pause image,
//! and installing a task's security group rules. A task's loop runs each as a future
//! whose result comes back as a [`Done`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::settings::PullBehavior;
use super::spec::{Awsvpc, VolumeSource};
use crate::docker::{Docker, DockerError, NetworkSetupError, SubnetNetwork};
use crate::pause::PauseImage;
use crate::registry_login::RegistryLogin;
use crate::secrets::Resolved;

/// What the tasks of one runner share: the engine, and what they must not do twice.
#[derive(Clone)]
pub struct Machine {
    pub docker: Docker,
    /// Images this runner has pulled, for `PullBehavior::Once`.
    pub pulled: Arc<Mutex<HashSet<String>>>,
    /// Held while an awsvpc task sets up its subnet's network and the pause image, so that
    /// tasks starting together do not race each other to create them.
    pub awsvpc_setup: Arc<tokio::sync::Mutex<()>>,
}

/// An Engine call (or several) that a task started has completed.
pub enum Done {
    Prepared(Result<Prepared, String>),
    Created(usize, Result<String, DockerError>),
    Started(usize, Result<(), DockerError>),
    Stopped(usize, Result<(), DockerError>),
    Removed(usize, Result<(), DockerError>),
    /// The security group rules are installed in the task's namespace, or why not.
    Firewall(Result<(), String>),
    /// A stopped container's output is shipped (or the wait for it gave up).
    Flushed(usize),
}

/// What a task needs before its containers can be made.
pub struct Prepared {
    /// Each image's digest.
    pub digests: HashMap<String, String>,
    pub secrets: Resolved,
}

/// Pulls images as the pull behaviour says and puts the task's volumes in place. Returns
/// each image's digest, or the reason the task cannot start.
pub async fn prepare(
    docker: &Docker,
    behavior: PullBehavior,
    pulled: &Mutex<HashSet<String>>,
    login: Option<&RegistryLogin>,
    registry: &HashMap<String, (String, String)>,
    images: &[String],
    volumes: &[VolumeSource],
) -> Result<HashMap<String, String>, String> {
    let pull_error = |e: &dyn std::fmt::Display| format!("CannotPullContainerError: {e}");
    let mut digests = HashMap::new();
    for image in images {
        let cached = match docker.image_digest(image).await {
            Ok(_) => true,
            Err(DockerError::NotFound(_)) => false,
            Err(e) => return Err(pull_error(&e)),
        };
        let pulled_before = pulled.lock().map(|p| p.contains(image)).unwrap_or(false);
        let must_pull = match behavior {
            PullBehavior::Default | PullBehavior::Always => true,
            PullBehavior::Once => !(cached && pulled_before),
            PullBehavior::PreferCached => !cached,
        };
        if must_pull {
            // `repositoryCredentials` of the container, else Berth's registry login.
            let credentials = match (registry.get(image), login) {
                (Some(c), _) => Some(c.clone()),
                (None, Some(l)) => l.credentials_for(image).await.map_err(|e| pull_error(&e))?,
                (None, None) => None,
            };
            match docker.pull(image, credentials).await {
                Ok(()) => {
                    if let Ok(mut p) = pulled.lock() {
                        p.insert(image.clone());
                    }
                }
                Err(e) if behavior == PullBehavior::Default && cached => {
                    tracing::warn!(%image, error = %e, "pull failed; using the cached image");
                }
                Err(e) => return Err(pull_error(&e)),
            }
        }
        match docker.image_digest(image).await {
            Ok(d) => digests.insert(image.clone(), d),
            Err(e) => return Err(pull_error(&e)),
        };
    }
    for v in volumes {
        let VolumeSource::Docker { spec, shared, autoprovision } = v else { continue };
        let volume_error = |e: &dyn std::fmt::Display| format!("CannotCreateVolumeError: volume {}: {e}", spec.name);
        if *shared && !*autoprovision {
            match docker.volume_exists(&spec.name).await {
                Ok(true) => continue,
                Ok(false) => return Err(volume_error(&"the shared volume does not exist and autoprovision is off")),
                Err(e) => return Err(volume_error(&e)),
            }
        }
        if let Err(e) = docker.ensure_volume(spec).await {
            return Err(volume_error(&e));
        }
    }
    Ok(digests)
}

/// What an awsvpc task needs before its pause container can be created.
pub struct NetworkSetup {
    lock: Arc<tokio::sync::Mutex<()>>,
    image: PauseImage,
    network: SubnetNetwork,
}

impl NetworkSetup {
    pub fn new(machine: &Machine, awsvpc: &Awsvpc) -> NetworkSetup {
        NetworkSetup {
            lock: machine.awsvpc_setup.clone(),
            image: awsvpc.image.clone(),
            network: awsvpc.subnet_network(),
        }
    }
}

/// Puts the subnet's Docker network and the pause image in place, or says why not.
pub async fn set_up_network(docker: &Docker, setup: &NetworkSetup) -> Result<(), String> {
    let _one_at_a_time = setup.lock.lock().await;
    let name = &setup.network.name;
    docker.ensure_subnet_network(&setup.network).await.map_err(|e| match e {
        NetworkSetupError::Docker(e) => {
            format!("ResourceInitializationError: cannot create the Docker network {name}: {e}")
        }
        e => format!("ResourceInitializationError: {e}"),
    })?;
    docker.ensure_pause_image(&setup.image).await.map_err(|e| {
        format!("ResourceInitializationError: cannot import the pause image {}: {e}", setup.image.reference)
    })
}

/// Installs `ruleset` (`firewall::ruleset`) in the network namespace of the running pause
/// container `pause_id`, or says why not.
pub async fn install_firewall(docker: &Docker, pause_id: &str, ruleset: &str) -> Result<(), String> {
    match docker.pid(pause_id).await {
        Ok(Some(pid)) => crate::firewall::apply(pid, ruleset).await,
        Ok(None) => Err("the pause container does not run".into()),
        Err(e) => Err(format!("cannot inspect the pause container: {e}")),
    }
}
