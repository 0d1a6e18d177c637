//! Task definitions: register, describe, list, deregister, delete.

use std::sync::Arc;

use model::ecs::shapes::{TaskDefinitionFamilyStatus, TaskDefinitionStatus};
use model::ecs::{task_definition_arn, NewTaskDefinition, TaskDefinition, TaskDefinitionRef};
use model::ids::Family;
use model::Scope;

use super::Failure;
use crate::ecs::Ecs;
use crate::error::{Error, NotFoundKind, Result};
use crate::state::{State, Touched};
use crate::Caller;
use crate::Ops;
use crate::Page;

/// The most task definitions `DeleteTaskDefinitions` takes at once.
pub const MAX_DELETE: usize = 10;

fn not_found(what: &str) -> Error {
    // ECS answers a missing task definition with this ClientException.
    Error::NotFound {
        kind: NotFoundKind::TaskDefinition,
        message: format!(
            "Unable to describe task definition '{what}'. Check the family and revision with list-task-definitions."
        ),
    }
}

/// Finds the revision a reference names: a given revision in any status, or for a bare
/// family the latest ACTIVE revision.
pub fn resolve<'a>(state: &'a State, scope: &Scope, reference: &str) -> Result<&'a TaskDefinition> {
    let Ok(r) = TaskDefinitionRef::parse(reference, scope)? else {
        return Err(not_found(reference));
    };
    let found = match r.revision {
        Some(rev) => state.task_definitions.get(&(scope.clone(), r.family.clone(), rev)).map(|t| &**t),
        None => state.revisions(scope, &r.family).rev().find(|t| t.status == TaskDefinitionStatus::Active),
    };
    found.ok_or_else(|| not_found(reference))
}

fn sort_key(t: &TaskDefinition) -> String {
    format!("{}:{:010}", t.family, t.revision)
}

