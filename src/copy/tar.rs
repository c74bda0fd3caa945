//! The tar format of snapshot streams: POSIX.1-2001 (PAX) records over
//! ustar headers, written and read here rather than with a tar crate, so
//! that reading an untrusted stream is strict and bounded.
//!
//! Invariants of the reader:
//! - a PAX `x` header applies to exactly the next file entry, and a second
//!   extension header before that entry is an error (no desynchronizing
//!   one parser against another);
//! - what it keeps in memory is bounded whatever the stream says: a PAX
//!   header is at most [`MAX_PAX`] bytes, a path or link target at most
//!   [`MAX_PATH`], a sparse map at most [`MAX_SPARSE_SEGMENTS`] segments;
//! - every header's checksum is checked, numbers must parse, and the
//!   stream must end with its two zero blocks: a cut stream is an error,
//!   never a shorter tree;
//! - it never interprets a path: names are bytes, checked by the caller.
//!
//! The writer emits, for each entry, a PAX header with its path, link
//! target, owner, size and nanosecond times, and every extended attribute
//! (`SCHILY.xattr.NAME`, the values raw), then a ustar header; a sparse
//! file is written in GNU's PAX format 1.0 (`GNU.sparse.*`), which GNU tar
//! reads too.

use std::io::{self, Read, Write};

/// Largest PAX header accepted.
pub const MAX_PAX: u64 = 1 << 20;
/// Longest path or link target accepted.
pub const MAX_PATH: usize = 4096;
/// Most data segments of a sparse file accepted.
pub const MAX_SPARSE_SEGMENTS: usize = 1 << 16;

const BLOCK: usize = 512;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }

    fn of_flag(flag: u8) -> Option<Kind> {
        Some(match flag {
            b'0' | 0 | b'7' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            _ => return None,
        })
    }
}

/// A time: seconds since the epoch and nanoseconds (0..1e9).
pub type Time = (i64, u32);

/// One entry's header, as written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of data in the stream (for a sparse file, of its segments).
    pub size: u64,
    pub mtime: Time,
    pub atime: Option<Time>,
    /// Symlink target, or the earlier path a hard link names.
    pub link: Option<Vec<u8>>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A sparse file: its length, and its data segments (offset, length).
    pub sparse: Option<Sparse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    pub real_size: u64,
    pub segments: Vec<(u64, u64)>,
}

impl Header {
    pub fn new(path: Vec<u8>, kind: Kind) -> Header {
        Header {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: (0, 0),
            atime: None,
            link: None,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            sparse: None,
        }
    }
}

/// Why a stream could not be read.
#[derive(Debug)]
pub enum TarError {
    Io(io::Error),
    /// The stream ends before its end-of-archive blocks.
    Truncated,
    /// The stream is not a well-formed tar stream of ours; what is wrong.
    Corrupt(String),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> TarError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Truncated
        } else {
            TarError::Io(e)
        }
    }
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::Io(e) => write!(f, "{e}"),
            TarError::Truncated => write!(f, "the stream is cut short"),
            TarError::Corrupt(why) => write!(f, "the stream is corrupt: {why}"),
        }
    }
}

fn corrupt<T>(why: impl Into<String>) -> Result<T, TarError> {
    Err(TarError::Corrupt(why.into()))
}

