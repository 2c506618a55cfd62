//! Reading a photo upload: `multipart/form-data` (an `image` file, optional `options` JSON object
//! and `output_format`), JSON (`image` as a base64 `data:` URL, `options`, `output_format`), or,
//! where allowed, the raw image as the body. Nothing is written to disk.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Request};
use axum::http::header;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

use super::error::ApiError;
use crate::admission::UploadPlace;
use crate::output::OutputFormat;
use crate::service::Service;
use likeness_contract::options::RawOptions as Options;

/// Most options one request may set.
const MAX_OPTIONS: usize = 64;
/// Longest option name or value, in bytes.
const MAX_OPTION_LEN: usize = 4096;

/// A photo with the client's options.
#[derive(Debug, Default)]
pub struct Upload {
    /// The photo's bytes, as sent.
    pub image: Vec<u8>,
    /// The options, as strings, in the order sent.
    pub options: Options,
    /// The result's format, if the client chose one.
    pub output_format: Option<OutputFormat>,
}

/// What an endpoint accepts besides the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// The photo alone (also as a raw body).
    ImageOnly,
    /// The photo, `options` and `output_format`.
    WithOptions,
}

/// A generation request as `multipart/form-data` (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)] // describes the wire format; the parser reads the fields one by one
pub struct GenerationForm {
    /// The photo (JPEG, PNG or WebP).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// A JSON object of style options, values strings, numbers or booleans, e.g.
    /// `{"palette": "gameboy", "pixel-size": 6}`.
    options: Option<String>,
    /// `webp` (default, lossless), `png` or `jpeg`.
    output_format: Option<FormatName>,
}

/// An image upload as `multipart/form-data` (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)] // describes the wire format; the parser reads the fields one by one
pub struct ImageForm {
    /// The photo (JPEG, PNG or WebP).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

/// A result format.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatName {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP (lossless).
    Webp,
}

impl From<FormatName> for OutputFormat {
    fn from(name: FormatName) -> Self {
        match name {
            FormatName::Png => OutputFormat::Png,
            FormatName::Jpeg => OutputFormat::Jpeg,
            FormatName::Webp => OutputFormat::Webp,
        }
    }
}

/// A generation request as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationJson {
    /// The photo as a `data:image/...;base64,` URL (or bare base64).
    #[schema(min_length = 1)]
    pub image: String,
    /// Style options: values are strings, numbers or booleans.
    #[serde(default)]
    #[schema(schema_with = options_schema)]
    pub options: Option<OrderedObject>,
    /// The result's format (default `webp`, lossless).
    #[serde(default)]
    pub output_format: Option<FormatName>,
}

/// A JSON object's members in the order sent.
#[derive(Debug, Default)]
pub struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    if members.len() == MAX_OPTIONS {
                        return Err(serde::de::Error::custom(format!(
                            "at most {MAX_OPTIONS} options may be set"
                        )));
                    }
                    members.push(member);
                }
                Ok(OrderedObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// An image upload as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageJson {
    /// The photo as a `data:image/...;base64,` URL (or bare base64).
    #[schema(min_length = 1)]
    pub image: String,
}

/// The schema of one option value: a string, a number or a boolean.
pub(super) fn option_value_schema() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .build(),
    )
}

/// The schema of `options`: an object whose values are strings, numbers or booleans.
pub(super) fn options_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Style options: values are strings, numbers or booleans.",
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            option_value_schema(),
        ))))
}

/// The address of the client that sent `request` (unspecified when the server did not record
/// it).
pub fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| {
            info.0.ip().to_canonical()
        })
}

/// Reads the upload in `request` under an upload place for its client (shed with 429 before
/// anything is read when too many uploads are in progress). The place is returned so that the
/// caller keeps it until the upload is accounted for elsewhere (a queue place).
pub async fn read_admitted(
    service: &Service,
    request: Request,
    fields: Fields,
) -> Result<(Upload, UploadPlace), ApiError> {
    let place = service
        .admission()
        .admit_upload(client_address(&request))
        .map_err(|overloaded| service.shed(overloaded))?;
    Ok((read(request, fields).await?, place))
}

/// Reads the upload in `request`, as its `Content-Type` says.
pub async fn read(request: Request, fields: Fields) -> Result<Upload, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "multipart/form-data" => read_multipart(request, fields).await,
        "application/json" => read_json(request, fields).await,
        "application/octet-stream" | "image/png" | "image/jpeg" | "image/webp"
            if fields == Fields::ImageOnly =>
        {
            Ok(Upload {
                image: read_bytes(request).await?.to_vec(),
                ..Upload::default()
            })
        }
        _ => Err(ApiError::unsupported_content_type(match fields {
            Fields::ImageOnly => {
                "send the photo as multipart/form-data (field `image`), as JSON \
                     ({\"image\": \"data:image/...;base64,...\"}) or as the raw body \
                     (image/jpeg, image/png, image/webp or application/octet-stream)"
            }
            Fields::WithOptions => {
                "send multipart/form-data (fields `image`, `options`, `output_format`) or \
                     JSON ({\"image\": \"data:image/...;base64,...\", \"options\": {...}})"
            }
        })),
    }
}

