//! OTLP/JSON (the protobuf JSON mapping with OTLP's exceptions) into the
//! protobuf messages, so both encodings go through one ingest path.
//!
//! What the mapping asks and this accepts: field names in lowerCamelCase or
//! the proto's snake_case; trace and span ids as hex (either case, as the
//! OTLP examples use upper case), not base64; 64-bit integers as decimal
//! strings or numbers; enums as integers or their names; `bytesValue` as
//! base64; doubles as numbers or "NaN"/"Infinity"/"-Infinity". Unknown fields
//! are skipped. An error names the JSON path of the value it could not read.

use crate::otlp::{
    AnyValue, ArrayValue, Event, ExportTraceServiceRequest, InstrumentationScope, KeyValue,
    KeyValueList, Link, Resource, ResourceSpans, ScopeSpans, Span, Status, Value,
};
use serde_json::{Map, Value as Json};

/// Nesting allowed for array and kvlist attribute values.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct JsonError {
    pub path: String,
    pub message: String,
}

/// Parses an OTLP/JSON `ExportTraceServiceRequest` body.
///
/// # Errors
///
/// Text that is not JSON, or a value of the wrong type, with its JSON path.
pub fn decode_request(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    let json: Json = serde_json::from_slice(body).map_err(|e| JsonError {
        path: "$".into(),
        message: format!("not JSON: {e}"),
    })?;
    let root = object(&json, "$")?;
    let mut request = ExportTraceServiceRequest::default();
    for (i, rs) in array(root, &["resourceSpans", "resource_spans"], "$")?
        .iter()
        .enumerate()
    {
        request
            .resource_spans
            .push(resource_spans(rs, &format!("$.resourceSpans[{i}]"))?);
    }
    Ok(request)
}

fn err(path: &str, message: impl Into<String>) -> JsonError {
    JsonError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn object<'a>(json: &'a Json, path: &str) -> Result<&'a Map<String, Json>, JsonError> {
    json.as_object()
        .ok_or_else(|| err(path, "expected an object"))
}

/// The field under either of its names; JSON `null` counts as absent.
fn field<'a>(obj: &'a Map<String, Json>, names: &[&str]) -> Option<&'a Json> {
    names
        .iter()
        .find_map(|n| obj.get(*n))
        .filter(|v| !v.is_null())
}

fn array<'a>(
    obj: &'a Map<String, Json>,
    names: &[&str],
    path: &str,
) -> Result<&'a [Json], JsonError> {
    match field(obj, names) {
        None => Ok(&[]),
        Some(Json::Array(items)) => Ok(items),
        Some(_) => Err(err(&format!("{path}.{}", names[0]), "expected an array")),
    }
}

fn string(obj: &Map<String, Json>, names: &[&str], path: &str) -> Result<String, JsonError> {
    match field(obj, names) {
        None => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(err(&format!("{path}.{}", names[0]), "expected a string")),
    }
}

fn u64_field(obj: &Map<String, Json>, names: &[&str], path: &str) -> Result<u64, JsonError> {
    let Some(v) = field(obj, names) else {
        return Ok(0);
    };
    let path = format!("{path}.{}", names[0]);
    match v {
        Json::String(s) => s
            .parse()
            .map_err(|_| err(&path, format!("{s:?} is not an unsigned 64-bit integer"))),
        Json::Number(n) => n
            .as_u64()
            .ok_or_else(|| err(&path, format!("{n} is not an unsigned 64-bit integer"))),
        _ => Err(err(&path, "expected an integer (or a decimal string)")),
    }
}

fn u32_field(obj: &Map<String, Json>, names: &[&str], path: &str) -> Result<u32, JsonError> {
    let n = u64_field(obj, names, path)?;
    u32::try_from(n).map_err(|_| err(&format!("{path}.{}", names[0]), "out of range for uint32"))
}

fn enum_field(
    obj: &Map<String, Json>,
    names: &[&str],
    path: &str,
    symbols: &[&str],
) -> Result<i32, JsonError> {
    let path = format!("{path}.{}", names[0]);
    match field(obj, names) {
        None => Ok(0),
        Some(Json::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| err(&path, format!("{n} is not an enum value"))),
        Some(Json::String(s)) => symbols
            .iter()
            .position(|sym| sym == s)
            .map(|i| i as i32)
            .ok_or_else(|| err(&path, format!("unknown enum name {s:?}"))),
        Some(_) => Err(err(&path, "expected an enum number or name")),
    }
}

