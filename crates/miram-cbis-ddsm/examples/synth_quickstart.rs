//! Writes a small synthetic CBIS-DDSM dataset, the quick start of the crate.
//!
//! ```text
//! cargo run --release -p miram-cbis-ddsm --example synth_quickstart -- /tmp/cbis-synth [literal|tcia] [seed]
//! ```
//!
//! prints the progress, then one line per CSV file and a summary such as
//! `wrote 54 images and 60 abnormalities to /tmp/cbis-synth in 4.1 s`.

use std::path::PathBuf;

use miram_cbis_ddsm::synth::{synthesize, SynthConfig, SynthLayout};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let root = PathBuf::from(args.get(1).map_or("cbis-synth", String::as_str));
    let layout = match args.get(2).map(String::as_str) {
        Some("tcia") => SynthLayout::Tcia,
        _ => SynthLayout::Literal,
    };
    let seed: u64 = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let cfg = SynthConfig::small().with_seed(seed).with_layout(layout);
    let t = std::time::Instant::now();
    let manifest = synthesize(&root, &cfg, &|p| {
        if p.done % 10 == 0 || p.done == p.total {
            eprintln!("{} / {} images", p.done, p.total);
        }
    })?;
    for name in &manifest.csv_files {
        let n = manifest
            .abnormalities
            .iter()
            .filter(|a| &a.csv_file == name)
            .count();
        println!("{name}: {n} rows");
    }
    println!(
        "wrote {} images and {} abnormalities to {} in {:.1} s",
        manifest.images.len(),
        manifest.abnormalities.len(),
        root.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
