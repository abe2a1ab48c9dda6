//! [`Payload`]: the bytes of several frames addressed as one run of bytes, without copying them. A batch handed to
//! a recorder names its samples by offset into one payload, while the bytes stay in the route's frame buffers,
//! shared with every other reader; a write of a range becomes one `iovec` per frame it spans.

use bytes::Bytes;

/// Frames' bytes end to end. Cloning shares the buffers.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    pieces: Vec<Bytes>,
    /// `ends[i]` is the offset just past `pieces[i]`: ascending, so a range's first piece is a binary search away.
    ends: Vec<usize>,
}

impl Payload {
    pub fn with_capacity(pieces: usize) -> Payload {
        Payload { pieces: Vec::with_capacity(pieces), ends: Vec::with_capacity(pieces) }
    }

    /// Appends `piece` at offset [`len`](Self::len).
    pub fn push(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        let end = self.len() + piece.len();
        self.pieces.push(piece);
        self.ends.push(end);
    }

    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The bytes `offset .. offset + len`, as the parts of the pieces they span (none for an empty range); `None`
    /// when the range reaches past the end.
    pub fn slices(&self, offset: usize, len: usize) -> Option<impl Iterator<Item = &[u8]>> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len())?;
        let first = self.ends.partition_point(|&e| e <= offset);
        let spanned = self.pieces[first..].iter().zip(&self.ends[first..]);
        let cut = spanned.map_while(move |(piece, &piece_end)| {
            let start = piece_end - piece.len();
            (start < end).then(|| &piece[offset.saturating_sub(start)..end.min(piece_end) - start])
        });
        Some(cut.filter(|s| !s.is_empty()))
    }

    /// A copy of bytes `offset .. offset + len`, cut at the end (empty past it).
    pub fn copy_range(&self, offset: usize, len: usize) -> Vec<u8> {
        let offset = offset.min(self.len());
        let len = len.min(self.len() - offset);
        let mut out = Vec::with_capacity(len);
        for slice in self.slices(offset, len).into_iter().flatten() {
            out.extend_from_slice(slice);
        }
        out
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Payload {
        let mut payload = Payload::with_capacity(1);
        payload.push(bytes);
        payload
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::from(Bytes::from(bytes))
    }
}

impl FromIterator<Bytes> for Payload {
    fn from_iter<I: IntoIterator<Item = Bytes>>(pieces: I) -> Payload {
        let mut payload = Payload::default();
        for piece in pieces {
            payload.push(piece);
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        [&b"abc"[..], b"", b"defg", b"h"].into_iter().map(Bytes::from_static).collect()
    }

    fn range(p: &Payload, offset: usize, len: usize) -> Option<Vec<Vec<u8>>> {
        p.slices(offset, len).map(|s| s.map(<[u8]>::to_vec).collect())
    }

    #[test]
    fn a_range_is_the_parts_of_the_pieces_it_spans() {
        let p = payload();
        assert_eq!(p.len(), 8);
        assert_eq!(range(&p, 0, 8), Some(vec![b"abc".to_vec(), b"defg".to_vec(), b"h".to_vec()]));
        assert_eq!(range(&p, 2, 3), Some(vec![b"c".to_vec(), b"de".to_vec()]), "across a boundary");
        assert_eq!(range(&p, 3, 4), Some(vec![b"defg".to_vec()]), "exactly one piece");
        assert_eq!(range(&p, 4, 2), Some(vec![b"ef".to_vec()]), "inside one piece");
        assert_eq!(range(&p, 7, 1), Some(vec![b"h".to_vec()]));
        assert_eq!(range(&p, 3, 0), Some(vec![]), "empty");
        assert_eq!(range(&p, 8, 0), Some(vec![]), "empty at the end");
        assert_eq!(range(&p, 6, 3), None, "past the end");
        assert_eq!(range(&p, 9, 0), None, "starts past the end");
        assert_eq!(range(&p, usize::MAX, 2), None, "overflows");
        assert_eq!(range(&Payload::default(), 0, 0), Some(vec![]));
    }

    #[test]
    fn a_copy_is_cut_at_the_end() {
        let p = payload();
        assert_eq!(p.copy_range(2, 4), b"cdef");
        assert_eq!(p.copy_range(5, 100), b"fgh");
        assert_eq!(p.copy_range(100, 1), b"");
        assert_eq!(Payload::from(b"xyz".to_vec()).copy_range(0, 3), b"xyz");
    }
}
