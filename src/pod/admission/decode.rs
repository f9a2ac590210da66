//! Text to k8s-openapi's `Pod`: one YAML or JSON document, a v1 Pod, no field
//! Kubernetes does not know.

use k8s_openapi::api::core::v1 as k8s;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::ManifestError;

pub(super) fn decode(text: &str, file: &str) -> Result<k8s::Pod, ManifestError> {
    let malformed = |error: serde_yaml_ng::Error| {
        let location = error.location();
        ManifestError::Malformed {
            file: file.to_owned(),
            message: error.to_string(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
        }
    };
    let mut found = None;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        // Returning on the first error matters: the iterator repeats it forever.
        let value = Value::deserialize(document).map_err(malformed)?;
        // Empty documents ("---" at the end, comments only) are skipped, as kubectl does.
        if value.is_null() {
            continue;
        }
        if found.is_some() {
            return Err(ManifestError::MultipleDocuments {
                file: file.to_owned(),
            });
        }
        found = Some((index, value));
    }
    let Some((index, mut raw)) = found else {
        return Err(malformed_message(file, "empty manifest: expected a v1 Pod"));
    };
    check_type(&raw, file)?;
    let pod = if has_merge_key(&raw) {
        raw.apply_merge().map_err(malformed)?;
        serde_yaml_ng::from_value(raw.clone())
    } else {
        // From the text rather than the value, so errors keep their line and column.
        let document = serde_yaml_ng::Deserializer::from_str(text)
            .nth(index)
            .expect("the document was read above");
        k8s::Pod::deserialize(document)
    }
    .map_err(malformed)?;
    let known = serde_yaml_ng::to_value(&pod).map_err(malformed)?;
    if let Some(field) = unknown_field(&raw, &known, "") {
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            field,
            problem: "unknown field".to_owned(),
        });
    }
    Ok(pod)
}

fn malformed_message(file: &str, message: &str) -> ManifestError {
    ManifestError::Malformed {
        file: file.to_owned(),
        message: message.to_owned(),
        line: None,
        column: None,
    }
}

/// apiVersion and kind, checked before the typed decoding for a clear message.
fn check_type(raw: &Value, file: &str) -> Result<(), ManifestError> {
    let Value::Mapping(map) = raw else {
        return Err(malformed_message(
            file,
            "expected a v1 Pod object at the top level",
        ));
    };
    for (field, wanted) in [("apiVersion", "v1"), ("kind", "Pod")] {
        let problem = match map.get(field) {
            None | Some(Value::Null) => format!("required (must be {wanted:?})"),
            Some(Value::String(found)) if found == wanted => continue,
            Some(Value::String(found)) => format!("must be {wanted:?}, not {found:?}"),
            Some(other) => format!(
                "must be {wanted:?}, not {}",
                serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim_end()
            ),
        };
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            problem,
        });
    }
    Ok(())
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(key, value)| key.as_str() == Some("<<") || has_merge_key(value)),
        Value::Sequence(items) => items.iter().any(has_merge_key),
        Value::Tagged(tagged) => has_merge_key(&tagged.value),
        _ => false,
    }
}

/// The first field of the manifest that k8s-openapi did not keep, i.e. one
/// Kubernetes does not know (a typo would otherwise be dropped silently).
fn unknown_field(raw: &Value, known: &Value, path: &str) -> Option<String> {
    let raw = match raw {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    };
    match (raw, known) {
        (Value::Mapping(raw), Value::Mapping(known)) => {
            for (key, value) in raw {
                let key = match key {
                    Value::String(key) => key.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned(),
                };
                // status belongs to an API server; null means "not set".
                if value.is_null() || (path.is_empty() && key == "status") {
                    continue;
                }
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key.as_str()) {
                    None => return Some(at),
                    Some(inner) => {
                        if let Some(found) = unknown_field(value, inner, &at) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        (Value::Sequence(raw), Value::Sequence(known)) => raw
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (raw, known))| unknown_field(raw, known, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn merge_keys_and_empty_documents_are_accepted() {
        let text = "---\n# the pod\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  \
                    - &base {name: a, image: busybox, tty: true}\n  - <<: *base\n    name: b\n---\n";
        let pod = admit_ok(text).pod;
        assert_eq!(pod.containers[1].name, "b");
        assert_eq!(pod.containers[1].image, "busybox");
        assert!(pod.containers[1].tty);
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            ("a: [b\n".into(), "web.yaml: did not find expected ',' or ']' at line 2 column 1"),
            ("".into(), "web.yaml: empty manifest"),
            ("- a\n".into(), "web.yaml: expected a v1 Pod object"),
            (format!("{}---\n{}", app(""), app("")), "web.yaml: more than one YAML document"),
            ("apiVersion: apps/v1\nkind: Pod\n".into(), "web.yaml: apiVersion: must be \"v1\", not \"apps/v1\""),
            ("kind: Pod\n".into(), "web.yaml: apiVersion: required"),
            ("apiVersion: v1\nkind: Deployment\n".into(), "web.yaml: kind: must be \"Pod\", not \"Deployment\""),
            ("apiVersion: v1\n".into(), "web.yaml: kind: required"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, name: b}\n".into(), "web.yaml: metadata: duplicate entry"),
            (pod("{containers: [{name: [x], image: i}]}"), "web.yaml: spec.containers[0].name: invalid type: sequence, expected a string at line 4"),
            (app(", tty: \"yes\""), "web.yaml: spec.containers[0].tty: invalid type: string \"yes\", expected a boolean"),
            (app(", comand: [x]"), "web.yaml: spec.containers[0].comand: unknown field"),
            (format!("{HEAD}specs: {{}}\n"), "web.yaml: specs: unknown field"),
        ];
        assert_refusals(&cases);
    }
}
