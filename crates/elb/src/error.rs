//! The faults of the ELBv2 API, each named after the AWS error code a client sees.

/// Why an ELBv2 request was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ElbError {
    pub fault: Fault,
    pub message: String,
}

/// The kinds of refusal ELBv2 distinguishes; [`Fault::code`] is the wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A member is malformed or out of range (AWS's generic `ValidationError`).
    Validation,
    LoadBalancerNotFound,
    TargetGroupNotFound,
    ListenerNotFound,
    RuleNotFound,
    SubnetNotFound,
    DuplicateLoadBalancerName,
    DuplicateTargetGroupName,
    DuplicateListener,
    DuplicateTagKeys,
    PriorityInUse,
    TooManyLoadBalancers,
    TooManyTargetGroups,
    TooManyListeners,
    TooManyRules,
    TooManyTargets,
    TooManyActions,
    TooManyTags,
    TooManyRegistrationsForTargetId,
    TooManyUniqueTargetGroupsPerLoadBalancer,
    TargetGroupAssociationLimit,
    InvalidTarget,
    InvalidConfigurationRequest,
    InvalidLoadBalancerAction,
    InvalidSubnet,
    InvalidSecurityGroup,
    InvalidScheme,
    IncompatibleProtocols,
    UnsupportedProtocol,
    ResourceInUse,
    OperationNotPermitted,
    CertificateNotFound,
}

impl Fault {
    pub fn code(self) -> &'static str {
        match self {
            Fault::Validation => "ValidationError",
            Fault::LoadBalancerNotFound => "LoadBalancerNotFound",
            Fault::TargetGroupNotFound => "TargetGroupNotFound",
            Fault::ListenerNotFound => "ListenerNotFound",
            Fault::RuleNotFound => "RuleNotFound",
            Fault::SubnetNotFound => "SubnetNotFound",
            Fault::DuplicateLoadBalancerName => "DuplicateLoadBalancerName",
            Fault::DuplicateTargetGroupName => "DuplicateTargetGroupName",
            Fault::DuplicateListener => "DuplicateListener",
            Fault::DuplicateTagKeys => "DuplicateTagKeys",
            Fault::PriorityInUse => "PriorityInUse",
            Fault::TooManyLoadBalancers => "TooManyLoadBalancers",
            Fault::TooManyTargetGroups => "TooManyTargetGroups",
            Fault::TooManyListeners => "TooManyListeners",
            Fault::TooManyRules => "TooManyRules",
            Fault::TooManyTargets => "TooManyTargets",
            Fault::TooManyActions => "TooManyActions",
            Fault::TooManyTags => "TooManyTags",
            Fault::TooManyRegistrationsForTargetId => "TooManyRegistrationsForTargetId",
            Fault::TooManyUniqueTargetGroupsPerLoadBalancer => "TooManyUniqueTargetGroupsPerLoadBalancer",
            Fault::TargetGroupAssociationLimit => "TargetGroupAssociationLimit",
            Fault::InvalidTarget => "InvalidTarget",
            Fault::InvalidConfigurationRequest => "InvalidConfigurationRequest",
            Fault::InvalidLoadBalancerAction => "InvalidLoadBalancerAction",
            Fault::InvalidSubnet => "InvalidSubnet",
            Fault::InvalidSecurityGroup => "InvalidSecurityGroup",
            Fault::InvalidScheme => "InvalidScheme",
            Fault::IncompatibleProtocols => "IncompatibleProtocols",
            Fault::UnsupportedProtocol => "UnsupportedProtocol",
            Fault::ResourceInUse => "ResourceInUse",
            Fault::OperationNotPermitted => "OperationNotPermitted",
            Fault::CertificateNotFound => "CertificateNotFound",
        }
    }
}

impl ElbError {
    pub fn new(fault: Fault, message: impl Into<String>) -> Self {
        ElbError { fault, message: message.into() }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(Fault::Validation, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Fault::InvalidConfigurationRequest, message)
    }
    /// A value outside the member's enum, refused as AWS's model validator words it.
    pub fn not_in_enum(member: &str, value: &str, allowed: &[&str]) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ))
    }
}

/// The values of ELBv2's enums that Berth reads, as the API model lists them.
pub mod enums {
    pub const PROTOCOL: &[&str] = &["HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE", "QUIC", "TCP_QUIC"];
    pub const SCHEME: &[&str] = &["internet-facing", "internal"];
    pub const LOAD_BALANCER_TYPE: &[&str] = &["application", "network", "gateway"];
    pub const IP_ADDRESS_TYPE: &[&str] = &["ipv4", "dualstack", "dualstack-without-public-ipv4"];
    pub const TARGET_GROUP_IP_ADDRESS_TYPE: &[&str] = &["ipv4", "ipv6"];
    pub const TARGET_TYPE: &[&str] = &["instance", "ip", "lambda", "alb"];
    pub const ACTION_TYPE: &[&str] =
        &["forward", "authenticate-oidc", "authenticate-cognito", "redirect", "fixed-response", "jwt-validation"];
    pub const REDIRECT_STATUS_CODE: &[&str] = &["HTTP_301", "HTTP_302"];
}

impl From<model::Invalid> for ElbError {
    fn from(e: model::Invalid) -> Self {
        ElbError::validation(e.to_string())
    }
}
