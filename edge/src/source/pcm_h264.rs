//! The smallest H.264 encoder that is still a real one, for the test pattern: Constrained Baseline, CAVLC, every
//! coded macroblock I_PCM (its samples sent as they are) and, in P pictures, every macroblock that did not change
//! skipped (P_Skip copies it from the previous picture). Lossless, so a test can compare decoded pixels exactly,
//! with no codec library to build for the Pi; the bitrate option does not apply (a still picture costs almost
//! nothing, a changed macroblock 384 bytes).

use bytes::Bytes;

/// A picture in 4:2:0, 8 bits, planes without padding: Y is `width * height`, U and V a quarter each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Picture {
    pub fn new(width: u32, height: u32) -> Picture {
        let (w, h) = (width as usize, height as usize);
        Picture { width, height, y: vec![16; w * h], u: vec![128; w * h / 4], v: vec![128; w * h / 4] }
    }
}

#[derive(Debug)]
pub struct Encoder {
    width: u32,
    height: u32,
    mbs_wide: u32,
    mbs_high: u32,
    /// The previous picture's macroblocks as coded (384 bytes each: 256 Y, 64 U, 64 V): what P_Skip copies.
    reference: Option<Vec<u8>>,
    frame_num: u32,
    idr_pic_id: u32,
    sps: Bytes,
    pps: Bytes,
}

const MB_BYTES: usize = 384;
/// mb_type of I_PCM: 25 in an I slice, 5 + 25 in a P slice (Table 7-11, 7-13).
const I_PCM_IN_I: u32 = 25;
const I_PCM_IN_P: u32 = 30;
/// frame_num is coded in log2_max_frame_num_minus4 + 4 = 8 bits.
const FRAME_NUM_BITS: u32 = 8;

impl Encoder {
    pub fn new(width: u32, height: u32, fps: u32) -> Encoder {
        let mbs_wide = width.div_ceil(16);
        let mbs_high = height.div_ceil(16);
        let sps = sps(width, height, mbs_wide, mbs_high, fps);
        Encoder { width, height, mbs_wide, mbs_high, reference: None, frame_num: 0, idr_pic_id: 0, sps, pps: pps() }
    }

    /// Encodes a picture; returns its NAL units (SPS and PPS before every IDR picture, so a viewer joining at any
    /// keyframe can decode).
    pub fn encode(&mut self, picture: &Picture, keyframe: bool) -> Vec<Bytes> {
        let mbs = self.macroblocks(picture);
        let reference = match self.reference.take() {
            Some(r) if !keyframe => r,
            _ => {
                let idr = self.idr(&mbs);
                self.reference = Some(mbs);
                return vec![self.sps.clone(), self.pps.clone(), idr];
            }
        };
        self.frame_num = (self.frame_num + 1) % (1 << FRAME_NUM_BITS);
        let mut w = BitWriter::default();
        // slice_header: first_mb_in_slice, slice_type P (all slices), pic_parameter_set_id, frame_num,
        // num_ref_idx_active_override_flag, ref_pic_list_modification_flag_l0, adaptive_ref_pic_marking_mode_flag,
        // slice_qp_delta, disable_deblocking_filter_idc = 1 (nothing to smooth in lossless pictures).
        w.ue(0);
        w.ue(5);
        w.ue(0);
        w.u(FRAME_NUM_BITS, self.frame_num);
        w.u(1, 0);
        w.u(1, 0);
        w.u(1, 0);
        w.se(0);
        w.ue(1);
        let mut skipped = 0;
        for (i, mb) in mbs.chunks_exact(MB_BYTES).enumerate() {
            if mb == &reference[i * MB_BYTES..(i + 1) * MB_BYTES] {
                skipped += 1;
                continue;
            }
            w.ue(skipped);
            skipped = 0;
            w.ue(I_PCM_IN_P);
            w.align_zero();
            w.bytes(mb);
        }
        if skipped > 0 {
            w.ue(skipped);
        }
        w.trailing();
        self.reference = Some(mbs);
        // nal_ref_idc 2: the next picture refers to this one.
        vec![nal(0x41, &w.finish())]
    }

