//! Source discovery for model syncs: what a connection offers as a model source — the items of a
//! model configuration (`Source::model_options`: `query` or `table` for the SQL databases), a
//! stream item with the streams of the connection's cached catalog — and the fields one
//! configuration yields (`Source::model_fields`, within the connector's interactive deadline).
//! The configuration comes as query parameters `params[<item>]`, as the SDK sends them (a bare
//! `<item>` is taken too); a parameter that is no item of the source is refused naming it.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, http::StatusCode, web};
use serde_json::{Map, Value as Json, json};
use syncline_core::connector::{ErrorClass, ModelInput, ModelOption, Source};

use super::{connections, envelope, models::field_json, schemas::catalog};
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::connections::Connection,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(source_meta).service(fields);
}

/// `connection` opened as a source; 404 when its type cannot be one.
fn open_source(state: &AppState, connection: &Connection) -> Result<Arc<dyn Source>, ApiError> {
    let opened = connections::open(state, connection)?;
    if !opened.connector.spec().capabilities.source {
        let message = format!("a {} connection cannot be a model source", connection.type_id);
        return Err(ApiError::new(StatusCode::NOT_FOUND, message));
    }
    Ok(opened.connector.source(&state.connector, &opened.config)?)
}

/// 422 naming query parameter `param`.
fn invalid(param: &str, message: String) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": param }))
}

/// One item of a model configuration given as a query parameter.
struct Given {
    /// The parameter as sent (`params[query]`).
    param: String,
    option: &'static ModelOption,
    value: String,
}

/// The parameters naming `options` (`params[query], params[table]`).
fn params_of(options: &[ModelOption]) -> String {
    options.iter().map(|o| format!("params[{}]", o.name)).collect::<Vec<_>>().join(", ")
}

/// The parameters of `query`, each an item of `options`.
fn given(query: &str, options: &'static [ModelOption]) -> Result<Vec<Given>, ApiError> {
    let mut given = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let name = key.strip_prefix("params[").and_then(|k| k.strip_suffix(']')).unwrap_or(&key);
        let Some(option) = options.iter().find(|o| o.name == name) else {
            let known = params_of(options);
            return Err(invalid(&key, format!("{key} is not an item of this source's model configuration ({known})")));
        };
        given.push(Given { param: key.into_owned(), option, value: value.into_owned() });
    }
    Ok(given)
}

/// The one item a configuration gives: exactly one of `options`, not empty.
fn chosen(mut given: Vec<Given>, options: &[ModelOption]) -> Result<Given, ApiError> {
    let one = match given.len() {
        0 => return Err(invalid("params", format!("give one of {}", params_of(options)))),
        1 => given.remove(0),
        _ => return Err(invalid(&given[1].param, format!("give only one of {}", params_of(options)))),
    };
    match one.value.trim().is_empty() {
        true => Err(invalid(&one.param, format!("{} must not be empty", one.param))),
        false => Ok(one),
    }
}

/// `SyncSourceMetaResponse`: the free-text items under `configuration`, the stream items under
/// `items` with the streams they may name; a model gives exactly one (`requires_one_of`).
fn meta_json(options: &[ModelOption], streams: &[String]) -> Json {
    let (mut configuration, mut items) = (Map::new(), Map::new());
    for option in options {
        match option.input {
            ModelInput::Text => {
                configuration.insert(option.name.into(), json!({"type": "string"}));
            }
            ModelInput::Stream => {
                let values: Vec<Json> = streams.iter().map(|s| json!({"value": s, "label": s})).collect();
                items.insert(option.name.into(), json!({"has_items": !values.is_empty(), "items": values}));
            }
        }
    }
    let names: Vec<&str> = options.iter().map(|o| o.name).collect();
    json!({"configuration": configuration, "items": items, "requires_one_of": names})
}

/// The items a model configuration of the connection takes. No item depends on another, so
/// the items given only have to be the source's.
#[get("/connections/{id}/modelsync/source")]
async fn source_meta(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let options = open_source(&state, &connection)?.model_options();
    given(req.query_string(), options)?;
    let streams = match options.iter().any(|o| o.input == ModelInput::Stream) {
        true => catalog::load(&state, &connection).await?.catalog.streams.into_iter().map(|s| s.name).collect(),
        false => Vec::new(),
    };
    Ok(envelope(meta_json(options, &streams)))
}

/// The fields of the configuration the query parameters give; a bad query or stream is a 422
/// naming its parameter with the system's message.
#[get("/connections/{id}/modelsync/source/fields")]
async fn fields(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let source = open_source(&state, &connection)?;
    let options = source.model_options();
    let one = chosen(given(req.query_string(), options)?, options)?;
    let configuration = json!({ one.option.name: one.value });
    let found = source.model_fields(&configuration).await.map_err(|e| match e.class {
        ErrorClass::Config | ErrorClass::NotFound | ErrorClass::Permanent => {
            ApiError::unprocessable(format!("{}: {}", one.param, e.message))
                .with_metadata(json!({"field": one.param, "class": e.class.as_str()}))
        }
        _ => e.into(),
    })?;
    let shown: Vec<Json> = found.iter().map(|f| field_json(f, f.name.clone(), false)).collect();
    Ok(envelope(json!(shown)))
}

#[cfg(test)]
mod tests {
    use syncline_core::connector::ModelInput;

    use super::*;

    const SQL: &[ModelOption] = &[
        ModelOption { name: "query", input: ModelInput::Text },
        ModelOption { name: "table", input: ModelInput::Stream },
    ];

    fn field_of(result: Result<Given, ApiError>) -> Json {
        let e = result.err().expect("refused");
        assert_eq!(e.status.as_u16(), 422, "{}", e.message);
        e.metadata["field"].clone()
    }

    #[test]
    fn a_configuration_gives_exactly_one_item() {
        let one = chosen(given("params%5Bquery%5D=select+1", SQL).expect("known"), SQL).expect("one item");
        assert_eq!((one.param.as_str(), one.option.name, one.value.as_str()), ("params[query]", "query", "select 1"));
        let bare = chosen(given("table=public.users", SQL).expect("known"), SQL).expect("one item");
        assert_eq!((bare.param.as_str(), bare.option.name), ("table", "table"));
        assert_eq!(field_of(chosen(given("", SQL).expect("nothing"), SQL)), json!("params"));
        let both = given("params[query]=select+1&params[table]=t", SQL).expect("known");
        assert_eq!(field_of(chosen(both, SQL)), json!("params[table]"));
        assert_eq!(field_of(chosen(given("params[query]=+", SQL).expect("known"), SQL)), json!("params[query]"));
        let unknown = given("params[sheet]=x", SQL).err().expect("refused");
        assert_eq!(unknown.metadata, json!({"field": "params[sheet]"}));
        assert!(unknown.message.contains("params[query], params[table]"), "{}", unknown.message);
    }

    #[test]
    fn text_items_are_configuration_and_stream_items_list_the_streams() {
        let shown = meta_json(SQL, &["public.users".into()]);
        assert_eq!(shown["configuration"], json!({"query": {"type": "string"}}));
        assert_eq!(
            shown["items"],
            json!({"table": {"has_items": true, "items": [{"value": "public.users", "label": "public.users"}]}})
        );
        assert_eq!(shown["requires_one_of"], json!(["query", "table"]));
        assert_eq!(meta_json(SQL, &[])["items"]["table"]["has_items"], false);
    }
}
