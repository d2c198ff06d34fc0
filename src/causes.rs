//! An error and its causes as one line a person can read.

/// An error and its sources as one sentence ("dispatch failure: io error: Connection
/// refused"), each said once: what a person can act on, where the SDK's Debug form was a dump
/// of its structures.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
        next = err.source();
    }
    said.join(": ")
}
