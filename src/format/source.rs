//! The file under every reader ([`Source`]) and the byte stream under the text formats: plain,
//! gzip or zstd, opened at an offset of the decompressed content (compressed streams are
//! decompressed from the start and skipped forward).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file a reader reads: its name (for messages, the extension and the compression) and where its
/// bytes come from. A *pinned* source holds a descriptor opened once (a drop-folder entry, opened
/// without following links and checked to be a regular file): every reader, the hash and the
/// identity checks read that same inode, whatever happens to the name meanwhile. An unpinned
/// source opens its name on each use (files named on the command line, tests).
#[derive(Debug, Clone)]
pub struct Source {
    name: PathBuf,
    pinned: Option<Arc<File>>,
}

impl Source {
    /// A source read through `file`, an open regular file, named `name`.
    pub fn pinned(name: impl Into<PathBuf>, file: File) -> Self {
        Self { name: name.into(), pinned: Some(Arc::new(file)) }
    }

    /// The file's name as given.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Whether reads go through a descriptor held since the file was picked up.
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// A new handle on the content, at offset 0 and with a position of its own. Pinned: the same
    /// inode as the held descriptor (re-opened through `/proc/self/fd`, checked by device and
    /// inode). Unpinned: the name opened without blocking and checked to be a regular file, so a
    /// FIFO or a device never blocks a reader.
    pub fn open(&self) -> io::Result<File> {
        match &self.pinned {
            Some(file) => reopen(file),
            None => open_regular(&self.name, true),
        }
    }

    /// The file's metadata: of the held descriptor (pinned) or of the name.
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        match &self.pinned {
            Some(file) => file.metadata(),
            None => std::fs::metadata(&self.name),
        }
    }
}

impl From<&Path> for Source {
    fn from(path: &Path) -> Self {
        Self { name: path.to_owned(), pinned: None }
    }
}

impl From<&PathBuf> for Source {
    fn from(path: &PathBuf) -> Self {
        Self::from(path.as_path())
    }
}

impl From<PathBuf> for Source {
    fn from(path: PathBuf) -> Self {
        Self { name: path, pinned: None }
    }
}

impl From<&Source> for Source {
    fn from(source: &Source) -> Self {
        source.clone()
    }
}

/// Opens `path` for reading without blocking (a FIFO or a device answers at once) and, unless
/// `follow_links`, without following a symbolic link in its last component; fails unless the
/// opened file is a regular file. The returned file blocks normally (`O_NONBLOCK` is cleared).
pub fn open_regular(path: &Path, follow_links: bool) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if !follow_links {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|error| {
        if error.raw_os_error() == Some(libc::ELOOP) && !follow_links {
            io::Error::new(io::ErrorKind::InvalidInput, "a symbolic link (not followed)")
        } else {
            error
        }
    })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a regular file ({})", describe_kind(&kind))));
    }
    clear_nonblocking(&file)?;
    Ok(file)
}

/// "directory", "FIFO", "socket", "character device", "block device", "symbolic link" or "file".
pub fn describe_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "file"
    }
}

fn clear_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A second handle on `file`'s inode with its own position: `/proc/self/fd/N` names the open
/// file itself, not a path, so a renamed or replaced name does not matter. Where `/proc` is not
/// mounted, a duplicate descriptor rewound to 0 (readers of one import run one after the other).
fn reopen(file: &File) -> io::Result<File> {
    let pinned = file.metadata()?;
    let by_proc = File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).and_then(|reopened| {
        let metadata = reopened.metadata()?;
        if metadata.dev() == pinned.dev() && metadata.ino() == pinned.ino() {
            Ok(reopened)
        } else {
            Err(io::Error::other("/proc/self/fd named another file"))
        }
    });
    match by_proc {
        Ok(reopened) => Ok(reopened),
        Err(_) => {
            let mut duplicate = file.try_clone()?;
            duplicate.seek(SeekFrom::Start(0))?;
            Ok(duplicate)
        }
    }
}

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

/// Opens the content of `source` at byte `offset` of its decompressed content.
pub fn open_text(source: &Source, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = source.open()?;
    match Compression::of(source.name()) {
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
                open_text(&Source::from(path), offset).unwrap().read_to_end(&mut rest).unwrap();
                assert_eq!(rest, content[offset as usize..], "{} at {offset}", path.display());
            }
        }
        assert!(open_text(&Source::from(&gzip), 400_001).is_err());
        assert_eq!(Compression::of(&gzip).strip(&gzip), plain);
    }

    #[test]
    fn a_pinned_source_reads_its_inode_whatever_happens_to_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "first content").unwrap();
        let source = Source::pinned(&path, open_regular(&path, false).unwrap());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "planted after the pick-up").unwrap();
        for _ in 0..2 {
            let mut content = String::new();
            open_text(&source, 0).unwrap().read_to_string(&mut content).unwrap();
            assert_eq!(content, "first content");
        }
        assert_eq!(source.metadata().unwrap().len(), 13);
    }

    #[test]
    fn links_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.csv");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = open_regular(&link, false).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(open_regular(&link, true).is_ok(), "followed when asked");
        let fifo = dir.path().join("fifo.csv");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = open_regular(&fifo, false).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
        assert!(open_regular(dir.path(), false).unwrap_err().to_string().contains("directory"));
        let device = open_regular(Path::new("/dev/zero"), true).unwrap_err();
        assert!(device.to_string().contains("character device"), "{device}");
    }
}
