//! H.265 NAL unit headers (ITU-T H.265 7.3.1.2): the two-byte header's fields and the types the router acts on.

pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;
/// RTP aggregation packet and fragmentation unit (RFC 7798 4.4.2, 4.4.3).
pub const AP: u8 = 48;
pub const FU: u8 = 49;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// `nuh_layer_id`, six bits across the header's two bytes.
pub fn layer_id(nal: &[u8]) -> u16 {
    match nal {
        [a, b, ..] => u16::from(a & 0x01) << 5 | u16::from(b >> 3),
        _ => 0,
    }
}

/// An intra random access point (BLA, IDR, CRA; 16-23): a decoder can start here.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// A picture's slice (VCL NAL unit types 0-31).
pub fn is_vcl(nal_type: u8) -> bool {
    nal_type < 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        // An IDR_W_RADL (19) of layer 0, temporal id 1: 0x26 0x01.
        assert_eq!(nal_type(&[0x26, 0x01]), 19);
        assert!(is_irap(19) && !is_irap(1));
        assert_eq!(layer_id(&[0x26, 0x01]), 0);
        assert_eq!(layer_id(&[0x27, 0x09]), 33);
        assert_eq!(nal_type(&[0x40, 0x01]), NAL_VPS);
    }
}
