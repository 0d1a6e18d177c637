//! Rule and listener actions: forward (to weighted target groups), redirect and fixed
//! response; ALB's rules for them; and how a redirect's URL is built.

use serde::{Deserialize, Serialize};

use crate::error::{ElbError, Fault};

/// Target groups one forward action may name.
pub const MAX_FORWARD_GROUPS: usize = 5;
/// The largest weight of a target group in a forward action.
pub const MAX_WEIGHT: u32 = 999;
const CONTENT_TYPES: &[&str] = &["text/plain", "text/css", "text/html", "application/javascript", "application/json"];

/// An action as a request gives it, before validation.
#[derive(Debug, Clone, Default)]
pub struct ActionInput {
    pub kind: Option<String>,
    pub target_group_arn: Option<String>,
    pub order: Option<i32>,
    pub forward: Option<ForwardInput>,
    pub redirect: Option<RedirectInput>,
    pub fixed_response: Option<FixedResponseInput>,
}

#[derive(Debug, Clone, Default)]
pub struct ForwardInput {
    pub groups: Vec<(Option<String>, Option<i32>)>,
    pub stickiness_enabled: Option<bool>,
    pub stickiness_seconds: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct RedirectInput {
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status_code: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FixedResponseInput {
    pub message_body: Option<String>,
    pub status_code: Option<String>,
    pub content_type: Option<String>,
}

/// One valid action with its place in the rule's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub order: u32,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ActionKind {
    Forward(Forward),
    Redirect(Redirect),
    FixedResponse(FixedResponse),
}

/// Forward to one or more target groups, split by weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub groups: Vec<WeightedGroup>,
    /// Group-level stickiness duration in seconds, when enabled.
    pub stickiness_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedGroup {
    pub arn: String,
    pub weight: u32,
}

/// A redirect: each part is a literal or keeps the request's value through the
/// placeholders `#{protocol}`, `#{host}`, `#{port}`, `#{path}` and `#{query}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub protocol: String,
    pub port: String,
    pub host: String,
    pub path: String,
    pub query: String,
    /// `HTTP_301` or `HTTP_302`.
    pub status_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedResponse {
    pub status_code: String,
    pub content_type: Option<String>,
    pub message_body: Option<String>,
}

impl Forward {
    pub fn target_groups(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.arn.as_str())
    }
}

impl Action {
    pub fn target_groups(&self) -> Vec<&str> {
        match &self.kind {
            ActionKind::Forward(f) => f.target_groups().collect(),
            _ => Vec::new(),
        }
    }
}

/// Validates the actions of a rule or a listener's default actions. Berth's actions are
/// all terminal, so a rule has exactly one.
pub fn parse_actions(inputs: Vec<ActionInput>) -> Result<Vec<Action>, ElbError> {
    if inputs.is_empty() {
        return Err(ElbError::validation("At least one action is required."));
    }
    let mut out = Vec::new();
    for (i, a) in inputs.into_iter().enumerate() {
        let order = match a.order {
            None => i as u32 + 1,
            Some(o) if (1..=50_000).contains(&o) => o as u32,
            Some(o) => return Err(ElbError::validation(format!("Action order {o} is not between 1 and 50000."))),
        };
        let kind = parse_kind(a)?;
        out.push(Action { order, kind });
    }
    out.sort_by_key(|a| a.order);
    if out.windows(2).any(|w| w[0].order == w[1].order) {
        return Err(ElbError::new(Fault::InvalidLoadBalancerAction, "Two actions have the same Order."));
    }
    if out.len() > 1 {
        return Err(ElbError::new(
            Fault::TooManyActions,
            "A rule ends with exactly one forward, redirect or fixed-response action, and Berth supports no other action types.",
        ));
    }
    Ok(out)
}

fn parse_kind(a: ActionInput) -> Result<ActionKind, ElbError> {
    let kind = a.kind.as_deref().ok_or_else(|| ElbError::validation("An action must have a Type."))?;
    let stray = |member: &str| {
        ElbError::new(Fault::InvalidLoadBalancerAction, format!("A {kind} action cannot have {member}."))
    };
    match kind {
        "forward" => {
            if a.redirect.is_some() {
                return Err(stray("RedirectConfig"));
            }
            if a.fixed_response.is_some() {
                return Err(stray("FixedResponseConfig"));
            }
            parse_forward(a.target_group_arn, a.forward).map(ActionKind::Forward)
        }
        "redirect" => {
            if a.target_group_arn.is_some() || a.forward.is_some() {
                return Err(stray("target groups"));
            }
            if a.fixed_response.is_some() {
                return Err(stray("FixedResponseConfig"));
            }
            let r = a.redirect.ok_or_else(|| ElbError::validation("A redirect action needs RedirectConfig."))?;
            parse_redirect(r).map(ActionKind::Redirect)
        }
        "fixed-response" => {
            if a.target_group_arn.is_some() || a.forward.is_some() {
                return Err(stray("target groups"));
            }
            if a.redirect.is_some() {
                return Err(stray("RedirectConfig"));
            }
            let f = a
                .fixed_response
                .ok_or_else(|| ElbError::validation("A fixed-response action needs FixedResponseConfig."))?;
            parse_fixed(f).map(ActionKind::FixedResponse)
        }
        "authenticate-oidc" | "authenticate-cognito" | "jwt-validation" => Err(ElbError::new(
            Fault::InvalidLoadBalancerAction,
            format!("{kind} actions need an HTTPS listener, which Berth does not offer yet."),
        )),
        other => Err(ElbError::not_in_enum("type", other, crate::error::enums::ACTION_TYPE)),
    }
}

