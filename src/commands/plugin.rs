//! `vecdrop plugin check FILE.wasm`: loads a plugin in its sandbox and prints its name, version,
//! formats and each format's schema.

use std::path::Path;

use super::{require_file, CommandError, EXIT_FATAL, EXIT_OK};
use crate::format::plugin::{LoadedPlugin, PluginLimits};

/// Loads `file` with `config_json` (what `[[plugins]] config` would hand it; `{}` by default) and
/// default limits, and prints what it declares. Returns [`EXIT_FATAL`] when a format's schema
/// cannot be read (e.g. the plugin needs config), after printing the reason.
pub async fn plugin_check(file: &Path, config_json: Option<&str>) -> Result<u8, CommandError> {
    require_file(file)?;
    let config_json = config_json.unwrap_or("{}").to_owned();
    if let Err(error) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&config_json) {
        return Err(CommandError::Usage(format!("--plugin-config: expected a JSON object: {error}")));
    }
    let path = file.to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let plugin = LoadedPlugin::load(&path, &config_json, PluginLimits::default(), None)?;
        Ok::<_, CommandError>(describe(&plugin))
    })
    .await
    .map_err(|error| CommandError::Other(format!("plugin check panicked: {error}")))??;
    print!("{}", report.text);
    Ok(if report.schema_failures == 0 { EXIT_OK } else { EXIT_FATAL })
}

struct Report {
    text: String,
    schema_failures: usize,
}

fn describe(plugin: &LoadedPlugin) -> Report {
    let mut text = format!(
        "plugin: {} {}\ninterface: {}@{}\nformats:\n",
        plugin.name(),
        plugin.version(),
        crate::format::plugin::INTERFACE_PACKAGE,
        crate::format::plugin::INTERFACE_VERSION
    );
    let mut schema_failures = 0;
    for format in plugin.formats() {
        let extensions: Vec<String> = format.extensions.iter().map(|extension| format!(".{extension}")).collect();
        text.push_str(&format!("  {} ({})\n", format.name, extensions.join(", ")));
        match plugin.schema(&format.name) {
            Ok(columns) => {
                for (name, kind) in columns {
                    text.push_str(&format!("    {name}: {kind}\n"));
                }
            }
            Err(error) => {
                schema_failures += 1;
                text.push_str(&format!("    schema unavailable: {error} (pass the plugin's config with --plugin-config '{{…}}')\n"));
            }
        }
    }
    Report { text, schema_failures }
}
