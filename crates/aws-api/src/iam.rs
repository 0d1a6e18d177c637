//! IAM (query protocol, version 2010-05-08): decodes, calls `cp.iam()`, encodes.
//!
//! IAM hands policy documents back URL-encoded (RFC 3986), as AWS does; the aws CLI
//! decodes them, SDK users call a URL decoder.

use axum::response::Response;
use std::collections::BTreeMap;

use control_plane::iam::details::{AuthorizationDetails, EntityType};
use control_plane::iam::{self as cp_iam, AttachedPolicy, Holder, PolicyScope, PolicyView, VersionView};
use control_plane::state::iam::{Doc, Group, Identity, Role, User, UserKey};
use control_plane::{Caller, Principal};
use model::iam::entity::{IamName, IamPath, KeyStatus, MAX_GROUP_NAME, MAX_POLICY_NAME, MAX_USER_OR_ROLE_NAME};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::ApiError;
use crate::query::{timestamp, wrapped_ok, Params, Service, Xml};
use crate::Api;

/// Everything but RFC 3986's unreserved characters.
const DOCUMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// IAM actions Berth knows but does not serve yet.
const KNOWN: &[&str] = &[
    "CreateInstanceProfile",
    "AddRoleToInstanceProfile",
    "ListInstanceProfiles",
    "CreateServiceLinkedRole",
    "PutUserPermissionsBoundary",
    "PutRolePermissionsBoundary",
    "CreateLoginProfile",
    "SimulatePrincipalPolicy",
    "GetAccessKeyLastUsed",
    "ListEntitiesForPolicy",
];

fn doc(text: &str) -> String {
    utf8_percent_encode(text, DOCUMENT).to_string()
}

fn name(params: &Params, member: &str, max: usize) -> Result<IamName, ApiError> {
    let value = params.required(member)?;
    Ok(IamName::parse_member(&lower_first(member), &value, max)?)
}

/// IAM's validation messages name members in lower camel case (`userName`).
fn lower_first(member: &str) -> String {
    let mut c = member.chars();
    c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
}

fn path(params: &Params, member: &str) -> Result<Option<IamPath>, ApiError> {
    params.get(member).map(|p| IamPath::parse_member(&lower_first(member), p)).transpose().map_err(Into::into)
}

fn tags(params: &Params, member: &str) -> Result<Vec<(String, String)>, ApiError> {
    params
        .structs(member)?
        .into_iter()
        .map(|t| Ok((t.required("Key")?, t.string("Value").unwrap_or_default())))
        .collect()
}

fn page(params: &Params) -> Result<control_plane::Page, ApiError> {
    Ok(cp_iam::page(params.int("MaxItems")?, params.get("Marker"))?)
}

fn paging(x: &mut Xml, marker: Option<String>) {
    x.text("IsTruncated", if marker.is_some() { "true" } else { "false" });
    x.opt("Marker", marker);
}

fn write_tags(x: &mut Xml, tags: &[(String, String)]) {
    if tags.is_empty() {
        return;
    }
    x.list("Tags", "member", tags, |x, (k, v)| {
        x.text("Key", k);
        x.text("Value", v);
    });
}

fn write_user(x: &mut Xml, u: &User) {
    x.text("Path", u.path.as_str());
    x.text("UserName", u.name.as_str());
    x.text("UserId", &u.id);
    x.text("Arn", model::iam::entity::entity_arn(&u.account, model::iam::entity::EntityKind::User, &u.path, &u.name));
    x.text("CreateDate", timestamp(u.created));
    write_tags(x, &u.tags);
}

fn write_group(x: &mut Xml, g: &Group) {
    x.text("Path", g.path.as_str());
    x.text("GroupName", g.name.as_str());
    x.text("GroupId", &g.id);
    x.text("Arn", model::iam::entity::entity_arn(&g.account, model::iam::entity::EntityKind::Group, &g.path, &g.name));
    x.text("CreateDate", timestamp(g.created));
}