fn parse_forward(arn: Option<String>, config: Option<ForwardInput>) -> Result<Forward, ElbError> {
    let Some(config) = config else {
        let arn = arn.ok_or_else(|| ElbError::validation("A forward action needs TargetGroupArn or ForwardConfig."))?;
        return Ok(Forward { groups: vec![WeightedGroup { arn, weight: 1 }], stickiness_seconds: None });
    };
    if config.groups.is_empty() {
        return Err(ElbError::validation("ForwardConfig must name at least one target group."));
    }
    if config.groups.len() > MAX_FORWARD_GROUPS {
        return Err(ElbError::new(
            Fault::TooManyTargetGroups,
            format!("A forward action can name at most {MAX_FORWARD_GROUPS} target groups."),
        ));
    }
    let mut groups: Vec<WeightedGroup> = Vec::new();
    for (g, w) in config.groups {
        let g = g.ok_or_else(|| ElbError::validation("Every target group in ForwardConfig needs a TargetGroupArn."))?;
        let weight = match w {
            None => 1,
            Some(w) if (0..=MAX_WEIGHT as i32).contains(&w) => w as u32,
            Some(w) => {
                return Err(ElbError::validation(format!("Target group weight {w} is not between 0 and {MAX_WEIGHT}.")))
            }
        };
        if groups.iter().any(|x| x.arn == g) {
            return Err(ElbError::validation(format!("Target group {g} appears twice in one forward action.")));
        }
        groups.push(WeightedGroup { arn: g, weight });
    }
    if let Some(arn) = arn {
        if groups.len() != 1 || groups[0].arn != arn {
            return Err(ElbError::validation(
                "TargetGroupArn and ForwardConfig name different target groups; give one of them.",
            ));
        }
    }
    let stickiness_seconds = match (config.stickiness_enabled.unwrap_or(false), config.stickiness_seconds) {
        (false, _) => None,
        (true, Some(s)) if (1..=604_800).contains(&s) => Some(s as u32),
        (true, None) => {
            return Err(ElbError::validation("Target group stickiness needs DurationSeconds (1 to 604800)."));
        }
        (true, Some(s)) => {
            return Err(ElbError::validation(format!("Stickiness duration {s} is not between 1 and 604800 seconds.")));
        }
    };
    Ok(Forward { groups, stickiness_seconds })
}

fn parse_redirect(r: RedirectInput) -> Result<Redirect, ElbError> {
    let status_code = match r.status_code.as_deref() {
        Some(c @ ("HTTP_301" | "HTTP_302")) => c.to_string(),
        Some(other) => {
            return Err(ElbError::not_in_enum("statusCode", other, crate::error::enums::REDIRECT_STATUS_CODE))
        }
        None => return Err(ElbError::validation("A redirect needs a StatusCode (HTTP_301 or HTTP_302).")),
    };
    let protocol = r.protocol.unwrap_or_else(|| "#{protocol}".into());
    if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
        return Err(ElbError::validation(format!(
            "Redirect protocol '{protocol}' is not HTTP, HTTPS or #{{protocol}}."
        )));
    }
    let port = r.port.unwrap_or_else(|| "#{port}".into());
    if port != "#{port}" && !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(ElbError::validation(format!("Redirect port '{port}' is not 1 to 65535 or #{{port}}.")));
    }
    let host = r.host.unwrap_or_else(|| "#{host}".into());
    if host.is_empty() || host.len() > 128 {
        return Err(ElbError::validation("The redirect host must be 1 to 128 characters long."));
    }
    let path = r.path.unwrap_or_else(|| "/#{path}".into());
    if path.is_empty() || path.len() > 128 || !path.starts_with('/') {
        return Err(ElbError::validation("The redirect path must be 1 to 128 characters long and start with /."));
    }
    let query = r.query.unwrap_or_else(|| "#{query}".into());
    if query.len() > 128 || query.starts_with('?') {
        return Err(ElbError::validation("The redirect query must be at most 128 characters and not start with '?'."));
    }
    let redirect = Redirect { protocol, port, host, path, query, status_code };
    if redirect.protocol == "#{protocol}"
        && redirect.port == "#{port}"
        && redirect.host == "#{host}"
        && redirect.path == "/#{path}"
        && redirect.query == "#{query}"
    {
        return Err(ElbError::new(
            Fault::InvalidLoadBalancerAction,
            "The redirect would send clients back to the same URL; change at least one of protocol, port, host, path or query.",
        ));
    }
    Ok(redirect)
}