async fn read_bytes(request: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| ApiError::body_rejection(rejection.status(), rejection.body_text()))
}

async fn read_multipart(request: Request, fields: Fields) -> Result<Upload, ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| ApiError::body_rejection(rejection.status(), rejection.body_text()))?;
    let mut upload = Upload::default();
    let mut has_image = false;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))?;
        match (name.as_str(), fields) {
            ("image", _) if !has_image => {
                has_image = true;
                upload.image = bytes.to_vec();
            }
            ("options", Fields::WithOptions) => {
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    ApiError::bad_request("invalid_options", "`options` must be UTF-8 JSON")
                })?;
                let object: OrderedObject = serde_json::from_str(text).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_options",
                        format!("`options` must be a JSON object: {e}"),
                    )
                })?;
                upload.options = options(object)?;
            }
            ("output_format", Fields::WithOptions) => {
                let text = String::from_utf8_lossy(&bytes);
                upload.output_format = Some(output_format(&text)?);
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("unexpected or repeated form field `{name}`"),
                ));
            }
        }
    }
    if !has_image {
        return Err(missing_image());
    }
    Ok(upload)
}

async fn read_json(request: Request, fields: Fields) -> Result<Upload, ApiError> {
    let bytes = read_bytes(request).await?;
    let invalid = |e: serde_json::Error| ApiError::bad_request("invalid_body", e.to_string());
    match fields {
        Fields::ImageOnly => {
            let body: ImageJson = serde_json::from_slice(&bytes).map_err(invalid)?;
            Ok(Upload {
                image: data_url(&body.image)?,
                ..Upload::default()
            })
        }
        Fields::WithOptions => {
            let body: GenerationJson = serde_json::from_slice(&bytes).map_err(invalid)?;
            Ok(Upload {
                image: data_url(&body.image)?,
                options: options(body.options.unwrap_or_default())?,
                output_format: body.output_format.map(OutputFormat::from),
            })
        }
    }
}

fn missing_image() -> ApiError {
    ApiError::bad_request("missing_image", "the request has no `image`")
}

/// The bytes of a `data:[<type>];base64,<data>` URL, or of bare base64.
fn data_url(text: &str) -> Result<Vec<u8>, ApiError> {
    let payload = match text.strip_prefix("data:") {
        Some(rest) => {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::bad_request("invalid_image_encoding", "the data URL has no `,`")
            })?;
            if !meta.ends_with(";base64") {
                return Err(ApiError::bad_request(
                    "invalid_image_encoding",
                    "the data URL must be base64 (`data:image/png;base64,...`)",
                ));
            }
            data
        }
        None => text,
    };
    let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(missing_image());
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_image_encoding",
                format!("`image` is not valid base64: {e}"),
            )
        })
}

/// The options of a JSON object: strings as they are, numbers and booleans written out.
fn options(object: OrderedObject) -> Result<Options, ApiError> {
    object
        .0
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_options",
                        format!("option `{name}` must be a string, a number or a boolean"),
                    ));
                }
            };
            if name.len() > MAX_OPTION_LEN || value.len() > MAX_OPTION_LEN {
                return Err(ApiError::bad_request(
                    "invalid_options",
                    format!("option names and values are limited to {MAX_OPTION_LEN} bytes"),
                ));
            }
            Ok((name, value))
        })
        .collect()
}

fn output_format(text: &str) -> Result<OutputFormat, ApiError> {
    OutputFormat::parse(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_output_format",
            format!("unknown output_format '{text}': use png, jpeg or webp"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_and_bare_base64_decode() {
        assert_eq!(data_url("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert_eq!(data_url("aG\nk=").unwrap(), b"hi");
        assert_eq!(
            data_url("data:image/png,hi").unwrap_err().code(),
            "invalid_image_encoding"
        );
        assert_eq!(
            data_url("data:;base64,!!").unwrap_err().code(),
            "invalid_image_encoding"
        );
        assert_eq!(
            data_url("data:image/png;base64,").unwrap_err().code(),
            "missing_image"
        );
    }

    #[test]
    fn option_values_become_strings_in_order() {
        let object: OrderedObject =
            serde_json::from_str(r#"{"b": 6, "a": true, "c": "x", "seed": 18446744073709551615}"#)
                .unwrap();
        let parsed = options(object).unwrap();
        let pairs: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("b", "6"),
                ("a", "true"),
                ("c", "x"),
                ("seed", "18446744073709551615")
            ]
        );
        let many: String = (0..=MAX_OPTIONS)
            .map(|i| format!("\"o{i}\": 1"))
            .collect::<Vec<_>>()
            .join(",");
        let error = serde_json::from_str::<OrderedObject>(&format!("{{{many}}}")).unwrap_err();
        assert!(error.to_string().contains("at most 64"), "{error}");
        let nested: OrderedObject = serde_json::from_str(r#"{"x": [1]}"#).unwrap();
        assert_eq!(options(nested).unwrap_err().code(), "invalid_options");
    }
}
