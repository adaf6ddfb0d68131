//! Does ONNX Runtime's I/O binding make CPU inference faster? Runs the model on the same batch
//! with `Session::run` (inputs lent as views, output allocated by ONNX Runtime's arena, as the
//! embedder does) and with `run_binding` (inputs bound once, the output bound to a tensor allocated
//! once), alternating, and prints the median run time of each.
//!
//! ```text
//! ORT_DYLIB_PATH=$(bash scripts/ort-library.sh) cargo run --release --example io_binding -- \
//!     models/all-MiniLM-L6-v2/model.onnx [batch] [tokens] [rounds]
//! ```
//! The best case for binding is a fixed shape (a bound output has one shape); the embedder's
//! batches vary in length, so binding could only help if it helped here.

use std::time::Instant;

use ort::session::Session;
use ort::value::{Tensor, TensorRef};

fn main() -> ort::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map_or("models/all-MiniLM-L6-v2/model.onnx", String::as_str);
    let batch: usize = args.get(2).and_then(|value| value.parse().ok()).unwrap_or(16);
    let tokens: usize = args.get(3).and_then(|value| value.parse().ok()).unwrap_or(40);
    let rounds: usize = args.get(4).and_then(|value| value.parse().ok()).unwrap_or(100);
    let library = std::env::var("ORT_DYLIB_PATH").expect("set ORT_DYLIB_PATH to libonnxruntime.so (bash scripts/ort-library.sh)");
    let environment = ort::init_from(library).expect("ONNX Runtime loads").with_name("io-binding").build()?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut session = Session::builder(&environment)?.with_intra_threads(threads)?.commit_from_file(model)?;

    let cells = batch * tokens;
    let ids: Vec<i64> = (0..cells).map(|cell| 1000 + (cell as i64 * 7919) % 20_000).collect();
    let mask = vec![1i64; cells];
    let type_ids = vec![0i64; cells];
    let shape = [batch, tokens];

    let mut binding = session.create_binding()?;
    let bound_ids = Tensor::from_array((shape, ids.clone()))?;
    let bound_mask = Tensor::from_array((shape, mask.clone()))?;
    let bound_types = Tensor::from_array((shape, type_ids.clone()))?;
    binding.bind_input("input_ids", &bound_ids)?;
    binding.bind_input("attention_mask", &bound_mask)?;
    binding.bind_input("token_type_ids", &bound_types)?;
    let output = Tensor::<f32>::new(&ort::memory::Allocator::default(), [batch, tokens, 384])?;
    binding.bind_output("last_hidden_state", output)?;

    let mut plain = Vec::with_capacity(rounds);
    let mut bound = Vec::with_capacity(rounds);
    for round in 0..rounds + 5 {
        let started = Instant::now();
        {
            let inputs = ort::inputs![
                "input_ids" => TensorRef::from_array_view((shape, ids.as_slice()))?,
                "attention_mask" => TensorRef::from_array_view((shape, mask.as_slice()))?,
                "token_type_ids" => TensorRef::from_array_view((shape, type_ids.as_slice()))?,
            ];
            let outputs = session.run(inputs)?;
            let (_, values) = outputs["last_hidden_state"].try_extract_tensor::<f32>()?;
            std::hint::black_box(values[0]);
        }
        let plain_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        {
            let outputs = session.run_binding(&binding)?;
            let (_, values) = outputs["last_hidden_state"].try_extract_tensor::<f32>()?;
            std::hint::black_box(values[0]);
        }
        let bound_seconds = started.elapsed().as_secs_f64();
        if round >= 5 {
            plain.push(plain_seconds);
            bound.push(bound_seconds);
        }
    }
    let median = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2] * 1000.0
    };
    let (plain_ms, bound_ms) = (median(&mut plain), median(&mut bound));
    println!(
        "batch {batch} × {tokens} tokens, {rounds} rounds: run {plain_ms:.2} ms, run_binding {bound_ms:.2} ms (binding/run {:.3})",
        bound_ms / plain_ms
    );
    Ok(())
}
