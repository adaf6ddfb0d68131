//! The byte stream under the text formats: plain, gzip or zstd, opened at an offset of the
//! decompressed content (compressed streams are decompressed from the start and skipped forward).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How a text file is compressed, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// `.gz`
    Gzip,
    /// `.zst`
    Zstd,
}

impl Compression {
    /// The compression of `path`, from its last extension.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|extension| extension.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("gz") => Compression::Gzip,
            Some("zst") => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// `path` without the compression extension.
    pub fn strip(self, path: &Path) -> PathBuf {
        match self {
            Compression::None => path.to_owned(),
            Compression::Gzip | Compression::Zstd => path.with_extension(""),
        }
    }
}

/// Opens the content of `path` at byte `offset` of its decompressed content.
pub fn open_text(path: &Path, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path)?;
    match Compression::of(path) {
        Compression::None => {
            file.seek(SeekFrom::Start(offset))?;
            Ok(Box::new(BufReader::with_capacity(64 * 1024, file)))
        }
        Compression::Gzip => skip(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))), offset),
        Compression::Zstd => skip(BufReader::new(zstd::stream::read::Decoder::new(file)?), offset),
    }
}

fn skip<R: BufRead + Send + 'static>(mut reader: R, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
    let skipped = io::copy(&mut (&mut reader).take(offset), &mut io::sink())?;
    if skipped < offset {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the content ends at byte {skipped}, before the checkpoint at {offset}"),
        ));
    }
    Ok(Box::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_compression_opens_at_the_same_decompressed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..100_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let plain = dir.path().join("data.csv");
        std::fs::write(&plain, &content).unwrap();
        let gzip = dir.path().join("data.csv.gz");
        let mut encoder = flate2::write::GzEncoder::new(File::create(&gzip).unwrap(), flate2::Compression::fast());
        encoder.write_all(&content).unwrap();
        encoder.finish().unwrap();
        let zstd_path = dir.path().join("data.csv.zst");
        std::fs::write(&zstd_path, zstd::encode_all(&content[..], 1).unwrap()).unwrap();
        for path in [&plain, &gzip, &zstd_path] {
            for offset in [0u64, 1, 4096, 399_999, 400_000] {
                let mut rest = Vec::new();
                open_text(path, offset).unwrap().read_to_end(&mut rest).unwrap();
                assert_eq!(rest, content[offset as usize..], "{} at {offset}", path.display());
            }
        }
        assert!(open_text(&gzip, 400_001).is_err());
        assert_eq!(Compression::of(&gzip).strip(&gzip), plain);
    }
}