/// Hex ids; the empty string is the absent id.
fn id(obj: &Map<String, Json>, names: &[&str], path: &str) -> Result<Vec<u8>, JsonError> {
    let text = string(obj, names, path)?;
    hex_decode(&text).ok_or_else(|| {
        err(
            &format!("{path}.{}", names[0]),
            format!("{text:?} is not hex"),
        )
    })
}

pub(crate) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

fn resource_spans(json: &Json, path: &str) -> Result<ResourceSpans, JsonError> {
    let obj = object(json, path)?;
    let resource = match field(obj, &["resource"]) {
        None => None,
        Some(r) => {
            let rpath = format!("{path}.resource");
            let robj = object(r, &rpath)?;
            Some(Resource {
                attributes: attributes(robj, &rpath)?,
                dropped_attributes_count: u32_field(
                    robj,
                    &["droppedAttributesCount", "dropped_attributes_count"],
                    &rpath,
                )?,
            })
        }
    };
    let mut scope_spans = Vec::new();
    for (i, ss) in array(obj, &["scopeSpans", "scope_spans"], path)?
        .iter()
        .enumerate()
    {
        scope_spans.push(scope_spans_of(ss, &format!("{path}.scopeSpans[{i}]"))?);
    }
    Ok(ResourceSpans {
        resource,
        scope_spans,
        schema_url: string(obj, &["schemaUrl", "schema_url"], path)?,
    })
}

fn scope_spans_of(json: &Json, path: &str) -> Result<ScopeSpans, JsonError> {
    let obj = object(json, path)?;
    let scope = match field(obj, &["scope"]) {
        None => None,
        Some(s) => {
            let spath = format!("{path}.scope");
            let sobj = object(s, &spath)?;
            Some(InstrumentationScope {
                name: string(sobj, &["name"], &spath)?,
                version: string(sobj, &["version"], &spath)?,
                attributes: attributes(sobj, &spath)?,
                dropped_attributes_count: u32_field(
                    sobj,
                    &["droppedAttributesCount", "dropped_attributes_count"],
                    &spath,
                )?,
            })
        }
    };
    let mut spans = Vec::new();
    for (i, s) in array(obj, &["spans"], path)?.iter().enumerate() {
        spans.push(span(s, &format!("{path}.spans[{i}]"))?);
    }
    Ok(ScopeSpans {
        scope,
        spans,
        schema_url: string(obj, &["schemaUrl", "schema_url"], path)?,
    })
}

const SPAN_KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn span(json: &Json, path: &str) -> Result<Span, JsonError> {
    let obj = object(json, path)?;
    let dropped = |names: &[&str]| u32_field(obj, names, path);
    let mut events = Vec::new();
    for (i, e) in array(obj, &["events"], path)?.iter().enumerate() {
        let epath = format!("{path}.events[{i}]");
        let eobj = object(e, &epath)?;
        events.push(Event {
            time_unix_nano: u64_field(eobj, &["timeUnixNano", "time_unix_nano"], &epath)?,
            name: string(eobj, &["name"], &epath)?,
            attributes: attributes(eobj, &epath)?,
            dropped_attributes_count: u32_field(
                eobj,
                &["droppedAttributesCount", "dropped_attributes_count"],
                &epath,
            )?,
        });
    }
    let mut links = Vec::new();
    for (i, l) in array(obj, &["links"], path)?.iter().enumerate() {
        let lpath = format!("{path}.links[{i}]");
        let lobj = object(l, &lpath)?;
        links.push(Link {
            trace_id: id(lobj, &["traceId", "trace_id"], &lpath)?,
            span_id: id(lobj, &["spanId", "span_id"], &lpath)?,
            trace_state: string(lobj, &["traceState", "trace_state"], &lpath)?,
            attributes: attributes(lobj, &lpath)?,
            dropped_attributes_count: u32_field(
                lobj,
                &["droppedAttributesCount", "dropped_attributes_count"],
                &lpath,
            )?,
            flags: u32_field(lobj, &["flags"], &lpath)?,
        });
    }
    let status = match field(obj, &["status"]) {
        None => None,
        Some(s) => {
            let spath = format!("{path}.status");
            let sobj = object(s, &spath)?;
            Some(Status {
                message: string(sobj, &["message"], &spath)?,
                code: enum_field(sobj, &["code"], &spath, &STATUS_CODES)?,
            })
        }
    };
    Ok(Span {
        trace_id: id(obj, &["traceId", "trace_id"], path)?,
        span_id: id(obj, &["spanId", "span_id"], path)?,
        trace_state: string(obj, &["traceState", "trace_state"], path)?,
        parent_span_id: id(obj, &["parentSpanId", "parent_span_id"], path)?,
        flags: u32_field(obj, &["flags"], path)?,
        name: string(obj, &["name"], path)?,
        kind: enum_field(obj, &["kind"], path, &SPAN_KINDS)?,
        start_time_unix_nano: u64_field(obj, &["startTimeUnixNano", "start_time_unix_nano"], path)?,
        end_time_unix_nano: u64_field(obj, &["endTimeUnixNano", "end_time_unix_nano"], path)?,
        attributes: attributes(obj, path)?,
        dropped_attributes_count: dropped(&["droppedAttributesCount", "dropped_attributes_count"])?,
        events,
        dropped_events_count: dropped(&["droppedEventsCount", "dropped_events_count"])?,
        links,
        dropped_links_count: dropped(&["droppedLinksCount", "dropped_links_count"])?,
        status,
    })
}

