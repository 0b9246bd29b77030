//! Splitting a connection configuration into its public part and its sealed secrets.

use serde_json::{Map, Value as Json};

use crate::{
    connector::ConnectorSpec,
    crypto::{OpenError, SecretBox},
};

/// Removes the spec's secret properties from `config` and seals them; returns the public part
/// and the sealed secrets (`None` when the configuration has none).
pub fn seal(spec: &ConnectorSpec, config: &Json, secrets: &SecretBox) -> (Json, Option<Vec<u8>>) {
    let mut public = config.as_object().cloned().unwrap_or_default();
    let mut hidden = Map::new();
    for field in spec.secret_fields() {
        if let Some(value) = public.remove(&field).filter(|v| !v.is_null()) {
            hidden.insert(field, value);
        }
    }
    let sealed = (!hidden.is_empty()).then(|| secrets.seal(Json::Object(hidden).to_string().as_bytes()));
    (Json::Object(public), sealed)
}

/// The full configuration: the public part with the sealed secrets merged back in.
pub fn unseal(public: &Json, sealed: Option<&[u8]>, secrets: &SecretBox) -> Result<Json, OpenError> {
    let mut config = public.as_object().cloned().unwrap_or_default();
    if let Some(sealed) = sealed {
        let opened: Map<String, Json> = serde_json::from_slice(&secrets.open(sealed)?).map_err(|_| OpenError)?;
        config.extend(opened);
    }
    Ok(Json::Object(config))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::connector::Capabilities;

    #[test]
    fn secrets_leave_the_public_part_and_come_back() {
        let spec = ConnectorSpec {
            id: "t",
            name: "T",
            capabilities: Capabilities::default(),
            config_schema: json!({"properties": {"host": {"type": "string"}, "password": {"type": "string", "writeOnly": true}}}),
        };
        let sb = SecretBox::new("key", &[]);
        let config = json!({"host": "db", "password": "pw-123"});
        let (public, sealed) = seal(&spec, &config, &sb);
        assert_eq!(public, json!({"host": "db"}));
        let sealed = sealed.expect("password sealed");
        assert!(!String::from_utf8_lossy(&sealed).contains("pw-123"));
        assert_eq!(unseal(&public, Some(&sealed), &sb).expect("opens"), config);
        assert_eq!(seal(&spec, &json!({"host": "db"}), &sb).1, None);
    }
}
