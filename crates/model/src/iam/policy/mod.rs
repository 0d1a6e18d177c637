//! IAM policy documents: parsed once into a form that can only exist valid and that the
//! evaluator matches without parsing again.
//!
//! Layering: `parse` builds [`PolicyDocument`]s from JSON with IAM's error messages;
//! `pattern`, `values` and `condition` are the compiled pieces a statement is made of;
//! `evaluate` decides requests. Nothing here knows a user, a role or a store: callers hand
//! in the documents that apply and a [`RequestContext`] describing the request.

mod condition;
mod evaluate;
mod parse;
mod pattern;
mod values;

#[cfg(test)]
mod tests;

pub use evaluate::{
    evaluate, resource_policy_decision, Decision, Principal, PrincipalContext, PrincipalKind, RequestContext,
    ResourcePolicyDecision,
};

use condition::Condition;
use pattern::{ArnPattern, Pattern};

/// What a policy is attached to; the grammar differs in what a statement must and must not
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// A user's, group's or role's inline policy, or a managed policy: it applies to whoever
    /// it is attached to, so it names no `Principal`, and each statement names `Resource`s.
    Identity,
    /// A role's trust (assume-role) policy: names the `Principal`s that may assume the role
    /// and no `Resource` (the role is the resource).
    Trust,
    /// A resource-based policy (an ECR repository's, a secret's): names `Principal`s;
    /// `Resource` is optional.
    Resource,
}

/// The policy language version a document declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
    /// `2008-10-17`, or no `Version` (IAM's default): `${...}` is literal text.
    V2008_10_17,
}

impl PolicyVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2012_10_17 => "2012-10-17",
            PolicyVersion::V2008_10_17 => "2008-10-17",
        }
    }
}

/// A policy document IAM refuses, with IAM's message (`MalformedPolicyDocument`). The caller
/// fixes the document and sends it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedPolicy(String);

impl MalformedPolicy {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        MalformedPolicy(message.into())
    }

    /// IAM's message for a principal it cannot resolve, e.g. a trust policy naming a role
    /// that does not exist: `kind` is `AWS`, `Service` or `Federated`.
    pub fn invalid_principal(kind: &str, value: &str) -> Self {
        let kind = if kind == "Service" { "SERVICE" } else { kind };
        MalformedPolicy(format!("Invalid principal in policy: \"{kind}\":\"{value}\""))
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A valid policy document, compiled for evaluation, with the text it was given as (IAM
/// hands the text back unchanged).
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    /// Shared: a document narrowed to one action ([`PolicyDocument::for_action`]) keeps it.
    text: std::sync::Arc<str>,
    kind: PolicyKind,
    version: PolicyVersion,
    statements: Vec<Statement>,
    /// Whether a condition reads the resource's tags: only then are they looked up.
    reads_resource_tags: bool,
    /// Whether it may read `aws:CurrentTime` or `aws:EpochTime` (judged from the text, so a
    /// mention anywhere counts): only then does a request carry the time.
    reads_time: bool,
}

impl PartialEq for PolicyDocument {
    /// Two documents are the same policy when their texts are: the compiled form follows.
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.kind == other.kind
    }
}

impl Eq for PolicyDocument {}

