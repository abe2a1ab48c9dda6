//! Repairing a segment a crash left uncommitted: walk its top-level boxes and find how many leading bytes form a
//! playable file (ftyp, moov, then complete `[prft] moof mdat` fragments). Pure: bytes come from a `read_at`
//! closure, so the same walk runs over the host's storage and over memory in tests.
//!
//! Any input is safe: sizes are checked against the file's length before use, 64-bit sizes are read, a size of 0
//! ("to the end of the file") or below the header's own size ends the walk, and every step advances by at least 8
//! bytes, so the walk ends after at most size/8 reads.

/// What to do with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the first `len` bytes (cut the rest): ftyp, moov and `fragments` complete fragments.
    Keep { len: u64, fragments: u32 },
    /// Nothing worth keeping: no init segment, or no complete fragment after it.
    Remove(String),
}

/// Boxes that may stand between fragments without being part of one.
const NEUTRAL: [&[u8; 4]; 6] = [b"free", b"skip", b"styp", b"sidx", b"emsg", b"uuid"];

/// Walks the file of `size` bytes; `read_at(offset, len)` returns up to `len` bytes from `offset`.
pub fn scan(size: u64, mut read_at: impl FnMut(u64, u32) -> Result<Vec<u8>, String>) -> Result<Verdict, String> {
    let mut at = 0u64;
    let mut keep = 0u64;
    let mut fragments = 0u32;
    let mut seen_ftyp = false;
    let mut seen_moov = false;
    // A moof was read and its mdat has not been, or a prft announced a moof.
    let mut in_fragment = false;
    let mut moof_seen = false;

    while at < size {
        let want = u32::try_from((size - at).min(16)).unwrap_or(16);
        let head = read_at(at, want)?;
        if head.len() < 8 {
            break;
        }
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let box_len = match size32 {
            // Extends to the end of the file: a box still being written when the process died.
            0 => break,
            1 => {
                if head.len() < 16 {
                    break;
                }
                let mut large = [0u8; 8];
                large.copy_from_slice(&head[8..16]);
                let large = u64::from_be_bytes(large);
                if large < 16 {
                    break;
                }
                large
            }
            n if n < 8 => break,
            n => u64::from(n),
        };
        let Some(end) = at.checked_add(box_len).filter(|&end| end <= size) else { break };

        if !seen_ftyp {
            if &kind != b"ftyp" {
                return Ok(Verdict::Remove("it does not start with an ftyp box".into()));
            }
            seen_ftyp = true;
        } else {
            match &kind {
                b"moov" if !seen_moov => seen_moov = true,
                b"prft" if seen_moov && !moof_seen => in_fragment = true,
                b"moof" if seen_moov && !moof_seen => {
                    in_fragment = true;
                    moof_seen = true;
                }
                b"mdat" if moof_seen => {
                    in_fragment = false;
                    moof_seen = false;
                    fragments += 1;
                    keep = end;
                }
                k if !in_fragment && NEUTRAL.contains(&k) => {}
                // Anything else out of place is not what this plugin writes: stop at the last good fragment.
                _ => break,
            }
        }
        at = end;
    }

    if !seen_moov {
        return Ok(Verdict::Remove("it has no complete moov box".into()));
    }
    if fragments == 0 {
        return Ok(Verdict::Remove("it has no complete fragment".into()));
    }
    Ok(Verdict::Keep { len: keep, fragments })
}

/// [`scan`] over bytes in memory.
pub fn scan_bytes(data: &[u8]) -> Verdict {
    let read = |offset: u64, len: u32| {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(data[start..end].to_vec())
    };
    scan(data.len() as u64, read).unwrap_or_else(Verdict::Remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn walks_hand_made_files() {
        let init = [boxed(b"ftyp", b"iso6\0\0\0\0"), boxed(b"moov", &[0; 20])].concat();
        let frag = [boxed(b"prft", &[0; 20]), boxed(b"moof", &[1; 30]), boxed(b"mdat", &[2; 50])].concat();
        let two = [init.clone(), frag.clone(), frag.clone()].concat();
        assert_eq!(scan_bytes(&two), Verdict::Keep { len: two.len() as u64, fragments: 2 });
        let torn = &two[..two.len() - 1];
        assert_eq!(scan_bytes(torn), Verdict::Keep { len: (init.len() + frag.len()) as u64, fragments: 1 });
        assert!(matches!(scan_bytes(&init), Verdict::Remove(_)));
        assert!(matches!(scan_bytes(&[]), Verdict::Remove(_)));
        assert!(matches!(scan_bytes(&frag), Verdict::Remove(_)));

        // A 64-bit mdat size is followed.
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&(16u64 + 4).to_be_bytes());
        large.extend_from_slice(&[7; 4]);
        let file = [init.clone(), boxed(b"moof", &[1; 8]), large.clone()].concat();
        assert_eq!(scan_bytes(&file), Verdict::Keep { len: file.len() as u64, fragments: 1 });

        // Hostile sizes stop the walk at the last good fragment.
        let good = [init.clone(), frag.clone()].concat();
        for tail in [
            vec![0, 0, 0, 0, b'm', b'o', b'o', b'f'],
            vec![0, 0, 0, 3, b'm', b'o', b'o', b'f'],
            vec![0xff, 0xff, 0xff, 0xff, b'm', b'o', b'o', b'f'],
            [&[0, 0, 0, 1][..], b"moof", &u64::MAX.to_be_bytes()].concat(),
            [&[0, 0, 0, 1][..], b"moof", &3u64.to_be_bytes()].concat(),
            boxed(b"mdat", &[1; 4]),
            boxed(b"zzzz", &[1; 4]),
        ] {
            let file = [good.clone(), tail].concat();
            assert_eq!(scan_bytes(&file), Verdict::Keep { len: good.len() as u64, fragments: 1 });
        }
    }

    #[test]
    fn read_errors_are_reported() {
        let r = scan(100, |_, _| Err("io".to_string()));
        assert_eq!(r, Err("io".to_string()));
    }
}