    fn idr(&mut self, mbs: &[u8]) -> Bytes {
        self.frame_num = 0;
        self.idr_pic_id = (self.idr_pic_id + 1) % 65536;
        let mut w = BitWriter::default();
        // slice_header: first_mb_in_slice, slice_type I (all slices), pic_parameter_set_id, frame_num, idr_pic_id,
        // no_output_of_prior_pics_flag, long_term_reference_flag, slice_qp_delta, disable_deblocking_filter_idc.
        w.ue(0);
        w.ue(7);
        w.ue(0);
        w.u(FRAME_NUM_BITS, 0);
        w.ue(self.idr_pic_id);
        w.u(1, 0);
        w.u(1, 0);
        w.se(0);
        w.ue(1);
        for mb in mbs.chunks_exact(MB_BYTES) {
            w.ue(I_PCM_IN_I);
            w.align_zero();
            w.bytes(mb);
        }
        w.trailing();
        nal(0x65, &w.finish())
    }

    /// The picture cut into macroblocks in coding order, edges repeated into the padding. Samples of 0 become 1:
    /// early decoders refuse PCM samples of 0.
    fn macroblocks(&self, p: &Picture) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = Vec::with_capacity((self.mbs_wide * self.mbs_high) as usize * MB_BYTES);
        for mby in 0..self.mbs_high as usize {
            for mbx in 0..self.mbs_wide as usize {
                for row in 0..16 {
                    let y = (mby * 16 + row).min(h - 1);
                    for col in 0..16 {
                        let x = (mbx * 16 + col).min(w - 1);
                        out.push(p.y[y * w + x].max(1));
                    }
                }
                for plane in [&p.u, &p.v] {
                    for row in 0..8 {
                        let y = (mby * 8 + row).min(h / 2 - 1);
                        for col in 0..8 {
                            let x = (mbx * 8 + col).min(w / 2 - 1);
                            out.push(plane[y * (w / 2) + x].max(1));
                        }
                    }
                }
            }
        }
        out
    }
}

fn sps(width: u32, height: u32, mbs_wide: u32, mbs_high: u32, fps: u32) -> Bytes {
    let mut w = BitWriter::default();
    w.u(8, 66); // profile_idc: Baseline
    w.u(8, 0xc0); // constraint_set0 and set1: Constrained Baseline
    w.u(8, level(mbs_wide * mbs_high, fps));
    w.ue(0); // seq_parameter_set_id
    w.ue(FRAME_NUM_BITS - 4); // log2_max_frame_num_minus4
    w.ue(2); // pic_order_cnt_type 2: output order is decoding order
    w.ue(1); // max_num_ref_frames
    w.u(1, 0); // gaps_in_frame_num_value_allowed_flag
    w.ue(mbs_wide - 1);
    w.ue(mbs_high - 1);
    w.u(1, 1); // frame_mbs_only_flag
    w.u(1, 1); // direct_8x8_inference_flag
    let (crop_right, crop_bottom) = ((mbs_wide * 16 - width) / 2, (mbs_high * 16 - height) / 2);
    if crop_right > 0 || crop_bottom > 0 {
        w.u(1, 1); // frame_cropping_flag, in units of 2 samples (4:2:0)
        w.ue(0);
        w.ue(crop_right);
        w.ue(0);
        w.ue(crop_bottom);
    } else {
        w.u(1, 0);
    }
    w.u(1, 0); // vui_parameters_present_flag
    w.trailing();
    nal(0x67, &w.finish())
}

fn pps() -> Bytes {
    let mut w = BitWriter::default();
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.u(1, 0); // entropy_coding_mode_flag: CAVLC
    w.u(1, 0); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.u(1, 0); // weighted_pred_flag
    w.u(2, 0); // weighted_bipred_idc
    w.se(0); // pic_init_qp_minus26
    w.se(0); // pic_init_qs_minus26
    w.se(0); // chroma_qp_index_offset
    w.u(1, 1); // deblocking_filter_control_present_flag
    w.u(1, 0); // constrained_intra_pred_flag
    w.u(1, 0); // redundant_pic_cnt_present_flag
    w.trailing();
    nal(0x68, &w.finish())
}

