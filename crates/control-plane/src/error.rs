//! The control plane's error, named by how the caller reacts.

use model::Invalid;

/// Why an operation did not happen. Nothing was changed in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The caller's input is wrong; it must change the request.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The named thing does not exist (in the caller's account and region).
    #[error("{message}")]
    NotFound { kind: NotFoundKind, message: String },
    /// The request conflicts with the current state, e.g. deleting a cluster still in use.
    #[error("{message}")]
    Conflict { kind: ConflictKind, message: String },
    /// The caller is authenticated but not allowed this action on another account's
    /// resource (ECR: no repository policy grants it).
    #[error("{0}")]
    Denied(String),
    /// What the caller sent breaks a rule on content (a manifest's digest, a layer part's
    /// range or size, a layer's digest); it must send other content.
    #[error("{message}")]
    Rejected { kind: RejectedKind, message: String },
    /// A limit on the number of things would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// The request asks for something this version of Berth does not do yet.
    #[error("{0}")]
    Unsupported(String),
    /// An ELBv2 request was refused; the fault names the AWS error code.
    #[error(transparent)]
    Elb(#[from] elb::ElbError),
    /// An EC2 request was refused; the error names the EC2 error code.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// An IAM or STS request was refused; the error names IAM's code.
    #[error(transparent)]
    Iam(#[from] IamError),
    /// An SSM request was refused; the error names SSM's code.
    #[error(transparent)]
    Ssm(#[from] model::ssm::SsmError),
    /// A Secrets Manager request was refused; the error names Secrets Manager's code.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// An EventBridge request was refused; the error names EventBridge's code.
    #[error(transparent)]
    Events(#[from] model::events::EventsError),
    /// This replica follows another and writes nothing: the request must go to the
    /// leading replica.
    #[error("this replica follows the leading one and does not write")]
    NotLeader,
    /// Something failed inside Berth; the request may be retried. The detail is for logs.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An EC2 error: its code (`InvalidGroup.NotFound`, ...) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Ec2Error {
    pub code: &'static str,
    pub message: String,
}

/// An IAM (or STS) error: its code (`NoSuchEntity`, `EntityAlreadyExists`,
/// `DeleteConflict`, `MalformedPolicyDocument`, `LimitExceeded`, `InvalidInput`, ...) and
/// message, as IAM words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IamError {
    pub code: &'static str,
    pub message: String,
}

impl IamError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        IamError { code, message: message.into() }
    }
}

/// A Secrets Manager error that carries its AWS code (`InvalidRequestException`,
/// `ResourceExistsException`, `MalformedPolicyDocumentException`, `DecryptionFailure`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SecretsError {
    pub code: &'static str,
    pub message: String,
}

/// What kind of thing was not found; each maps to its own AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundKind {
    Cluster,
    Resource,
    Target,
    TaskDefinition,
    Service,
    Repository,
    Image,
    RepositoryPolicy,
    RegistryPolicy,
    LifecyclePolicy,
    LifecyclePolicyPreview,
    /// An image that was never scanned (ECR's `ScanNotFoundException`).
    Scan,
    /// Layers a manifest references, or a layer asked for, that the repository does not hold.
    Layers,
    /// Images an image index lists that the repository does not hold.
    ReferencedImages,
    /// A layer upload that was completed, discarded, or never started.
    Upload,
}

/// What kind of conflict; each maps to its own AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    ClusterHasInstances,
    ClusterHasServices,
    ClusterHasTasks,
    ClusterHasCapacityProviders,
    ResourceInUse,
    /// The service is DRAINING or INACTIVE (ECS's `ServiceNotActiveException`).
    ServiceNotActive,
    AttributeLimit,
    RepositoryExists,
    RepositoryNotEmpty,
    LifecyclePolicyPreviewInProgress,
    /// The image (with the tag asked for) is already in the repository.
    ImageExists,
    /// An immutable tag already names another image.
    ImageTagImmutable,
    /// The layer is already in the repository.
    LayerExists,
    /// The layer is in the repository but no image uses it, so it is not handed out.
    LayerNotInImage,
    /// The layer upload holds no data yet.
    EmptyUpload,
    /// A CloudWatch Logs group or stream of that name exists.
    ResourceExists,
}

/// What kind of content was rejected; each maps to its own AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectedKind {
    /// A manifest's content does not have the digest the caller named.
    ImageDigestMismatch,
    /// A layer part's range or length is wrong.
    LayerPart,
    /// A layer part other than the last was too small.
    LayerPartTooSmall,
    /// An uploaded layer's content does not have the digest the caller named.
    LayerDigestMismatch,
}

impl Error {
    pub fn cluster_not_found() -> Self {
        Error::NotFound { kind: NotFoundKind::Cluster, message: "Cluster not found.".into() }
    }
    pub fn client(message: impl Into<String>) -> Self {
        Error::Invalid(Invalid::Client(message.into()))
    }
    pub fn parameter(message: impl Into<String>) -> Self {
        Error::Invalid(Invalid::Parameter(message.into()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
