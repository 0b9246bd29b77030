//! Validation of connection configurations against a connector's JSON Schema.
//!
//! Covers the subset connector schemas use: `type`, `properties`, `required`,
//! `additionalProperties: false` (or `{"not": {}}`, the same in the form the Polytomic SDK
//! parses), `enum`, `minimum`/`maximum` and `minLength`.

use serde_json::Value;

/// Checks `value` against `schema`; the error names the offending path, e.g. `configuration.port`.
pub fn validate(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    if let Some(expected) = schema["type"].as_str() {
        let ok = match expected {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "{path} must be {} {expected}",
                if expected == "integer" || expected == "object" || expected == "array" { "an" } else { "a" }
            ));
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let names: Vec<String> = options.iter().map(Value::to_string).collect();
        return Err(format!("{path} must be one of {}", names.join(", ")));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64().filter(|min| n < *min) {
            return Err(format!("{path} must be at least {min}"));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|max| n > *max) {
            return Err(format!("{path} must be at most {max}"));
        }
    }
    if let (Some(s), Some(min)) = (value.as_str(), schema["minLength"].as_u64())
        && (s.chars().count() as u64) < min
    {
        return Err(format!("{path} must not be empty"));
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if object.get(name).is_none_or(Value::is_null) {
                return Err(format!("{path}.{name} is required"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, item) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(_) if item.is_null() => {}
                Some(sub) => validate(sub, item, &format!("{path}.{name}"))?,
                None if denies_others(&schema["additionalProperties"]) => {
                    return Err(format!("{path}.{name} is not a known setting"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Whether an `additionalProperties` schema accepts nothing.
fn denies_others(schema: &Value) -> bool {
    *schema == Value::Bool(false) || schema.get("not").is_some_and(|not| not.as_object().is_some_and(|o| o.is_empty()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::validate;

    fn schema() -> serde_json::Value {
        json!({
            "type": "object",
            "required": ["hostname", "port"],
            "additionalProperties": false,
            "properties": {
                "hostname": {"type": "string", "minLength": 1},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "ssl": {"type": "boolean"},
                "mode": {"enum": ["a", "b"]}
            }
        })
    }

    #[test]
    fn accepts_a_valid_configuration() {
        assert_eq!(validate(&schema(), &json!({"hostname": "db", "port": 5432, "ssl": null}), "configuration"), Ok(()));
    }

    #[test]
    fn an_empty_not_schema_denies_other_properties_too() {
        let mut sdk_form = schema();
        sdk_form["additionalProperties"] = json!({"not": {}});
        assert_eq!(
            validate(&sdk_form, &json!({"hostname": "db", "port": 1, "colour": 1}), "configuration"),
            Err("configuration.colour is not a known setting".to_owned())
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            (json!({"port": 1}), "configuration.hostname is required"),
            (json!({"hostname": "db", "port": "5432"}), "configuration.port must be an integer"),
            (json!({"hostname": "db", "port": 70000}), "configuration.port must be at most 65535"),
            (json!({"hostname": "", "port": 1}), "configuration.hostname must not be empty"),
            (json!({"hostname": "db", "port": 1, "colour": 1}), "configuration.colour is not a known setting"),
            (json!({"hostname": "db", "port": 1, "mode": "c"}), "configuration.mode must be one of \"a\", \"b\""),
            (json!([]), "configuration must be an object"),
        ];
        for (value, message) in cases {
            assert_eq!(validate(&schema(), &value, "configuration"), Err(message.to_owned()));
        }
    }
}
