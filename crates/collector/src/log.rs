//! The collector's log: one JSON object per line on stderr.

use serde_json::{Map, Value};

fn line(level: &str, event: &str, fields: &[(&str, Value)]) {
    let mut obj = Map::new();
    obj.insert("ts_ms".into(), crate::store::now_ms().into());
    obj.insert("level".into(), level.into());
    obj.insert("event".into(), event.into());
    for (k, v) in fields {
        obj.insert((*k).into(), v.clone());
    }
    eprintln!("{}", Value::Object(obj));
}

pub fn info(event: &str, fields: &[(&str, Value)]) {
    line("info", event, fields);
}

pub fn warn(event: &str, fields: &[(&str, Value)]) {
    line("warn", event, fields);
}