/// Writes a tar stream; [`Writer::finish`] writes its end.
pub struct Writer<W: Write> {
    out: W,
    /// Bytes written, for the padding of entries' data.
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer { out, written: 0 }
    }

    /// Writes `h` (a PAX header, then a ustar one); for a file, its data
    /// (`h.size` bytes, after a sparse map) follows with [`Writer::data`]
    /// and [`Writer::pad`].
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        let mut pax = Vec::new();
        let mut name = h.path.clone();
        let mut size = h.size;
        let mut map = Vec::new();
        if let Some(sparse) = &h.sparse {
            record(&mut pax, "GNU.sparse.major", b"1");
            record(&mut pax, "GNU.sparse.minor", b"0");
            record(&mut pax, "GNU.sparse.name", &h.path);
            record(
                &mut pax,
                "GNU.sparse.realsize",
                sparse.real_size.to_string().as_bytes(),
            );
            map = sparse_map(sparse);
            size += map.len() as u64;
            // As GNU tar names it, for tools that know no sparse files.
            let base = h.path.rsplit(|&b| b == b'/').next().unwrap_or(&h.path);
            name = [b"GNUSparseFile.0/".as_slice(), base].concat();
        } else {
            record(&mut pax, "path", &h.path);
        }
        if let Some(link) = &h.link {
            record(&mut pax, "linkpath", link);
        }
        record(&mut pax, "mtime", time_text(h.mtime).as_bytes());
        if let Some(atime) = h.atime {
            record(&mut pax, "atime", time_text(atime).as_bytes());
        }
        record(&mut pax, "uid", h.uid.to_string().as_bytes());
        record(&mut pax, "gid", h.gid.to_string().as_bytes());
        record(&mut pax, "size", size.to_string().as_bytes());
        for (key, value) in &h.xattrs {
            let key = [b"SCHILY.xattr.".as_slice(), &encode_key(key)].concat();
            record_bytes(&mut pax, &key, value);
        }
        let pax_name = [b"PaxHeaders/".as_slice(), &truncated(&name, 80)].concat();
        let mut xh = Header::new(pax_name, Kind::File);
        xh.size = pax.len() as u64;
        xh.mode = 0o644;
        self.write_block(&ustar(&xh, b'x'))?;
        self.out.write_all(&pax)?;
        self.written += pax.len() as u64;
        self.pad()?;
        let mut uh = h.clone();
        uh.path = name;
        uh.size = size;
        self.write_block(&ustar(&uh, h.kind.flag()))?;
        if !map.is_empty() {
            self.data(&map)?;
        }
        Ok(())
    }

    /// The output.
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes data of the current entry.
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Pads the current entry's data to a whole block.
    pub fn pad(&mut self) -> io::Result<()> {
        let rest = (BLOCK as u64 - self.written % BLOCK as u64) % BLOCK as u64;
        self.out.write_all(&[0u8; BLOCK][..rest as usize])?;
        self.written += rest;
        Ok(())
    }

    fn write_block(&mut self, block: &[u8; BLOCK]) -> io::Result<()> {
        self.out.write_all(block)?;
        self.written += BLOCK as u64;
        Ok(())
    }

    /// Writes the two zero blocks that end a stream; gives back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// GNU's sparse map 1.0: the number of segments, then each one's offset
/// and length, one decimal number a line, padded to a block.
fn sparse_map(sparse: &Sparse) -> Vec<u8> {
    let mut map = format!("{}\n", sparse.segments.len()).into_bytes();
    for (off, len) in &sparse.segments {
        map.extend_from_slice(format!("{off}\n{len}\n").as_bytes());
    }
    let rest = (BLOCK - map.len() % BLOCK) % BLOCK;
    map.resize(map.len() + rest, 0);
    map
}

fn truncated(name: &[u8], max: usize) -> Vec<u8> {
    name[name.len().saturating_sub(max)..].to_vec()
}

fn time_text((secs, nanos): Time) -> String {
    if secs < 0 && nanos > 0 {
        // -1.5 s is secs -2, nanos 5e8.
        format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nanos)
    } else {
        format!("{secs}.{nanos:09}")
    }
}

fn parse_time(text: &[u8]) -> Option<Time> {
    let text = std::str::from_utf8(text).ok()?;
    let (neg, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut digits = frac.as_bytes().iter().take(9).map(|b| u32::from(b - b'0'));
    let mut nanos = 0u32;
    for _ in 0..9 {
        nanos = nanos * 10 + digits.next().unwrap_or(0);
    }
    Some(match (neg, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

/// An attribute name in a PAX keyword, which cannot hold `=`: `=` and `%`
/// percent-encoded, as GNU tar writes them.
fn encode_key(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'=' => out.extend_from_slice(b"%3D"),
            b'%' => out.extend_from_slice(b"%25"),
            b => out.push(b),
        }
    }
    out
}

fn decode_key(key: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        if key[i] == b'%' {
            let hex = std::str::from_utf8(key.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(key[i]);
            i += 1;
        }
    }
    Some(out)
}

fn record(pax: &mut Vec<u8>, key: &str, value: &[u8]) {
    record_bytes(pax, key.as_bytes(), value)
}

/// `LEN KEY=VALUE\n`, LEN counting itself.
fn record_bytes(pax: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    pax.extend_from_slice(len.to_string().as_bytes());
    pax.push(b' ');
    pax.extend_from_slice(key);
    pax.push(b'=');
    pax.extend_from_slice(value);
    pax.push(b'\n');
}

/// A ustar header block for `h`; what does not fit is in the PAX header.
fn ustar(h: &Header, flag: u8) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let name = truncated(&h.path, 99);
    b[..name.len()].copy_from_slice(&name);
    octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    octal(&mut b[108..116], u64::from(h.uid).min(0o7777777));
    octal(&mut b[116..124], u64::from(h.gid).min(0o7777777));
    octal(&mut b[124..136], h.size.min(0o77777777777));
    octal(&mut b[136..148], h.mtime.0.clamp(0, 0o77777777777) as u64);
    b[156] = flag;
    if let Some(link) = &h.link {
        let link = truncated(link, 99);
        b[157..157 + link.len()].copy_from_slice(&link);
    }
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], u64::from(h.dev_major).min(0o7777777));
    octal(&mut b[337..345], u64::from(h.dev_minor).min(0o7777777));
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    octal(&mut b[148..155], sum);
    b[155] = b' ';
    b
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

