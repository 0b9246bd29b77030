//! Splitting a connection configuration into its public part and its sealed secrets.

use serde_json::{Map, Value as Json};

use crate::{
    connector::ConnectorSpec,
    crypto::{OpenError, SecretBox},
};

/// Removes the spec's secret properties (at any depth) from `config` and seals them; returns
/// the public part and the sealed secrets (`None` when the configuration has none).
pub fn seal(spec: &ConnectorSpec, config: &Json, secrets: &SecretBox) -> (Json, Option<Vec<u8>>) {
    let mut public = config.clone();
    let mut hidden = Json::Object(Map::new());
    for path in spec.secret_fields() {
        if let Some(value) = remove(&mut public, &path).filter(|v| !v.is_null()) {
            insert(&mut hidden, &path, value);
        }
    }
    let sealed = (hidden != Json::Object(Map::new())).then(|| secrets.seal(hidden.to_string().as_bytes()));
    (public, sealed)
}

/// The full configuration: the public part with the sealed secrets merged back in.
pub fn unseal(public: &Json, sealed: Option<&[u8]>, secrets: &SecretBox) -> Result<Json, OpenError> {
    let mut config = public.clone();
    if let Some(sealed) = sealed {
        let opened: Json = serde_json::from_slice(&secrets.open(sealed)?).map_err(|_| OpenError)?;
        merge(&mut config, opened);
    }
    Ok(config)
}

/// The value at dotted `path` (`auth.token`) of `config`.
pub fn lookup<'a>(config: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(config, |value, name| value.get(name))
}

/// Sets the value at dotted `path`, creating the objects on the way.
pub fn insert(config: &mut Json, path: &str, value: Json) {
    let mut at = config;
    for name in path.split('.') {
        if !at.is_object() {
            *at = Json::Object(Map::new());
        }
        at = at.as_object_mut().expect("an object").entry(name).or_insert(Json::Null);
    }
    *at = value;
}

/// Takes the value at dotted `path` out of `config`.
pub fn remove(config: &mut Json, path: &str) -> Option<Json> {
    let (parent, name) = match path.rsplit_once('.') {
        Some((parent, name)) => (parent.split('.').try_fold(&mut *config, |v, n| v.get_mut(n))?, name),
        None => (config, path),
    };
    parent.as_object_mut()?.remove(name)
}

/// Lays `overlay` over `base`, object by object.
fn merge(base: &mut Json, overlay: Json) {
    match (base, overlay) {
        (Json::Object(base), Json::Object(overlay)) => {
            for (name, value) in overlay {
                merge(base.entry(name).or_insert(Json::Null), value);
            }
        }
        (base, overlay) => *base = overlay,
    }
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

    #[test]
    fn nested_secrets_are_sealed_too() {
        let spec = ConnectorSpec {
            id: "t",
            name: "T",
            capabilities: Capabilities::default(),
            config_schema: json!({"properties": {"auth": {"properties": {
                "user": {"type": "string"}, "token": {"type": "string", "writeOnly": true}}}}}),
        };
        let sb = SecretBox::new("key", &[]);
        let config = json!({"auth": {"user": "u", "token": "tok-9"}});
        let (public, sealed) = seal(&spec, &config, &sb);
        assert_eq!(public, json!({"auth": {"user": "u"}}));
        assert_eq!(lookup(&config, "auth.token"), Some(&json!("tok-9")));
        assert_eq!(unseal(&public, sealed.as_deref(), &sb).expect("opens"), config);
    }
}
