//! A plugin built against `vecdrop:format@0.2.0`: vecdrop (which speaks 0.1.0) must refuse it at
//! load with a message naming both versions.

wit_bindgen::generate!({ world: "format-plugin", path: "wit" });

use exports::vecdrop::format::parser::{Guest, PluginInfo};

struct FutureVersion;

impl Guest for FutureVersion {
    fn info() -> PluginInfo {
        PluginInfo { name: "future-version".to_owned(), version: "0.2.0".to_owned() }
    }
}

export!(FutureVersion);