fn parse_fixed(f: FixedResponseInput) -> Result<FixedResponse, ElbError> {
    let status_code = f.status_code.ok_or_else(|| ElbError::validation("A fixed response needs a StatusCode."))?;
    let ok = status_code.len() == 3
        && matches!(status_code.as_bytes()[0], b'2' | b'4' | b'5')
        && status_code.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(ElbError::validation(format!(
            "Fixed response status code '{status_code}' is not a 2XX, 4XX or 5XX code."
        )));
    }
    if let Some(ct) = &f.content_type {
        if !CONTENT_TYPES.contains(&ct.as_str()) {
            return Err(ElbError::validation(format!(
                "Content type '{ct}' is not one of {}.",
                CONTENT_TYPES.join(", ")
            )));
        }
    }
    if f.message_body.as_ref().is_some_and(|b| b.len() > 1024) {
        return Err(ElbError::validation("A fixed response's MessageBody is at most 1024 characters."));
    }
    Ok(FixedResponse { status_code, content_type: f.content_type, message_body: f.message_body })
}

/// The parts of a request a redirect may keep.
#[derive(Debug, Clone)]
pub struct RedirectSource<'a> {
    /// `http` or `https`, as the listener speaks it.
    pub protocol: &'a str,
    /// The host the client asked for, without a port.
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    /// Without the leading `?`; empty when there is none.
    pub query: &'a str,
}

impl Redirect {
    pub fn status(&self) -> u16 {
        if self.status_code == "HTTP_301" {
            301
        } else {
            302
        }
    }

    /// The `Location` for a request: placeholders replaced, the port left out when it is
    /// the protocol's default.
    pub fn location(&self, src: &RedirectSource<'_>) -> String {
        let fill = |s: &str| {
            s.replace("#{protocol}", src.protocol)
                .replace("#{host}", src.host)
                .replace("#{port}", &src.port.to_string())
                .replace("#{path}", src.path.trim_start_matches('/'))
                .replace("#{query}", src.query)
        };
        let protocol = fill(&self.protocol).to_ascii_lowercase();
        let host = fill(&self.host);
        let port = fill(&self.port);
        let mut path = fill(&self.path);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let query = fill(&self.query);
        let default_port = if protocol == "https" { "443" } else { "80" };
        let mut url = format!("{protocol}://{host}");
        if port != default_port {
            url.push(':');
            url.push_str(&port);
        }
        url.push_str(&path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(arn: &str) -> ActionInput {
        ActionInput { kind: Some("forward".into()), target_group_arn: Some(arn.into()), ..Default::default() }
    }

    #[test]
    fn forward_forms() {
        let a = parse_actions(vec![forward("tg1")]).unwrap();
        assert_eq!(a[0].order, 1);
        assert_eq!(a[0].target_groups(), vec!["tg1"]);
        let weighted = ActionInput {
            kind: Some("forward".into()),
            forward: Some(ForwardInput {
                groups: vec![(Some("a".into()), Some(3)), (Some("b".into()), Some(1))],
                stickiness_enabled: Some(true),
                stickiness_seconds: Some(60),
            }),
            ..Default::default()
        };
        let a = parse_actions(vec![weighted]).unwrap();
        let ActionKind::Forward(f) = &a[0].kind else { panic!() };
        assert_eq!(f.stickiness_seconds, Some(60));
        assert_eq!(f.groups.len(), 2);
        assert_eq!(parse_actions(vec![forward("a"), forward("b")]).unwrap_err().fault, Fault::TooManyActions);
        assert!(parse_actions(vec![]).is_err());
    }

    #[test]
    fn redirects() {
        let r = parse_redirect(RedirectInput {
            protocol: Some("HTTPS".into()),
            port: Some("443".into()),
            status_code: Some("HTTP_301".into()),
            ..Default::default()
        })
        .unwrap();
        let src = RedirectSource { protocol: "http", host: "example.com", port: 80, path: "/a/b", query: "x=1" };
        assert_eq!(r.location(&src), "https://example.com/a/b?x=1");
        let r = parse_redirect(RedirectInput {
            host: Some("new.#{host}".into()),
            path: Some("/v2/#{path}".into()),
            query: Some("".into()),
            status_code: Some("HTTP_302".into()),
            ..Default::default()
        })
        .unwrap();
        let src = RedirectSource { protocol: "http", host: "example.com", port: 8080, path: "/a", query: "x=1" };
        assert_eq!(r.location(&src), "http://new.example.com:8080/v2/a");
        assert_eq!(r.status(), 302);
        let loop_ = parse_redirect(RedirectInput { status_code: Some("HTTP_301".into()), ..Default::default() });
        assert_eq!(loop_.unwrap_err().fault, Fault::InvalidLoadBalancerAction);
    }

    #[test]
    fn fixed_responses() {
        let ok = FixedResponseInput {
            status_code: Some("503".into()),
            content_type: Some("text/plain".into()),
            message_body: Some("down".into()),
        };
        assert!(parse_fixed(ok).is_ok());
        assert!(parse_fixed(FixedResponseInput { status_code: Some("302".into()), ..Default::default() }).is_err());
        assert!(parse_fixed(FixedResponseInput {
            status_code: Some("200".into()),
            content_type: Some("image/png".into()),
            ..Default::default()
        })
        .is_err());
    }
}
