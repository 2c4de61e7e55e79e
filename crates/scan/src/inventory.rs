//! Hosts inventory reader (being written).
use crate::yaml::Node;
use model::Facts;
pub fn looks_like_inventory(_doc: &Node) -> bool {
    false
}
pub fn hosts(_path: &str, _doc: &Node) -> Facts {
    Facts::default()
}
