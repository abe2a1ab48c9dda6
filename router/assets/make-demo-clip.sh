#!/bin/sh
# Regenerates demo.h264, the clip `from = "demo"` loops (embedded in the sluice binary).
# 4 s of ffmpeg's testsrc2 at 640x360/30 fps, H.264 Constrained Baseline (every browser decodes it over WebRTC),
# a keyframe every 30 frames, SPS/PPS repeated before each keyframe as IP cameras do, ~450 kbit/s, ~220 KB.
# Raw Annex B so the router needs no demuxer for it; the demo source splits it into access units at start.
set -eu
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 -t 4 \
  -c:v libx264 -profile:v baseline -level 3.1 -pix_fmt yuv420p -preset slow \
  -g 30 -keyint_min 30 -sc_threshold 0 -b:v 450k -maxrate 600k -bufsize 600k \
  -x264-params repeat-headers=1 -f h264 demo.h264
ls -l demo.h264