fn write_role(x: &mut Xml, r: &Role, with_document: bool) {
    x.text("Path", r.path.as_str());
    x.text("RoleName", r.name.as_str());
    x.text("RoleId", &r.id);
    x.text("Arn", model::iam::entity::entity_arn(&r.account, model::iam::entity::EntityKind::Role, &r.path, &r.name));
    x.text("CreateDate", timestamp(r.created));
    if with_document {
        x.text("AssumeRolePolicyDocument", doc(r.trust.text()));
    }
    x.opt("Description", r.description.as_deref());
    x.text("MaxSessionDuration", r.max_session_duration.to_string());
    write_tags(x, &r.tags);
}

fn write_policy(x: &mut Xml, p: &PolicyView) {
    x.text("PolicyName", &p.name);
    x.text("PolicyId", &p.id);
    x.text("Arn", &p.arn);
    x.text("Path", &p.path);
    x.text("DefaultVersionId", &p.default_version);
    x.text("AttachmentCount", p.attachment_count.to_string());
    x.text("PermissionsBoundaryUsageCount", "0");
    x.text("IsAttachable", "true");
    x.opt("Description", p.description.as_deref());
    x.text("CreateDate", timestamp(p.created));
    x.text("UpdateDate", timestamp(p.updated));
    write_tags(x, &p.tags);
}

fn write_version(x: &mut Xml, v: &VersionView) {
    x.text("Document", doc(&v.document));
    x.text("VersionId", &v.id);
    x.text("IsDefaultVersion", if v.is_default { "true" } else { "false" });
    x.text("CreateDate", timestamp(v.created));
}

fn write_inline(x: &mut Xml, tag: &str, inline: &BTreeMap<IamName, Doc<Identity>>) {
    x.list(tag, "member", inline.iter(), |x, (name, d)| {
        x.text("PolicyName", name.as_str());
        x.text("PolicyDocument", doc(d.text()));
    });
}

fn write_attached(x: &mut Xml, attached: &[AttachedPolicy]) {
    x.list("AttachedManagedPolicies", "member", attached, |x, a| {
        x.text("PolicyName", &a.name);
        x.text("PolicyArn", &a.arn);
    });
}

/// `GetAccountAuthorizationDetails`' result: its four lists, each written even when empty.
fn write_details(x: &mut Xml, d: &AuthorizationDetails, marker: Option<String>) {
    x.list("UserDetailList", "member", &d.users, |x, u| {
        write_user(x, &u.user);
        write_inline(x, "UserPolicyList", &u.user.inline);
        x.list("GroupList", "member", &u.groups, |x, g| {
            x.out_text(g);
        });
        write_attached(x, &u.attached);
    });
    x.list("GroupDetailList", "member", &d.groups, |x, g| {
        write_group(x, &g.group);
        write_inline(x, "GroupPolicyList", &g.group.inline);
        write_attached(x, &g.attached);
    });
    x.list("RoleDetailList", "member", &d.roles, |x, r| {
        write_role(x, &r.role, true);
        x.elem("InstanceProfileList", |_| {});
        write_inline(x, "RolePolicyList", &r.role.inline);
        write_attached(x, &r.attached);
    });
    x.list("Policies", "member", &d.policies, |x, p| {
        write_policy(x, &p.policy);
        x.list("PolicyVersionList", "member", &p.versions, write_version);
    });
    paging(x, marker);
}

fn write_key_metadata(x: &mut Xml, user: &str, k: &UserKey) {
    x.text("UserName", user);
    x.text("AccessKeyId", &k.id);
    x.text("Status", k.status.as_str());
    x.text("CreateDate", timestamp(k.created));
}

/// The user an operation with an optional `UserName` is about: the named one, or the
/// caller's own (IAM's rule for the access key operations and `GetUser`).
fn user_or_caller(caller: &Caller, params: &Params) -> Result<Option<String>, ApiError> {
    if let Some(n) = params.get("UserName") {
        IamName::parse_member("userName", n, 128)?;
        return Ok(Some(n.to_string()));
    }
    match &caller.principal {
        Principal::User { name, .. } => Ok(Some(name.to_string())),
        Principal::Root => Ok(None),
        Principal::Role { .. } => Err(ApiError::bad_request(
            "ValidationError",
            "Must specify userName when calling with non-User credentials",
        )),
    }
}