fn attributes(obj: &Map<String, Json>, path: &str) -> Result<Vec<KeyValue>, JsonError> {
    key_values(
        array(obj, &["attributes"], path)?,
        &format!("{path}.attributes"),
        0,
    )
}

fn key_values(items: &[Json], path: &str, depth: usize) -> Result<Vec<KeyValue>, JsonError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, kv) in items.iter().enumerate() {
        let kpath = format!("{path}[{i}]");
        let kobj = object(kv, &kpath)?;
        let value = match field(kobj, &["value"]) {
            None => None,
            Some(v) => Some(any_value(v, &format!("{kpath}.value"), depth)?),
        };
        out.push(KeyValue {
            key: string(kobj, &["key"], &kpath)?,
            value,
        });
    }
    Ok(out)
}

fn any_value(json: &Json, path: &str, depth: usize) -> Result<AnyValue, JsonError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let obj = object(json, path)?;
    let Some((name, v)) = obj.iter().find(|(_, v)| !v.is_null()) else {
        return Ok(AnyValue { value: None });
    };
    let vpath = format!("{path}.{name}");
    let value = match name.as_str() {
        "stringValue" | "string_value" => Value::String(
            v.as_str()
                .ok_or_else(|| err(&vpath, "expected a string"))?
                .to_string(),
        ),
        "boolValue" | "bool_value" => Value::Bool(
            v.as_bool()
                .ok_or_else(|| err(&vpath, "expected a boolean"))?,
        ),
        "intValue" | "int_value" => Value::Int(match v {
            Json::String(s) => s
                .parse()
                .map_err(|_| err(&vpath, format!("{s:?} is not a 64-bit integer")))?,
            Json::Number(n) => n
                .as_i64()
                .ok_or_else(|| err(&vpath, format!("{n} is not a 64-bit integer")))?,
            _ => return Err(err(&vpath, "expected an integer")),
        }),
        "doubleValue" | "double_value" => Value::Double(match v {
            Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Json::String(s) => match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => other
                    .parse()
                    .map_err(|_| err(&vpath, format!("{other:?} is not a number")))?,
            },
            _ => return Err(err(&vpath, "expected a number")),
        }),
        "bytesValue" | "bytes_value" => Value::Bytes(
            v.as_str()
                .and_then(crate::base64::decode)
                .ok_or_else(|| err(&vpath, "expected base64 text"))?,
        ),
        "arrayValue" | "array_value" => {
            let aobj = object(v, &vpath)?;
            let mut values = Vec::new();
            for (i, item) in array(aobj, &["values"], &vpath)?.iter().enumerate() {
                values.push(any_value(item, &format!("{vpath}.values[{i}]"), depth + 1)?);
            }
            Value::Array(ArrayValue { values })
        }
        "kvlistValue" | "kvlist_value" => {
            let kobj = object(v, &vpath)?;
            Value::Kvlist(KeyValueList {
                values: key_values(
                    array(kobj, &["values"], &vpath)?,
                    &format!("{vpath}.values"),
                    depth + 1,
                )?,
            })
        }
        other => return Err(err(path, format!("unknown value kind {other:?}"))),
    };
    Ok(AnyValue { value: Some(value) })
}