impl PolicyDocument {
    /// Parses and checks `text` as IAM does for a policy of `kind`.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDocument, MalformedPolicy> {
        let (version, statements) = parse::parse(text, kind, parse::Checks::Iam)?;
        Ok(PolicyDocument::new(text, kind, version, statements))
    }

    fn new(text: &str, kind: PolicyKind, version: PolicyVersion, statements: Vec<Statement>) -> PolicyDocument {
        let reads_resource_tags = reads_resource_tags(&statements);
        let lower = text.to_ascii_lowercase();
        let reads_time = lower.contains("aws:currenttime") || lower.contains("aws:epochtime");
        PolicyDocument { text: text.into(), kind, version, statements, reads_resource_tags, reads_time }
    }

    /// The statements that can apply to `action`, as a document of their own with the same
    /// text, kind and version; `None` when no statement can. Whether a statement's
    /// `Action`/`NotAction` covers an action depends on the action alone (actions hold no
    /// policy variables), so whoever decides many requests of one principal narrows its
    /// policies once per action instead of matching every statement's actions each time.
    /// Evaluating the narrowed documents decides exactly as the whole ones do.
    pub fn for_action(&self, action: &str) -> Option<PolicyDocument> {
        let statements: Vec<Statement> = self.statements.iter().filter(|s| s.covers_action(action)).cloned().collect();
        if statements.is_empty() {
            return None;
        }
        let reads_resource_tags = reads_resource_tags(&statements);
        Some(PolicyDocument {
            text: self.text.clone(),
            kind: self.kind,
            version: self.version,
            statements,
            reads_resource_tags,
            reads_time: self.reads_time,
        })
    }

    /// Whether a condition reads `aws:ResourceTag/...` (or a service's `ResourceTag`): the
    /// caller then adds the resource's tags to the request.
    pub fn reads_resource_tags(&self) -> bool {
        self.reads_resource_tags
    }

    /// Whether a request evaluated against it needs `aws:CurrentTime` and `aws:EpochTime`.
    pub fn reads_time(&self) -> bool {
        self.reads_time
    }

    /// Compiles a document that a service has already checked with its own rules (ECR's
    /// repository and registry policies), checking only its JSON shape: what IAM alone would
    /// refuse (an unresolvable principal, a date that is not one) matches nothing.
    pub(crate) fn compile_checked_by_service(text: &str, kind: PolicyKind) -> Result<PolicyDocument, MalformedPolicy> {
        let (version, statements) = parse::parse(text, kind, parse::Checks::ShapeOnly)?;
        Ok(PolicyDocument::new(text, kind, version, statements))
    }

    /// The document as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// IAM refuses a managed policy (CreatePolicy, CreatePolicyVersion) whose `Version` is
    /// not 2012-10-17, while inline and trust policies may omit it. Call this for those two
    /// operations after [`PolicyDocument::parse`].
    pub fn check_managed_version(&self) -> Result<(), MalformedPolicy> {
        match self.version {
            PolicyVersion::V2012_10_17 => Ok(()),
            PolicyVersion::V2008_10_17 => {
                Err(MalformedPolicy::new("Policy document must be version 2012-10-17 or greater."))
            }
        }
    }

    /// The `AWS` principals the document names (account ids and ARNs, as written), for a
    /// caller that checks they exist as IAM does for trust policies.
    pub fn aws_principals(&self) -> impl Iterator<Item = &str> {
        self.statements.iter().flat_map(|s| s.principal.iter().flat_map(|p| p.written.iter().map(|w| &**w)))
    }
}

/// Whether a condition of `statements` reads `aws:ResourceTag/...` (or a service's).
fn reads_resource_tags(statements: &[Statement]) -> bool {
    statements.iter().flat_map(|s| &s.conditions).any(|c| c.key().contains(":resourcetag/"))
}

/// One compiled statement.
#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    /// `None` in identity policies, which apply to whoever holds them.
    principal: Option<PrincipalSet>,
    actions: Negatable<Pattern>,
    /// `None` when the statement names no resource (trust and some resource policies): it
    /// covers the resource it is attached to.
    resources: Option<Negatable<ArnPattern>>,
    conditions: Vec<Condition>,
}

/// `Action`/`NotAction`, `Resource`/`NotResource`: a list, and whether it says "all but".
#[derive(Debug, Clone)]
struct Negatable<T> {
    negated: bool,
    items: Vec<T>,
}

/// `Principal`/`NotPrincipal`.
#[derive(Debug, Clone)]
struct PrincipalSet {
    negated: bool,
    items: Vec<PrincipalPattern>,
    /// The `AWS` values as written, for [`PolicyDocument::aws_principals`].
    written: Vec<Box<str>>,
}

/// One principal a policy names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalPattern {
    /// `"Principal": "*"`: everyone, services too.
    Everyone,
    /// `{"AWS": "*"}`: every AWS principal (accounts, users, roles, anonymous).
    AnyAws,
    /// An account id or its root ARN: every principal of the account (delegation).
    Account(Box<str>),
    User(Box<str>),
    Role(Box<str>),
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    Session(Box<str>),
    /// A service principal such as `ecs-tasks.amazonaws.com`, lower-cased.
    Service(Box<str>),
    /// Federated and canonical-user principals and other ARNs: valid, but no Berth caller
    /// is one.
    Never,
}
