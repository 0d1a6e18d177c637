//! IAM's pure part: the policy language (documents that can only exist valid), request
//! evaluation as IAM does it within one account, the AWS-managed policies Berth ships, and
//! the size quotas IAM applies to policy text.
//!
//! No user, role or store lives here: the IAM API and the request enforcement (in
//! `control-plane` and `aws-api`) gather the documents that apply to a request and ask
//! [`evaluate`] for a [`Decision`].

pub mod entity;
pub mod managed;
pub mod policy;

pub use policy::{
    evaluate, resource_policy_decision, Decision, MalformedPolicy, PolicyDocument, PolicyKind, PolicyVersion,
    Principal, PrincipalContext, PrincipalKind, RequestContext, ResourcePolicyDecision,
};

// IAM's quotas on policy size, counted in characters excluding whitespace (see
// `size_without_whitespace`). Source: IAM User Guide, "IAM and AWS STS quotas", section
// "IAM and AWS STS character limits".

/// A managed policy document (CreatePolicy, CreatePolicyVersion).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6_144;
/// All inline policies of one user together.
pub const USER_INLINE_POLICIES_MAX_CHARS: usize = 2_048;
/// All inline policies of one role together.
pub const ROLE_INLINE_POLICIES_MAX_CHARS: usize = 10_240;
/// All inline policies of one group together.
pub const GROUP_INLINE_POLICIES_MAX_CHARS: usize = 5_120;
/// A role's trust policy, by default (the quota can be raised to 4,096 on AWS).
pub const ROLE_TRUST_POLICY_MAX_CHARS: usize = 2_048;
/// The longest `PolicyDocument` parameter IAM's API accepts, whitespace included (the
/// `policyDocumentType` length constraint in IAM's API model).
pub const POLICY_DOCUMENT_MAX_LENGTH: usize = 131_072;

/// The size IAM's quotas count: characters, not bytes, whitespace excluded.
pub fn size_without_whitespace(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_characters_without_whitespace() {
        assert_eq!(size_without_whitespace("{ \"a\" :\n\t\"é\" }"), 9);
        assert_eq!(size_without_whitespace(""), 0);
    }
}
