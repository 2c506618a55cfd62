//! The OpenAPI 3.1 document (`GET /openapi.json`), generated from the handlers' annotations and
//! the response types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; the paths are added by the router (`utoipa_axum::routes!`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Likeness",
        description = "Turns a person's photo into an artistic style, keeping them recognisable. \
            Generations run synchronously (200) or as jobs (`Prefer: respond-async`, 202) with \
            server-sent progress events. Errors share one shape: `{error: {code, message, style?}}`.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&ApiKey),
    tags(
        (name = "styles", description = "The styles this host serves."),
        (name = "analysis", description = "What the host sees in a photo."),
        (name = "generations", description = "Styling a photo."),
        (name = "jobs", description = "Asynchronous generations."),
        (name = "operations", description = "Health, readiness and metrics."),
    )
)]
pub struct ApiDoc;

/// Declares the `api_key` security scheme (`Authorization: Bearer KEY`, when keys are set).
struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Describes every raw image body (requests and responses of `image/*` or
/// `application/octet-stream`) as a binary string rather than the byte array the Rust type
/// (`Vec<u8>`) would suggest.
pub fn binary_bodies(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{Content, RefOr};

    fn fix<'a>(contents: impl Iterator<Item = (&'a String, &'a mut Content)>) {
        for (media_type, content) in contents {
            if media_type.starts_with("image/") || media_type == "application/octet-stream" {
                let binary = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
                content.schema = Some(RefOr::T(binary.into()));
            }
        }
    }
    for item in openapi.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            if let Some(body) = operation.request_body.as_mut() {
                fix(body.content.iter_mut());
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    fix(response.content.iter_mut());
                }
            }
        }
    }
}

/// The document as JSON. utoipa 5 writes a response link's fields in snake case
/// (`operation_id`); OpenAPI spells them `operationId`, `operationRef`, `requestBody`.
pub fn to_json(openapi: &utoipa::openapi::OpenApi) -> serde_json::Value {
    use serde_json::Value;

    let mut document = serde_json::to_value(openapi).unwrap_or_default();
    let operations = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    let links = operations
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(from) {
                link.insert(to.to_string(), value);
            }
        }
    }
    document
}