impl Ops<'_, Ecs> {
    /// Registers the next revision of a family.
    pub async fn register_task_definition(&self, caller: &Caller, new: NewTaskDefinition) -> Result<TaskDefinition> {
        let NewTaskDefinition { family, spec, tags } = new;
        let roles = super::task_roles::roles(
            &caller.scope,
            spec.doc.task_role_arn.as_deref(),
            spec.doc.execution_role_arn.as_deref(),
            None,
        );
        super::task_roles::check_pass_role(self, caller, &roles)?;
        let scope = caller.scope.clone();
        let registered_by = caller.principal_arn();
        self.write(move |txn| {
            // Revisions are never reused, whatever the status of earlier ones.
            let revision = txn.state.revisions(&scope, &family).next_back().map_or(1, |t| t.revision + 1);
            let td = TaskDefinition {
                scope: scope.clone(),
                family: family.clone(),
                revision,
                spec,
                status: TaskDefinitionStatus::Active,
                registered_at: txn.now,
                registered_by,
                deregistered_at: None,
                delete_requested_at: None,
                tags,
            };
            txn.state.task_definitions.insert((scope.clone(), family.clone(), revision), Arc::new(td.clone()));
            txn.touch(Touched::TaskDefinition(scope, family, revision));
            Ok(td)
        })
        .await
    }

    pub fn describe_task_definition(&self, caller: &Caller, reference: &str) -> Result<TaskDefinition> {
        resolve(&self.view(), &caller.scope, reference).cloned()
    }

    /// ARNs of task definitions. `family` filters to exactly that family (ECS calls it
    /// `familyPrefix` but matches it whole); the default status is ACTIVE.
    pub fn list_task_definitions(
        &self,
        caller: &Caller,
        family: Option<&str>,
        status: TaskDefinitionStatus,
        descending: bool,
        page: &Page,
    ) -> Result<(Vec<String>, Option<String>)> {
        let state = self.view();
        let family = family.map(Family::parse).transpose()?;
        let mut items: Vec<(String, String)> = state
            .task_definitions
            .iter()
            .filter(|((s, f, _), t)| *s == caller.scope && t.status == status && family.as_ref().is_none_or(|x| x == f))
            .map(|(_, t)| (sort_key(t), t.arn().to_string()))
            .collect();
        if descending {
            items.reverse();
        }
        Ok(page.take(items.into_iter(), descending))
    }

    /// Family names. ACTIVE: families with an ACTIVE revision; INACTIVE: families whose
    /// revisions are all INACTIVE; ALL: every family.
    pub fn list_task_definition_families(
        &self,
        caller: &Caller,
        prefix: Option<&str>,
        status: TaskDefinitionFamilyStatus,
        page: &Page,
    ) -> (Vec<String>, Option<String>) {
        let state = self.view();
        let mut families: Vec<(String, bool)> = Vec::new();
        for ((s, f, _), t) in state.task_definitions.iter() {
            if *s != caller.scope || !prefix.is_none_or(|p| f.as_str().starts_with(p)) {
                continue;
            }
            let active = t.status == TaskDefinitionStatus::Active;
            match families.last_mut() {
                Some((name, any_active)) if name == f.as_str() => *any_active |= active,
                _ => families.push((f.to_string(), active)),
            }
        }
        let items = families
            .into_iter()
            .filter(|(_, active)| match status {
                TaskDefinitionFamilyStatus::Active => *active,
                TaskDefinitionFamilyStatus::Inactive => !*active,
                TaskDefinitionFamilyStatus::All => true,
            })
            .map(|(f, _)| (f.clone(), f));
        page.take(items, false)
    }

    /// Marks one revision INACTIVE. The reference must name a revision.
    pub async fn deregister_task_definition(&self, caller: &Caller, reference: String) -> Result<TaskDefinition> {
        let scope = caller.scope.clone();
        let parsed = TaskDefinitionRef::parse(&reference, &scope)?;
        if matches!(&parsed, Ok(r) if r.revision.is_none()) {
            return Err(Error::client(
                "Deregistering needs a revision: pass family:revision or the task definition's full ARN.",
            ));
        }
        self.write(move |txn| {
            let mut td = resolve(txn.state, &scope, &reference)?.clone();
            if td.status == TaskDefinitionStatus::Active {
                td.status = TaskDefinitionStatus::Inactive;
                td.deregistered_at = Some(txn.now);
                txn.state
                    .task_definitions
                    .insert((scope.clone(), td.family.clone(), td.revision), Arc::new(td.clone()));
                txn.touch(Touched::TaskDefinition(scope, td.family.clone(), td.revision));
            }
            Ok(td)
        })
        .await
    }

    /// Requests deletion of INACTIVE revisions; each becomes DELETE_IN_PROGRESS. Revisions
    /// that cannot be deleted are reported as failures and the others still proceed.
    pub async fn delete_task_definitions(
        &self,
        caller: &Caller,
        refs: Vec<String>,
    ) -> Result<(Vec<TaskDefinition>, Vec<Failure>)> {
        if refs.is_empty() || refs.len() > MAX_DELETE {
            return Err(Error::parameter(format!("Pass between 1 and {MAX_DELETE} task definitions to delete.")));
        }
        let scope = caller.scope.clone();
        self.write(move |txn| {
            let mut done = Vec::new();
            let mut failures = Vec::new();
            for r in refs {
                // Failures name the full ARN when the reference is well formed, as ECS does.
                let arn = match TaskDefinitionRef::parse(&r, &scope) {
                    Ok(Ok(TaskDefinitionRef { family, revision: Some(rev) })) => {
                        task_definition_arn(&scope, &family, rev).to_string()
                    }
                    _ => r.clone(),
                };
                let fail = |reason: &str| Failure { arn: arn.clone(), reason: reason.into(), detail: None };
                match TaskDefinitionRef::parse(&r, &scope) {
                    Ok(Ok(parsed)) if parsed.revision.is_some() => {}
                    Ok(_) | Err(_) => {
                        failures.push(fail("The task definition must be named by family:revision or full ARN."));
                        continue;
                    }
                }
                let Ok(td) = resolve(txn.state, &scope, &r) else {
                    failures.push(fail("The specified task definition does not exist."));
                    continue;
                };
                let mut td = td.clone();
                match td.status {
                    TaskDefinitionStatus::Active => {
                        failures.push(fail(
                            "The specified task definition is still in ACTIVE status. Deregister it first.",
                        ));
                        continue;
                    }
                    TaskDefinitionStatus::Inactive => {
                        td.status = TaskDefinitionStatus::DeleteInProgress;
                        td.delete_requested_at = Some(txn.now);
                        txn.state
                            .task_definitions
                            .insert((scope.clone(), td.family.clone(), td.revision), Arc::new(td.clone()));
                        txn.touch(Touched::TaskDefinition(scope.clone(), td.family.clone(), td.revision));
                    }
                    TaskDefinitionStatus::DeleteInProgress => {}
                }
                done.push(td);
            }
            Ok((done, failures))
        })
        .await
    }
}
