//! `vecdrop search TEXT`: embeds TEXT and prints the nearest rows.

use super::{connect_milvus, load_embedder, CommandError, EXIT_OK};
use crate::settings::Settings;
use crate::sink::CollectionSpec;

/// Prints the `k` rows nearest to `text` in the pipeline's collection: rank, score, id, text and
/// the kept fields; with `json`, one JSON object per hit.
pub async fn search(settings: Settings, pipeline: Option<&str>, k: usize, text: &str, json: bool) -> Result<u8, CommandError> {
    let pipeline = settings.pipeline(pipeline).map_err(CommandError::Usage)?.clone();
    let embedder = load_embedder(&settings).await?;
    let sink = connect_milvus(&settings).await?;
    let spec = CollectionSpec::of(&pipeline, embedder.dimension(), embedder.identity());
    sink.open_collection(&spec).await?;
    let vector = embedder.embed(vec![text.to_owned()]).await?.remove(0);
    let hits = sink.search(&spec, vector, k).await?;
    for (rank, hit) in hits.iter().enumerate() {
        if json {
            println!("{}", serde_json::to_string(hit).expect("hits serialise"));
        } else {
            let fields = if hit.fields.is_empty() { String::new() } else { format!("  {}", serde_json::Value::Object(hit.fields.clone())) };
            println!("{:>2}. {:.4}  {}  {}{}", rank + 1, hit.score, hit.id, one_line(&hit.text, 100), fields);
        }
    }
    if hits.is_empty() && !json {
        println!("no rows in collection {}", spec.collection.name);
    }
    Ok(EXIT_OK)
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let cut: String = flat.chars().take(max_chars).collect();
    format!("{cut}…")
}
