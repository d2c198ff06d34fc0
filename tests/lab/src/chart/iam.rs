//! The IAM policies in deploy/, read as IAM reads their Action lists: which EC2 actions a
//! policy allows at all. Resource and Condition scoping cannot be evaluated against the lab
//! (it has no ARNs), so an action counts as allowed when some Allow statement names it; the
//! scoping is documented in deploy/README.md.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(Debug, Clone)]
struct Statement {
    sid: String,
    allow: bool,
    conditional: bool,
    actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self> {
        let doc: Value = serde_json::from_str(text).context("an IAM policy is JSON")?;
        if doc["Version"] != "2012-10-17" {
            bail!("the policy Version must be 2012-10-17");
        }
        let statements = match &doc["Statement"] {
            Value::Array(list) => list.clone(),
            one @ Value::Object(_) => vec![one.clone()],
            _ => bail!("the policy has no Statement"),
        };
        let mut out = Vec::new();
        for (i, s) in statements.iter().enumerate() {
            let sid = s["Sid"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("#{i}"));
            if s.get("NotAction").is_some() || s.get("NotResource").is_some() {
                bail!("statement {sid}: NotAction and NotResource are not supported by this check");
            }
            let actions = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(list) => list
                    .iter()
                    .map(|a| a.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .with_context(|| format!("statement {sid}: actions are strings"))?,
                _ => bail!("statement {sid} has no Action"),
            };
            let allow = match s["Effect"].as_str() {
                Some("Allow") => true,
                Some("Deny") => false,
                other => bail!("statement {sid}: Effect {other:?}"),
            };
            out.push(Statement {
                sid,
                allow,
                conditional: s.get("Condition").is_some(),
                actions,
            });
        }
        Ok(Self { statements: out })
    }

    /// The Sid of an Allow statement naming `action` (`ec2:AssignPrivateIpAddresses`), unless
    /// an unconditional Deny names it too.
    pub fn allows(&self, action: &str) -> Option<&str> {
        let names = |s: &&Statement| s.actions.iter().any(|p| action_matches(p, action));
        if self
            .statements
            .iter()
            .filter(|s| !s.allow && !s.conditional)
            .any(|s| names(&s))
        {
            return None;
        }
        self.statements
            .iter()
            .filter(|s| s.allow)
            .find(names)
            .map(|s| s.sid.as_str())
    }

    /// The policy without `action` wherever a statement names it as written: to show that
    /// the check catches each missing action.
    pub fn without(&self, action: &str) -> Self {
        let mut p = self.clone();
        for s in &mut p.statements {
            s.actions.retain(|a| a != action);
        }
        p
    }

    /// Every action an Allow statement names, as written.
    pub fn allowed_actions(&self) -> BTreeSet<String> {
        self.statements
            .iter()
            .filter(|s| s.allow)
            .flat_map(|s| s.actions.iter().cloned())
            .collect()
    }
}

/// IAM action matching: case-insensitive, `*` and `?` wildcards.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &a[1..]),
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y) && glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        {"Sid": "Move", "Effect": "Allow", "Action": ["ec2:AssignPrivateIpAddresses"],
         "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/a": "b"}}},
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "ec2:DeleteNetworkInterface", "Resource": "*"},
        {"Sid": "Delete", "Effect": "Allow", "Action": "ec2:DeleteNetworkInterface", "Resource": "*"}
      ]
    }"#;

    #[test]
    fn allow_statements_name_actions_with_wildcards() {
        let p = Policy::parse(POLICY).unwrap();
        assert_eq!(p.allows("ec2:DescribeSubnets"), Some("Read"));
        assert_eq!(p.allows("ec2:describesubnets"), Some("Read"));
        assert_eq!(p.allows("ec2:AssignPrivateIpAddresses"), Some("Move"));
        assert_eq!(p.allows("ec2:UnassignPrivateIpAddresses"), None);
        // An unconditional Deny wins over any Allow.
        assert_eq!(p.allows("ec2:DeleteNetworkInterface"), None);
    }

    #[test]
    fn an_action_taken_out_is_no_longer_allowed() {
        let p = Policy::parse(POLICY).unwrap();
        let cut = p.without("ec2:AssignPrivateIpAddresses");
        assert_eq!(cut.allows("ec2:AssignPrivateIpAddresses"), None);
        assert_eq!(cut.allows("ec2:DescribeSubnets"), Some("Read"));
        assert!(!cut
            .allowed_actions()
            .contains("ec2:AssignPrivateIpAddresses"));
    }

    #[test]
    fn globs() {
        assert!(action_matches("ec2:*", "ec2:CreateTags"));
        assert!(action_matches("ec2:Create?ags", "ec2:CreateTags"));
        assert!(!action_matches("ec2:Create", "ec2:CreateTags"));
        assert!(!action_matches("iam:*", "ec2:CreateTags"));
    }

    /// Issue 15's Elastic IP, border group and IPv6 calls: the controller's role allows each,
    /// through one statement that taking the action out of disables. The agent's role does not
    /// bind Elastic IPs: a node must not be able to pull an address to itself.
    #[test]
    fn the_controller_may_bind_elastic_ips_and_the_agent_may_not() {
        let read = |file: &str| {
            let text = std::fs::read_to_string(crate::repo_root().join(file)).expect(file);
            Policy::parse(&text).unwrap_or_else(|e| panic!("{file}: {e:#}"))
        };
        let controller = read("deploy/iam-policy-controller.json");
        let agent = read("deploy/iam-policy-agent.json");
        for action in [
            "ec2:DescribeAddresses",
            "ec2:DescribeAvailabilityZones",
            "ec2:AssociateAddress",
            "ec2:DisassociateAddress",
            "ec2:AssignIpv6Addresses",
            "ec2:UnassignIpv6Addresses",
        ] {
            assert!(controller.allows(action).is_some(), "controller: {action}");
            assert_eq!(controller.without(action).allows(action), None, "{action}");
        }
        assert_eq!(controller.allows("ec2:AllocateAddress"), None);
        assert_eq!(controller.allows("ec2:ReleaseAddress"), None);
        for action in ["ec2:AssociateAddress", "ec2:DisassociateAddress"] {
            assert_eq!(agent.allows(action), None, "agent: {action}");
        }
    }

    #[test]
    fn unsupported_forms_are_refused() {
        let not = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}"#;
        assert!(Policy::parse(not)
            .unwrap_err()
            .to_string()
            .contains("NotAction"));
        assert!(Policy::parse(r#"{"Version": "2008-10-17", "Statement": []}"#).is_err());
    }
}