fn parse_octal(field: &[u8], what: &str) -> Result<u64, TarError> {
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    if !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return corrupt(format!("a header's {what} is not a number"));
    }
    u64::from_str_radix(std::str::from_utf8(&text).unwrap_or("0"), 8)
        .or_else(|_| corrupt(format!("a header's {what} is out of range")))
}

/// Reads a tar stream entry by entry.
pub struct Reader<R: Read> {
    input: R,
    /// Data of the current entry not read yet, and its padding.
    left: u64,
    pad: u64,
    /// Whether the end-of-archive blocks were read.
    ended: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            left: 0,
            pad: 0,
            ended: false,
        }
    }

    /// The next entry's header, skipping what is left of the current
    /// entry's data; `None` at the end of the stream.
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        self.skip_rest()?;
        if self.ended {
            return Ok(None);
        }
        let mut pax: Option<Vec<u8>> = None;
        loop {
            let mut block = [0u8; BLOCK];
            self.input.read_exact(&mut block)?;
            if block.iter().all(|&b| b == 0) {
                let mut second = [0u8; BLOCK];
                self.input.read_exact(&mut second)?;
                if second.iter().any(|&b| b != 0) || pax.is_some() {
                    return corrupt("a zero block in the middle of the stream");
                }
                self.ended = true;
                return Ok(None);
            }
            check_sum(&block)?;
            let size = parse_octal(&block[124..136], "size")?;
            match block[156] {
                b'x' => {
                    if pax.is_some() {
                        return corrupt("two extended headers for one entry");
                    }
                    if size > MAX_PAX {
                        return corrupt(format!("an extended header of {size} bytes"));
                    }
                    let mut data = vec![0u8; size as usize];
                    self.input.read_exact(&mut data)?;
                    self.skip(padding(size))?;
                    pax = Some(data);
                }
                b'g' => return corrupt("a global extended header, which lxc-snap never writes"),
                flag => {
                    let Some(kind) = Kind::of_flag(flag) else {
                        return corrupt(format!("an entry of type {:?}", char::from(flag)));
                    };
                    let h = self.entry(&block, kind, size, pax.as_deref())?;
                    return Ok(Some(h));
                }
            }
        }
    }

    fn entry(
        &mut self,
        block: &[u8; BLOCK],
        kind: Kind,
        size: u64,
        pax: Option<&[u8]>,
    ) -> Result<Header, TarError> {
        let field = |range: std::ops::Range<usize>| {
            let f = &block[range];
            f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())].to_vec()
        };
        let mut path = field(0..100);
        let prefix = field(345..500);
        if &block[257..262] == b"ustar" && !prefix.is_empty() {
            path = [prefix, b"/".to_vec(), path].concat();
        }
        let mut h = Header::new(path, kind);
        h.mode = (parse_octal(&block[100..108], "mode")? & 0o7777) as u32;
        h.uid = parse_octal(&block[108..116], "uid")? as u32;
        h.gid = parse_octal(&block[116..124], "gid")? as u32;
        h.size = size;
        h.mtime = (parse_octal(&block[136..148], "mtime")? as i64, 0);
        let link = field(157..257);
        if !link.is_empty() {
            h.link = Some(link);
        }
        h.dev_major = parse_octal(&block[329..337], "device number")? as u32;
        h.dev_minor = parse_octal(&block[337..345], "device number")? as u32;
        let mut sparse_name = None;
        let mut real_size = None;
        let mut sparse_version = (None, None);
        if let Some(pax) = pax {
            for (key, value) in records(pax)? {
                let number = |what: &str| -> Result<u64, TarError> {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .map_or_else(|| corrupt(format!("the {what} {value:?}")), Ok)
                };
                match key {
                    b"path" => h.path = value.to_vec(),
                    b"linkpath" => h.link = Some(value.to_vec()),
                    b"size" => h.size = number("size")?,
                    b"uid" => h.uid = u32::try_from(number("uid")?).or(corrupt("a uid"))?,
                    b"gid" => h.gid = u32::try_from(number("gid")?).or(corrupt("a gid"))?,
                    b"mtime" => {
                        h.mtime = parse_time(value).map_or_else(|| corrupt("an mtime"), Ok)?
                    }
                    b"atime" => {
                        h.atime = Some(parse_time(value).map_or_else(|| corrupt("an atime"), Ok)?)
                    }
                    b"GNU.sparse.name" => sparse_name = Some(value.to_vec()),
                    b"GNU.sparse.realsize" => real_size = Some(number("sparse size")?),
                    b"GNU.sparse.major" => sparse_version.0 = Some(number("sparse version")?),
                    b"GNU.sparse.minor" => sparse_version.1 = Some(number("sparse version")?),
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            let name = decode_key(name)
                                .filter(|n| !n.is_empty() && !n.contains(&0))
                                .map_or_else(|| corrupt("an extended attribute's name"), Ok)?;
                            h.xattrs.push((name, value.to_vec()));
                        }
                    }
                }
            }
        }
        if h.path.len() > MAX_PATH || h.link.as_ref().is_some_and(|l| l.len() > MAX_PATH) {
            return corrupt("a path longer than 4096 bytes");
        }
        if h.path.contains(&0) || h.link.as_ref().is_some_and(|l| l.contains(&0)) {
            return corrupt("a path with a NUL byte");
        }
        if !matches!(h.kind, Kind::File) && h.size != 0 {
            return corrupt("data in an entry that is no regular file");
        }
        self.left = h.size;
        self.pad = padding(h.size);
        match (sparse_version, sparse_name, real_size) {
            ((None, None), None, None) => {}
            ((Some(1), Some(0)), Some(name), Some(real_size)) if h.kind == Kind::File => {
                h.path = name;
                let segments = self.read_sparse_map()?;
                let mut end = 0u64;
                let mut data = 0u64;
                for &(off, len) in &segments {
                    if off < end || off.checked_add(len).map_or(true, |e| e > real_size) {
                        return corrupt("a sparse map out of order or past the file's end");
                    }
                    end = off + len;
                    data += len;
                }
                if data != self.left {
                    return corrupt("a sparse map that does not add up to the data");
                }
                h.size = self.left;
                h.sparse = Some(Sparse {
                    real_size,
                    segments,
                });
            }
            _ => return corrupt("a sparse file in a format other than GNU's 1.0"),
        }
        Ok(h)
    }

    /// Reads the GNU 1.0 sparse map at the start of the data.
    fn read_sparse_map(&mut self) -> Result<Vec<(u64, u64)>, TarError> {
        let mut buf = Vec::new();
        let mut numbers = Vec::new();
        let mut want = None;
        loop {
            if self.left < BLOCK as u64 {
                return corrupt("a sparse map cut short");
            }
            let mut block = [0u8; BLOCK];
            self.input.read_exact(&mut block)?;
            self.left -= BLOCK as u64;
            buf.extend_from_slice(&block);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let n: u64 = std::str::from_utf8(&line[..line.len() - 1])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map_or_else(|| corrupt("a sparse map entry is not a number"), Ok)?;
                match want {
                    None => {
                        if n as usize > MAX_SPARSE_SEGMENTS {
                            return corrupt(format!("a sparse map of {n} segments"));
                        }
                        want = Some(n as usize);
                    }
                    Some(_) => numbers.push(n),
                }
                if want == Some(numbers.len() / 2) && numbers.len() % 2 == 0 {
                    return Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect());
                }
            }
            if buf.len() > 64 {
                return corrupt("a sparse map line too long");
            }
        }
    }

    /// Reads data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let got = self.input.read(&mut buf[..n])?;
        if got == 0 {
            return Err(TarError::Truncated);
        }
        self.left -= got as u64;
        Ok(got)
    }

    /// Skips what is left of the current entry's data (as
    /// [`Reader::next_header`] does first).
    pub fn skip_entry(&mut self) -> Result<(), TarError> {
        self.skip_rest()
    }

    /// The input.
    pub fn input_ref(&self) -> &R {
        &self.input
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.left + self.pad;
        self.left = 0;
        self.pad = 0;
        self.skip(n)
    }

    fn skip(&mut self, n: u64) -> Result<(), TarError> {
        let copied = io::copy(&mut (&mut self.input).take(n), &mut io::sink())?;
        if copied != n {
            return Err(TarError::Truncated);
        }
        Ok(())
    }

    /// Whether the end-of-archive blocks were read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The input, once the stream is read.
    pub fn into_inner(self) -> R {
        self.input
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn check_sum(block: &[u8; BLOCK]) -> Result<(), TarError> {
    let stored = parse_octal(&block[148..156], "checksum")?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
        .sum();
    if sum != stored {
        return corrupt("a header's checksum does not match");
    }
    Ok(())
}

/// A PAX record: keyword and value.
type Record<'a> = (&'a [u8], &'a [u8]);

/// The records of a PAX header.
fn records(mut pax: &[u8]) -> Result<Vec<Record<'_>>, TarError> {
    let mut out = Vec::new();
    while !pax.is_empty() {
        let Some(space) = pax.iter().position(|&b| b == b' ') else {
            return corrupt("an extended header record without a length");
        };
        let len: usize = std::str::from_utf8(&pax[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .map_or_else(|| corrupt("an extended header record's length"), Ok)?;
        if len <= space + 1 || len > pax.len() || pax[len - 1] != b'\n' {
            return corrupt("an extended header record's length");
        }
        let body = &pax[space + 1..len - 1];
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return corrupt("an extended header record without a value");
        };
        out.push((&body[..eq], &body[eq + 1..]));
        pax = &pax[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(headers: &[(Header, Vec<u8>)]) -> Vec<(Header, Vec<u8>)> {
        let mut w = Writer::new(Vec::new());
        for (h, data) in headers {
            w.header(h).expect("header");
            w.data(data).expect("data");
            w.pad().expect("pad");
        }
        let bytes = w.finish().expect("finish");
        let mut r = Reader::new(bytes.as_slice());
        let mut out = Vec::new();
        while let Some(h) = r.next_header().expect("next") {
            let mut data = Vec::new();
            let mut buf = [0u8; 100];
            loop {
                let n = r.read_data(&mut buf).expect("data");
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.push((h, data));
        }
        assert!(r.ended());
        out
    }

    #[test]
    fn headers_and_data_come_back_as_written() {
        let mut long = Header::new(vec![b'd'; 300], Kind::File);
        long.size = 5;
        long.mtime = (-2, 500_000_000);
        long.atime = Some((1_700_000_000, 1));
        long.uid = 100_000;
        long.gid = 4_000_000_000;
        long.mode = 0o4755;
        long.xattrs = vec![
            (b"security.capability".to_vec(), vec![1, 0, 0, 2, 0, 255]),
            (b"user.x=y%".to_vec(), b"a\nb".to_vec()),
        ];
        let mut link = Header::new(b"l".to_vec(), Kind::Symlink);
        link.link = Some(vec![b'/'; 200]);
        let mut dev = Header::new(b"dev/null".to_vec(), Kind::Char);
        dev.dev_major = 1;
        dev.dev_minor = 3;
        let mut sparse = Header::new(b"holes/f".to_vec(), Kind::File);
        sparse.size = 3;
        sparse.sparse = Some(Sparse {
            real_size: 1 << 40,
            segments: vec![(0, 1), (4096, 2), (1 << 40, 0)],
        });
        let input = vec![
            (long, b"hello".to_vec()),
            (link, Vec::new()),
            (dev, Vec::new()),
            (sparse, b"abc".to_vec()),
        ];
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn bad_streams_are_refused() {
        let mut h = Header::new(b"f".to_vec(), Kind::File);
        h.size = 600;
        let mut w = Writer::new(Vec::new());
        w.header(&h).expect("header");
        w.data(&[7u8; 600]).expect("data");
        w.pad().expect("pad");
        let good = w.finish().expect("finish");
        let read_all = |bytes: &[u8]| -> Result<usize, TarError> {
            let mut r = Reader::new(bytes);
            let mut n = 0;
            while r.next_header()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(read_all(&good).expect("good"), 1);
        // Cut anywhere: never a shorter stream.
        for cut in [0, 100, 512, 1024, 1600, good.len() - 1] {
            assert!(
                matches!(read_all(&good[..cut]), Err(TarError::Truncated)),
                "cut at {cut}"
            );
        }
        // A flipped byte in a header.
        let mut bad = good.clone();
        bad[1024 + 10] ^= 1;
        assert!(matches!(read_all(&bad), Err(TarError::Corrupt(_))));
        // An extended header larger than the bound.
        let mut big = Header::new(b"PaxHeaders/x".to_vec(), Kind::File);
        big.size = MAX_PAX + 1;
        let mut bytes = ustar(&big, b'x').to_vec();
        bytes.resize(bytes.len() + 4096, 0);
        assert!(matches!(read_all(&bytes), Err(TarError::Corrupt(_))));
    }

    #[test]
    fn times_round_trip_through_text() {
        for t in [
            (0, 0),
            (1, 1),
            (-1, 0),
            (-2, 999_999_999),
            (i64::MAX / 2, 5),
        ] {
            assert_eq!(parse_time(time_text(t).as_bytes()), Some(t), "{t:?}");
        }
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"x"), None);
    }
}
