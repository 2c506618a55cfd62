//! `likeness run`: styles photos in-process through the same [`Pipeline`] the service uses, one
//! after the other, with a progress bar. A photo that fails is reported and the batch goes on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;
use crate::output::{OutputFormat, Rendered};
use crate::pipeline::Pipeline;
use likeness_contract::options::RawOptions as Options;

/// What became of one photo.
#[derive(Debug)]
pub struct BatchItem {
    /// The photo.
    pub photo: PathBuf,
    /// The file written, or why none was.
    pub result: Result<Written, String>,
}

/// A styled photo written to disk.
#[derive(Debug)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// The identity method that ran.
    pub method: &'static str,
    /// Why the style chose it.
    pub reason: String,
    /// The identity score, or why there is none.
    pub identity: Identity,
}

/// Styles each of `photos` with `style` into `out` (`<stem>.<style>.<ext>`), showing progress
/// on stderr; returns what became of each photo, in order.
pub async fn run(
    pipeline: &Pipeline,
    style: &str,
    photos: &[PathBuf],
    out: &Path,
    options: &Options,
    format: OutputFormat,
) -> anyhow::Result<Vec<BatchItem>> {
    std::fs::create_dir_all(out)?;
    let bar = ProgressBar::new(photos.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}")?
            .progress_chars("=> "),
    );
    let mut names = HashSet::new();
    let mut items = Vec::with_capacity(photos.len());
    for photo in photos {
        bar.set_message(photo.display().to_string());
        let target = output_path(out, photo, style, format, &mut names);
        let result = style_one(pipeline, style, photo, &target, options, format).await;
        let line = match &result {
            Ok(written) => format!(
                "ok     {} -> {} (method {}, {})",
                photo.display(),
                written.path.display(),
                written.method,
                match written.identity.report() {
                    Some(report) => format!("identity {:.2}", report.score),
                    None => "no identity score".into(),
                }
            ),
            Err(error) => format!("failed {}: {error}", photo.display()),
        };
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
        items.push(BatchItem {
            photo: photo.clone(),
            result,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(items)
}

async fn style_one(
    pipeline: &Pipeline,
    style: &str,
    photo: &Path,
    target: &Path,
    options: &Options,
    format: OutputFormat,
) -> Result<Written, String> {
    let bytes = std::fs::read(photo).map_err(|e| format!("reading: {e}"))?;
    let generation = pipeline
        .generate(style, bytes, options, &|_| {}, &CancellationToken::new())
        .await
        .map_err(|e| format!("{} ({})", e, e.code()))?;
    let id = photo
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let rendered =
        tokio::task::spawn_blocking(move || Rendered::encode(id, generation, format, Vec::new()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("encoding: {e}"))?;
    std::fs::write(target, &rendered.bytes)
        .map_err(|e| format!("writing {}: {e}", target.display()))?;
    Ok(Written {
        path: target.to_path_buf(),
        method: rendered.plan.method.kind().name(),
        reason: rendered.plan.reason,
        identity: rendered.identity,
    })
}

/// `<out>/<stem>.<style>.<ext>`, with `-2`, `-3`… when two photos share a stem.
fn output_path(
    out: &Path,
    photo: &Path,
    style: &str,
    format: OutputFormat,
    taken: &mut HashSet<String>,
) -> PathBuf {
    let stem = photo
        .file_stem()
        .map_or_else(|| "photo".to_string(), |s| s.to_string_lossy().into_owned());
    let mut name = format!("{stem}.{style}.{}", format.extension());
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}-{n}.{style}.{}", format.extension());
        n += 1;
    }
    out.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_do_not_collide() {
        let mut taken = HashSet::new();
        let out = Path::new("out");
        let a = output_path(
            out,
            Path::new("a/me.jpg"),
            "anime",
            OutputFormat::Png,
            &mut taken,
        );
        let b = output_path(
            out,
            Path::new("b/me.png"),
            "anime",
            OutputFormat::Png,
            &mut taken,
        );
        assert_eq!(a, Path::new("out/me.anime.png"));
        assert_eq!(b, Path::new("out/me-2.anime.png"));
    }
}
