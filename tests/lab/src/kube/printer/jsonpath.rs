//! The JSONPath subset printer columns use, evaluated as client-go's jsonpath package does with
//! AllowMissingKeys: `.a.b`, `['a.b']` / `["a.b"]`, `[n]` (negative from the end), `[*]` / `.*`,
//! and filters `[?(@.type=="Ready")]` with ==, !=, <, <=, >, >= or a bare `@.x` (exists).
//! Missing keys give no result; anything client-go would report as an error gives None.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Vec<Step>,
    /// None for the exists form `[?(@.x)]`.
    cmp: Option<(Op, Literal)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Every value `path` selects, in order; None when the path does not parse or evaluation hits
/// what client-go treats as an error (index out of range, filtering a non-list, comparing
/// values of different kinds).
pub fn eval_all(path: &str, obj: &Value) -> Option<Vec<Value>> {
    let steps = parse(path)?;
    run(&steps, vec![obj]).map(|vs| vs.into_iter().cloned().collect())
}

/// The first value `path` selects: what a printer column cell is made from.
pub fn eval(path: &str, obj: &Value) -> Option<Value> {
    eval_all(path, obj)?.into_iter().next()
}

fn run<'a>(steps: &[Step], mut current: Vec<&'a Value>) -> Option<Vec<&'a Value>> {
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            // A null on the way (e.g. `holder: null`) is skipped like a nil pointer.
            if v.is_null() {
                continue;
            }
            match step {
                Step::Field(name) => {
                    if let Value::Object(m) = v {
                        next.extend(m.get(name));
                    }
                }
                Step::Wildcard => match v {
                    Value::Object(m) => next.extend(m.values()),
                    Value::Array(a) => next.extend(a.iter()),
                    _ => {}
                },
                Step::Index(i) => {
                    let Value::Array(a) = v else {
                        return None;
                    };
                    let len = a.len() as i64;
                    let idx = if *i < 0 { i + len } else { *i };
                    if idx < 0 || idx >= len {
                        return None;
                    }
                    next.push(&a[idx as usize]);
                }
                Step::Filter(f) => {
                    let Value::Array(a) = v else {
                        return None;
                    };
                    for item in a {
                        if f.matches(item)? {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    Some(current)
}

impl Filter {
    fn matches(&self, item: &Value) -> Option<bool> {
        let lefts = run(&self.left, vec![item])?;
        let Some((op, lit)) = &self.cmp else {
            return Some(!lefts.is_empty());
        };
        let left = match lefts.as_slice() {
            [] => return Some(false),
            [one] => *one,
            _ => return None,
        };
        use std::cmp::Ordering;
        let ord: Ordering = match (left, lit) {
            (Value::String(a), Literal::Str(b)) => a.as_str().cmp(b.as_str()),
            (Value::Bool(a), Literal::Bool(b)) => {
                return match op {
                    Op::Eq => Some(a == b),
                    Op::Ne => Some(a != b),
                    _ => None,
                }
            }
            (Value::Number(n), Literal::Int(b)) => match n.as_i64() {
                Some(a) => a.cmp(b),
                None => return None,
            },
            (Value::Number(n), Literal::Float(b)) if n.as_i64().is_none() => {
                n.as_f64()?.partial_cmp(b)?
            }
            _ => return None,
        };
        Some(match op {
            Op::Eq => ord.is_eq(),
            Op::Ne => ord.is_ne(),
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
            Op::Gt => ord.is_gt(),
            Op::Ge => ord.is_ge(),
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        p = inner.trim();
    }
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut parser = Parser {
        s: p.as_bytes(),
        src: p,
        pos: 0,
    };
    let steps = parser.steps(false)?;
    (parser.pos == parser.s.len()).then_some(steps)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ') {
            self.pos += 1;
        }
    }

    /// Steps until the end, or (inside a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Option<Vec<Step>> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'.') => {
                    self.pos += 1;
                    if self.eat(b'*') {
                        steps.push(Step::Wildcard);
                        continue;
                    }
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if matches!(c, b'.' | b'[' | b' ' | b')' | b'=' | b'!' | b'<' | b'>') {
                            break;
                        }
                        self.pos += 1;
                    }
                    if self.pos == start {
                        // `..` (recursive descent) is not part of the subset.
                        return None;
                    }
                    steps.push(Step::Field(self.src[start..self.pos].to_string()));
                }
                Some(b'[') => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                    if !self.eat(b']') {
                        return None;
                    }
                }
                Some(_) if in_filter => break,
                Some(_) => return None,
            }
        }
        Some(steps)
    }

    fn bracket(&mut self) -> Option<Step> {
        self.skip_ws();
        match self.peek()? {
            b'*' => {
                self.pos += 1;
                Some(Step::Wildcard)
            }
            b'\'' | b'"' => match self.literal()? {
                Literal::Str(s) => Some(Step::Field(s)),
                _ => None,
            },
            b'?' => {
                self.pos += 1;
                if !self.eat(b'(') {
                    return None;
                }
                self.skip_ws();
                if !self.eat(b'@') {
                    return None;
                }
                let left = self.steps(true)?;
                self.skip_ws();
                let cmp = if self.peek() == Some(b')') {
                    None
                } else {
                    let op = self.op()?;
                    self.skip_ws();
                    Some((op, self.literal()?))
                };
                self.skip_ws();
                if !self.eat(b')') {
                    return None;
                }
                Some(Step::Filter(Filter { left, cmp }))
            }
            _ => match self.literal()? {
                Literal::Int(i) => Some(Step::Index(i)),
                _ => None,
            },
        }
    }

    fn op(&mut self) -> Option<Op> {
        let two = self.src.get(self.pos..self.pos + 2);
        let (op, len) = match two {
            Some("==") => (Op::Eq, 2),
            Some("!=") => (Op::Ne, 2),
            Some("<=") => (Op::Le, 2),
            Some(">=") => (Op::Ge, 2),
            _ => match self.peek()? {
                b'<' => (Op::Lt, 1),
                b'>' => (Op::Gt, 1),
                _ => return None,
            },
        };
        self.pos += len;
        Some(op)
    }

    fn literal(&mut self) -> Option<Literal> {
        let c = self.peek()?;
        if c == b'\'' || c == b'"' {
            self.pos += 1;
            let mut out = String::new();
            let mut chars = self.src[self.pos..].char_indices();
            loop {
                let (i, ch) = chars.next()?;
                if ch == '\\' {
                    let (_, esc) = chars.next()?;
                    out.push(esc);
                } else if ch as u32 == c as u32 {
                    self.pos += i + 1;
                    return Some(Literal::Str(out));
                } else {
                    out.push(ch);
                }
            }
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let word = &self.src[start..self.pos];
        match word {
            "true" => Some(Literal::Bool(true)),
            "false" => Some(Literal::Bool(false)),
            _ => word
                .parse::<i64>()
                .map(Literal::Int)
                .ok()
                .or_else(|| word.parse::<f64>().ok().map(Literal::Float)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fip() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"address": "10.0.8.100", "ports": [80, 443], "preferredNodes": ["a", "b"]},
            "status": {
                "holder": null,
                "conditions": [
                    {"type": "Assigned", "status": "True"},
                    {"type": "Ready", "status": "False", "observedGeneration": 2}
                ]
            }
        })
    }

    #[test]
    fn fields_and_quoted_keys() {
        let o = fip();
        assert_eq!(eval(".spec.address", &o), Some(json!("10.0.8.100")));
        assert_eq!(eval("{.spec.address}", &o), Some(json!("10.0.8.100")));
        assert_eq!(
            eval(".metadata.labels['app.kubernetes.io/name']", &o),
            Some(json!("web"))
        );
        assert_eq!(
            eval(".metadata.labels[\"app.kubernetes.io/name\"]", &o),
            Some(json!("web"))
        );
        assert_eq!(eval(".spec.missing", &o), None);
        assert_eq!(eval_all(".spec.missing", &o), Some(vec![]));
        assert_eq!(eval(".status.holder.node", &o), None);
    }

    #[test]
    fn indexes_and_wildcards() {
        let o = fip();
        assert_eq!(eval(".spec.ports[1]", &o), Some(json!(443)));
        assert_eq!(eval(".spec.ports[-1]", &o), Some(json!(443)));
        assert_eq!(eval_all(".spec.ports[5]", &o), None);
        assert_eq!(eval_all(".spec.address[0]", &o), None);
        assert_eq!(
            eval_all(".spec.preferredNodes[*]", &o),
            Some(vec![json!("a"), json!("b")])
        );
        assert_eq!(
            eval_all(".spec.ports.*", &o),
            Some(vec![json!(80), json!(443)])
        );
        assert_eq!(eval(".spec.preferredNodes", &o), Some(json!(["a", "b"])));
    }

    #[test]
    fn filters() {
        let o = fip();
        assert_eq!(
            eval(".status.conditions[?(@.type==\"Ready\")].status", &o),
            Some(json!("False"))
        );
        assert_eq!(
            eval(".status.conditions[?(@.type=='Ready')].status", &o),
            Some(json!("False"))
        );
        assert_eq!(
            eval_all(".status.conditions[?(@.type!=\"Ready\")].type", &o),
            Some(vec![json!("Assigned")])
        );
        assert_eq!(
            eval_all(".status.conditions[?(@.observedGeneration>=2)].type", &o),
            Some(vec![json!("Ready")])
        );
        assert_eq!(
            eval_all(".status.conditions[?(@.observedGeneration)].type", &o),
            Some(vec![json!("Ready")])
        );
        assert_eq!(
            eval_all(".status.conditions[?(@.type==\"Nope\")].status", &o),
            Some(vec![])
        );
        // Comparing a string with a number is an error in client-go.
        assert_eq!(
            eval_all(".status.conditions[?(@.type==1)].status", &o),
            None
        );
        assert_eq!(eval_all(".spec.address[?(@.x==1)]", &o), None);
    }

    #[test]
    fn bad_paths() {
        let o = fip();
        assert_eq!(eval_all("..spec", &o), None);
        assert_eq!(eval_all(".spec[", &o), None);
        assert_eq!(eval_all("spec", &o), None);
    }
}