fn root_keys_unsupported() -> ApiError {
    ApiError::bad_request(
        "UnsupportedFeatureException",
        "The account root's access keys are managed with `berth account`; name an IAM user with UserName.",
    )
}

pub(crate) async fn dispatch(
    api: &Api,
    caller: &Caller,
    action: &str,
    p: &Params,
    request_id: &str,
) -> Result<Response, ApiError> {
    let iam = api.control.iam();
    let account = &caller.scope.account;
    let ok = |f: &mut dyn FnMut(&mut Xml)| wrapped_ok(Service::Iam, action, request_id, |x| f(x));
    let done = || wrapped_ok(Service::Iam, action, request_id, |_| {});
    // The holder of the policy operations: `PutUserPolicy`, `PutGroupPolicy`, ...
    let holder = || match action {
        a if a.contains("Group") => Holder::Group,
        a if a.contains("User") => Holder::User,
        _ => Holder::Role,
    };
    let holder_member = || match holder() {
        Holder::Group => "GroupName",
        Holder::User => "UserName",
        Holder::Role => "RoleName",
    };
    match action {
        "CreateUser" => {
            let u = iam.create_user(account, name(p, "UserName", MAX_USER_OR_ROLE_NAME)?, path(p, "Path")?, tags(p, "Tags")?).await?;
            Ok(ok(&mut |x| {
                x.elem("User", |x| write_user(x, &u));
            }))
        }
        "GetUser" => match user_or_caller(caller, p)? {
            Some(n) => {
                let u = iam.get_user(account, &n)?;
                Ok(ok(&mut |x| {
                    x.elem("User", |x| write_user(x, &u));
                }))
            }
            None => Ok(ok(&mut |x| {
                x.elem("User", |x| {
                    x.text("UserId", account.as_str());
                    x.text("Arn", caller.principal_arn());
                });
            })),
        },
        "ListUsers" => {
            let (users, marker) = iam.list_users(account, p.get("PathPrefix"), &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("Users", "member", &users, |x, u| write_user(x, u));
                paging(x, marker.clone());
            }))
        }
        "UpdateUser" => {
            let new_name = p.get("NewUserName").map(|n| IamName::parse_member("newUserName", n, MAX_USER_OR_ROLE_NAME)).transpose()?;
            iam.update_user(account, p.required("UserName")?, new_name, path(p, "NewPath")?).await?;
            Ok(done())
        }
        "DeleteUser" => {
            iam.delete_user(account, p.required("UserName")?).await?;
            Ok(done())
        }
        "TagUser" => {
            iam.tag_user(account, p.required("UserName")?, tags(p, "Tags")?).await?;
            Ok(done())
        }
        "UntagUser" => {
            iam.untag_user(account, p.required("UserName")?, p.list("TagKeys")?).await?;
            Ok(done())
        }
        "ListUserTags" => {
            let u = iam.get_user(account, &p.required("UserName")?)?;
            Ok(ok(&mut |x| {
                x.list("Tags", "member", &u.tags, |x, (k, v)| {
                    x.text("Key", k);
                    x.text("Value", v);
                });
                paging(x, None);
            }))
        }
        "CreateGroup" => {
            let g = iam.create_group(account, name(p, "GroupName", MAX_GROUP_NAME)?, path(p, "Path")?).await?;
            Ok(ok(&mut |x| {
                x.elem("Group", |x| write_group(x, &g));
            }))
        }
        "GetGroup" => {
            let (g, members) = iam.get_group(account, &p.required("GroupName")?, &page(p)?)?;
            Ok(ok(&mut |x| {
                x.elem("Group", |x| write_group(x, &g));
                x.list("Users", "member", &members.users, |x, u| write_user(x, u));
                paging(x, members.marker.clone());
            }))
        }
        "ListGroups" => {
            let (groups, marker) = iam.list_groups(account, p.get("PathPrefix"), &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("Groups", "member", &groups, |x, g| write_group(x, g));
                paging(x, marker.clone());
            }))
        }
        "ListGroupsForUser" => {
            let (groups, marker) = iam.list_groups_for_user(account, &p.required("UserName")?, &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("Groups", "member", &groups, |x, g| write_group(x, g));
                paging(x, marker.clone());
            }))
        }
        "UpdateGroup" => {
            let new_name = p.get("NewGroupName").map(|n| IamName::parse_member("newGroupName", n, MAX_GROUP_NAME)).transpose()?;
            iam.update_group(account, p.required("GroupName")?, new_name, path(p, "NewPath")?).await?;
            Ok(done())
        }
        "DeleteGroup" => {
            iam.delete_group(account, p.required("GroupName")?).await?;
            Ok(done())
        }
        "AddUserToGroup" | "RemoveUserFromGroup" => {
            let add = action == "AddUserToGroup";
            iam.set_membership(account, p.required("GroupName")?, p.required("UserName")?, add).await?;
            Ok(done())
        }
        "CreateAccessKey" => {
            let Some(user) = user_or_caller(caller, p)? else {
                let key = api.control.credentials.create_key(account)?;
                return Ok(ok(&mut |x| {
                    x.elem("AccessKey", |x| {
                        x.text("AccessKeyId", &key.id);
                        x.text("Status", "Active");
                        x.text("SecretAccessKey", &key.secret);
                        x.text("CreateDate", timestamp(key.created_at));
                    });
                }));
            };
            let (u, key, secret) = iam.create_access_key(account, user).await?;
            Ok(ok(&mut |x| {
                x.elem("AccessKey", |x| {
                    x.text("UserName", u.name.as_str());
                    x.text("AccessKeyId", &key.id);
                    x.text("Status", key.status.as_str());
                    x.text("SecretAccessKey", &secret);
                    x.text("CreateDate", timestamp(key.created));
                });
            }))
        }
        "ListAccessKeys" => {
            let Some(user) = user_or_caller(caller, p)? else {
                let keys: Vec<_> = api
                    .control
                    .credentials
                    .list()?
                    .into_iter()
                    .filter(|(a, _)| &a.id == account)
                    .flat_map(|(_, keys)| keys)
                    .collect();
                return Ok(ok(&mut |x| {
                    x.list("AccessKeyMetadata", "member", &keys, |x, k| {
                        x.text("AccessKeyId", &k.id);
                        x.text("Status", "Active");
                        x.text("CreateDate", timestamp(k.created_at));
                    });
                    paging(x, None);
                }));
            };
            let (u, keys) = iam.list_access_keys(account, &user)?;
            Ok(ok(&mut |x| {
                x.list("AccessKeyMetadata", "member", &keys, |x, k| write_key_metadata(x, u.name.as_str(), k));
                paging(x, None);
            }))
        }
        "UpdateAccessKey" => {
            let user = user_or_caller(caller, p)?.ok_or_else(root_keys_unsupported)?;
            let status = KeyStatus::parse(&p.required("Status")?)?;
            iam.update_access_key(account, user, p.required("AccessKeyId")?, status).await?;
            Ok(done())
        }
        "DeleteAccessKey" => {
            let user = user_or_caller(caller, p)?.ok_or_else(root_keys_unsupported)?;
            iam.delete_access_key(account, user, p.required("AccessKeyId")?).await?;
            Ok(done())
        }
        "CreateRole" => {
            let new = cp_iam::NewRole {
                name: name(p, "RoleName", MAX_USER_OR_ROLE_NAME)?,
                path: path(p, "Path")?,
                trust: p.required("AssumeRolePolicyDocument")?,
                description: p.string("Description"),
                max_session_duration: p.int("MaxSessionDuration")?,
                tags: tags(p, "Tags")?,
            };
            let r = iam.create_role(account, new).await?;
            Ok(ok(&mut |x| {
                x.elem("Role", |x| write_role(x, &r, true));
            }))
        }
        "GetRole" => {
            let r = iam.get_role(account, &p.required("RoleName")?)?;
            Ok(ok(&mut |x| {
                x.elem("Role", |x| write_role(x, &r, true));
            }))
        }
        "ListRoles" => {
            let (roles, marker) = iam.list_roles(account, p.get("PathPrefix"), &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("Roles", "member", &roles, |x, r| write_role(x, r, true));
                paging(x, marker.clone());
            }))
        }
        "DeleteRole" => {
            iam.delete_role(account, p.required("RoleName")?).await?;
            Ok(done())
        }
        "UpdateAssumeRolePolicy" => {
            iam.update_assume_role_policy(account, p.required("RoleName")?, p.required("PolicyDocument")?).await?;
            Ok(done())
        }
        "UpdateRole" | "UpdateRoleDescription" => {
            let r = p.required("RoleName")?;
            iam.update_role(account, r.clone(), p.string("Description"), p.int("MaxSessionDuration")?).await?;
            if action == "UpdateRoleDescription" {
                let role = iam.get_role(account, &r)?;
                return Ok(ok(&mut |x| {
                    x.elem("Role", |x| write_role(x, &role, true));
                }));
            }
            Ok(done())
        }
        "TagRole" => {
            iam.tag_role(account, p.required("RoleName")?, tags(p, "Tags")?).await?;
            Ok(done())
        }
        "UntagRole" => {
            iam.untag_role(account, p.required("RoleName")?, p.list("TagKeys")?).await?;
            Ok(done())
        }
        "ListRoleTags" => {
            let r = iam.get_role(account, &p.required("RoleName")?)?;
            Ok(ok(&mut |x| {
                x.list("Tags", "member", &r.tags, |x, (k, v)| {
                    x.text("Key", k);
                    x.text("Value", v);
                });
                paging(x, None);
            }))
        }
        "PutUserPolicy" | "PutRolePolicy" | "PutGroupPolicy" => {
            let policy = name(p, "PolicyName", MAX_POLICY_NAME)?;
            iam.put_inline_policy(account, holder(), p.required(holder_member())?, policy, p.required("PolicyDocument")?)
                .await?;
            Ok(done())
        }
        "GetUserPolicy" | "GetRolePolicy" | "GetGroupPolicy" => {
            let policy = name(p, "PolicyName", MAX_POLICY_NAME)?;
            let (holder_name, text) = iam.get_inline_policy(account, holder(), &p.required(holder_member())?, &policy)?;
            Ok(ok(&mut |x| {
                x.text(holder_member(), &holder_name);
                x.text("PolicyName", policy.as_str());
                x.text("PolicyDocument", doc(&text));
            }))
        }
        "ListUserPolicies" | "ListRolePolicies" | "ListGroupPolicies" => {
            let (names, marker) = iam.list_inline_policies(account, holder(), &p.required(holder_member())?, &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("PolicyNames", "member", &names, |x, n| {
                    x.out_text(n);
                });
                paging(x, marker.clone());
            }))
        }
        "DeleteUserPolicy" | "DeleteRolePolicy" | "DeleteGroupPolicy" => {
            let policy = name(p, "PolicyName", MAX_POLICY_NAME)?;
            iam.delete_inline_policy(account, holder(), p.required(holder_member())?, policy).await?;
            Ok(done())
        }
        "CreatePolicy" => {
            let policy = iam
                .create_policy(
                    account,
                    name(p, "PolicyName", MAX_POLICY_NAME)?,
                    path(p, "Path")?,
                    p.required("PolicyDocument")?,
                    p.string("Description"),
                    tags(p, "Tags")?,
                )
                .await?;
            Ok(ok(&mut |x| {
                x.elem("Policy", |x| write_policy(x, &policy));
            }))
        }
        "GetPolicy" => {
            let policy = iam.get_policy(account, &p.required("PolicyArn")?)?;
            Ok(ok(&mut |x| {
                x.elem("Policy", |x| write_policy(x, &policy));
            }))
        }
        "ListPolicies" => {
            let scope = match p.get("Scope") {
                None | Some("All") => PolicyScope::All,
                Some("AWS") => PolicyScope::Aws,
                Some("Local") => PolicyScope::Local,
                Some(other) => {
                    return Err(ApiError::bad_request(
                        "ValidationError",
                        format!("1 validation error detected: Value '{other}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"),
                    ))
                }
            };
            let only_attached = p.bool("OnlyAttached")?.unwrap_or(false);
            let (policies, marker) = iam.list_policies(account, scope, only_attached, p.get("PathPrefix"), &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("Policies", "member", &policies, write_policy);
                paging(x, marker.clone());
            }))
        }
        "DeletePolicy" => {
            iam.delete_policy(account, &p.required("PolicyArn")?).await?;
            Ok(done())
        }
        "CreatePolicyVersion" => {
            let set_default = p.bool("SetAsDefault")?.unwrap_or(false);
            let v = iam.create_policy_version(account, &p.required("PolicyArn")?, p.required("PolicyDocument")?, set_default).await?;
            Ok(ok(&mut |x| {
                x.elem("PolicyVersion", |x| write_version(x, &v));
            }))
        }
        "GetPolicyVersion" => {
            let v = iam.get_policy_version(account, &p.required("PolicyArn")?, &p.required("VersionId")?)?;
            Ok(ok(&mut |x| {
                x.elem("PolicyVersion", |x| write_version(x, &v));
            }))
        }
        "ListPolicyVersions" => {
            let versions = iam.list_policy_versions(account, &p.required("PolicyArn")?)?;
            Ok(ok(&mut |x| {
                x.list("Versions", "member", &versions, write_version);
                paging(x, None);
            }))
        }
        "DeletePolicyVersion" => {
            iam.delete_policy_version(account, &p.required("PolicyArn")?, &p.required("VersionId")?).await?;
            Ok(done())
        }
        "SetDefaultPolicyVersion" => {
            iam.set_default_policy_version(account, &p.required("PolicyArn")?, &p.required("VersionId")?).await?;
            Ok(done())
        }
        "AttachUserPolicy" | "AttachRolePolicy" | "AttachGroupPolicy" | "DetachUserPolicy" | "DetachRolePolicy"
        | "DetachGroupPolicy" => {
            let attach = action.starts_with("Attach");
            iam.set_attached(account, holder(), p.required(holder_member())?, &p.required("PolicyArn")?, attach).await?;
            Ok(done())
        }
        "ListAttachedUserPolicies" | "ListAttachedRolePolicies" | "ListAttachedGroupPolicies" => {
            let (attached, marker) =
                iam.list_attached(account, holder(), &p.required(holder_member())?, p.get("PathPrefix"), &page(p)?)?;
            Ok(ok(&mut |x| {
                x.list("AttachedPolicies", "member", &attached, |x, a| {
                    x.text("PolicyName", &a.name);
                    x.text("PolicyArn", &a.arn);
                });
                paging(x, marker.clone());
            }))
        }
        "GetAccountAuthorizationDetails" => {
            let mut filter = Vec::new();
            for name in p.list("Filter")? {
                let Some(t) = EntityType::parse(&name) else {
                    return Err(ApiError::bad_request(
                        "ValidationError",
                        format!(
                            "1 validation error detected: Value '[{name}]' at 'filter' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                            EntityType::NAMES.join(", ")
                        ),
                    ));
                };
                filter.push(t);
            }
            let (details, marker) = iam.authorization_details(account, &filter, &page(p)?)?;
            Ok(ok(&mut |x| write_details(x, &details, marker.clone())))
        }
        a if KNOWN.contains(&a) => Err(ApiError::bad_request(
            "UnsupportedFeatureException",
            format!("Berth's IAM does not offer {a} yet; users, access keys, groups, roles, inline and managed policies are served."),
        )),
        other => Err(ApiError::bad_request(
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-05-08"),
        )),
    }
}