/// The lowest level (Table A-1) whose macroblock rate and frame size fit.
fn level(frame_mbs: u32, fps: u32) -> u32 {
    let rate = frame_mbs * fps;
    let levels = [
        (31, 108_000, 3_600),
        (32, 216_000, 5_120),
        (40, 245_760, 8_192),
        (42, 522_240, 8_704),
        (50, 589_824, 22_080),
        (51, 983_040, 36_864),
    ];
    levels.iter().find(|&&(_, r, f)| rate <= r && frame_mbs <= f).map_or(52, |&(l, _, _)| l)
}

/// A NAL unit from its header byte and RBSP, with emulation prevention bytes inserted.
fn nal(header: u8, rbsp: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 1);
    out.push(header);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    Bytes::from(out)
}

/// Writes H.264 syntax elements MSB first.
#[derive(Debug, Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn u(&mut self, n: u32, value: u32) {
        debug_assert!(n <= 32);
        self.acc = (self.acc << n) | u64::from(value) & ((1u64 << n) - 1);
        self.bits += n;
        while self.bits >= 8 {
            self.bits -= 8;
            self.out.push((self.acc >> self.bits) as u8);
        }
    }

    /// ue(v): Exp-Golomb.
    fn ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        self.u(len - 1, 0);
        self.u(len, v as u32);
    }

    /// se(v): 0, 1, -1, 2, -2, …
    fn se(&mut self, value: i32) {
        let mapped = if value > 0 { 2 * value as u32 - 1 } else { 2 * value.unsigned_abs() };
        self.ue(mapped);
    }

    fn align_zero(&mut self) {
        if self.bits > 0 {
            self.u(8 - self.bits, 0);
        }
    }

    /// Whole bytes, at a byte boundary.
    fn bytes(&mut self, data: &[u8]) {
        debug_assert_eq!(self.bits, 0);
        self.out.extend_from_slice(data);
    }

    /// rbsp_trailing_bits: a 1, then zeros to the byte boundary.
    fn trailing(&mut self) {
        self.u(1, 1);
        self.align_zero();
    }

    fn finish(self) -> Vec<u8> {
        debug_assert_eq!(self.bits, 0);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_media::h264::{parse_sps, remove_emulation_prevention};

    #[test]
    fn exp_golomb_and_emulation_prevention() {
        let mut w = BitWriter::default();
        for v in [0, 1, 2, 3, 7] {
            w.ue(v);
        }
        w.se(-1);
        w.trailing();
        // 1 010 011 00100 0001000 011 1(trailing) -> 1010 0110 0100 0001 0000 1110
        assert_eq!(w.finish(), [0b1010_0110, 0b0100_0001, 0b0000_1110]);
        let escaped = nal(0x65, &[0, 0, 1, 0, 0, 0, 5]);
        assert_eq!(&escaped[..], [0x65, 0, 0, 3, 1, 0, 0, 3, 0, 5]);
        assert_eq!(remove_emulation_prevention(&escaped[1..]), [0, 0, 1, 0, 0, 0, 5]);
    }

    #[test]
    fn the_sps_says_the_size_and_a_level_that_fits() {
        let e = Encoder::new(640, 360, 30);
        let info = parse_sps(&e.sps).expect("our SPS parses");
        assert_eq!((info.width, info.height, info.profile_idc, info.level_idc), (640, 360, 66, 31));
        let e = Encoder::new(1920, 1080, 30);
        assert_eq!(parse_sps(&e.sps).map(|i| (i.width, i.height, i.level_idc)), Ok((1920, 1080, 40)));
    }

    #[test]
    fn unchanged_pictures_cost_a_few_bytes_and_keyframes_carry_parameter_sets() {
        let mut e = Encoder::new(64, 48, 30);
        let mut p = Picture::new(64, 48);
        let idr = e.encode(&p, false);
        assert_eq!(idr.len(), 3, "SPS, PPS, IDR slice");
        assert!(idr[2].len() > 12 * MB_BYTES, "every macroblock is coded");
        let still = e.encode(&p, false);
        assert_eq!(still.len(), 1);
        assert!(still[0].len() < 16, "a skipped picture: {} bytes", still[0].len());
        p.y[0] = 200;
        let one = e.encode(&p, false);
        assert!(one[0].len() > MB_BYTES && one[0].len() < 2 * MB_BYTES, "one changed macroblock");
        assert_eq!(e.encode(&p, true).len(), 3, "a requested keyframe");
    }
}
